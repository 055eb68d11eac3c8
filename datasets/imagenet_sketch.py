"""ImageNet-Sketch (test only): ``DATA/imagenet-sketch/{images/<wnid>/, classnames.txt}``; labels follow the
sorted 1000 class folders, names come from ImageNet's ``classnames.txt``.
"""

from datasets.imagenet import ImageNetVariant
from engine.registry import DATASET_REGISTRY

__all__ = ["ImageNetSketch"]


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    """ImageNet-Sketch in CoOp's layout."""

    folder = "imagenet-sketch"
    image_folder = "images"
    contents = "images/<wnid>/ (1000 class folders) and classnames.txt"
