"""Caltech-101 (100 object classes):
``DATA/caltech-101/{101_ObjectCategories/<class>/*.jpg, split_zhou_Caltech101.json}``.

Without the split JSON, each class folder is split 50/20/30. ``BACKGROUND_Google`` and ``Faces_easy``
are left out, and four plural folder names become singular class names (``NEW_CNAMES``).
"""

from datasets._common import SplitJsonDataset
from engine.data.splits import read_and_split_data
from engine.registry import DATASET_REGISTRY

__all__ = ["Caltech101", "IGNORED", "NEW_CNAMES"]

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(SplitJsonDataset):
    """Caltech-101 in CoOp's layout."""

    folder = "caltech-101"
    image_folder = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    contents = "101_ObjectCategories/<class>/*.jpg from the Caltech-101 archive"

    def make_split(self):
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
