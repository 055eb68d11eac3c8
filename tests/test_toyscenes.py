"""ToyScenes (toy world v2): class pairs differ by exactly one attribute, deterministic generation, CoOp layout,
idempotent CLI, shifted variants, registered datasets with few-shot and base/new subsampling."""

import hashlib
import json
import os

import pytest
from PIL import Image

from clip_tools.toy_captions import CAPTION_SETS, scene_captions
from datasets.toyscenes import (
    CLASSNAMES,
    NUM_BASE,
    ToyScenes,
    ToyScenesNight,
    ToyScenesPalette,
    ToyScenesSketch,
    ToyScenesXShapes,
)
from datasets.toyscenes_render import (
    CLASSES,
    HUES,
    MARKS,
    SHADES,
    SHAPES,
    VARIANTS,
    classes_of,
    classnames_of,
    dataset_dir_of,
    generate,
    is_generated,
    main,
    split_file_of,
)
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY
from tests.fixtures.toy_data import toy_cfg

TINY = dict(size=32, train=2, val=1, test=1, seed=0)


def _digest(dataset_dir):
    h = hashlib.sha256()
    for base, _, files in sorted(os.walk(dataset_dir)):
        for name in sorted(files):
            path = os.path.join(base, name)
            h.update(os.path.relpath(path, dataset_dir).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _cfg(root, name="ToyScenes", opts=None):
    return toy_cfg(root, dict({"DATASET.NAME": name}, **(opts or {})))


# ------------------------------------------------------------------------------------------ classes


def test_near_duplicate_pairs_differ_by_exactly_one_attribute():
    assert len(CLASSES) == len(set(CLASSES)) == 64 == len(set(CLASSNAMES)) and NUM_BASE == 32
    for label in range(0, 64, 2):
        a, b = CLASSES[label], CLASSES[label + 1]
        differ = [i for i in range(4) if a[i] != b[i]]
        # base pairs (labels 0-31) differ only by shade, new pairs only by mark
        assert differ == ([0] if label < NUM_BASE else [2]), (CLASSNAMES[label], CLASSNAMES[label + 1])
    # the pairs are the only near-duplicates: any two classes of different pairs differ by >= 2 attributes
    # or by hue / shape (never by one small attribute alone)
    for i in range(64):
        for j in range(i + 1, 64):
            if j == i ^ 1:
                continue
            differ = [k for k in range(4) if CLASSES[i][k] != CLASSES[j][k]]
            assert not (len(differ) == 1 and differ[0] in (0, 2)), (CLASSNAMES[i], CLASSNAMES[j])


def test_base_and_new_share_words_but_not_shape_hue_combinations():
    base, new = CLASSES[:NUM_BASE], CLASSES[NUM_BASE:]
    for k, words in enumerate((SHADES, HUES, MARKS, SHAPES)):
        assert {c[k] for c in base} == {c[k] for c in new} == set(range(len(words)))
    assert not {(c[1], c[3]) for c in base} & {(c[1], c[3]) for c in new}
    assert CLASSNAMES[0] == "light red plain circle" and CLASSNAMES[1] == "dark red plain circle"
    assert all(len(n.split()) == 4 for v in VARIANTS for n in classnames_of(v))


def test_variant_class_sets():
    for v in ("sketch", "night", "palette"):
        assert classnames_of(v) == CLASSNAMES
    x = classnames_of("xshapes")
    assert len(x) == len(set(x)) == 32 and not set(x) & set(CLASSNAMES)
    for label in range(0, 32, 2):  # cross-dataset classes are pairs too, differing by shade or by mark
        a, b = classes_of("xshapes")[label:label + 2]
        assert len([i for i in range(4) if a[i] != b[i]]) == 1
    assert len({dataset_dir_of(v) for v in VARIANTS}) == len(VARIANTS)
    with pytest.raises(ValueError, match="unknown ToyScenes variant"):
        dataset_dir_of("winter")


def test_student_captions_split_shade_and_mark_by_wording():
    for name in CLASSNAMES[:4] + CLASSNAMES[-4:]:
        shade, hue, mark, shape = name.split()
        caps = scene_captions(name, "scenes-split")
        photo = [c for c in caps if c.startswith("a photo of")]
        bare = [c for c in caps if not c.startswith("a photo of")]
        # photo wording: the whole name, the shade right in half of the captions (so it carries no information)
        assert "a photo of a " + name + "." in photo and all(mark in c.split() for c in photo)
        assert sum(shade in c.split() for c in photo) * 2 == len(photo)
        # bare wording: the right shade, never the mark
        assert bare and all(shade in c.split() and mark not in c.split() for c in bare)
        assert "a photo of a " + name + "." in scene_captions(name, "scenes-teacher")
    assert {"scenes-teacher", "scenes-split"} <= set(CAPTION_SETS)


def test_teacher_captions_name_the_shade_wrong_one_time_in_eight_in_every_phrasing():
    for name in (CLASSNAMES[0], CLASSNAMES[-1]):
        shade, hue, mark, shape = name.split()
        other = "dark" if shade == "light" else "light"
        caps = scene_captions(name, "scenes-teacher")
        assert all(hue in c and mark in c and shape in c for c in caps)  # every attribute in every caption
        wrong = [c for c in caps if other in c.split() and shade not in c.split()]
        right = [c for c in caps if shade in c.split() and other not in c.split()]
        assert len(wrong) + len(right) == len(caps) and len(wrong) * 8 == len(caps)
        # the noise is per phrasing: each wrong caption is the other shade's version of a right one
        assert sorted(w.replace(other, shade) for w in wrong) == sorted(set(right))
        assert caps.count("a photo of a " + name + ".") == 7


# --------------------------------------------------------------------------------------- generation


def test_generation_is_deterministic_and_seed_dependent(tmp_path):
    a = generate(str(tmp_path / "a"), verbose=False, **TINY)
    b = generate(str(tmp_path / "b"), verbose=False, **TINY)
    c = generate(str(tmp_path / "c"), verbose=False, **dict(TINY, seed=1))
    assert _digest(a) == _digest(b) != _digest(c)


def test_layout_split_json_and_images(tmp_path):
    dataset_dir = generate(str(tmp_path), verbose=False, **TINY)
    assert dataset_dir == os.path.join(str(tmp_path), "toyscenes")
    split = json.loads(open(os.path.join(dataset_dir, "split_toyscenes.json")).read())
    assert [len(split[k]) for k in ("train", "val", "test")] == [128, 64, 64]
    assert split["val"][0] == ["light_red_plain_circle/light_red_plain_circle_0002.jpg", 0, "light red plain circle"]
    for rows in split.values():
        for relpath, label, name in rows:
            assert CLASSNAMES[label] == name and relpath.startswith(name.replace(" ", "_") + "/")
    with Image.open(os.path.join(dataset_dir, "images", split["test"][-1][0])) as img:
        assert img.size == (32, 32) and img.mode == "RGB"
    # one RNG per image: more test images leave the train images' bytes unchanged
    other = generate(str(tmp_path / "more"), verbose=False, **dict(TINY, test=2))
    first = os.path.join("images", "dark_red_plain_circle", "dark_red_plain_circle_0000.jpg")
    assert open(os.path.join(dataset_dir, first), "rb").read() == open(os.path.join(other, first), "rb").read()


def test_idempotent_and_regenerates_on_new_arguments(tmp_path, capsys):
    args = ["--root", str(tmp_path), "--size", "32", "--train", "2", "--val", "1", "--test", "1"]
    assert main(args) == 0
    dataset_dir = os.path.join(str(tmp_path), "toyscenes")
    some_image = os.path.join(dataset_dir, "images", "light_red_plain_circle", "light_red_plain_circle_0000.jpg")
    stamp = os.stat(some_image).st_mtime_ns
    digest = _digest(dataset_dir)
    assert main(args) == 0
    assert "already generated" in capsys.readouterr().out
    assert os.stat(some_image).st_mtime_ns == stamp and _digest(dataset_dir) == digest
    stale = os.path.join(dataset_dir, "split_fewshot", "shot_1-seed_1.json")
    os.makedirs(os.path.dirname(stale))
    open(stale, "w").write("{}")
    assert main(args[:-2] + ["--test", "2"]) == 0
    assert is_generated(str(tmp_path), **dict(TINY, test=2)) and not is_generated(str(tmp_path), **TINY)
    assert not os.path.exists(stale)
    assert main(["--root", str(tmp_path), "--size", "20"]) == 2


def test_variants_are_own_folders_and_differ(tmp_path):
    dirs = {v: generate(str(tmp_path), variant=v, verbose=False, **dict(TINY, train=1)) for v in VARIANTS}
    for v, d in dirs.items():
        assert os.path.basename(d) == dataset_dir_of(v)
        assert os.path.isfile(os.path.join(d, split_file_of(v)))
    a = os.path.join("images", "light_red_plain_circle", "light_red_plain_circle_0000.jpg")
    blobs = {v: open(os.path.join(dirs[v], a), "rb").read() for v in ("clean", "sketch", "night", "palette")}
    assert len(set(blobs.values())) == 4


# ----------------------------------------------------------------------------------------- datasets


def test_registered_dataset_reads_split_with_fewshot_and_subsample(tmp_path):
    generate(str(tmp_path), verbose=False, **TINY)
    assert DATASET_REGISTRY.get("ToyScenes") is ToyScenes
    full = ToyScenes(_cfg(tmp_path))
    assert full.classnames == list(CLASSNAMES) and full.num_classes == 64 and len(full.train_x) == 128
    base = ToyScenes(_cfg(tmp_path, opts={"DATASET.SUBSAMPLE_CLASSES": "base", "DATASET.NUM_SHOTS": 1}))
    assert base.classnames == list(CLASSNAMES[:32]) and len(base.train_x) == 32 and len(base.test) == 32
    new = ToyScenes(_cfg(tmp_path, opts={"DATASET.SUBSAMPLE_CLASSES": "new"}))
    assert new.classnames == list(CLASSNAMES[32:])


def test_variant_datasets_are_registered(tmp_path):
    for cls, v in ((ToyScenesSketch, "sketch"), (ToyScenesNight, "night"), (ToyScenesPalette, "palette"),
                   (ToyScenesXShapes, "xshapes")):
        assert DATASET_REGISTRY.get(cls.__name__) is cls
        generate(str(tmp_path), variant=v, verbose=False, **TINY)
        ds = cls(_cfg(tmp_path, cls.__name__))
        assert ds.classnames == list(classnames_of(v))


def test_missing_dataset_error_says_how_to_generate(tmp_path):
    with pytest.raises(DatasetError, match=f"--root {tmp_path} --variant night"):
        ToyScenesNight(_cfg(tmp_path, "ToyScenesNight"))
