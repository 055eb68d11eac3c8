"""Checkpoints: Dassl layout, pointer file, atomic writes, legacy pickles, resume, pretrained weights."""

import os
import sys
import types

import pytest
import torch
import torch.nn as nn

from engine import utils
from engine.checkpoint import (
    LegacyObject,
    load_checkpoint,
    load_pretrained_weights,
    resume_from_checkpoint,
    save_checkpoint,
)
from engine.config import get_cfg_default
from engine.errors import CheckpointError
from engine.optim import build_lr_scheduler, build_optimizer


def _state(model, epoch, **extra):
    return {"state_dict": model.state_dict(), "epoch": epoch, **extra}


def test_round_trip_pointer_and_best(tmp_path, capsys):
    model = nn.Linear(3, 2)
    save_dir = str(tmp_path / "prompt_learner")
    path = save_checkpoint(_state(model, 5, val_result=None), save_dir, is_best=True)
    assert path == os.path.join(save_dir, "model.pth.tar-5")
    assert "Checkpoint saved to " + path in capsys.readouterr().out
    with open(os.path.join(save_dir, "checkpoint")) as f:
        assert f.read() == "model.pth.tar-5\n"
    for name in ("model.pth.tar-5", "model-best.pth.tar"):
        loaded = load_checkpoint(os.path.join(save_dir, name))
        assert loaded["epoch"] == 5 and loaded["val_result"] is None
        assert torch.equal(loaded["state_dict"]["weight"], model.weight.detach())
    assert sorted(os.listdir(save_dir)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-5"]

    named = save_checkpoint(_state(model, 7), save_dir, model_name="model-best.pth.tar")
    assert named.endswith("model-best.pth.tar") and load_checkpoint(named)["epoch"] == 7


def test_module_prefix_removed(tmp_path):
    wrapped = {"module.weight": torch.ones(1), "bias": torch.zeros(1)}
    path = save_checkpoint({"state_dict": wrapped, "epoch": 1}, str(tmp_path))
    assert set(load_checkpoint(path)["state_dict"]) == {"weight", "bias"}


def test_interrupted_save_leaves_previous_file(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    save_dir = str(tmp_path)
    save_checkpoint(_state(model, 1), save_dir, model_name="model.pth.tar-1")

    real_fdopen = os.fdopen

    class DyingFile:
        """Writes half the bytes, then the 'process dies'."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(utils.os, "fdopen", lambda fd, mode: DyingFile(real_fdopen(fd, mode)))
    with torch.no_grad():
        model.weight.fill_(3.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(model, 1), save_dir, model_name="model.pth.tar-1")
    monkeypatch.undo()
    assert sorted(os.listdir(save_dir)) == ["checkpoint", "model.pth.tar-1"]  # no partial temp file
    loaded = load_checkpoint(os.path.join(save_dir, "model.pth.tar-1"))
    assert not torch.all(loaded["state_dict"]["weight"] == 3.0)  # the old, complete checkpoint


def _pickle_with_fake_dassl(path):
    """Save a checkpoint holding an object of class dassl.optim.lr_scheduler.ConstantWarmupScheduler."""
    names = ["dassl", "dassl.optim", "dassl.optim.lr_scheduler"]
    for name in names:
        sys.modules[name] = types.ModuleType(name)

    class ConstantWarmupScheduler:
        pass

    ConstantWarmupScheduler.__module__ = "dassl.optim.lr_scheduler"
    ConstantWarmupScheduler.__qualname__ = "ConstantWarmupScheduler"
    sys.modules["dassl.optim.lr_scheduler"].ConstantWarmupScheduler = ConstantWarmupScheduler
    sched = ConstantWarmupScheduler()
    sched.last_epoch, sched.cons_lr = 50, 1e-5
    try:
        torch.save({"state_dict": {"ctx": torch.arange(4.0)}, "epoch": 50,
                    "scheduler": {"successor": sched, "last_epoch": 50}}, path)
    finally:
        for name in names:
            del sys.modules[name]


def test_legacy_checkpoint_with_unimportable_dassl_class(tmp_path):
    path = str(tmp_path / "model.pth.tar-50")
    _pickle_with_fake_dassl(path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what a plain modern load does
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 50
    assert torch.equal(ckpt["state_dict"]["ctx"], torch.arange(4.0))
    succ = ckpt["scheduler"]["successor"]
    assert isinstance(succ, LegacyObject) and succ.last_epoch == 50
    assert succ._legacy_class == "dassl.optim.lr_scheduler.ConstantWarmupScheduler"


def test_missing_checkpoint_lists_existing(tmp_path):
    model = nn.Linear(1, 1)
    for epoch in (10, 20):
        save_checkpoint(_state(model, epoch), str(tmp_path))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(tmp_path / "model.pth.tar-50"))
    msg = str(err.value)
    assert "model.pth.tar-50" in msg and "model.pth.tar-10, model.pth.tar-20" in msg

    (tmp_path / "garbage.pth").write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_checkpoint(str(tmp_path / "garbage.pth"))


def test_resume_restores_model_optimizer_scheduler(tmp_path):
    optim_cfg = get_cfg_default().OPTIM
    optim_cfg.NAME, optim_cfg.LR, optim_cfg.LR_SCHEDULER, optim_cfg.MAX_EPOCH = "sgd", 0.002, "cosine", 10
    optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_TYPE = 1, "constant"

    def build(seed):
        torch.manual_seed(seed)
        model = nn.Linear(2, 2)
        opt = build_optimizer(model, optim_cfg)
        return model, opt, build_lr_scheduler(opt, optim_cfg)

    model, opt, sched = build(0)
    for _ in range(3):
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        sched.step()
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 3, "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict()}, str(tmp_path))

    new_model, new_opt, new_sched = build(1)
    assert resume_from_checkpoint(str(tmp_path), new_model, new_opt, new_sched) == 3
    assert torch.equal(new_model.weight, model.weight)
    assert new_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert new_sched.last_epoch == sched.last_epoch

    with pytest.raises(CheckpointError, match="pointer"):
        resume_from_checkpoint(str(tmp_path / "empty"), new_model)


def test_load_pretrained_weights_matches_names_and_shapes(tmp_path, capsys):
    source = {"module.a.weight": torch.ones(2, 2), "b.weight": torch.ones(5, 5), "extra": torch.ones(1)}
    path = str(tmp_path / "w.pth")
    torch.save({"state_dict": source}, path)
    model = nn.Module()
    model.a = nn.Linear(2, 2)
    model.b = nn.Linear(2, 3)
    before_b = model.b.weight.detach().clone()
    matched, discarded = load_pretrained_weights(model, path)
    assert matched == ["a.weight"] and discarded == ["b.weight", "extra"]
    assert torch.equal(model.a.weight.detach(), torch.ones(2, 2))
    assert torch.equal(model.b.weight.detach(), before_b)
    assert "b.weight" in capsys.readouterr().out

    torch.save({"nothing": torch.ones(1)}, path)
    with pytest.warns(UserWarning, match="cannot be loaded"):
        load_pretrained_weights(model, path)


def _sigkilled_save(save_dir, model_name):
    """Run save_checkpoint in a child process that is SIGKILLed between writing the temp file and os.replace."""
    import signal
    import subprocess
    import textwrap

    code = textwrap.dedent(f"""
        import os, signal, torch
        import engine.utils as u
        from engine.checkpoint import save_checkpoint
        u.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        save_checkpoint({{"state_dict": {{"w": torch.ones(3)}}, "epoch": 2}}, {save_dir!r}, model_name={model_name!r})
    """)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, cwd=repo)
    assert res.returncode == -signal.SIGKILL, res.stderr.decode()[-2000:]


def test_temp_files_of_a_killed_save_are_removed_on_the_next_save(tmp_path):
    save_dir = str(tmp_path / "prompt_learner")
    _sigkilled_save(save_dir, "model.pth.tar-2")
    leftovers = [n for n in os.listdir(save_dir) if n.startswith(".tmp-")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-model.pth.tar-2-")
    (tmp_path / "prompt_learner" / "notes.tmp").write_text("not ours")
    save_checkpoint(_state(nn.Linear(1, 1), 3), save_dir)
    assert sorted(os.listdir(save_dir)) == ["checkpoint", "model.pth.tar-3", "notes.tmp"]


def test_temp_files_of_a_killed_save_are_removed_on_resume(tmp_path):
    from engine.trainer import TrainerBase

    model = nn.Linear(1, 1)
    save_checkpoint(_state(model, 1), str(tmp_path / "prompt_learner"))
    _sigkilled_save(str(tmp_path / "prompt_learner"), "model.pth.tar-2")
    assert any(n.startswith(".tmp-") for n in os.listdir(tmp_path / "prompt_learner"))
    trainer = TrainerBase()
    trainer.register_model("prompt_learner", model)
    assert trainer.resume_model_if_exist(str(tmp_path)) == 1
    assert sorted(os.listdir(tmp_path / "prompt_learner")) == ["checkpoint", "model.pth.tar-1"]
