"""The shipped ToyScenes CLIPs (toy world v2, ``models/scenes_*.pt``): recorded hashes, total size, and the
world's zero-shot floors on a FRESH ToyScenes test split (generation seed 7: images no model saw).

Also: the ``scenes-*`` roles of ``scripts/pretrain_toy_clip.py`` leave the v1 roles' settings as the shipped v1
files record them (so rerunning the v1 commands still makes the v1 files).
"""

import os
import re
import sys

import pytest
import torch

from clip_tools.loading import load_clip
from clip_tools.text_bank import class_text_features
from clip_tools.toy import accuracy, encode_images, load_split_tensors, sha256_of
from datasets.toyscenes_render import CLASSNAMES, NUM_BASE, split_file_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(REPO, "models")
NAMES = ("scenes_teacher_large.pt", "scenes_teacher_small.pt", "scenes_student.pt")
ROLES = {"scenes_teacher_large.pt": "scenes-teacher-large", "scenes_teacher_small.pt": "scenes-teacher-small",
         "scenes_student.pt": "scenes-student"}
# Floors on the fresh 3-images-per-class split (measured there: teacher-large 68.8 / 67.7, teacher-small 59.4 / 58.3,
# student 29.2 / 41.7 base / new; models/README.md); chance is 3.1%. "gap" is criterion 1 of issue 15 (teacher >= student + 10 points).
FLOORS = {"teacher_base": 50.0, "teacher_new": 50.0, "student_base": 15.0, "student_new": 15.0, "gap": 10.0}


def _readme_hashes():
    with open(os.path.join(MODELS, "README.md"), "r", encoding="utf-8") as f:
        text = f.read()
    return dict(re.findall(r"`(scenes_\w+\.pt)`[^\n]*?sha256 `([0-9a-f]{64})`", text))


def test_shipped_files_match_recorded_hashes_and_total_size():
    hashes = _readme_hashes()
    assert set(hashes) == set(NAMES)
    for name, digest in hashes.items():
        assert sha256_of(os.path.join(MODELS, name)) == digest, f"{name} differs from models/README.md"
    total = sum(os.path.getsize(os.path.join(MODELS, f)) for f in os.listdir(MODELS) if f.endswith(".pt"))
    assert total <= 10 * 10 ** 6, f"all shipped weights together take {total} bytes (limit 10 MB)"


@pytest.fixture(scope="module")
def shipped():
    return {name: load_clip(os.path.join(MODELS, name)) for name in NAMES}


def test_shipped_models_fit_the_world(shipped):
    for name, model in shipped.items():
        assert model.visual.image_size in (64, (64, 64))
        assert int(model.positional_embedding.shape[0]) >= 24  # 16 context tokens + "." + a 4-word name fit
        meta = model.fdbpl_info["meta"]
        assert meta["role"] == ROLES[name] and meta["settings"]["world"] == "toyscenes"
        assert meta["settings"]["gen_seed"] == 0  # pretrained on generation seed 0 only


def test_v1_roles_keep_their_settings():
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        import pretrain_toy_clip as pt
    finally:
        sys.path.pop(0)
    for role, name in (("teacher", "toy_teacher.pt"), ("student", "toy_student.pt")):
        recorded = load_clip(os.path.join(MODELS, name)).fdbpl_info["meta"]["settings"]
        args = pt.parse_args(["--root", "x", "--role", role, "--out", "y"])
        assert pt.settings_of(args) == recorded, role


@pytest.fixture(scope="module")
def fresh_test_split(tmp_path_factory):
    from datasets.toyscenes import ensure_toyscenes

    root = tmp_path_factory.mktemp("toyscenes_fresh")
    dataset_dir = ensure_toyscenes(str(root), size=64, train=1, val=1, test=3, seed=7, verbose=False)
    return load_split_tensors(dataset_dir, "test", split_file_of())


def _zero_shot(model, images, labels):
    feats = encode_images(model, images)
    text = class_text_features(model, CLASSNAMES, "a photo of a {}.")  # the hand prompt "a photo of a {}."
    return {"base": accuracy(feats, labels, text, range(NUM_BASE)),
            "new": accuracy(feats, labels, text, range(NUM_BASE, len(CLASSNAMES)))}


@pytest.mark.slow  # end to end, several seconds
def test_zero_shot_floors_and_teacher_beats_student(shipped, fresh_test_split):
    images, labels = fresh_test_split
    acc = {name: _zero_shot(m, images, labels) for name, m in shipped.items()}
    teacher, student = acc["scenes_teacher_large.pt"], acc["scenes_student.pt"]
    assert teacher["base"] > FLOORS["teacher_base"] and teacher["new"] > FLOORS["teacher_new"], acc
    assert student["base"] > FLOORS["student_base"] and student["new"] > FLOORS["student_new"], acc
    for half in ("base", "new"):
        assert teacher[half] > student[half] + FLOORS["gap"], acc
        assert teacher[half] >= acc["scenes_teacher_small.pt"][half] - 5.0, acc  # the large one is not weaker


@pytest.mark.slow
def test_student_hand_prompt_ignores_shade(shipped, fresh_test_split):
    # the world's text-side shortcut: with the hand prompt the student hardly tells shade pairs (base) apart,
    # while its bare wording "<shade> <hue> <shape>" does (its image features carry the shade)
    images, labels = fresh_test_split
    student = shipped["scenes_student.pt"]
    feats = encode_images(student, images)
    base = labels < NUM_BASE

    def pair_accuracy(text):
        pred = (feats[base] @ text.t()).view(int(base.sum()), -1, 2).argmax(-1)
        y = labels[base]
        return 100.0 * (pred[torch.arange(len(y)), y // 2] == y % 2).float().mean().item()

    hand = class_text_features(student, CLASSNAMES, "a photo of a {}.")
    bare_names = [" ".join(n.split()[:2] + n.split()[3:]) for n in CLASSNAMES]
    bare = class_text_features(student, bare_names, "{}")
    assert pair_accuracy(bare) > pair_accuracy(hand) + 10.0


@pytest.mark.slow
def test_large_teacher_splits_shade_pairs_softly(shipped, fresh_test_split):
    # the teachers' captions name the shade wrong one time in eight: on base images the large teacher gives the
    # right member of a shade pair about 7/8 of the pair's probability (measured 0.866 on this split), not ~1 --
    # the soft labels that let distillation keep the marks (models/README.md, criterion 3)
    images, labels = fresh_test_split
    teacher = shipped["scenes_teacher_large.pt"]
    base = labels < NUM_BASE
    feats = torch.nn.functional.normalize(encode_images(teacher, images[base]).float(), dim=-1)
    text = class_text_features(teacher, CLASSNAMES[:NUM_BASE], "a photo of a {}.").float()
    pair = (teacher.logit_scale.exp() * feats @ text.t()).view(len(feats), -1, 2).softmax(-1)
    y = labels[base]
    right = pair[torch.arange(len(y)), y // 2, y % 2]
    assert 0.75 < right.mean().item() < 0.95, right.mean().item()
