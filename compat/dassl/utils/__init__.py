"""``dassl.utils``: checkpoints, files, logging, seeds, meters and the ``Registry`` class."""
from engine.checkpoint import (
    load_checkpoint,
    load_pretrained_weights,
    resume_from_checkpoint,
    save_checkpoint,
)
from engine.logger import collect_env_info, setup_logger
from engine.registry import Registry
from engine.utils import (
    AverageMeter,
    MetricMeter,
    check_isfile,
    count_num_param,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    tolist_if_not,
    write_json,
)

__all__ = [
    "load_checkpoint", "load_pretrained_weights", "resume_from_checkpoint", "save_checkpoint",
    "collect_env_info", "setup_logger", "Registry", "AverageMeter", "MetricMeter", "check_isfile",
    "count_num_param", "listdir_nohidden", "mkdir_if_missing", "read_image", "read_json", "set_random_seed",
    "tolist_if_not", "write_json",
]
