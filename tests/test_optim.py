"""Optimizer and LR schedule builders: Dassl's exact per-epoch learning rates and plain state dicts."""

import math
import warnings

import pytest
import torch
import torch.nn as nn

from engine.config import get_cfg_default
from engine.errors import ConfigError
from engine.optim import build_lr_scheduler, build_optimizer


def _cfg(**overrides):
    optim = get_cfg_default().OPTIM
    for key, value in overrides.items():
        optim[key] = value
    return optim


def _coop_cfg(**overrides):
    base = dict(NAME="sgd", LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=5, WARMUP_EPOCH=1,
                WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    base.update(overrides)
    return _cfg(**base)


def _lr_sequence(optimizer, scheduler, epochs):
    """LR used in each epoch, then the LR after the last step (scheduler stepped once per epoch)."""
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def _build(optim_cfg, n_params=1):
    params = [nn.Parameter(torch.zeros(2)) for _ in range(n_params)]
    optimizer = build_optimizer(params, optim_cfg)
    return optimizer, build_lr_scheduler(optimizer, optim_cfg)


def test_coop_cosine_with_constant_warmup_matches_dassl():
    optimizer, scheduler = _build(_coop_cfg())
    lrs = _lr_sequence(optimizer, scheduler, 5)
    assert [round(lr, 6) for lr in lrs] == [1e-05, 0.002, 0.001809, 0.001309, 0.000691, 0.000191]


def test_general_shifted_cosine_formula():
    E, lr = 50, 0.002
    optimizer, scheduler = _build(_coop_cfg(MAX_EPOCH=E))
    lrs = _lr_sequence(optimizer, scheduler, E)
    for e in range(1, E):
        assert lrs[e] == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * (e - 1) / E)), rel=1e-12)
    assert lrs[E - 1] > 0


def test_linear_warmup():
    optimizer, scheduler = _build(_coop_cfg(WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-5))
    assert [round(v, 6) for v in _lr_sequence(optimizer, scheduler, 2)] == [1e-05, 0.002, 0.001809]
    optimizer, scheduler = _build(_coop_cfg(WARMUP_TYPE="linear", WARMUP_EPOCH=4, MAX_EPOCH=10, LR=0.1))
    lrs = _lr_sequence(optimizer, scheduler, 6)
    assert lrs[:5] == pytest.approx([1e-5, 0.025, 0.05, 0.075, 0.1])
    assert lrs[5] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 1 / 10)))


def test_warmup_without_recount():
    # Dassl's recursive update telescopes to base * f(e) / f(k) with f(x) = 1 + cos(pi x / E).
    optimizer, scheduler = _build(_coop_cfg(WARMUP_EPOCH=2, MAX_EPOCH=10, WARMUP_RECOUNT=False))
    lrs = _lr_sequence(optimizer, scheduler, 5)
    f = lambda x: 1 + math.cos(math.pi * x / 10)  # noqa: E731
    assert lrs[:2] == pytest.approx([1e-5, 1e-5])
    assert lrs[2:5] == pytest.approx([0.002, 0.002 * f(3) / f(2), 0.002 * f(4) / f(2)])


def test_single_and_multi_step():
    optimizer, scheduler = _build(_cfg(NAME="sgd", LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.5))
    assert _lr_sequence(optimizer, scheduler, 5) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    # STEPSIZE -1 means "MAX_EPOCH".
    optimizer, scheduler = _build(_cfg(NAME="sgd", LR=1.0, LR_SCHEDULER="single_step", MAX_EPOCH=3))
    assert _lr_sequence(optimizer, scheduler, 3) == pytest.approx([1, 1, 1, 0.1])
    optimizer, scheduler = _build(_cfg(NAME="sgd", LR=1.0, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.1))
    assert _lr_sequence(optimizer, scheduler, 4) == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])


def test_state_round_trip_weights_only(tmp_path):
    cfg = _coop_cfg(MAX_EPOCH=8)
    reference_opt, reference_sched = _build(cfg)
    expected = _lr_sequence(reference_opt, reference_sched, 8)

    optimizer, scheduler = _build(cfg)
    _lr_sequence(optimizer, scheduler, 3)  # stop after epoch 2, like a checkpoint at epoch 3
    path = tmp_path / "sched.pt"
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, path)

    state = torch.load(path, weights_only=True)  # plain data only, or this raises
    new_opt, new_sched = _build(cfg)
    new_opt.load_state_dict(state["optimizer"])
    new_sched.load_state_dict(state["scheduler"])
    assert isinstance(state["scheduler"]["successor"], dict)
    rest = _lr_sequence(new_opt, new_sched, 5)
    assert rest == pytest.approx(expected[3:], rel=1e-12)


def test_no_verbose_warnings_and_optimizers():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("sgd", "adam", "adamw", "amsgrad", "rmsprop", "radam"):
            opt = build_optimizer(model, _cfg(NAME=name, LR=0.01))
            # Only trainable parameters are handed over.
            assert sum(len(g["params"]) for g in opt.param_groups) == 3
    assert build_optimizer(model, _cfg(NAME="amsgrad")).param_groups[0]["amsgrad"] is True
    assert isinstance(build_optimizer(model, _cfg(NAME="radam")), torch.optim.RAdam)
    sgd = build_optimizer(model, _cfg(NAME="sgd", MOMENTUM=0.8, WEIGHT_DECAY=1e-3, SGD_NESTEROV=True))
    group = sgd.param_groups[0]
    assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.8, 1e-3, True)


def test_staged_lr():
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 1))
    opt = build_optimizer(model, _cfg(NAME="sgd", LR=0.1, STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1))
    base, new = opt.param_groups
    assert base["lr"] == pytest.approx(0.01) and new["lr"] == pytest.approx(0.1)
    assert new["params"][0] is model.head.weight
    with pytest.raises(ConfigError, match="NEW_LAYERS"):
        build_optimizer(model, _cfg(NAME="sgd", STAGED_LR=True, NEW_LAYERS=("neck",)))


def test_bad_names():
    with pytest.raises(ConfigError, match=r"unknown OPTIM.NAME 'sgdd'.*'sgd'"):
        build_optimizer([nn.Parameter(torch.zeros(1))], _cfg(NAME="sgdd"))
    opt = build_optimizer([nn.Parameter(torch.zeros(1))], _cfg(NAME="sgd"))
    with pytest.raises(ConfigError, match="LR_SCHEDULER 'cos'"):
        build_lr_scheduler(opt, _cfg(LR_SCHEDULER="cos"))
    with pytest.raises(ConfigError, match="WARMUP_TYPE 'exp'"):
        build_lr_scheduler(opt, _cfg(WARMUP_EPOCH=1, WARMUP_TYPE="exp"))
    with pytest.raises(ValueError, match="requires_grad"):
        build_optimizer([nn.Parameter(torch.zeros(1), requires_grad=False)], _cfg(NAME="sgd"))
