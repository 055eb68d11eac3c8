"""FGVC-Aircraft (100 variants): ``DATA/fgvc_aircraft/`` is the archive's ``data/`` folder, renamed.

There is no split JSON (as in CoOp): the official ``images_variant_{train,val,test}.txt`` are read every
time. Lines read ``1025794 707-320`` (image id, variant name, which may contain spaces); labels are line
indices in ``variants.txt``.
"""

import os

from datasets._common import SplitJsonDataset, read_lines
from engine.data.datum import Datum
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY

__all__ = ["FGVCAircraft"]


@DATASET_REGISTRY.register()
class FGVCAircraft(SplitJsonDataset):
    """FGVC-Aircraft in CoOp's layout (official train/val/test)."""

    folder = "fgvc_aircraft"
    image_folder = "images"
    split_file = None
    contents = "images/*.jpg, variants.txt and images_variant_{train,val,test}.txt (the archive's data/ folder)"

    def make_split(self):
        what = "a list file of the FGVC-Aircraft archive's data/ folder"
        variants = read_lines(os.path.join(self.dataset_dir, "variants.txt"), "FGVCAircraft", what)
        cname2lab = {name: label for label, name in enumerate(variants)}
        return tuple(self._read_list(f"images_variant_{s}.txt", cname2lab, what) for s in ("train", "val", "test"))

    def _read_list(self, list_name, cname2lab, what):
        path = os.path.join(self.dataset_dir, list_name)
        items = []
        for line in read_lines(path, "FGVCAircraft", what):
            imname, _, classname = line.partition(" ")
            if classname not in cname2lab:
                raise DatasetError(f"FGVCAircraft: variant {classname!r} in {path} is not in variants.txt")
            items.append(Datum(os.path.join(self.image_dir, imname + ".jpg"), cname2lab[classname],
                               classname=classname))
        return items
