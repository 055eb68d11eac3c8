"""Loading a checkpoint never runs code: every load path refuses a pickled payload; Dassl's checkpoints still load."""

import pickle

import pytest
import torch
import torch.nn as nn

import train
from engine.checkpoint import (
    load_checkpoint,
    load_pretrained_weights,
    resume_from_checkpoint,
)
from engine.config import get_cfg_default
from engine.data.datum import load_legacy_pickle
from engine.errors import CheckpointError, DatasetError
from engine.logger import close_logger
from engine.optim import build_lr_scheduler, build_optimizer
from tests.fixtures.dassl_like import (
    Payload,
    write_dassl_checkpoint,
    write_payload_checkpoint,
)
from tests.test_train_e2e import coop_args


@pytest.mark.parametrize("kind", ["zip", "legacy", "raw_pickle"])
def test_load_checkpoint_refuses_payload(tmp_path, kind):
    marker = tmp_path / "marker"
    path = write_payload_checkpoint(str(tmp_path / "model.pth.tar-1"), marker,
                                    legacy_format=kind == "legacy", raw_pickle=kind == "raw_pickle")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "\n" not in msg and path in msg and "exec'" in msg
    assert not marker.exists()


def test_pretrained_weights_and_resume_refuse_payload(tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "run"
    folder.mkdir()
    write_payload_checkpoint(str(folder / "model.pth.tar-1"), marker)
    (folder / "checkpoint").write_text("model.pth.tar-1\n")
    with pytest.raises(CheckpointError, match="model.pth.tar-1"):
        load_pretrained_weights(nn.Linear(2, 2), str(folder / "model.pth.tar-1"))
    with pytest.raises(CheckpointError, match="model.pth.tar-1"):
        resume_from_checkpoint(str(folder), nn.Linear(2, 2))
    assert not marker.exists()


def test_dataset_pickle_and_checkpoint_share_the_refusal(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "shot_1-seed_1.pkl"
    path.write_bytes(pickle.dumps({"train": [Payload(marker)]}))
    with pytest.raises(DatasetError, match="exec"):
        load_legacy_pickle(str(path))
    assert not marker.exists()


def _payload_run_folder(folder, marker, epoch=1):
    """An output folder whose CoOp resume point / scheduled checkpoint carries a payload."""
    pl = folder / "prompt_learner"
    pl.mkdir(parents=True)
    write_payload_checkpoint(str(pl / f"model.pth.tar-{epoch}"), marker)
    (pl / "checkpoint").write_text(f"model.pth.tar-{epoch}\n")
    return str(pl / f"model.pth.tar-{epoch}")


@pytest.mark.parametrize("path_kind", ["eval_epoch", "eval_pointer", "auto_resume", "resume_flag", "init_weights"])
def test_every_cli_load_path_refuses_payload(toy_root, tiny_clip_path, tmp_path, capsys, path_kind):
    marker = tmp_path / "marker"
    bad = tmp_path / "shared_run"
    bad_file = _payload_run_folder(bad, marker)
    out = str(tmp_path / "out")
    if path_kind == "eval_epoch":
        args = ["--eval-only", "--model-dir", str(bad), "--load-epoch", "1"] + coop_args(toy_root, tiny_clip_path, out)
    elif path_kind == "eval_pointer":
        args = ["--eval-only", "--model-dir", str(bad)] + coop_args(toy_root, tiny_clip_path, out)
    elif path_kind == "auto_resume":
        args = coop_args(toy_root, tiny_clip_path, str(bad))
    elif path_kind == "resume_flag":
        args = ["--resume", str(bad)] + coop_args(toy_root, tiny_clip_path, out)
    else:
        args = coop_args(toy_root, tiny_clip_path, out, "MODEL.INIT_WEIGHTS", bad_file)
    with pytest.raises(SystemExit) as exc:
        try:
            train.cli(args)
        finally:
            close_logger()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert bad_file in err[0] and "exec'" in err[0], err
    assert not marker.exists()


def test_checkpoint_written_like_dassl_loads(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    path = str(tmp_path / "model.pth.tar-5")
    saved, _ = write_dassl_checkpoint(path, model, epochs_done=5, max_epoch=8)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # the pickled successor and its optimizer are objects
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 5 and torch.equal(ckpt["state_dict"]["weight"], saved["state_dict"]["weight"])
    successor = ckpt["scheduler"]["successor"]
    assert isinstance(successor, torch.optim.lr_scheduler.CosineAnnealingLR) and successor.last_epoch == 4
    assert isinstance(successor.optimizer, torch.optim.SGD)
    assert ckpt["scheduler"]["last_epoch"] == 1  # Dassl's wrapper stops counting after warm-up


def test_numpy_scalar_val_result_loads(tmp_path):
    import numpy as np

    path = str(tmp_path / "model-best.pth.tar")
    torch.save({"state_dict": {"ctx": torch.ones(2)}, "epoch": 3, "val_result": np.float64(81.25)}, path)
    ckpt = load_checkpoint(path)
    assert ckpt["val_result"] == 81.25 and isinstance(ckpt["val_result"], np.float64)


def _coop_optim(max_epoch):
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR, cfg.LR_SCHEDULER, cfg.MAX_EPOCH = "sgd", 0.002, "cosine", max_epoch
    cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE, cfg.WARMUP_CONS_LR = 1, "constant", 1e-5
    return cfg


def test_resuming_a_dassl_checkpoint_continues_its_cosine(tmp_path):
    """Epochs 6-8 of an 8-epoch CoOp schedule: Dassl trains at 1.0e-3, 6.17e-4, 2.93e-4."""
    torch.manual_seed(0)
    folder = tmp_path / "prompt_learner"
    folder.mkdir()
    _, dassl_lrs = write_dassl_checkpoint(str(folder / "model.pth.tar-5"), nn.Linear(3, 2), 5, 8)
    (folder / "checkpoint").write_text("model.pth.tar-5\n")
    assert dassl_lrs[5:] == pytest.approx([1.0e-3, 6.173e-4, 2.929e-4], rel=1e-3)

    model = nn.Linear(3, 2)
    opt = build_optimizer(model, _coop_optim(8))
    sched = build_lr_scheduler(opt, _coop_optim(8))
    assert resume_from_checkpoint(str(folder), model, opt, sched) == 5
    resumed = []
    for _ in range(3):
        resumed.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert resumed == pytest.approx(dassl_lrs[5:], rel=1e-9)
