"""Optimizer and learning-rate scheduler builders driven by the ``OPTIM`` config node.

The schedules reproduce Dassl's per-epoch learning rates (CoOp steps the scheduler once per epoch,
after the last batch). For CoOp's configs (sgd, LR 0.002, cosine, MAX_EPOCH E, one constant warm-up
epoch at 1e-5) epoch 0 trains at 1e-5 and epoch e >= 1 at ``LR * 0.5 * (1 + cos(pi * (e - 1) / E))``.

Differences from Dassl, on purpose:

* every learning rate is computed in closed form from the epoch counter, so a scheduler restored from
  ``state_dict()`` continues exactly;
* ``state_dict()`` is plain data (the warm-up wrapper nests its successor's *state dict*, not the
  successor object), so checkpoints load with ``torch.load(weights_only=True)``;
* no positional ``verbose`` argument (Dassl's wrappers fail with TypeError on torch >= 2.7);
* only parameters with ``requires_grad`` go to the optimizer. Frozen parameters never receive a gradient,
  and every torch optimizer skips parameters whose ``grad`` is None (no update, no weight decay, no
  state), so the training result is the same; leaving them out saves the per-step loop over the frozen
  CLIP weights and keeps the optimizer state small.
"""

import bisect
import math

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler

from engine.errors import ConfigError

__all__ = [
    "AVAI_OPTIMS",
    "AVAI_SCHEDS",
    "build_optimizer",
    "build_lr_scheduler",
    "StepScheduler",
    "MultiStepScheduler",
    "CosineScheduler",
    "ConstantWarmupScheduler",
    "LinearWarmupScheduler",
]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]
AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]
AVAI_WARMUPS = ["constant", "linear"]


# -------------------------------------------------------------------------------------- optimizer


def _trainable(params):
    return [p for p in params if p.requires_grad]


def _staged_param_groups(model, optim_cfg):
    """Two groups: children named in NEW_LAYERS at LR, all other children at LR * BASE_LR_MULT."""
    if not isinstance(model, nn.Module):
        raise ConfigError("OPTIM.STAGED_LR needs an nn.Module (got parameters); pass the model to build_optimizer")
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if not new_layers:
        raise ConfigError("OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty; name the layers trained at full LR")
    children = dict(model.named_children())
    missing = [name for name in new_layers if name not in children]
    if missing:
        raise ConfigError(f"OPTIM.NEW_LAYERS names {missing} that are not children of the model: {sorted(children)}")
    base_params, new_params = [], []
    for name, module in children.items():
        (new_params if name in new_layers else base_params).extend(module.parameters())
    return [
        {"params": _trainable(base_params), "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": _trainable(new_params)},
    ]


def _filter_groups(params_or_groups):
    """Keep only trainable parameters, in plain lists or in param-group dicts; drop empty groups."""
    items = list(params_or_groups)
    if items and isinstance(items[0], dict):
        groups = []
        for group in items:
            group = dict(group)
            group["params"] = _trainable(group["params"])
            if group["params"]:
                groups.append(group)
        return groups
    return _trainable(items)


def build_optimizer(model_or_params, optim_cfg, param_groups=None):
    """A torch optimizer for ``model_or_params`` (module, parameter iterable or param groups) from ``OPTIM``.

    ``param_groups`` (a list of dicts) overrides the parameters taken from ``model_or_params``.
    """
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ConfigError(f"unknown OPTIM.NAME '{name}'; choose one of {AVAI_OPTIMS}")
    if optim_cfg.STAGED_LR:
        params = _staged_param_groups(model_or_params, optim_cfg)
    elif param_groups is not None:
        params = param_groups
    elif isinstance(model_or_params, nn.Module):
        params = model_or_params.parameters()
    else:
        params = model_or_params
    params = _filter_groups(params)
    if not params:
        raise ValueError("build_optimizer: no parameter with requires_grad=True; nothing to optimise")

    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=betas, amsgrad=(name == "amsgrad"))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA
        )
    # radam: torch's implementation (Dassl shipped its own copy of the same algorithm).
    return torch.optim.RAdam(params, lr=lr, weight_decay=wd, betas=betas)


# ------------------------------------------------------------------------------------- schedulers


class _ClosedFormScheduler(LRScheduler):
    """A scheduler whose LR at epoch e is ``base_lr * factor(e)``, with ``factor(0) == 1``."""

    def factor(self, epoch):
        raise NotImplementedError

    def get_lr(self):
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        _write_lrs(self.optimizer, self._last_lr)


def _write_lrs(optimizer, lrs):
    """Put the restored learning rates back into the optimizer, so they are right before the next step."""
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr


class StepScheduler(_ClosedFormScheduler):
    """LR decays by ``gamma`` every ``step_size`` epochs (Dassl ``single_step``)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch):
        return self.gamma ** (epoch // self.step_size)


class MultiStepScheduler(_ClosedFormScheduler):
    """LR decays by ``gamma`` at each milestone epoch (Dassl ``multi_step``)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch):
        return self.gamma ** bisect.bisect_right(self.milestones, epoch)


class CosineScheduler(_ClosedFormScheduler):
    """Half-cosine from the base LR to 0 over ``t_max`` epochs (Dassl ``cosine``, eta_min 0)."""

    def __init__(self, optimizer, t_max, last_epoch=-1):
        self.t_max = float(t_max)
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch):
        return 0.5 * (1.0 + math.cos(math.pi * epoch / self.t_max))


