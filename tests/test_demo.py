"""The README's main job (scripts/demo.sh --quick) runs end to end, shows its progress and prints its tables."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quick_demo_prints_all_tables_and_resumes(tmp_path):
    # through demo.sh, as the README types it; FDBPL_PYTHON makes its setup use this interpreter
    cmd = ["bash", os.path.join(REPO, "scripts/demo.sh"), "--quick", "--out", str(tmp_path / "out"),
           "--data", str(tmp_path / "data"), "--ril-root", str(tmp_path / "ril")]
    env = dict(os.environ, FDBPL_PYTHON=sys.executable)
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    # each long step names its log, and the build's progress reaches the console (done/total, ETA)
    table = tmp_path / "ril/toyscenes/shots_4/seed0/base_scenes_teacher_large_M8_K10"
    assert (table / "manifest.json").is_file()
    assert f"(log: {tmp_path / 'out_quick/logs/ril_seed0.txt'})" in first.stdout
    assert "RIL table written" in (tmp_path / "out_quick/logs/ril_seed0.txt").read_text()
    train_log = tmp_path / "out_quick/base2new/train_base/toyscenes/shots_4/CoOp/toyscenes/seed0/log.txt"
    assert f"(log: {train_log})" in first.stdout and "Finish training" in train_log.read_text()
    assert "Total demo time:" in first.stdout
    figures = tmp_path / "out_quick/figures"
    assert f"{figures / 'table2_base_new_hm.png'}" in first.stdout
    for name in ("table2_base_new_hm.png", "table2_base_new_hm.csv", "fig8_train_time.png"):
        assert (figures / name).is_file(), name
    for heading in ("(a) Base-to-new", "(b) Training time per run", "KDPL / FDBPL", "(c) RIL table",
                    "(d) How much of the teacher"):
        assert heading in first.stdout, heading
    for method in ("ZS teacher", "ZS student", "CoOp_KDPL", "FDBPL"):
        assert method in first.stdout
    # a second run reuses every finished run and the recorded timings
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "KDPL / FDBPL" in again.stdout and "(0 s)" in again.stdout
    assert "(a) Base-to-new on ToyScenes (toy world v2)" in again.stdout
    # the ratios come from the process CPU times recorded on the first run, kept for the second
    ratio = next(line for line in again.stdout.splitlines() if line.startswith("CoOp_KDPL / FDBPL"))
    assert ratio.endswith("(CPU time)"), ratio


def test_report_lists_promptkd_marked_transductive(capsys):
    """The demo's (a) table: PromptKD's row (mean over seeds, HM of the means), marked, with the protocol note."""
    import argparse

    from scripts.demo import PROMPTKD_ROW, Demo

    demo = object.__new__(Demo)  # the report only: no data, no runs
    demo.args = argparse.Namespace(seeds=[0, 1], promptkd=True)
    demo.world = "toyscenes"
    demo.shots, demo.pretrained, demo.ril = 16, True, {0: 1.0, 1: 1.0}
    demo.ril_info = (10, 4, 3, 32, 2**20)
    demo.timings = {"train": {}, "train_cpu": {}, "ril": {}}
    demo.acc = {"CoOp": {"base": [70.0, 80.0], "new": [60.0, 70.0]},
                PROMPTKD_ROW: {"base": [80.0, 90.0], "new": [70.0, 80.0]}}
    demo.report([])
    out = capsys.readouterr().out.splitlines()
    row = next(line for line in out if line.startswith("PromptKD [transductive]"))
    assert row.split()[2:] == ["85.00", "+-", "5.00", "75.00", "+-", "5.00", "79.69"]  # HM 2*85*75/160
    assert any(line.startswith("[transductive]: trained on the unlabelled images") for line in out)
    assert "[transductive]" not in next(line for line in out if line.startswith("CoOp"))


@pytest.mark.slow
def test_quick_demo_with_promptkd_runs_both_stages_and_reports_them(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, "scripts/demo.py"), "--quick", "--promptkd", "--out",
           str(tmp_path / "out"), "--data", str(tmp_path / "data"), "--ril-root", str(tmp_path / "ril")]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out_quick"
    teacher = out / "promptkd_teacher/toyscenes/shots_4/PromptSRC/seed0/log.txt"
    assert "models/scenes_teacher_large.pt" in teacher.read_text()  # the teacher stage ran on the teacher backbone
    student = out / "base2new/train_all_transductive/toyscenes/PromptKD/toyscenes/seed0"
    assert (student / "teacher_class_features.pt").is_file()
    for sub in ("base", "new"):
        assert "=> result" in (out / f"base2new/test_{sub}/toyscenes/PromptKD/toyscenes/seed0/log.txt").read_text()
    lines = run.stdout.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("(a) Base-to-new")):]
    assert any(line.startswith("PromptKD [transductive]") for line in table[:12])
    assert any(line.startswith("[transductive]:") for line in table)
    assert any(line.startswith("PromptKD [transductive]") for line in lines if "%" not in line) and \
        "PromptKD [transductive]" in run.stdout.split("(d) How much of the teacher")[1]
    # parse_results reads the same tree and marks the row the same way
    parsed = subprocess.run([sys.executable, os.path.join(REPO, "scripts/parse_results.py"), str(out)],
                            capture_output=True, text=True, cwd=REPO)
    assert parsed.returncode == 0 and "PromptKD [transductive]" in parsed.stdout


@pytest.mark.parametrize("world", ["toyscenes", "toyshapes"])
def test_every_config_the_demo_names_exists_in_both_worlds(world):
    """--world picks the dataset config, every method's trainer config and the folders; all of them exist."""
    import argparse

    from scripts.demo import (
        BASELINE_METHODS,
        METHODS,
        PROMPTKD,
        PROMPTKD_TEACHER,
        PROMPTSRC_METHODS,
        WORLDS,
        Demo,
    )

    demo = object.__new__(Demo)
    demo.world, demo.data, demo.shots, demo.crops, demo.out = world, "data/x", 16, 64, "out"
    demo.models = dict(WORLDS[world]["models"])
    demo.args = argparse.Namespace(ril_root="ril", num_crops=64, topk=10)
    demo.methods = dict(METHODS, **PROMPTSRC_METHODS, **BASELINE_METHODS)
    for trainer, cfg in list(demo.methods.values()) + [PROMPTKD, PROMPTKD_TEACHER, ("ZeroshotCLIP", "CoOp/{w}.yaml")]:
        argv = demo.argv(trainer, cfg, 0)
        for key in ("--dataset-config-file", "--config-file"):
            path = argv[argv.index(key) + 1]
            assert os.path.isfile(os.path.join(REPO, path)) and world in path, path
    assert all(os.path.isfile(os.path.join(REPO, p)) for p in demo.models.values())
    assert demo.ril_dir(1).startswith(os.path.join("ril", world, "shots_16", "seed1"))
    assert f"/{world}/" in demo.run_dir("train_base", "CoOp", 0)
