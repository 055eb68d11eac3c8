"""Oxford-IIIT Pets (37 breeds): ``DATA/oxford_pets/{images, annotations, split_zhou_OxfordPets.json}``.

Without the split JSON, ``annotations/trainval.txt`` is split 80/20 into train/val per class and
``annotations/test.txt`` is the test set. Lines read ``Abyssinian_100 1 1 1`` (image name, 1-based class
id, species, breed id); the class name is the image name without its number, lower-cased.
"""

import os

from datasets._common import SplitJsonDataset, read_lines
from engine.data.datum import Datum
from engine.data.splits import split_trainval
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY

__all__ = ["OxfordPets", "breed_name"]


def breed_name(imname):
    """``"american_bulldog_12"`` -> ``"american_bulldog"``; ``"Abyssinian_100"`` -> ``"abyssinian"``."""
    return "_".join(imname.split("_")[:-1]).lower()


@DATASET_REGISTRY.register()
class OxfordPets(SplitJsonDataset):
    """Oxford-IIIT Pets in CoOp's layout."""

    folder = "oxford_pets"
    image_folder = "images"
    split_file = "split_zhou_OxfordPets.json"
    contents = "images/*.jpg and annotations/{trainval,test}.txt from the Oxford-IIIT Pet archives"

    def make_split(self):
        trainval = self._read_list("trainval.txt")
        test = self._read_list("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def _read_list(self, list_name):
        path = os.path.join(self.dataset_dir, "annotations", list_name)
        items = []
        for line in read_lines(path, "OxfordPets", "an annotation list of the Oxford-IIIT Pet archive"):
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                raise DatasetError(f"OxfordPets: bad line {line!r} in {path}; expected 'Abyssinian_100 1 1 1'")
            imname = fields[0]
            items.append(Datum(os.path.join(self.image_dir, imname + ".jpg"), int(fields[1]) - 1,
                               classname=breed_name(imname)))
        return items
