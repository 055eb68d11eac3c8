"""``dassl.data.datasets.base_dataset``: where Dassl defines ``Datum`` and ``DatasetBase``."""
from engine.data.base import DatasetBase
from engine.data.datum import Datum

__all__ = ["Datum", "DatasetBase"]
