"""ImageNet-1k: ``DATA/imagenet/{images/train/<wnid>/, images/val/<wnid>/, classnames.txt}``, and the shared
reader of the four test-only variants (``ImageNetVariant``).

``classnames.txt`` (CoOp's download list) has lines ``n01440764 tench``: folder id, then CLIP's class
name. Labels follow the sorted class folders; images inside a folder are listed **sorted** (CoOp used
file-system order, so its few-shot draws could differ between machines). The image lists are cached:
CoOp's ``preprocessed.pkl`` is read if present (its absolute paths are moved under this dataset folder),
otherwise ``preprocessed.json`` (our cache, split-JSON format, no pickle) is read or written. As in CoOp
there is no val split: the 50k val images are both ``val`` and ``test``, and the few-shot file holds
train only.
"""

import os
from collections import OrderedDict

from datasets._common import DOCS, check_images, read_lines, require_dir
from engine.data.base import DatasetBase
from engine.data.datum import Datum, load_legacy_pickle
from engine.data.splits import (
    dataset_root,
    fewshot_splits,
    read_split,
    save_split,
    subsample_classes,
)
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY
from engine.utils import listdir_nohidden

__all__ = ["ImageNet", "ImageNetVariant", "read_classnames", "find_classnames_file", "class_folders", "list_images"]

CLASSNAMES_WHAT = "ImageNet's class-name list ('n01440764 tench' lines) from CoOp's download list"


def read_classnames(path, dataset="ImageNet"):
    """``OrderedDict`` folder id -> class name from a ``classnames.txt``."""
    classnames = OrderedDict()
    for line in read_lines(path, dataset, CLASSNAMES_WHAT):
        folder, _, name = line.partition(" ")
        classnames[folder] = name.strip()
    return classnames


def find_classnames_file(dataset_dir, root, dataset):
    """``dataset_dir/classnames.txt``, else ImageNet's ``root/imagenet/classnames.txt``; DatasetError if neither."""
    own = os.path.join(dataset_dir, "classnames.txt")
    shared = os.path.join(root, "imagenet", "classnames.txt")
    for path in (own, shared):
        if os.path.isfile(path):
            return path
    raise DatasetError(
        f"{dataset}: file not found: {own} (nor {shared}); copy ImageNet's classnames.txt there ({DOCS})"
    )


def class_folders(path):
    """Sorted names of the sub-folders of ``path`` (files such as README.txt are skipped)."""
    return [n for n in listdir_nohidden(path, sort=True) if os.path.isdir(os.path.join(path, n))]


def list_images(folder):
    """Sorted non-hidden file paths of ``folder``."""
    return [os.path.join(folder, n) for n in listdir_nohidden(folder, sort=True)]


def read_folder_items(image_dir, pairs):
    """Datums for ``pairs`` = [(folder, classname)], labelled by position."""
    items = []
    for label, (folder, classname) in enumerate(pairs):
        items += [Datum(p, label, classname=classname) for p in list_images(os.path.join(image_dir, folder))]
    return items


def named_folders(split_dir, classnames, dataset, classnames_path):
    """[(folder, classname)] for the sorted class folders of ``split_dir``; errors name what is wrong."""
    folders = class_folders(split_dir)
    if not folders:
        loose = len(listdir_nohidden(split_dir))
        raise DatasetError(
            f"{dataset}: expected class folders n01440764... in {split_dir}, found {loose} loose files; "
            f"reorganise it into one folder per class ({DOCS})"
        )
    unknown = [f for f in folders if f not in classnames]
    if unknown:
        raise DatasetError(f"{dataset}: class folder {os.path.join(split_dir, unknown[0])} is not listed in "
                           f"{classnames_path}; use ImageNet's classnames.txt ({DOCS})")
    return [(f, classnames[f]) for f in folders]


