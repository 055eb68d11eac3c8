"""ToyShapes: deterministic generation, CoOp layout, base/new vocabulary, idempotent CLI, registered dataset."""

import hashlib
import json
import os

import pytest
from PIL import Image

from datasets.toyshapes import CLASSES, CLASSNAMES, COLOURS, NUM_BASE, SHAPES, ToyShapes
from datasets.toyshapes_render import generate, is_generated, main
from engine.data.splits import subsample_classes
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY
from tests.fixtures.toy_data import make_toyshapes, toy_cfg

TINY = dict(size=24, train=2, val=1, test=1, seed=0)


def _digest(dataset_dir):
    """sha256 over every file's relative path and bytes (manifest excluded: it holds no image data)."""
    h = hashlib.sha256()
    for base, _, files in sorted(os.walk(dataset_dir)):
        for name in sorted(files):
            path = os.path.join(base, name)
            h.update(os.path.relpath(path, dataset_dir).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_vocabulary_and_base_new_split():
    assert len(CLASSNAMES) == 64 == len(set(CLASSNAMES)) and NUM_BASE == 32
    base, new = CLASSNAMES[:32], CLASSNAMES[32:]
    words = lambda names, i: {n.split(" ")[i] for n in names}  # noqa: E731
    # Every colour and shape word is seen among base classes, with 4 partners each ...
    assert words(base, 0) == set(COLOURS) and words(base, 1) == set(SHAPES)
    assert all(sum(n.startswith(c + " ") for n in base) == 4 for c in COLOURS)
    assert all(sum(n.endswith(" " + s) for n in base) == 4 for s in SHAPES)
    # ... and each new class is an unseen combination of seen words (Latin-square parity rule).
    assert not set(base) & set(new)
    assert all((c + s) % 2 == 0 for c, s in CLASSES[:32]) and all((c + s) % 2 == 1 for c, s in CLASSES[32:])
    assert CLASSNAMES[0] == "red circle" and CLASSNAMES[32] == "red square"


def test_generation_is_deterministic_and_seed_dependent(tmp_path):
    a = generate(str(tmp_path / "a"), verbose=False, **TINY)
    b = generate(str(tmp_path / "b"), verbose=False, **TINY)
    c = generate(str(tmp_path / "c"), verbose=False, **dict(TINY, seed=1))
    assert _digest(a) == _digest(b) != _digest(c)


def test_layout_split_json_and_images(tmp_path):
    dataset_dir = make_toyshapes(tmp_path, **TINY)
    split = json.loads(open(os.path.join(dataset_dir, "split_toyshapes.json")).read())
    assert [len(split[k]) for k in ("train", "val", "test")] == [128, 64, 64]
    relpath, label, name = split["val"][0]
    assert (relpath, label, name) == ("red_circle/red_circle_0002.jpg", 0, "red circle")
    for rows in split.values():
        for relpath, label, name in rows:
            assert CLASSNAMES[label] == name and relpath.startswith(name.replace(" ", "_") + "/")
    with Image.open(os.path.join(dataset_dir, "images", relpath)) as img:
        assert img.size == (24, 24) and img.mode == "RGB"
    # Changing one split's count leaves the other splits' images untouched (one RNG per image).
    other = generate(str(tmp_path / "more"), verbose=False, **dict(TINY, test=2))
    first = os.path.join("images", "red_circle", "red_circle_0000.jpg")
    assert open(os.path.join(dataset_dir, first), "rb").read() == open(os.path.join(other, first), "rb").read()


def test_idempotent_and_regenerates_on_new_arguments(tmp_path, capsys):
    dataset_dir = make_toyshapes(tmp_path, **TINY)
    some_image = os.path.join(dataset_dir, "images", "red_circle", "red_circle_0000.jpg")
    stamp = os.stat(some_image).st_mtime_ns
    assert main(["--root", str(tmp_path), "--size", "24", "--train", "2", "--val", "1", "--test", "1"]) == 0
    assert "already generated" in capsys.readouterr().out
    assert os.stat(some_image).st_mtime_ns == stamp

    stale = os.path.join(dataset_dir, "split_fewshot", "shot_1-seed_1.json")
    os.makedirs(os.path.dirname(stale))
    open(stale, "w").write("{}")
    assert main(["--root", str(tmp_path), "--size", "24", "--train", "3", "--val", "1", "--test", "1"]) == 0
    assert is_generated(str(tmp_path), **dict(TINY, train=3)) and not is_generated(str(tmp_path), **TINY)
    assert not os.path.exists(stale)  # few-shot caches of the old generation are gone
    assert len(os.listdir(os.path.join(dataset_dir, "images", "red_circle"))) == 5
    assert main(["--root", str(tmp_path), "--size", "8"]) == 2


def test_registered_dataset_reads_split_with_fewshot_and_subsample(tmp_path):
    make_toyshapes(tmp_path, **TINY)
    assert DATASET_REGISTRY.get("ToyShapes") is ToyShapes
    full = ToyShapes(toy_cfg(tmp_path))
    assert full.classnames == list(CLASSNAMES) and full.num_classes == 64
    assert len(full.train_x) == 128 and os.path.isfile(full.train_x[0].impath)
    base = ToyShapes(toy_cfg(tmp_path, {"DATASET.SUBSAMPLE_CLASSES": "base", "DATASET.NUM_SHOTS": 1}))
    assert base.classnames == list(CLASSNAMES[:32]) and len(base.train_x) == 32 and len(base.val) == 32
    assert len(base.test) == 32  # test is never few-shot
    # Base/new through subsample_classes on the full split gives the same halves.
    new_train, = subsample_classes(full.train_x, subsample="new")
    assert sorted({d.classname for d in new_train}) == sorted(CLASSNAMES[32:])


def test_missing_dataset_error_says_how_to_generate(tmp_path):
    with pytest.raises(DatasetError, match=f"--root {tmp_path}"):
        ToyShapes(toy_cfg(tmp_path))
