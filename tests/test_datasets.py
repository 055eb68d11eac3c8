"""The 15 real-dataset modules on tiny fake copies in their real layouts (tests/fixtures/fake_datasets.py).

Known answers are written by hand from CoOp's rules: class names (EuroSAT/Caltech renames, Cars year
first, SUN397 reversal, UCF101 CamelCase, ImageNet names), split sizes from the per-class rounding,
few-shot counts, base/new relabelling, templates. Also: split JSON read vs generated, reproducibility,
few-shot cache round trip, CoOp's few-shot and ImageNet pickles, and one-line errors naming the path.
"""

import importlib
import os
import pickle
import shutil
import sys
import types
from collections import Counter

import pytest

from datasets.templates import (
    CUSTOM_TEMPLATES,
    IMAGENET_TEMPLATES,
    IMAGENET_TEMPLATES_SELECT,
    PROMPTSRC_TEMPLATES,
    format_template,
)
from engine.config import get_cfg_default, merge_cfg_file
from engine.errors import DatasetError
from engine.registry import DATASET_REGISTRY
from engine.utils import read_json, set_random_seed
from tests.fixtures import fake_datasets as fake

MODULES = {
    "OxfordPets": "oxford_pets", "OxfordFlowers": "oxford_flowers", "FGVCAircraft": "fgvc_aircraft",
    "DescribableTextures": "dtd", "EuroSAT": "eurosat", "StanfordCars": "stanford_cars", "Food101": "food101",
    "SUN397": "sun397", "Caltech101": "caltech101", "UCF101": "ucf101", "ImageNet": "imagenet",
    "ImageNetV2": "imagenetv2", "ImageNetSketch": "imagenet_sketch", "ImageNetA": "imagenet_a",
    "ImageNetR": "imagenet_r",
}
for _module in MODULES.values():
    importlib.import_module(f"datasets.{_module}")

IMAGENET5 = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark"]
IMAGENET6 = IMAGENET5 + ["electric ray"]
# name -> (class names by label, (train, val, test) sizes when the split is generated from the raw files)
EXPECTED = {
    "OxfordPets": (["abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound"], (16, 4, 8)),
    "OxfordFlowers": (["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea"], (8, 4, 8)),
    "FGVCAircraft": (["707-320", "A300B4", "Cessna 172", "F-16A/B"], (12, 8, 8)),
    "DescribableTextures": (["banded", "blotchy", "braided", "bubbly"], (8, 4, 8)),
    "EuroSAT": (["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "River",
                 "Sea or Lake"], (12, 6, 6)),
    "StanfordCars": (["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Acura TL Sedan",
                      "2008 Acura TL Type-S"], (16, 4, 8)),
    "Food101": (["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio"], (8, 4, 4)),
    "SUN397": (["abbey", "airplane_cabin", "outdoor apartment_building", "shop bakery"], (16, 4, 8)),
    "Caltech101": (["face", "leopard", "motorbike", "accordion", "airplane"], (10, 5, 5)),
    "UCF101": (["Apply_Eye_Makeup", "Archery", "Handstand_Pushups", "Yo_Yo"], (16, 4, 8)),
    "ImageNet": (IMAGENET5, (20, 10, 10)),  # val is the test set, as in CoOp
    "ImageNetV2": (IMAGENET6, (12, 0, 12)),
    "ImageNetSketch": (IMAGENET6, (12, 0, 12)),
    "ImageNetA": (["goldfish", "tiger shark", "electric ray"], (6, 0, 6)),
    "ImageNetR": (["goldfish", "tiger shark", "electric ray"], (6, 0, 6)),
}
JSON_DATASETS = ["OxfordPets", "OxfordFlowers", "DescribableTextures", "EuroSAT", "StanfordCars", "Food101",
                 "SUN397", "Caltech101", "UCF101"]
FEWSHOT_DATASETS = JSON_DATASETS + ["FGVCAircraft", "ImageNet"]
VARIANTS = ["ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"]