@DATASET_REGISTRY.register()
class ImageNet(DatasetBase):
    """ImageNet-1k in CoOp's layout (train = images/train, val = test = images/val)."""

    folder = "imagenet"
    image_folder = "images"
    contents = "images/train/<wnid>/, images/val/<wnid>/ (class folders) and classnames.txt"

    def __init__(self, cfg):
        self.dataset_dir = os.path.join(dataset_root(cfg), self.folder)
        self.image_dir = os.path.join(self.dataset_dir, self.image_folder)
        self.preprocessed = os.path.join(self.dataset_dir, "preprocessed.pkl")
        self.cache_path = os.path.join(self.dataset_dir, "preprocessed.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        require_dir(self.dataset_dir, "ImageNet", self.contents)

        if os.path.isfile(self.preprocessed):
            print(f"Loading preprocessed image lists from {self.preprocessed}")
            data = load_legacy_pickle(self.preprocessed, root=self.dataset_dir)
            if not isinstance(data, dict) or "train" not in data or "test" not in data:
                raise DatasetError(f"ImageNet: {self.preprocessed} has no 'train'/'test' lists; delete it to rescan")
            train, test, source = data["train"], data["test"], self.preprocessed
        elif os.path.isfile(self.cache_path):
            train, _, test = read_split(self.cache_path, self.image_dir)
            source = self.cache_path
        else:
            train, test = self._scan()
            save_split(train, [], test, self.cache_path, self.image_dir)
            source = self.cache_path
        fix = f"check DATASET.ROOT, or delete {source} to rescan the image folders"
        check_images("ImageNet", source, train, fix)
        check_images("ImageNet", source, test, fix)

        if cfg.DATASET.NUM_SHOTS >= 1:
            train, _ = fewshot_splits(cfg, self.dataset_dir, train, None, image_dir=self.image_dir)
            check_images("ImageNet", self.split_fewshot_dir, train,
                         fix=f"delete {self.split_fewshot_dir} to draw the subsets again")
        train, test = subsample_classes(train, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=test, test=test)

    def _scan(self):
        """Train and test lists from the class folders of images/train and images/val."""
        classnames_path = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = read_classnames(classnames_path)
        pairs = {}
        for split in ("train", "val"):
            split_dir = os.path.join(self.image_dir, split)
            require_dir(split_dir, "ImageNet", "one folder of JPEG images per class (n01440764, ...)")
            pairs[split] = named_folders(split_dir, classnames, "ImageNet", classnames_path)
        if pairs["train"] != pairs["val"]:
            raise DatasetError(
                f"ImageNet: {self.image_dir}/train has {len(pairs['train'])} class folders but {self.image_dir}/val "
                f"has {len(pairs['val'])} (or different ones); both need the same classes ({DOCS})"
            )
        train = read_folder_items(os.path.join(self.image_dir, "train"), pairs["train"])
        test = read_folder_items(os.path.join(self.image_dir, "val"), pairs["val"])
        return train, test


class ImageNetVariant(DatasetBase):
    """A test-only ImageNet variant: class folders under ``folder/image_folder``, names from ``classnames.txt``.

    Subclasses set ``folder``, ``image_folder`` and ``contents``; ``pairs(classnames)`` gives the
    (folder, classname) of each label (default: the sorted ``n*`` folders, README.txt ignored).
    As in CoOp, ``train_x`` and ``test`` are the same list; there is no few-shot or base/new subset.
    """

    folder = ""
    image_folder = ""
    contents = ""

    def __init__(self, cfg):
        name = type(self).__name__
        root = dataset_root(cfg)
        self.dataset_dir = os.path.join(root, self.folder)
        self.image_dir = os.path.join(self.dataset_dir, self.image_folder)
        require_dir(self.dataset_dir, name, self.contents)
        require_dir(self.image_dir, name, self.contents)
        self.classnames_path = find_classnames_file(self.dataset_dir, root, name)
        classnames = read_classnames(self.classnames_path, name)
        data = read_folder_items(self.image_dir, self.pairs(classnames))
        super().__init__(train_x=data, test=data)

    def pairs(self, classnames):
        return named_folders(self.image_dir, classnames, type(self).__name__, self.classnames_path)
