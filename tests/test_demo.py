"""The README's main job (scripts/demo.py --quick) runs end to end and prints its four tables."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_demo_prints_all_tables_and_resumes(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, "scripts/demo.py"), "--quick", "--out", str(tmp_path / "out"),
           "--data", str(tmp_path / "data")]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stderr[-3000:]
    for heading in ("(a) Base-to-new", "(b) Training wall time", "KDPL / FDBPL", "(c) RIL table",
                    "(d) How much of the teacher"):
        assert heading in first.stdout, heading
    for method in ("ZS teacher", "ZS student", "CoOp_KDPL", "FDBPL"):
        assert method in first.stdout
    # a second run reuses every finished run and the recorded timings
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "KDPL / FDBPL" in again.stdout and "(0 s)" in again.stdout
