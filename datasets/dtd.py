"""Describable Textures (47 classes): ``DATA/dtd/{images/<texture>/*.jpg, split_zhou_DescribableTextures.json}``.

Without the split JSON, each texture folder is split 50/20/30 into train/val/test; class names are the
folder names. DTD's own ``labels/`` and ``imdb/`` folders are not used (as in CoOp).
"""

from datasets._common import SplitJsonDataset
from engine.data.splits import read_and_split_data
from engine.registry import DATASET_REGISTRY

__all__ = ["DescribableTextures"]


@DATASET_REGISTRY.register()
class DescribableTextures(SplitJsonDataset):
    """DTD in CoOp's layout."""

    folder = "dtd"
    image_folder = "images"
    split_file = "split_zhou_DescribableTextures.json"
    contents = "images/<texture>/*.jpg from the DTD archive"

    def make_split(self):
        return read_and_split_data(self.image_dir)
