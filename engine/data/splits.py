"""CoOp's split logic, written once: split JSON read/write, random splits, base/new subsets, few-shot cache.

Every CoOp dataset file repeats the same steps (CoOp's ``datasets/*.py``):

1. read ``split_zhou_<Name>.json`` if it exists, else make a split and save it   -> ``make_split_or_read``
2. with ``NUM_SHOTS >= 1``, load or draw the K-shot train/val subset             -> ``fewshot_splits``
3. keep the base or the new half of the classes                                   -> ``subsample_classes``

Here each dataset module only says how to make its split when the JSON is missing. Every random draw
uses Python's global ``random`` in CoOp's order, so the same ``SEED`` gives CoOp's splits and subsets.
"""

import math
import os
import random
from collections import defaultdict

from engine.data.base import generate_fewshot_dataset
from engine.data.datum import Datum, load_legacy_pickle
from engine.errors import ConfigError, DatasetError
from engine.utils import listdir_nohidden, read_json, write_json

__all__ = [
    "dataset_root",
    "read_split",
    "save_split",
    "make_split_or_read",
    "split_trainval",
    "read_and_split_data",
    "subsample_classes",
    "fewshot_splits",
    "fewshot_cache_path",
    "SUBSAMPLE_CHOICES",
]

SUBSAMPLE_CHOICES = ("all", "base", "new")
FEWSHOT_FORMAT = "fdbpl-fewshot"
FEWSHOT_VERSION = 1


def dataset_root(cfg):
    """``DATASET.ROOT`` as an absolute path (``~`` expanded), as CoOp's dataset modules compute it."""
    return os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))


# ------------------------------------------------------------------------------------ split JSON


def _relpath(impath, image_dir):
    """``impath`` relative to ``image_dir`` (CoOp strips the prefix and a leading '/')."""
    prefix = image_dir.rstrip("/\\")
    if impath.startswith(prefix + "/") or impath.startswith(prefix + os.sep):
        return impath[len(prefix) + 1 :]
    return os.path.relpath(impath, image_dir)


def _encode(items, image_dir):
    return [[_relpath(item.impath, image_dir), item.label, item.classname] for item in items]


def _decode(rows, image_dir, path, key):
    out = []
    try:
        for relpath, label, classname in rows:
            out.append(Datum(impath=os.path.join(image_dir, relpath), label=int(label), classname=classname))
    except (TypeError, ValueError):
        raise DatasetError(
            f"malformed '{key}' list in {path}: expected [relpath, label, classname] rows; "
            "delete the file to regenerate"
        ) from None
    return out


def _read_json_checked(path, what):
    if not os.path.isfile(path):
        raise DatasetError(f"{what} not found: {path}")
    try:
        return read_json(path)
    except ValueError as exc:
        raise DatasetError(f"{what} {path} is not valid JSON ({exc}); delete it to regenerate") from None


def read_split(path, image_dir):
    """``(train, val, test)`` lists of Datum from a CoOp split JSON; paths are joined onto ``image_dir``."""
    split = _read_json_checked(path, "split file")
    print(f"Reading split from {path}")
    missing = [key for key in ("train", "val", "test") if key not in split]
    if missing:
        raise DatasetError(f"split file {path} has no '{missing[0]}' list; delete it to regenerate")
    return tuple(_decode(split[key], image_dir, path, key) for key in ("train", "val", "test"))


def save_split(train, val, test, path, image_dir):
    """Write CoOp's split JSON ``{"train": [[relpath, label, classname], ...], "val": ..., "test": ...}``."""
    split = {"train": _encode(train, image_dir), "val": _encode(val, image_dir), "test": _encode(test, image_dir)}
    write_json(split, path)
    print(f"Saved split to {path}")


def make_split_or_read(split_path, image_dir, make_split):
    """Read ``split_path`` if it exists; else ``train, val, test = make_split()``, save it, return it."""
    if os.path.exists(split_path):
        return read_split(split_path, image_dir)
    train, val, test = make_split()
    save_split(train, val, test, split_path, image_dir)
    return train, val, test


# ---------------------------------------------------------------------------------- random splits


def split_trainval(trainval, p_val=0.2):
    """Split each class of ``trainval`` into train and val (``round(n * p_val)`` val images per class)."""
    p_trn = 1 - p_val
    print(f"Splitting trainval into {p_trn:.0%} train and {p_val:.0%} val")
    tracker = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)

    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            name = trainval[idxs[0]].classname
            raise DatasetError(
                f"class {label} ('{name}') has only {len(idxs)} trainval images: too few for a {p_val:.0%} val split"
            )
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None):
    """Split a folder-per-class image tree into train/val/test per class (CoOp's DTD helper).

    Labels follow the sorted class-folder names (minus ``ignored``); ``new_cnames`` maps folder names to
    class names. Differs from CoOp on purpose: the images of a folder are **sorted** before the shuffle
    (CoOp used file-system order, so its regenerated splits differed between machines for the same seed).
    """
    if not os.path.isdir(image_dir):
        raise DatasetError(f"image folder not found: {image_dir} (check DATASET.ROOT)")
    names = listdir_nohidden(image_dir, sort=True)
    categories = [c for c in names if c not in ignored and os.path.isdir(os.path.join(image_dir, c))]
    if not categories:
        raise DatasetError(f"no class folders in {image_dir} (expected one sub-folder of images per class)")
    p_tst = 1 - p_trn - p_val
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")

    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, name) for name in listdir_nohidden(category_dir, sort=True)]
        random.shuffle(images)
        n_total = len(images)
        n_train = round(n_total * p_trn)
        n_val = round(n_total * p_val)
        if n_train <= 0 or n_val <= 0 or n_total - n_train - n_val <= 0:
            raise DatasetError(
                f"class folder {category_dir} has {n_total} images: too few to split into train/val/test"
            )
        classname = new_cnames[category] if new_cnames and category in new_cnames else category

        def collate(paths, label=label, classname=classname):
            return [Datum(impath=p, label=label, classname=classname) for p in paths]

        train.extend(collate(images[:n_train]))
        val.extend(collate(images[n_train : n_train + n_val]))
        test.extend(collate(images[n_train + n_val :]))
    return train, val, test


