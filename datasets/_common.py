"""Dataset-side helpers shared by the real-dataset modules: folder checks with actionable messages, an
existence check of listed images, and ``SplitJsonDataset``, the base of the nine datasets that follow
CoOp's split-JSON pattern.

The split logic itself (split JSON, random splits, few-shot cache, base/new) is ``engine.data.splits``;
this module only strings those calls together in CoOp's order and words the errors per dataset.
"""

import os

from engine.data.base import DatasetBase, split_dataset_by_label
from engine.data.splits import (
    dataset_root,
    fewshot_splits,
    make_split_or_read,
    subsample_classes,
)
from engine.errors import DatasetError
from engine.utils import read_json

__all__ = [
    "DOCS",
    "SplitJsonDataset",
    "require_dir",
    "require_file",
    "read_lines",
    "read_json_file",
    "check_images",
]

DOCS = "see docs/DATASETS.md"

# Sets up to this size are checked image by image; bigger ones one image per class (a network file
# system makes a stat per ImageNet image cost minutes).
_CHECK_ALL_LIMIT = 20000


def require_dir(path, dataset, contents):
    """Raise DatasetError unless ``path`` is a folder; the message says what the folder should hold."""
    if not os.path.isdir(path):
        raise DatasetError(f"{dataset}: folder not found: {path} (check DATASET.ROOT); it should contain {contents} "
                           f"({DOCS})")


def require_file(path, dataset, what):
    """Raise DatasetError unless ``path`` is a file; ``what`` says what it is and where it comes from."""
    if not os.path.isfile(path):
        raise DatasetError(f"{dataset}: file not found: {path}; this is {what} ({DOCS})")


def read_lines(path, dataset, what):
    """Non-empty, stripped lines of a text file (any line ending); missing file -> DatasetError."""
    require_file(path, dataset, what)
    with open(path, "r", encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_json_file(path, dataset, what):
    """A JSON file's content; missing or invalid file -> DatasetError naming it."""
    require_file(path, dataset, what)
    try:
        return read_json(path)
    except ValueError as exc:
        raise DatasetError(f"{dataset}: {path} is not valid JSON ({exc}); download it again ({DOCS})") from None


def check_images(dataset, source, items, fix="check DATASET.ROOT and that the image folder is complete"):
    """Raise DatasetError if images listed by ``source`` (a file or folder) do not exist.

    Small lists are checked completely; big ones through their first image of every class. ``fix`` is
    the advice at the end of the message.
    """
    if len(items) > _CHECK_ALL_LIMIT:
        items = [group[0] for group in split_dataset_by_label(items).values()]
    missing = [item.impath for item in items if not os.path.isfile(item.impath)]
    if missing:
        raise DatasetError(
            f"{dataset}: {len(missing)} of {len(items)} checked images listed in {source} do not exist, "
            f"e.g. {missing[0]}; {fix} ({DOCS})"
        )


class SplitJsonDataset(DatasetBase):
    """CoOp's common dataset pattern; subclasses describe only their own files.

    Class attributes a subclass sets:

    * ``folder``: the dataset folder under ``DATASET.ROOT``;
    * ``image_folder``: the folder under it that split paths are relative to ("" = the dataset folder);
    * ``split_file``: CoOp's ``split_zhou_<Name>.json`` (None: no JSON, the split is always made);
    * ``contents``: what the dataset folder holds, for error messages.

    and a method ``make_split()`` -> ``(train, val, test)`` lists of Datum, used when the JSON is missing.
    """

    folder = ""
    image_folder = ""
    split_file = None
    contents = ""

    def __init__(self, cfg):
        name = type(self).__name__
        self.dataset_dir = os.path.join(dataset_root(cfg), self.folder)
        self.image_dir = os.path.join(self.dataset_dir, self.image_folder) if self.image_folder else self.dataset_dir
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        require_dir(self.dataset_dir, name, self.contents)
        require_dir(self.image_dir, name, self.contents)

        if self.split_file is None:
            self.split_path = None
            train, val, test = self.make_split()
            source = self.dataset_dir
        else:
            self.split_path = os.path.join(self.dataset_dir, self.split_file)
            train, val, test = make_split_or_read(self.split_path, self.image_dir, self.make_split)
            source = self.split_path
        for items in (train, val, test):
            check_images(name, source, items)

        if cfg.DATASET.NUM_SHOTS >= 1:
            train, val = fewshot_splits(cfg, self.dataset_dir, train, val, image_dir=self.image_dir)
            check_images(name, self.split_fewshot_dir, train + list(val or []),
                         fix=f"delete {self.split_fewshot_dir} to draw the subsets again")
        train, val, test = subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)

    def make_split(self):
        raise NotImplementedError
