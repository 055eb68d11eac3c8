"""UCF101 (101 actions, one middle frame per video): ``DATA/ucf101/{UCF-101-midframes/<Action_Name>/*.jpg,
ucfTrainTestlist/, split_zhou_UCF101.json}``.

Without the split JSON, partition 01 is used: ``trainlist01.txt`` split 80/20 into train/val per class,
``testlist01.txt`` as test; labels come from ``classInd.txt`` (1-based). The class name is the CamelCase
action split into words joined by ``_`` (``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup``), which is also the
frame folder name; ``v_X.avi`` becomes ``v_X.jpg``.
"""

import os
import re

from datasets._common import SplitJsonDataset, read_lines
from engine.data.datum import Datum
from engine.data.splits import split_trainval
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY

__all__ = ["UCF101", "split_camel_case"]


def split_camel_case(action):
    """``"ApplyEyeMakeup"`` -> ``"Apply_Eye_Makeup"``; ``"YoYo"`` -> ``"Yo_Yo"``."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(SplitJsonDataset):
    """UCF101 mid-frames in CoOp's layout."""

    folder = "ucf101"
    image_folder = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    contents = "UCF-101-midframes/<Action_Name>/*.jpg and ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt"

    def make_split(self):
        what = "a list file of the UCF101 train/test-split archive (ucfTrainTestlist)"
        lists = os.path.join(self.dataset_dir, "ucfTrainTestlist")
        cname2lab = {}
        for line in read_lines(os.path.join(lists, "classInd.txt"), "UCF101", what):
            label, action = line.split()
            cname2lab[action] = int(label) - 1
        trainval = self._read_list(os.path.join(lists, "trainlist01.txt"), cname2lab, what)
        test = self._read_list(os.path.join(lists, "testlist01.txt"), cname2lab, what)
        train, val = split_trainval(trainval)
        return train, val, test

    def _read_list(self, path, cname2lab, what):
        items = []
        for line in read_lines(path, "UCF101", what):
            action, _, video = line.split()[0].partition("/")
            if action not in cname2lab:
                raise DatasetError(f"UCF101: action '{action}' in {path} is not in classInd.txt")
            folder = split_camel_case(action)
            frame = os.path.splitext(video)[0] + ".jpg"
            items.append(Datum(os.path.join(self.image_dir, folder, frame), cname2lab[action], classname=folder))
        return items
