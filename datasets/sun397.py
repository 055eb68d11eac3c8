"""SUN397: ``DATA/sun397/{SUN397/<letter>/<class>/.../*.jpg, ClassName.txt, Training_01.txt, Testing_01.txt,
split_zhou_SUN397.json}``.

Without the split JSON, partition 01 of the official lists is used: ``Training_01.txt`` split 80/20
into train/val per class, ``Testing_01.txt`` as test. Labels are line indices in ``ClassName.txt``.
The class name drops the first-letter folder and reverses the rest, so qualifiers come first:
``/b/bakery/shop`` -> ``shop bakery``.
"""

import os

from datasets._common import SplitJsonDataset, read_lines
from engine.data.datum import Datum
from engine.data.splits import split_trainval
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY

__all__ = ["SUN397", "sun_classname"]


def sun_classname(class_path):
    """``"b/bakery/shop"`` -> ``"shop bakery"``; ``"a/abbey"`` -> ``"abbey"``."""
    return " ".join(class_path.strip("/").split("/")[1:][::-1])


@DATASET_REGISTRY.register()
class SUN397(SplitJsonDataset):
    """SUN397 in CoOp's layout."""

    folder = "sun397"
    image_folder = "SUN397"
    split_file = "split_zhou_SUN397.json"
    contents = "SUN397/<letter>/<class>/*.jpg, ClassName.txt, Training_01.txt and Testing_01.txt"

    def make_split(self):
        what = "a list file of the SUN397 partitions archive"
        classes = read_lines(os.path.join(self.dataset_dir, "ClassName.txt"), "SUN397", what)
        cname2lab = {c.strip("/"): label for label, c in enumerate(classes)}
        trainval = self._read_list("Training_01.txt", cname2lab, what)
        test = self._read_list("Testing_01.txt", cname2lab, what)
        train, val = split_trainval(trainval)
        return train, val, test

    def _read_list(self, list_name, cname2lab, what):
        path = os.path.join(self.dataset_dir, list_name)
        items = []
        for line in read_lines(path, "SUN397", what):
            relpath = line.lstrip("/")
            class_path = os.path.dirname(relpath)
            if class_path not in cname2lab:
                raise DatasetError(f"SUN397: class '{class_path}' of {line!r} in {path} is not in ClassName.txt")
            items.append(Datum(os.path.join(self.image_dir, relpath), cname2lab[class_path],
                               classname=sun_classname(class_path)))
        return items
