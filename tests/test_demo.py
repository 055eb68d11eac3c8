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
    table = tmp_path / "ril/toyshapes/shots_4/seed0/base_toy_teacher_M8_K10"
    assert (table / "manifest.json").is_file()
    assert f"(log: {tmp_path / 'out_quick/logs/ril_seed0.txt'})" in first.stdout
    assert "RIL table written" in (tmp_path / "out_quick/logs/ril_seed0.txt").read_text()
    train_log = tmp_path / "out_quick/base2new/train_base/toyshapes/shots_4/CoOp/toyshapes/seed0/log.txt"
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
    # the ratios come from the process CPU times recorded on the first run, kept for the second
    ratio = next(line for line in again.stdout.splitlines() if line.startswith("CoOp_KDPL / FDBPL"))
    assert ratio.endswith("(CPU time)"), ratio
