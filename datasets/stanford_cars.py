"""Stanford Cars (196 models): ``DATA/stanford_cars/{cars_train/, cars_test/, devkit/, cars_test_annos_withlabels.mat,
split_zhou_StanfordCars.json}``; split paths are relative to the dataset folder (``cars_train/00001.jpg``).

Without the split JSON, ``devkit/cars_train_annos.mat`` is split 80/20 into train/val per class and
``cars_test_annos_withlabels.mat`` is the test set. Class names are ``devkit/cars_meta.mat`` names with
the year moved to the front: ``"AM General Hummer SUV 2000"`` -> ``"2000 AM General Hummer SUV"``.
"""

import os

from datasets._common import SplitJsonDataset, require_file
from engine.data.datum import Datum
from engine.data.splits import split_trainval
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY

__all__ = ["StanfordCars", "year_first"]


def year_first(name):
    """Move the last word (the model year) to the front."""
    words = name.split(" ")
    return " ".join([words[-1]] + words[:-1])


def _loadmat_key(path, key, what):
    from scipy.io import loadmat  # scipy only when the split has to be made

    require_file(path, "StanfordCars", what)
    try:
        return loadmat(path)[key].reshape(-1)
    except (KeyError, ValueError, OSError) as exc:
        raise DatasetError(f"StanfordCars: cannot read '{key}' from {path} ({exc}); download it again") from None


@DATASET_REGISTRY.register()
class StanfordCars(SplitJsonDataset):
    """Stanford Cars in CoOp's layout."""

    folder = "stanford_cars"
    image_folder = ""
    split_file = "split_zhou_StanfordCars.json"
    contents = "cars_train/, cars_test/, devkit/ and cars_test_annos_withlabels.mat"

    def make_split(self):
        meta = _loadmat_key(os.path.join(self.dataset_dir, "devkit", "cars_meta.mat"), "class_names",
                            "the class-name file of the Stanford Cars devkit")
        classnames = [year_first(str(entry.reshape(-1)[0])) for entry in meta]
        trainval = self._read_annos("cars_train", os.path.join("devkit", "cars_train_annos.mat"), classnames)
        test = self._read_annos("cars_test", "cars_test_annos_withlabels.mat", classnames)
        train, val = split_trainval(trainval)
        return train, val, test

    def _read_annos(self, image_folder, anno_file, classnames):
        what = "an annotation file of the Stanford Cars devkit (test labels: cars_test_annos_withlabels.mat)"
        annos = _loadmat_key(os.path.join(self.dataset_dir, anno_file), "annotations", what)
        items = []
        for anno in annos:
            label = int(anno["class"].reshape(-1)[0]) - 1
            fname = str(anno["fname"].reshape(-1)[0])
            items.append(Datum(os.path.join(self.dataset_dir, image_folder, fname), label,
                               classname=classnames[label]))
        return items
