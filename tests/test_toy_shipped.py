"""The two shipped toy CLIPs (``models/``): recorded hashes, size, and zero-shot floors on unseen images.

They are loaded through the real backend (``load_clip(path)``); zero-shot accuracy is measured on a FRESH
ToyShapes test split (generation seed 7: images neither model saw) against floors far above chance
(1/64 = 1.6%), and the teacher must beat the student.
"""

import os
import re

import pytest
import torch

from clip_tools.loading import load_clip
from clip_tools.text_bank import class_text_features
from clip_tools.toy import (
    accuracy,
    encode_images,
    load_split_tensors,
    sha256_of,
    zero_shot_accuracy,
)
from datasets.toyshapes import CLASSNAMES, NUM_BASE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(REPO, "models")
TEACHER, STUDENT = os.path.join(MODELS, "toy_teacher.pt"), os.path.join(MODELS, "toy_student.pt")
# Floors on the fresh split (measured values are in models/README.md; these leave room for noise
# from the 192-image split).
TEACHER_FLOOR, STUDENT_FLOOR = 60.0, 15.0


# ------------------------------------------------------------------------------------- shipped models


def _readme_hashes():
    with open(os.path.join(MODELS, "README.md"), "r", encoding="utf-8") as f:
        text = f.read()
    return dict(re.findall(r"`(toy_\w+\.pt)`[^\n]*?sha256 `([0-9a-f]{64})`", text))


@pytest.fixture(scope="module")
def fresh_test_split(tmp_path_factory):
    """A ToyShapes generation with another seed (3 test images per class, 64 px): unseen images."""
    from datasets.toyshapes import ensure_toyshapes

    root = tmp_path_factory.mktemp("toyshapes_fresh")
    dataset_dir = ensure_toyshapes(str(root), size=64, train=1, val=1, test=3, seed=7, verbose=False)
    return load_split_tensors(dataset_dir, "test")


@pytest.fixture(scope="module")
def shipped():
    return {"teacher": load_clip(TEACHER), "student": load_clip(STUDENT)}


def test_shipped_files_match_recorded_hashes_and_size():
    hashes = _readme_hashes()
    assert set(hashes) == {"toy_teacher.pt", "toy_student.pt"}
    for name, digest in hashes.items():
        assert sha256_of(os.path.join(MODELS, name)) == digest, f"{name} differs from models/README.md"
    assert os.path.getsize(TEACHER) + os.path.getsize(STUDENT) < 10 * 2 ** 20


def test_shipped_models_fit_the_toy_world(shipped):
    for model in shipped.values():
        assert model.visual.image_size in (64, (64, 64))
        assert int(model.positional_embedding.shape[0]) >= 24  # 16 context tokens + a class name fit
    assert shipped["teacher"].fdbpl_info["meta"]["role"] == "teacher"
    assert shipped["student"].fdbpl_info["meta"]["role"] == "student"


@pytest.mark.slow  # end to end, several seconds
def test_teacher_zero_shot_floor_and_beats_student(shipped, fresh_test_split):
    images, labels = fresh_test_split
    acc = {k: zero_shot_accuracy(m, images, labels, CLASSNAMES) for k, m in shipped.items()}
    assert acc["teacher"] > TEACHER_FLOOR, acc
    assert acc["student"] > STUDENT_FLOOR, acc  # weaker, but not useless
    assert acc["teacher"] > acc["student"] + 10.0, acc


@pytest.mark.slow  # end to end, several seconds
def test_student_image_features_beat_its_hand_prompt(shipped, fresh_test_split):
    # the world's premise: the student's weak part is its text side, so class means of its own image
    # features (a prototype classifier) beat its zero-shot text classifier on base classes
    images, labels = fresh_test_split
    student = shipped["student"]
    feats = encode_images(student, images)
    base = range(NUM_BASE)
    protos = torch.stack([feats[labels == c].mean(0) for c in range(len(CLASSNAMES))])
    proto_acc = accuracy(feats, labels, torch.nn.functional.normalize(protos, dim=-1), base)
    text_acc = accuracy(feats, labels, class_text_features(student, CLASSNAMES, "a photo of a {}."), base)
    assert proto_acc > text_acc + 5.0, (proto_acc, text_acc)