def make_cfg(root, name, shots=-1, subsample="all", seed=1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    return cfg


def load(root, name, **kw):
    """Build the dataset as train.py does: seed every RNG with SEED first."""
    cfg = make_cfg(root, name, **kw)
    set_random_seed(cfg.SEED)
    return DATASET_REGISTRY.get(name)(cfg)


def rel(items, root):
    return [(os.path.relpath(d.impath, root), d.label, d.classname) for d in items or []]


def sizes(ds):
    return len(ds.train_x), len(ds.val or []), len(ds.test)


# ------------------------------------------------------------------------------ names, labels, sizes


@pytest.mark.parametrize("name", list(EXPECTED))
def test_generated_split_names_labels_sizes(tmp_path, name):
    fake.BUILDERS[name](str(tmp_path), with_split=False)
    ds = load(tmp_path, name)
    classnames, expected_sizes = EXPECTED[name]
    assert ds.classnames == classnames
    assert ds.num_classes == len(classnames)
    assert sizes(ds) == expected_sizes
    for items in (ds.train_x, ds.val or [], ds.test):
        assert all(0 <= d.label < len(classnames) and d.classname == classnames[d.label] for d in items)
        assert all(os.path.isfile(d.impath) for d in items)
    assert set(d.label for d in ds.test) == set(range(len(classnames)))
    assert not set(d.impath for d in ds.train_x) & set(d.impath for d in ds.test) or name in VARIANTS


@pytest.mark.parametrize("name", JSON_DATASETS)
def test_generated_split_is_saved_and_read_back(tmp_path, name):
    ddir = fake.BUILDERS[name](str(tmp_path), with_split=False)
    first = load(tmp_path, name, seed=1)
    split_file = [f for f in os.listdir(ddir) if f.startswith("split_zhou_")]
    assert split_file == [f"split_zhou_{name}.json"]
    second = load(tmp_path, name, seed=2)  # another seed: only reading the JSON gives the same lists
    for a, b in ((first.train_x, second.train_x), (first.val, second.val), (first.test, second.test)):
        assert rel(a, tmp_path) == rel(b, tmp_path)
    rows = read_json(os.path.join(ddir, split_file[0]))["train"]
    assert not os.path.isabs(rows[0][0])  # CoOp's relative paths


@pytest.mark.parametrize("name", JSON_DATASETS)
def test_existing_split_json_is_used(tmp_path, name):
    fake.BUILDERS[name](str(tmp_path), with_split=True)
    ds = load(tmp_path, name)
    n = len(EXPECTED[name][0])
    # The fixture's JSON puts the first sorted image of each class in val and the second in test.
    assert len(ds.val) == n and len(ds.test) == n
    for label in range(n):
        paths = sorted(d.impath for d in ds.train_x + ds.val + ds.test if d.label == label)
        assert [d.impath for d in ds.val if d.label == label] == paths[:1]
        assert [d.impath for d in ds.test if d.label == label] == paths[1:2]
    assert ds.classnames == EXPECTED[name][0]


def test_stanford_cars_split_paths_are_relative_to_dataset_folder(tmp_path):
    ddir = fake.build_stanford_cars(str(tmp_path), with_split=False)
    load(tmp_path, "StanfordCars")
    rows = read_json(os.path.join(ddir, "split_zhou_StanfordCars.json"))
    assert rows["test"][0][0].startswith("cars_test/") and rows["train"][0][0].startswith("cars_train/")


def test_rename_helpers():
    from datasets.oxford_pets import breed_name
    from datasets.stanford_cars import year_first
    from datasets.sun397 import sun_classname
    from datasets.ucf101 import split_camel_case

    assert breed_name("Abyssinian_100") == "abyssinian" and breed_name("great_pyrenees_7") == "great_pyrenees"
    assert year_first("AM General Hummer SUV 2000") == "2000 AM General Hummer SUV"
    assert sun_classname("b/bakery/shop") == "shop bakery" and sun_classname("/a/abbey") == "abbey"
    assert split_camel_case("ApplyEyeMakeup") == "Apply_Eye_Makeup" and split_camel_case("YoYo") == "Yo_Yo"


def test_ucf101_frames_come_from_renamed_folders(tmp_path):
    fake.build_ucf101(str(tmp_path), with_split=False)
    ds = load(tmp_path, "UCF101")
    handstand = [d.impath for d in ds.train_x if d.classname == "Handstand_Pushups"][0]
    assert "/Handstand_Pushups/v_HandStandPushups_g" in handstand and handstand.endswith("_c01.jpg")


def test_caltech_ignores_background_folders(tmp_path):
    fake.build_caltech101(str(tmp_path), with_split=False)
    ds = load(tmp_path, "Caltech101")
    folders = {os.path.basename(os.path.dirname(d.impath)) for d in ds.train_x + ds.val + ds.test}
    assert folders == {"Faces", "Leopards", "Motorbikes", "accordion", "airplanes"}


# -------------------------------------------------------------------------------- few-shot, base/new


@pytest.mark.parametrize("name", FEWSHOT_DATASETS)
def test_fewshot_counts_and_cache_round_trip(tmp_path, name):
    fake.BUILDERS[name](str(tmp_path), with_split=False)
    full = load(tmp_path, name)
    shots = load(tmp_path, name, shots=2, seed=5)
    train_counts = Counter(d.label for d in full.train_x)
    assert Counter(d.label for d in shots.train_x) == {y: min(2, n) for y, n in train_counts.items()}
    assert set(shots.train_x) <= set(full.train_x)
    if name == "ImageNet":
        assert shots.val == shots.test == full.test  # no val split: the few-shot file holds train only
    else:
        val_counts = Counter(d.label for d in full.val)
        assert Counter(d.label for d in shots.val) == {y: min(2, n) for y, n in val_counts.items()}
        assert set(shots.val) <= set(full.val)
    assert shots.test == full.test  # test is never reduced

    cache = os.path.join(shots.dataset_dir, "split_fewshot", "shot_2-seed_5.json")
    assert read_json(cache)["format"] == "fdbpl-fewshot"
    set_random_seed(99)  # the cache, not the RNG, decides
    again = DATASET_REGISTRY.get(name)(make_cfg(tmp_path, name, shots=2, seed=5))
    assert again.train_x == shots.train_x and again.val == shots.val


@pytest.mark.parametrize("name", ["Caltech101", "ImageNet", "FGVCAircraft"])
def test_base_new_relabelling(tmp_path, name):
    fake.BUILDERS[name](str(tmp_path), with_split=False)
    names = EXPECTED[name][0]
    m = (len(names) + 1) // 2  # ceil(n / 2) base classes
    full = load(tmp_path, name)
    for subsample, kept in (("base", names[:m]), ("new", names[m:])):
        ds = load(tmp_path, name, subsample=subsample)
        assert ds.classnames == kept
        for items, whole in ((ds.train_x, full.train_x), (ds.val, full.val), (ds.test, full.test)):
            assert sorted({d.label for d in items}) == list(range(len(kept)))
            assert all(d.classname == kept[d.label] for d in items)
            assert len(items) == sum(1 for d in whole if d.classname in kept)


def test_base_new_after_fewshot(tmp_path):
    fake.build_oxford_pets(str(tmp_path))
    ds = load(tmp_path, "OxfordPets", shots=1, subsample="new")
    assert ds.classnames == ["american_pit_bull_terrier", "basset_hound"]
    assert [d.label for d in ds.train_x] == [0, 1] and len(ds.test) == 2


def test_same_seed_same_split_other_seed_differs(tmp_path):
    picks = {}
    for run, seed in (("a", 1), ("b", 1), ("c", 2)):
        root = tmp_path / run
        fake.build_dtd(str(root), with_split=False)
        ds = load(root, "DescribableTextures", shots=2, seed=seed)
        picks[run] = (rel(ds.train_x, root), rel(ds.val, root), rel(ds.test, root))
    assert picks["a"] == picks["b"]
    assert picks["a"] != picks["c"]


# ------------------------------------------------------------------------------- CoOp's pickles


def _dassl_datum_class(monkeypatch):
    """A stand-in for ``dassl.data.datasets.base_dataset.Datum`` so pickles look like CoOp's."""
    modname = "dassl.data.datasets.base_dataset"
    module = types.ModuleType(modname)

    class Datum:
        def __init__(self, impath, label, classname):
            self._impath, self._label, self._domain, self._classname = impath, label, 0, classname

    Datum.__module__, Datum.__qualname__ = modname, "Datum"
    module.Datum = Datum
    for parent in ("dassl", "dassl.data", "dassl.data.datasets"):
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    monkeypatch.setitem(sys.modules, modname, module)
    return Datum


def test_coop_fewshot_pickle_is_used_and_rerooted(tmp_path, monkeypatch):
    fake.build_oxford_pets(str(tmp_path))
    Datum = _dassl_datum_class(monkeypatch)
    old = "/old/machine/data/oxford_pets/images"
    train = [Datum(f"{old}/{b}_106.jpg", i, b.lower()) for i, (b, *_) in enumerate(fake.PETS_BREEDS)]
    val = [Datum(f"{old}/basset_hound_102.jpg", 3, "basset_hound")]
    os.makedirs(tmp_path / "oxford_pets" / "split_fewshot")
    with open(tmp_path / "oxford_pets" / "split_fewshot" / "shot_1-seed_3.pkl", "wb") as f:
        pickle.dump({"train": train, "val": val}, f, protocol=pickle.HIGHEST_PROTOCOL)
    monkeypatch.delitem(sys.modules, "dassl.data.datasets.base_dataset")  # reading must not need Dassl

    ds = load(tmp_path, "OxfordPets", shots=1, seed=3)
    images = os.path.join(str(tmp_path), "oxford_pets", "images")
    assert [d.impath for d in ds.train_x] == [os.path.join(images, f"{b}_106.jpg") for b, *_ in fake.PETS_BREEDS]
    assert [(d.impath, d.label) for d in ds.val] == [(os.path.join(images, "basset_hound_102.jpg"), 3)]


def test_imagenet_preprocessed_pickle_is_used(tmp_path, monkeypatch):
    ddir = fake.build_imagenet(str(tmp_path))
    Datum = _dassl_datum_class(monkeypatch)
    old = "/gone/imagenet/images"
    data = {"train": [Datum(f"{old}/train/n01443537/n01443537_10027.JPEG", 0, "goldfish")],
            "test": [Datum(f"{old}/val/n01443537/ILSVRC2012_val_00000003.JPEG", 0, "goldfish")]}
    with open(os.path.join(ddir, "preprocessed.pkl"), "wb") as f:
        pickle.dump(data, f)
    ds = load(tmp_path, "ImageNet")
    assert ds.classnames == ["goldfish"] and sizes(ds) == (1, 1, 1)
    assert ds.test[0].impath == os.path.join(ddir, "images", "val", "n01443537", "ILSVRC2012_val_00000003.JPEG")
    assert not os.path.exists(os.path.join(ddir, "preprocessed.json"))


def test_imagenet_lists_sorted_and_cached(tmp_path):
    ddir = fake.build_imagenet(str(tmp_path))
    ds = load(tmp_path, "ImageNet")
    paths = [d.impath for d in ds.train_x]
    assert paths == sorted(paths)
    shutil.rmtree(os.path.join(ddir, "images", "train", "n01440764"))  # a cached list is not rescanned...
    with pytest.raises(DatasetError, match="preprocessed.json"):  # ...so its missing images are reported
        load(tmp_path, "ImageNet")


# ------------------------------------------------------------------------------------------- errors


def _error(root, name, **kw):
    with pytest.raises(DatasetError) as info:
        load(root, name, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", list(EXPECTED))
def test_missing_dataset_folder(tmp_path, name):
    message = _error(tmp_path, name)
    folder = DATASET_REGISTRY.get(name).folder
    assert message.startswith(f"{name}: ") and os.path.join(str(tmp_path), folder) in message
    assert "docs/DATASETS.md" in message


def test_imagenet_val_with_loose_jpegs(tmp_path):
    ddir = fake.build_imagenet(str(tmp_path))
    val = os.path.join(ddir, "images", "val")
    for wnid in os.listdir(val):
        for name in os.listdir(os.path.join(val, wnid)):
            os.rename(os.path.join(val, wnid, name), os.path.join(val, name))
        os.rmdir(os.path.join(val, wnid))
    message = _error(tmp_path, "ImageNet")
    assert f"expected class folders n01440764... in {val}, found 10 loose files" in message


@pytest.mark.parametrize("name, builder_kw, removed, expected", [
    ("ImageNet", {}, "classnames.txt", "classnames.txt"),
    ("OxfordFlowers", {}, "cat_to_name.json", "cat_to_name.json"),
    ("OxfordFlowers", {}, "imagelabels.mat", "imagelabels.mat"),
    ("OxfordPets", {"with_split": False}, "annotations/test.txt", "annotations/test.txt"),
    ("StanfordCars", {"with_split": False}, "devkit/cars_meta.mat", "devkit/cars_meta.mat"),
    ("SUN397", {}, "ClassName.txt", "ClassName.txt"),
    ("UCF101", {"with_split": False}, "ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/classInd.txt"),
    ("FGVCAircraft", {}, "variants.txt", "variants.txt"),
    ("ImageNetA", {}, "classnames.txt", "imagenet/classnames.txt"),
])
def test_missing_annotation_file(tmp_path, name, builder_kw, removed, expected):
    ddir = fake.BUILDERS[name](str(tmp_path), **builder_kw)
    os.remove(os.path.join(ddir, removed))
    message = _error(tmp_path, name)
    assert os.path.join(ddir, removed) in message and expected in message


def test_variant_falls_back_to_imagenet_classnames(tmp_path):
    ddir = fake.build_imagenet_r(str(tmp_path))
    os.makedirs(tmp_path / "imagenet")
    shutil.move(os.path.join(ddir, "classnames.txt"), tmp_path / "imagenet" / "classnames.txt")
    assert load(tmp_path, "ImageNetR").classnames == EXPECTED["ImageNetR"][0]


@pytest.mark.parametrize("name", ["OxfordPets", "UCF101"])
def test_missing_image_listed_in_split(tmp_path, name):
    ddir = fake.BUILDERS[name](str(tmp_path), with_split=True)
    victim = read_json(os.path.join(ddir, f"split_zhou_{name}.json"))["test"][0][0]
    image_dir = DATASET_REGISTRY.get(name).image_folder
    os.remove(os.path.join(ddir, image_dir, victim))
    message = _error(tmp_path, name)
    assert os.path.join(ddir, image_dir, victim) in message and f"split_zhou_{name}.json" in message


def test_imagenetv2_missing_numbered_folder(tmp_path):
    ddir = fake.build_imagenetv2(str(tmp_path))
    shutil.rmtree(os.path.join(ddir, "imagenetv2-matched-frequency-format-val", "3"))
    assert "imagenetv2-matched-frequency-format-val/3; expected folders 0..5" in _error(tmp_path, "ImageNetV2")


def test_too_few_images_to_split(tmp_path):
    ddir = fake.build_dtd(str(tmp_path), with_split=False)
    for name in os.listdir(os.path.join(ddir, "images", "bubbly"))[2:]:
        os.remove(os.path.join(ddir, "images", "bubbly", name))
    assert os.path.join(ddir, "images", "bubbly") in _error(tmp_path, "DescribableTextures")


# ------------------------------------------------------------------------------ templates, configs


def test_templates():
    assert set(EXPECTED) | {"ToyShapes"} == set(CUSTOM_TEMPLATES)
    fill = format_template
    assert fill(CUSTOM_TEMPLATES["UCF101"], "Apply_Eye_Makeup") == "a photo of a person doing Apply Eye Makeup."
    assert fill(CUSTOM_TEMPLATES["EuroSAT"], "Sea or Lake") == "a centered satellite photo of Sea or Lake."
    assert format_template(CUSTOM_TEMPLATES["Food101"], "apple_pie") == "a photo of apple pie, a type of food."
    assert format_template(CUSTOM_TEMPLATES["DescribableTextures"], "banded") == "banded texture."
    assert fill(CUSTOM_TEMPLATES["OxfordPets"], "basset_hound") == "a photo of a basset hound, a type of pet."
    assert len(IMAGENET_TEMPLATES) == len(set(IMAGENET_TEMPLATES)) == 80
    assert IMAGENET_TEMPLATES[0] == "a bad photo of a {}." and IMAGENET_TEMPLATES[-1] == "a tattoo of the {}."
    assert len(IMAGENET_TEMPLATES_SELECT) == 7 and set(IMAGENET_TEMPLATES_SELECT) <= set(IMAGENET_TEMPLATES)
    assert len(PROMPTSRC_TEMPLATES) == len(set(PROMPTSRC_TEMPLATES)) == 60
    assert PROMPTSRC_TEMPLATES[:2] == ["a photo of a {}.", "a bad photo of a {}."]
    assert PROMPTSRC_TEMPLATES[-1] == "itap of the {}." and set(PROMPTSRC_TEMPLATES) <= set(IMAGENET_TEMPLATES)
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES + list(CUSTOM_TEMPLATES.values()))


def test_dataset_config_files_name_registered_datasets():
    config_dir = os.path.join(os.path.dirname(__file__), "..", "configs", "datasets")
    for module, name in ((m, n) for n, m in MODULES.items()):
        cfg = get_cfg_default()
        merge_cfg_file(cfg, os.path.join(config_dir, f"{module}.yaml"))
        assert cfg.DATASET.NAME == name and name in DATASET_REGISTRY