class _WarmupScheduler(LRScheduler):
    """Runs a warm-up for ``warmup_epoch`` epochs, then hands over to ``successor``.

    Dassl's arithmetic: at wrapper epoch e >= warmup_epoch the successor sits at epoch
    ``s + (e - warmup_epoch)`` where s is 0 (``recount``) or warmup_epoch, and the LR is
    ``base * factor(s + e - warmup_epoch) / factor(s)``: Dassl's successor starts from the base LR at
    e == warmup_epoch and then applies torch's recursive update, which telescopes to this ratio.
    """

    def __init__(self, optimizer, successor, warmup_epoch, recount=True, last_epoch=-1):
        if not isinstance(successor, _ClosedFormScheduler):
            raise TypeError("successor must be a StepScheduler, MultiStepScheduler or CosineScheduler")
        self.successor = successor
        self.warmup_epoch = int(warmup_epoch)
        self.successor_start = 0 if recount else self.warmup_epoch
        super().__init__(optimizer, last_epoch)

    def warmup_lr(self, epoch, base):
        raise NotImplementedError

    def get_lr(self):
        e = self.last_epoch
        if e < self.warmup_epoch:
            return [self.warmup_lr(e, base) for base in self.base_lrs]
        succ_epoch = self.successor_start + (e - self.warmup_epoch)
        self.successor.last_epoch = succ_epoch
        start = self.successor.factor(self.successor_start)
        ratio = self.successor.factor(succ_epoch) / start if start != 0 else 0.0
        lrs = [base * ratio for base in self.base_lrs]
        self.successor._last_lr = list(lrs)
        return lrs

    def state_dict(self):
        """Plain data: the wrapper's attributes plus the successor's own state dict under 'successor'."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict):
        """Restore our own state, or a Dassl checkpoint's (which pickles the successor object itself)."""
        state = {k: v for k, v in dict(state_dict).items() if k != "optimizer"}
        successor_state = state.pop("successor", None)
        if isinstance(successor_state, dict):
            self.successor.__dict__.update(successor_state)
        elif successor_state is not None and hasattr(successor_state, "__dict__"):
            state["last_epoch"] = self._epoch_from_dassl(state, successor_state)
            plain = {k: v for k, v in vars(successor_state).items() if k != "optimizer"}
            self.successor.__dict__.update({k: v for k, v in plain.items() if k in self.successor.__dict__})
        self.__dict__.update(state)
        if self.last_epoch >= self.warmup_epoch:
            self.successor.last_epoch = self.successor_start + (self.last_epoch - self.warmup_epoch)
        _write_lrs(self.optimizer, self._last_lr)

    def _epoch_from_dassl(self, state, successor):
        """Our epoch counter for a Dassl wrapper state.

        Once warm-up is over, Dassl's wrapper stops counting (its ``last_epoch`` stays at
        ``warmup_epoch``) and only steps the successor, so the epoch reached is
        ``warmup_epoch + successor.last_epoch - successor start`` (start: 0, or ``warmup_epoch`` without
        recount). Reading the wrapper's counter alone would restart the schedule after warm-up.
        """
        wrapper_epoch = int(state.get("last_epoch", 0))
        warmup = int(state.get("warmup_epoch", self.warmup_epoch))
        successor_epoch = getattr(successor, "last_epoch", None)
        if wrapper_epoch < warmup or not isinstance(successor_epoch, int):
            return wrapper_epoch
        return warmup + max(0, successor_epoch - self.successor_start)


class ConstantWarmupScheduler(_WarmupScheduler):
    """Warm-up at a constant ``cons_lr``."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr, recount=True, last_epoch=-1):
        self.cons_lr = float(cons_lr)
        super().__init__(optimizer, successor, warmup_epoch, recount, last_epoch)

    def warmup_lr(self, epoch, base):
        return self.cons_lr


class LinearWarmupScheduler(_WarmupScheduler):
    """Warm-up rising linearly: ``min_lr`` at epoch 0, then ``base * e / warmup_epoch``."""

    def __init__(self, optimizer, successor, warmup_epoch, min_lr, recount=True, last_epoch=-1):
        self.min_lr = float(min_lr)
        super().__init__(optimizer, successor, warmup_epoch, recount, last_epoch)

    def warmup_lr(self, epoch, base):
        if epoch == 0:
            return self.min_lr
        return base * epoch / self.warmup_epoch


def _base_scheduler(optimizer, optim_cfg):
    name = optim_cfg.LR_SCHEDULER
    if name not in AVAI_SCHEDS:
        raise ConfigError(f"unknown OPTIM.LR_SCHEDULER '{name}'; choose one of {AVAI_SCHEDS}")
    stepsize = optim_cfg.STEPSIZE
    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if stepsize <= 0:  # -1 or 0 means the step size equals MAX_EPOCH
            stepsize = optim_cfg.MAX_EPOCH
        return StepScheduler(optimizer, step_size=stepsize, gamma=optim_cfg.GAMMA)
    if name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise ConfigError(f"OPTIM.STEPSIZE must be a list of epochs for multi_step, got {stepsize!r}")
        return MultiStepScheduler(optimizer, milestones=stepsize, gamma=optim_cfg.GAMMA)
    return CosineScheduler(optimizer, t_max=float(optim_cfg.MAX_EPOCH))


def build_lr_scheduler(optimizer, optim_cfg):
    """The scheduler described by ``OPTIM`` (LR_SCHEDULER, STEPSIZE, GAMMA, MAX_EPOCH, WARMUP_*)."""
    scheduler = _base_scheduler(optimizer, optim_cfg)
    if optim_cfg.WARMUP_EPOCH > 0:
        recount = optim_cfg.WARMUP_RECOUNT
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(
                optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR, recount=recount
            )
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(
                optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR, recount=recount
            )
        else:
            raise ConfigError(f"unknown OPTIM.WARMUP_TYPE '{optim_cfg.WARMUP_TYPE}'; choose one of {AVAI_WARMUPS}")
    return scheduler
