"""Oxford Flowers-102: ``DATA/oxford_flowers/{jpg/image_NNNNN.jpg, imagelabels.mat, cat_to_name.json,
split_zhou_OxfordFlowers.json}``.

Class names come from ``cat_to_name.json`` (keys are the 1-based labels as strings; it is in CoOp's
download list, not in the official archive). Without the split JSON, ``imagelabels.mat`` gives the
1-based label of ``image_{i+1:05d}.jpg`` and each class is split 50/20/30, classes in order of first
appearance in the ``.mat`` file (CoOp's order of random draws).
"""

import os
import random
from collections import defaultdict

from datasets._common import SplitJsonDataset, read_json_file, require_file
from engine.data.datum import Datum
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY

__all__ = ["OxfordFlowers"]


def _read_labels(path):
    """The ``labels`` vector of ``imagelabels.mat`` as a list of ints."""
    from scipy.io import loadmat  # scipy only when the split has to be made

    require_file(path, "OxfordFlowers", "the label file of the Flowers-102 archive")
    try:
        return [int(v) for v in loadmat(path)["labels"].reshape(-1)]
    except (KeyError, ValueError, OSError) as exc:
        raise DatasetError(f"OxfordFlowers: cannot read 'labels' from {path} ({exc}); download it again") from None


@DATASET_REGISTRY.register()
class OxfordFlowers(SplitJsonDataset):
    """Oxford Flowers-102 in CoOp's layout."""

    folder = "oxford_flowers"
    image_folder = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    contents = "jpg/image_*.jpg, imagelabels.mat and cat_to_name.json"

    def make_split(self, p_trn=0.5, p_val=0.2):
        names = read_json_file(os.path.join(self.dataset_dir, "cat_to_name.json"), "OxfordFlowers",
                               "the class-name file from CoOp's download list")
        by_label = defaultdict(list)  # first-appearance order, as CoOp draws
        for i, label in enumerate(_read_labels(os.path.join(self.dataset_dir, "imagelabels.mat"))):
            by_label[label].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        print(f"Splitting data into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")

        train, val, test = [], [], []
        for label, paths in by_label.items():
            if str(label) not in names:
                raise DatasetError(f"OxfordFlowers: label {label} has no entry in cat_to_name.json; download it again")
            random.shuffle(paths)
            n_train, n_val = round(len(paths) * p_trn), round(len(paths) * p_val)
            if n_train <= 0 or n_val <= 0 or len(paths) - n_train - n_val <= 0:
                raise DatasetError(f"OxfordFlowers: class {label} has {len(paths)} images, too few to split")
            make = [Datum(p, label - 1, classname=names[str(label)]) for p in paths]
            train += make[:n_train]
            val += make[n_train:n_train + n_val]
            test += make[n_train + n_val:]
        return train, val, test
