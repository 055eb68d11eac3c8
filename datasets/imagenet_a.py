"""ImageNet-A (200 classes, test only): ``DATA/imagenet-adversarial/{imagenet-a/<wnid>/, classnames.txt}``.

Labels 0..199 follow the sorted class folders (``README.txt`` is skipped); names come from ImageNet's
1000-line ``classnames.txt``, so prompts are built for these 200 classes only.
"""

from datasets.imagenet import ImageNetVariant
from engine.registry import DATASET_REGISTRY

__all__ = ["ImageNetA"]


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetVariant):
    """ImageNet-A in CoOp's layout."""

    folder = "imagenet-adversarial"
    image_folder = "imagenet-a"
    contents = "imagenet-a/<wnid>/ (200 class folders, from the imagenet-a.tar archive) and classnames.txt"
