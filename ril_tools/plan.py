"""What a build makes: the image list (ids, fingerprint) and the plan that becomes the manifest.

Training uses :func:`training_image_list` + :func:`ril_tools.format.dataset_fingerprint` on its own
``train_x`` to check that a table was built for exactly its images.
"""

import os
import sys

import numpy as np

from engine.errors import DatasetError, RilError
from ril_tools import format as fmt
from ril_tools.crops import SEED_SCHEME, check_crop_params
from ril_tools.integrity import prompts_hash

INTERPOLATION = "bicubic-antialias"


def relpath_of(impath, root):
    """Path of an image relative to the dataset root, "/"-separated (the key used in the table)."""
    return os.path.relpath(os.path.abspath(impath), os.path.abspath(root)).replace(os.sep, "/")


def training_image_list(items, root):
    """Datum-like items (``.impath``, ``.label``) -> dict of sorted ``relpaths``, ``file_sizes``, ``labels``
    and ``paths`` (absolute). The position in this list is the image id."""
    rows = {}
    for item in items:
        rel = relpath_of(item.impath, root)
        if rel in rows:
            continue  # the same file twice (repeated few-shot draw) is one image in the table
        try:
            size = os.path.getsize(item.impath)
        except OSError:
            raise DatasetError(f"image not found: {item.impath} (check --root and the split file)") from None
        rows[rel] = (size, int(item.label), os.path.abspath(item.impath))
    if not rows:
        raise DatasetError("the training split is empty; check DATASET.NAME, --root and DATASET.NUM_SHOTS")
    relpaths = sorted(rows)
    return {
        "relpaths": relpaths,
        "file_sizes": [rows[p][0] for p in relpaths],
        "labels": [rows[p][1] for p in relpaths],
        "paths": [rows[p][2] for p in relpaths],
    }


def items_fingerprint(items, root):
    """The dataset fingerprint of a training split, as stored in a table's manifest."""
    image_list = training_image_list(items, root)
    return fmt.dataset_fingerprint(image_list["relpaths"], image_list["file_sizes"])


def make_plan(*, teacher, classnames, template, image_list, dataset_info, num_crops, k, label_kind, logp_dtype,
              seed, scale, ratio, flip_p, world_size, run_info=None):
    """The manifest minus its shard list: every setting that decides the table's bytes."""
    if label_kind not in fmt.LABEL_KINDS:
        raise RilError(f"unknown label kind {label_kind!r}; use one of {', '.join(fmt.LABEL_KINDS)}")
    num_classes = len(classnames)
    if label_kind == "full":
        k = num_classes
    if num_crops < 1:
        raise RilError(f"--num-crops must be >= 1, got {num_crops}")
    if seed < 0:
        raise RilError(f"the build needs a fixed seed >= 0 (--seed), got {seed}")
    scale, ratio, flip_p = check_crop_params(scale, ratio, flip_p)
    dtype = fmt.record_dtype(k, num_classes, logp_dtype)
    description = teacher.describe()
    # the exact strings the teacher encoded (a teacher without text, as in tests, gets the rule's strings)
    prompts = getattr(teacher, "prompts", None)
    if prompts is None:
        from datasets.templates import class_prompts

        prompts = class_prompts(template, classnames)
    fingerprint = fmt.dataset_fingerprint(image_list["relpaths"], image_list["file_sizes"])
    return {
        "format": fmt.FORMAT_NAME, "version": fmt.FORMAT_VERSION,
        "teacher": description, "template": template, "logit_scale": teacher.logit_scale,
        "classnames": list(classnames), "prompts": list(prompts), "prompts_hash": prompts_hash(prompts),
        "num_classes": num_classes, "k": int(k), "num_crops": int(num_crops),
        "label_kind": label_kind, "logp_dtype": logp_dtype,
        "record_dtype": [list(map(_jsonable, field)) for field in dtype.descr],
        "crop": {
            "scale": list(scale), "ratio": list(ratio), "flip_p": flip_p, "size": description["input_size"],
            "interpolation": INTERPOLATION, "mean": description["mean"], "std": description["std"],
            "box": "normalised (top, left, h, w); pixels via ril_tools.format.crop_box_pixels",
        },
        "seed_scheme": {"name": SEED_SCHEME, "seed": int(seed)},
        "dataset": dict(dataset_info, fingerprint=fingerprint, relpaths=image_list["relpaths"],
                        file_sizes=image_list["file_sizes"], labels=image_list["labels"]),
        "num_images": len(image_list["relpaths"]),
        "world_size": int(world_size),
        "run": dict(run_info or {}, command=" ".join(sys.argv)),
    }


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def record_dtype_of(plan):
    return fmt.record_dtype(plan["k"], plan["num_classes"], plan["logp_dtype"])


def local_image_ids(num_images, rank, world_size):
    """Image ids built by ``rank``: id % world_size == rank, ascending."""
    return np.arange(rank, num_images, world_size, dtype=np.int64)
