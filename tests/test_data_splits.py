"""CoOp split logic: few-shot draws, base/new subsampling, split JSON and few-shot cache round trips."""

import json
import os
import random

import pytest

from engine.config import get_cfg_default
from engine.data.base import (
    DatasetBase,
    generate_fewshot_dataset,
    split_dataset_by_label,
)
from engine.data.datum import Datum
from engine.data.splits import (
    fewshot_cache_path,
    fewshot_splits,
    make_split_or_read,
    read_and_split_data,
    read_split,
    save_split,
    split_trainval,
    subsample_classes,
)
from engine.errors import ConfigError, DatasetError


def _items(labels, prefix="/data/set/images"):
    return [Datum(f"{prefix}/c{y}/img{i}.jpg", y, classname=f"class{y}") for i, y in enumerate(labels)]


def _cfg(num_shots, seed=1):
    cfg = get_cfg_default()
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.SEED = seed
    return cfg


# ------------------------------------------------------------------------------------------- few-shot


def test_split_by_label_keeps_first_appearance_order():
    data = _items([2, 0, 2, 1, 0])
    groups = split_dataset_by_label(data)
    assert list(groups.keys()) == [2, 0, 1]
    assert groups[2] == [data[0], data[2]]


def test_fewshot_matches_random_sample_call_sequence():
    data = _items([0, 0, 0, 1, 1, 1, 1, 0, 2])  # label 2 has one image: fewer than K -> kept, no draw
    random.seed(1)
    got = generate_fewshot_dataset(data, num_shots=2)

    rng = random.Random(1)  # the same generator, driven by hand in CoOp's order
    by_label = {0: [data[i] for i in (0, 1, 2, 7)], 1: [data[i] for i in (3, 4, 5, 6)]}
    expected = rng.sample(by_label[0], 2) + rng.sample(by_label[1], 2) + [data[8]]
    assert got == expected
    # The global stream is left exactly where CoOp's would be (no extra draws).
    assert random.random() == rng.random()


def test_fewshot_repeat_uses_choices_and_k_below_one_is_identity():
    data = _items([0, 1, 1, 1])
    random.seed(3)
    got = generate_fewshot_dataset(data, num_shots=3, repeat=True)
    rng = random.Random(3)
    assert got == rng.choices([data[0]], k=3) + rng.sample(data[1:], 3)
    assert generate_fewshot_dataset(data, num_shots=-1) is data
    a, b = _items([0]), _items([1])
    assert generate_fewshot_dataset(a, b, num_shots=0) == (a, b)
    # The method form works before __init__, as CoOp's dataset modules call it.
    assert DatasetBase.__new__(DatasetBase).generate_fewshot_dataset(data, num_shots=-1) is data


def test_fewshot_splits_draws_train_then_val_caches_and_reloads(tmp_path, capsys):
    image_dir = str(tmp_path / "images")
    train = _items([0] * 6 + [1] * 6, prefix=image_dir)
    val = _items([0] * 5 + [1] * 5, prefix=image_dir)
    cfg = _cfg(num_shots=3, seed=7)

    random.seed(7)
    new_train, new_val = fewshot_splits(cfg, str(tmp_path), train, val, image_dir=image_dir)
    rng = random.Random(7)
    exp_train = rng.sample(train[:6], 3) + rng.sample(train[6:], 3)
    exp_val = rng.sample(val[:5], 3) + rng.sample(val[5:], 3)  # min(K, 4) = 3
    assert new_train == exp_train and new_val == exp_val

    path = fewshot_cache_path(str(tmp_path), 3, 7)
    assert path.endswith(os.path.join("split_fewshot", "shot_3-seed_7.json"))
    data = json.loads(open(path).read())
    assert data["format"] == "fdbpl-fewshot" and data["version"] == 1
    assert data["train"][0] == [os.path.relpath(exp_train[0].impath, image_dir), exp_train[0].label, "class0"]
    assert "Saving preprocessed few-shot data to" in capsys.readouterr().out

    random.seed(12345)  # a reload must not depend on the random state
    again = fewshot_splits(cfg, str(tmp_path), train, val, image_dir=image_dir)
    assert again == (exp_train, exp_val)
    assert "Loading preprocessed few-shot data from" in capsys.readouterr().out


def test_fewshot_splits_val_shots_option_none_val_and_full_data(tmp_path):
    train = _items([0] * 8)
    val = _items([0] * 8)
    _, new_val = fewshot_splits(_cfg(8), str(tmp_path / "a"), train, val, num_val_shots=2)
    assert len(new_val) == 2
    new_train, none_val = fewshot_splits(_cfg(5), str(tmp_path / "b"), train, None)
    assert len(new_train) == 5 and none_val is None
    assert fewshot_splits(_cfg(-1), str(tmp_path / "c"), train, val) == (train, val)
    assert not os.path.exists(tmp_path / "c")


def test_fewshot_cache_of_wrong_format_is_an_error(tmp_path):
    path = fewshot_cache_path(str(tmp_path), 1, 1)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump({"train": []}, f)
    with pytest.raises(DatasetError, match="shot_1-seed_1.json"):
        fewshot_splits(_cfg(1), str(tmp_path), _items([0]), _items([0]))


