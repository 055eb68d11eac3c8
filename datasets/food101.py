"""Food-101: ``DATA/food-101/{images/<dish>/*.jpg, split_zhou_Food101.json}``.

Without the split JSON, each dish folder is split 50/20/30 into train/val/test (the official ``meta/``
train/test lists are not used, as in CoOp); class names are the folder names, e.g. ``apple_pie``.
"""

from datasets._common import SplitJsonDataset
from engine.data.splits import read_and_split_data
from engine.registry import DATASET_REGISTRY

__all__ = ["Food101"]


@DATASET_REGISTRY.register()
class Food101(SplitJsonDataset):
    """Food-101 in CoOp's layout."""

    folder = "food-101"
    image_folder = "images"
    split_file = "split_zhou_Food101.json"
    contents = "images/<dish>/*.jpg from the Food-101 archive"

    def make_split(self):
        return read_and_split_data(self.image_dir)
