"""``dassl.data.datasets``: the dataset registry, ``Datum``, ``DatasetBase`` and ``build_dataset``."""
from engine.data.base import DatasetBase
from engine.data.datum import Datum
from engine.registry import DATASET_REGISTRY, build_dataset

__all__ = ["DATASET_REGISTRY", "Datum", "DatasetBase", "build_dataset"]
