"""scripts/_runs.py: resumable parallel runs with prerequisites (the toy table scripts' engine)."""

import os.path as osp
import sys

from scripts._runs import Task, result_of, run_tasks, task_done


class FakeTask(Task):
    """A task whose command writes a train.py-style log with the given accuracy (or fails when acc is None)."""

    def __init__(self, out, acc, after=(), kind="train", needs=None):
        super().__init__(kind, out, [], list(after))
        self.acc, self.needs = acc, needs

    def command(self):
        signal = "=> result" if self.kind == "eval" else "Finish training"
        check = f"assert os.path.isfile({osp.join(self.needs, 'log.txt')!r}); " if self.needs else ""
        body = (f"import os, sys; {check}" + ("sys.exit(3); " if self.acc is None else "")
                + f"open(os.path.join({self.out!r}, 'log.txt'), 'a').write('{signal}\\n* accuracy: {self.acc}%\\n')")
        return [sys.executable, "-c", body]


def test_runs_in_dependency_order_then_skips_finished_runs(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    tasks = [FakeTask(c, 30.0, after=[b], kind="eval", needs=b), FakeTask(b, 20.0, after=[a], needs=a),
             FakeTask(a, 10.0)]
    lines = []
    assert run_tasks(tasks, jobs=2, log=lines.append) == []
    assert [result_of(a), result_of(b), result_of(c, "eval")] == [10.0, 20.0, 30.0]
    assert all(task_done(t) for t in tasks)
    assert any("3 to run" in line for line in lines)
    # a second sweep runs nothing: every log already holds its result
    again = []
    assert run_tasks(tasks, jobs=2, log=again.append) == [] and again == []


def test_a_failed_run_is_reported_and_its_dependants_are_skipped(tmp_path):
    bad, after_bad, other = (str(tmp_path / n) for n in ("bad", "after_bad", "other"))
    lines = []
    failed = run_tasks([FakeTask(bad, None), FakeTask(after_bad, 1.0, after=[bad]), FakeTask(other, 5.0)],
                       jobs=1, log=lines.append)
    assert sorted(failed) == sorted([bad, after_bad])
    assert result_of(other) == 5.0 and result_of(after_bad) is None
    assert any("FAILED " + bad in line and "exit 3" in line for line in lines)
    assert any("skipped " + after_bad in line for line in lines)


def test_duplicate_outs_run_once_and_builds_are_done_when_their_manifest_exists(tmp_path):
    out = str(tmp_path / "x")
    lines = []
    assert run_tasks([FakeTask(out, 1.0), FakeTask(out, 1.0)], jobs=2, log=lines.append) == []
    with open(osp.join(out, "log.txt")) as f:
        assert f.read().count("* accuracy") == 1
    build = Task("build", str(tmp_path / "table"), [])
    assert not task_done(build)
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "manifest.json").write_text("{}")
    assert task_done(build)
    assert Task("build", "t", ["--x"]).command()[1:3] == ["-m", "ril_tools.build"]
