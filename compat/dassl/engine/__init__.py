"""``dassl.engine``: the trainer registry, the trainer classes and ``build_trainer``."""
from engine.registry import TRAINER_REGISTRY
from engine.trainer import SimpleTrainer, TrainerBase, TrainerX, build_trainer

__all__ = ["TRAINER_REGISTRY", "TrainerBase", "SimpleTrainer", "TrainerX", "build_trainer"]
