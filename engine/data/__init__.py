"""Data layer: Datum/DatasetBase, CoOp's split logic, transforms, samplers and the DataManager."""

from engine.data.base import (
    DatasetBase,
    generate_fewshot_dataset,
    split_dataset_by_label,
)
from engine.data.datum import Datum, load_legacy_pickle, reroot_path
from engine.data.manager import DataManager, DatasetWrapper, build_data_loader
from engine.data.samplers import build_sampler
from engine.data.splits import (
    dataset_root,
    fewshot_cache_path,
    fewshot_splits,
    make_split_or_read,
    read_and_split_data,
    read_split,
    save_split,
    split_trainval,
    subsample_classes,
)
from engine.data.transforms import INTERPOLATION_MODES, build_transform

__all__ = [
    "Datum",
    "load_legacy_pickle",
    "reroot_path",
    "DatasetBase",
    "generate_fewshot_dataset",
    "split_dataset_by_label",
    "read_split",
    "save_split",
    "make_split_or_read",
    "split_trainval",
    "read_and_split_data",
    "subsample_classes",
    "fewshot_splits",
    "fewshot_cache_path",
    "dataset_root",
    "build_transform",
    "INTERPOLATION_MODES",
    "build_sampler",
    "DataManager",
    "DatasetWrapper",
    "build_data_loader",
]
