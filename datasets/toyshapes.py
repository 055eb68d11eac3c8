"""ToyShapes: the generated toy dataset (64 "<colour> <shape>" classes) in CoOp's layout.

``DATASET.NAME ToyShapes`` reads ``ROOT/toyshapes/split_toyshapes.json``; few-shot subsets and base/new
subsampling work exactly as for the real datasets. The folder is made by
``python -m datasets.toyshapes_render --root ROOT`` (or ``ensure_toyshapes(root)`` from Python).
"""

import os

from datasets.toyshapes_render import (
    CLASSES,
    CLASSNAMES,
    COLOURS,
    DATASET_DIR,
    NUM_BASE,
    SHAPES,
    SPLIT_FILE,
    generate,
    generate_command,
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

__all__ = ["ToyShapes", "ensure_toyshapes", "CLASSES", "CLASSNAMES", "COLOURS", "SHAPES", "NUM_BASE"]


def ensure_toyshapes(root, size=64, train=40, val=10, test=30, seed=0, verbose=True):
    """Generate ToyShapes under ``root`` unless it is already there with these arguments; returns its folder."""
    return generate(root, size=size, train=train, val=val, test=test, seed=seed, verbose=verbose)


@DATASET_REGISTRY.register()
class ToyShapes(DatasetBase):
    """Coloured shapes on clutter; base classes = first 32 labels, new = last 32 (unseen colour-shape pairs)."""

    dataset_dir = DATASET_DIR

    def __init__(self, cfg):
        root = dataset_root(cfg)
        self.dataset_dir = os.path.join(root, DATASET_DIR)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.split_path = os.path.join(self.dataset_dir, SPLIT_FILE)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        if not os.path.isfile(self.split_path):
            raise DatasetError(
                f"ToyShapes not found: {self.split_path} is missing; generate it with: {generate_command(root)}"
            )

        train, val, test = read_split(self.split_path, self.image_dir)
        train, val = fewshot_splits(cfg, self.dataset_dir, train, val, image_dir=self.image_dir)
        train, val, test = subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)