# ------------------------------------------------------------------------------------- base / new


def subsample_classes(*args, subsample="all"):
    """Keep the base (first ``ceil(n/2)``) or new (rest) classes of every set and relabel them from 0.

    The classes are the labels present in ``args[0]`` (the train set), sorted. ``"all"`` returns ``args``
    unchanged. New Datums keep path and class name; their domain is 0 (as in CoOp).
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ConfigError(f"DATASET.SUBSAMPLE_CLASSES must be one of {', '.join(SUBSAMPLE_CHOICES)}; got {subsample!r}")
    if subsample == "all":
        return args
    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabeler = {y: y_new for y_new, y in enumerate(selected)}

    output = []
    for dataset in args:
        output.append(
            [
                Datum(impath=item.impath, label=relabeler[item.label], classname=item.classname)
                for item in dataset
                if item.label in relabeler
            ]
        )
    return output


# --------------------------------------------------------------------------------------- few-shot


def fewshot_cache_path(dataset_dir, num_shots, seed, ext="json"):
    """``dataset_dir/split_fewshot/shot_{K}-seed_{S}.{ext}`` (CoOp's name; CoOp used ``.pkl``)."""
    return os.path.join(dataset_dir, "split_fewshot", f"shot_{num_shots}-seed_{seed}.{ext}")


def _load_fewshot_json(path, image_dir):
    data = _read_json_checked(path, "few-shot file")
    if not isinstance(data, dict) or data.get("format") != FEWSHOT_FORMAT or "train" not in data:
        raise DatasetError(f"{path} is not an {FEWSHOT_FORMAT} file; delete it to regenerate")
    if data.get("version") != FEWSHOT_VERSION:
        raise DatasetError(
            f"{path} has version {data.get('version')}, expected {FEWSHOT_VERSION}; delete it to regenerate"
        )
    train = _decode(data["train"], image_dir, path, "train")
    val = _decode(data["val"], image_dir, path, "val") if data.get("val") is not None else None
    return train, val


def _save_fewshot_json(path, image_dir, train, val):
    data = {"format": FEWSHOT_FORMAT, "version": FEWSHOT_VERSION, "train": _encode(train, image_dir)}
    data["val"] = _encode(val, image_dir) if val is not None else None
    write_json(data, path)  # atomic: a crash never leaves a half-written cache


def fewshot_splits(cfg, dataset_dir, train, val, num_val_shots=None, image_dir=None):
    """``(train, val)`` reduced to ``DATASET.NUM_SHOTS`` per class, cached per (K, SEED); CoOp's step 3.

    ``NUM_SHOTS < 1`` returns the inputs. Otherwise, in order of preference: our JSON cache
    ``split_fewshot/shot_{K}-seed_{SEED}.json`` (paths relative to ``image_dir``, default
    ``dataset_dir``), CoOp's ``.pkl`` of the same name (paths re-rooted under ``dataset_dir``), or a new
    draw -- train with K shots, then val with ``num_val_shots`` (default ``min(K, 4)``) -- saved as JSON.
    ``val=None`` (ImageNet) draws and stores train only and returns ``val`` as given.
    """
    num_shots = cfg.DATASET.NUM_SHOTS
    if num_shots < 1:
        return train, val
    image_dir = image_dir or dataset_dir
    seed = cfg.SEED
    json_path = fewshot_cache_path(dataset_dir, num_shots, seed, "json")
    pkl_path = fewshot_cache_path(dataset_dir, num_shots, seed, "pkl")

    if os.path.isfile(json_path):
        print(f"Loading preprocessed few-shot data from {json_path}")
        new_train, new_val = _load_fewshot_json(json_path, image_dir)
        return new_train, (new_val if new_val is not None else val)
    if os.path.isfile(pkl_path):
        print(f"Loading preprocessed few-shot data from {pkl_path}")
        data = load_legacy_pickle(pkl_path, root=dataset_dir)
        if not isinstance(data, dict) or "train" not in data:
            raise DatasetError(f"{pkl_path} holds no 'train' list; delete it to regenerate")
        return data["train"], data.get("val", val)

    new_train = generate_fewshot_dataset(train, num_shots=num_shots)
    new_val = None
    if val is not None:
        k_val = min(num_shots, 4) if num_val_shots is None else num_val_shots
        new_val = generate_fewshot_dataset(val, num_shots=k_val)
    print(f"Saving preprocessed few-shot data to {json_path}")
    _save_fewshot_json(json_path, image_dir, new_train, new_val)
    return new_train, new_val