# ----------------------------------------------------------------------------------------- subsample


def test_subsample_five_classes_base_and_new():
    train = _items([0, 1, 2, 3, 4, 4])
    test = _items([4, 3, 2, 1, 0])
    base_train, base_test = subsample_classes(train, test, subsample="base")
    assert sorted({d.label for d in base_train}) == [0, 1, 2]
    assert [(d.label, d.classname) for d in base_test] == [(2, "class2"), (1, "class1"), (0, "class0")]
    new_train, new_test = subsample_classes(train, test, subsample="new")
    assert [(d.label, d.classname) for d in new_train] == [(0, "class3"), (1, "class4"), (1, "class4")]
    assert [d.label for d in new_test] == [1, 0]


def test_subsample_uses_labels_of_first_set_only_and_resets_domain():
    train = [Datum(f"/x/{y}.jpg", y, domain=3, classname=f"c{y}") for y in (7, 0, 5, 1, 3)]
    val = _items([2, 3, 7])  # label 2 is not in train: dropped from both halves
    (base_train, base_val) = subsample_classes(train, val, subsample="base")
    assert {(d.classname, d.label) for d in base_train} == {("c0", 0), ("c1", 1), ("c3", 2)}
    assert all(d.domain == 0 for d in base_train)
    assert [(d.classname, d.label) for d in base_val] == [("class3", 2)]
    (_, new_val) = subsample_classes(train, val, subsample="new")
    assert [(d.classname, d.label) for d in new_val] == [("class7", 1)]


def test_subsample_all_is_identity_and_bad_value_is_config_error():
    a, b = _items([0, 1]), _items([1])
    assert subsample_classes(a, b, subsample="all") == (a, b)
    with pytest.raises(ConfigError, match="SUBSAMPLE_CLASSES"):
        subsample_classes(a, subsample="base2")


# ---------------------------------------------------------------------------------------- split JSON


def test_split_json_round_trip_and_format(tmp_path):
    image_dir = str(tmp_path / "images")
    train, val, test = _items([0, 1], image_dir), _items([1], image_dir), _items([0, 0], image_dir)
    path = str(tmp_path / "split.json")
    save_split(train, val, test, path, image_dir)
    raw = json.loads(open(path).read())
    assert raw["val"] == [["c1/img0.jpg", 1, "class1"]]
    assert open(path).read().startswith('{\n    "train": [')  # indent=4, as CoOp's files
    assert read_split(path, image_dir) == (train, val, test)
    # The same relative paths resolve under another image folder (a moved dataset).
    moved = read_split(path, "/elsewhere/images")
    assert moved[0][0].impath == "/elsewhere/images/c0/img0.jpg"


def test_read_split_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="missing.json"):
        read_split(str(tmp_path / "missing.json"), str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": [], "val": []}')
    with pytest.raises(DatasetError, match="no 'test' list"):
        read_split(str(bad), str(tmp_path))


def test_make_split_or_read_calls_maker_once(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return _items([0], "/i"), _items([0], "/i"), _items([0], "/i")

    path = str(tmp_path / "s.json")
    first = make_split_or_read(path, "/i", make)
    second = make_split_or_read(path, "/i", make)
    assert first == second and len(calls) == 1


# ------------------------------------------------------------------------------------- random splits


def test_split_trainval_known_answer():
    trainval = _items([0] * 5 + [1] * 10)
    random.seed(0)
    train, val = split_trainval(trainval, p_val=0.2)
    rng = random.Random(0)
    idx0, idx1 = list(range(5)), list(range(5, 15))
    rng.shuffle(idx0)
    rng.shuffle(idx1)
    assert val == [trainval[i] for i in idx0[:1] + idx1[:2]]
    assert train == [trainval[i] for i in idx0[1:] + idx1[2:]]
    with pytest.raises(DatasetError, match="class1"):
        split_trainval(_items([1]), p_val=0.2)


def test_read_and_split_data_sorted_and_renamed(tmp_path):
    for cat, n in (("b_cat", 10), ("a_cat", 10), ("skip", 10)):
        os.makedirs(tmp_path / cat)
        for i in range(n):
            (tmp_path / cat / f"{i:02d}.jpg").write_bytes(b"x")
    random.seed(5)
    train, val, test = read_and_split_data(str(tmp_path), ignored=["skip"], new_cnames={"b_cat": "bee cat"})
    assert (len(train), len(val), len(test)) == (10, 4, 6)
    assert {(d.label, d.classname) for d in train} == {(0, "a_cat"), (1, "bee cat")}
    rng = random.Random(5)
    a_imgs = [str(tmp_path / "a_cat" / f"{i:02d}.jpg") for i in range(10)]
    rng.shuffle(a_imgs)
    assert [d.impath for d in train[:5]] == a_imgs[:5]
    with pytest.raises(DatasetError, match="too few"):
        os.makedirs(tmp_path / "tiny" / "c")
        (tmp_path / "tiny" / "c" / "x.jpg").write_bytes(b"x")
        read_and_split_data(str(tmp_path / "tiny"))
