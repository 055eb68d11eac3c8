"""scripts/toy_world_criteria.py end to end on a tiny ToyScenes world (1 seed, 1 shot, 1 epoch, 2 crops per image)."""

import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # trains CoOp and CoOp_KDPL for an epoch and builds a small RIL table: about a minute
def test_criteria_script_writes_every_criterion(tmp_path, one_thread):
    import importlib.util

    spec = importlib.util.spec_from_file_location("toy_world_criteria", os.path.join(REPO, "scripts",
                                                                                       "toy_world_criteria.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "out"
    assert mod.main(["--root", str(tmp_path / "data"), "--gen-seed", "3", "--seeds", "1", "--out", str(out),
                     "--shots", "1", "--num-crops", "2", "--train", "1", "--val", "1", "--test", "1",
                     "--opts", "OPTIM.MAX_EPOCH", "1"]) == 0
    result = json.loads((out / "criteria.json").read_text())
    names = [row["criterion"] for row in result["criteria"]]
    assert [n.split(" ")[0] for n in names] == ["1", "1", "2a", "2b", "3", "4"]
    assert result["crops"]["records"] == 32 * 2 and result["crops"]["classes"] == 32
    assert set(result["zero_shot"]) == {"teacher", "teacher_small", "student"}
    assert len(result["CoOp"]["new"]["per_seed"]) == 1 and len(result["CoOp_KDPL"]["base"]["per_seed"]) == 1
