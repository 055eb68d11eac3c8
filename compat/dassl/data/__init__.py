"""``dassl.data``: the data manager and its dataset wrapper."""
from engine.data.manager import DataManager, DatasetWrapper

__all__ = ["DataManager", "DatasetWrapper"]
