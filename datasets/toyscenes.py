"""ToyScenes (toy world v2) and its shifted variants, in CoOp's layout.

``DATASET.NAME ToyScenes`` reads ``ROOT/toyscenes/split_toyscenes.json`` (64 "<shade> <hue> <mark> <shape>"
classes in near-duplicate pairs; base = first 32 labels, pairs differing by shade; new = last 32, pairs
differing by mark). The shifted variants are datasets of their own, for the paper's other protocols:

* ``ToyScenesSketch``, ``ToyScenesNight``, ``ToyScenesPalette``: the same 64 classes rendered as outlines, at
  night, in another palette (domain generalisation, targets of a model trained on ToyScenes);
* ``ToyScenesXShapes``: 32 other classes (other outlines), rendered like ToyScenes (cross-dataset).

Folders are made by ``python -m datasets.toyscenes_render --root ROOT [--variant V]`` (or ``ensure_toyscenes``).
"""

import os

from datasets.toyscenes_render import (
    CLASSNAMES,
    NUM_BASE,
    dataset_dir_of,
    generate,
    generate_command,
    split_file_of,
)
from engine.data.base import DatasetBase
from engine.data.splits import (
    dataset_root,
    fewshot_splits,
    read_split,
    subsample_classes,
)
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY

__all__ = ["ToyScenes", "ToyScenesSketch", "ToyScenesNight", "ToyScenesPalette", "ToyScenesXShapes",
           "ensure_toyscenes", "CLASSNAMES", "NUM_BASE"]


def ensure_toyscenes(root, size=64, train=60, val=10, test=30, seed=0, variant="clean", verbose=True):
    """Generate a ToyScenes variant under ``root`` unless it is already there with these arguments."""
    return generate(root, size=size, train=train, val=val, test=test, seed=seed, variant=variant, verbose=verbose)


class _ToyScenesBase(DatasetBase):
    variant = "clean"

    def __init__(self, cfg):
        root = dataset_root(cfg)
        folder = dataset_dir_of(self.variant)
        self.dataset_dir = os.path.join(root, folder)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.split_path = os.path.join(self.dataset_dir, split_file_of(self.variant))
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        if not os.path.isfile(self.split_path):
            raise DatasetError(f"{type(self).__name__} not found: {self.split_path} is missing; generate it with: "
                               f"{generate_command(root, self.variant)}")
        train, val, test = read_split(self.split_path, self.image_dir)
        train, val = fewshot_splits(cfg, self.dataset_dir, train, val, image_dir=self.image_dir)
        train, val, test = subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)


@DATASET_REGISTRY.register()
class ToyScenes(_ToyScenesBase):
    """Marked shapes in clutter; base = 16 shade pairs (labels 0-31), new = 16 mark pairs (labels 32-63)."""

    dataset_dir = dataset_dir_of("clean")
    variant = "clean"


@DATASET_REGISTRY.register()
class ToyScenesSketch(_ToyScenesBase):
    """ToyScenes' classes drawn as outlines on pale paper (domain shift)."""

    dataset_dir = dataset_dir_of("sketch")
    variant = "sketch"


@DATASET_REGISTRY.register()
class ToyScenesNight(_ToyScenesBase):
    """ToyScenes' classes on dark, noisy backgrounds with dimmed objects (domain shift)."""

    dataset_dir = dataset_dir_of("night")
    variant = "night"


@DATASET_REGISTRY.register()
class ToyScenesPalette(_ToyScenesBase):
    """ToyScenes' classes in another palette (domain shift)."""

    dataset_dir = dataset_dir_of("palette")
    variant = "palette"


@DATASET_REGISTRY.register()
class ToyScenesXShapes(_ToyScenesBase):
    """32 other classes (heart, moon, arrow, pentagon in shade / mark pairs), ToyScenes rendering (cross-dataset)."""

    dataset_dir = dataset_dir_of("xshapes")
    variant = "xshapes"

