"""One `error:` line instead of a traceback: resuming a run of another config, a file as --output-dir, bad backbones."""

import os
import zipfile

import pytest
import torch
from torch import nn

from clip_tools import loading as cb
from engine.checkpoint import resume_from_checkpoint, save_checkpoint
from engine.errors import CheckpointError
from tests.test_train_e2e import coop_args, run

LEARNED_CTX = ("TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", "4")


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("change", [("TRAINER.COOP.N_CTX", "2"), ("OPTIM.NAME", "adam")])
def test_resume_into_a_folder_of_another_config(toy_root, tiny_clip_path, tmp_path, capsys, change):
    out = str(tmp_path / "out")
    run(coop_args(toy_root, tiny_clip_path, out, *LEARNED_CTX, epochs=1))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(coop_args(toy_root, tiny_clip_path, out, *LEARNED_CTX, *change, epochs=2))
    assert exc.value.code == 2
    line = _one_error_line(capsys)
    assert os.path.join(out, "prompt_learner", "model.pth.tar-1") in line
    assert "another config" in line and "--output-dir" in line and f"remove {out}" in line


def test_resume_from_checkpoint_of_another_shape(tmp_path):
    save_checkpoint({"state_dict": nn.Linear(3, 2).state_dict(), "epoch": 1}, str(tmp_path))
    with pytest.raises(CheckpointError, match="model.pth.tar-1.*another config"):
        resume_from_checkpoint(str(tmp_path), nn.Linear(4, 2))


@pytest.mark.parametrize("below", [False, True])
def test_output_dir_naming_a_file(toy_root, tiny_clip_path, tmp_path, capsys, below):
    afile = tmp_path / "results.txt"
    afile.write_text("not a folder")
    out = str(afile / "seed1") if below else str(afile)
    with pytest.raises(SystemExit) as exc:
        run(coop_args(toy_root, tiny_clip_path, out, epochs=1))
    assert exc.value.code == 2
    line = _one_error_line(capsys)
    assert f"{afile} is a file, not a folder" in line
    assert afile.read_text() == "not a folder"


def test_backbone_that_only_looks_like_torchscript(tmp_path):
    path = tmp_path / "ViT-B-32.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ViT-B-32/code/__torch__/model.py", "not torchscript")
        zf.writestr("ViT-B-32/constants.pkl", b"garbage")
    with pytest.raises(CheckpointError, match="ViT-B-32.pt' looks like a TorchScript archive"):
        cb.read_clip_file(str(path))


def test_backbone_named_safetensors_that_is_not_one(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="model.safetensors' is named .safetensors but is not"):
        cb.read_clip_file(str(path))
