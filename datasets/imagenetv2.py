"""ImageNetV2 (matched frequency, test only): ``DATA/imagenetv2/{imagenetv2-matched-frequency-format-val/<0..999>/,
classnames.txt}``. Folder ``i`` holds class ``i``, named by the i-th line of ImageNet's ``classnames.txt``
(the copy in the dataset folder, else ``DATA/imagenet/classnames.txt``).
"""

import os

from datasets.imagenet import ImageNetVariant
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY

__all__ = ["ImageNetV2"]


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    """ImageNetV2 matched-frequency in CoOp's layout."""

    folder = "imagenetv2"
    image_folder = "imagenetv2-matched-frequency-format-val"
    contents = "imagenetv2-matched-frequency-format-val/<0..999>/ and classnames.txt"

    def pairs(self, classnames):
        out = []
        for label, classname in enumerate(classnames.values()):
            path = os.path.join(self.image_dir, str(label))
            if not os.path.isdir(path):
                raise DatasetError(
                    f"ImageNetV2: class folder not found: {path}; expected folders 0..{len(classnames) - 1}, one per "
                    f"line of {self.classnames_path}"
                )
            out.append((str(label), classname))
        return out
