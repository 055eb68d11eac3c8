"""FDBPL engine: a small Dassl-compatible core (config, registries, data, trainer loop).

The public names of Dassl that CoOp-family code uses are available from here, e.g.
``from engine import TRAINER_REGISTRY, TrainerX, DatasetBase, Datum, DATASET_REGISTRY``. They are resolved
lazily so that importing a light submodule (``engine.errors``) does not pull in torch.
"""
import importlib

_EXPORTS = {
    "TRAINER_REGISTRY": "engine.registry", "DATASET_REGISTRY": "engine.registry",
    "EVALUATOR_REGISTRY": "engine.registry", "Registry": "engine.registry", "build_dataset": "engine.registry",
    "build_evaluator": "engine.registry", "check_availability": "engine.registry",
    "build_trainer": "engine.trainer", "TrainerBase": "engine.trainer", "SimpleTrainer": "engine.trainer",
    "TrainerX": "engine.trainer",
    "get_cfg_default": "engine.config",
    "Datum": "engine.data.datum", "DatasetBase": "engine.data.base", "DataManager": "engine.data.manager",
    "DatasetWrapper": "engine.data.manager", "build_transform": "engine.data.transforms",
    "build_optimizer": "engine.optim", "build_lr_scheduler": "engine.optim",
    "setup_logger": "engine.logger", "collect_env_info": "engine.logger",
    "load_checkpoint": "engine.checkpoint", "save_checkpoint": "engine.checkpoint",
    "load_pretrained_weights": "engine.checkpoint", "resume_from_checkpoint": "engine.checkpoint",
    "set_random_seed": "engine.utils", "read_json": "engine.utils", "write_json": "engine.utils",
    "mkdir_if_missing": "engine.utils", "listdir_nohidden": "engine.utils", "check_isfile": "engine.utils",
    "compute_accuracy": "engine.utils", "read_image": "engine.utils", "AverageMeter": "engine.utils",
    "MetricMeter": "engine.utils", "count_num_param": "engine.utils",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
