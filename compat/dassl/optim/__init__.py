"""``dassl.optim``: the optimizer and learning-rate scheduler builders."""
from engine.optim import build_lr_scheduler, build_optimizer

__all__ = ["build_optimizer", "build_lr_scheduler"]
