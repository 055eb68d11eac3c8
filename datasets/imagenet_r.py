"""ImageNet-R (200 classes, test only): ``DATA/imagenet-rendition/{imagenet-r/<wnid>/, classnames.txt}``.

Labels 0..199 follow the sorted class folders (``README.txt`` is skipped); names come from ImageNet's
1000-line ``classnames.txt``, so prompts are built for these 200 classes only.
"""

from datasets.imagenet import ImageNetVariant
from engine.registry import DATASET_REGISTRY

__all__ = ["ImageNetR"]


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    """ImageNet-R in CoOp's layout."""

    folder = "imagenet-rendition"
    image_folder = "imagenet-r"
    contents = "imagenet-r/<wnid>/ (200 class folders, from the imagenet-r.tar archive) and classnames.txt"
