"""Small helpers: files, JSON, images, seeds, meters, accuracy."""

import json
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from engine import utils
from engine.errors import DatasetError
from engine.utils import (
    AverageMeter,
    MetricMeter,
    atomic_write_bytes,
    check_isfile,
    compute_accuracy,
    count_num_param,
    format_eta,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    tolist_if_not,
    write_json,
)


def test_write_json_format_and_round_trip(tmp_path):
    path = tmp_path / "a" / "b" / "split.json"
    obj = {"train": [["x/1.jpg", 0, "cat"]], "val": []}
    write_json(obj, str(path))
    text = path.read_text()
    assert text == json.dumps(obj, indent=4, separators=(",", ": "))
    assert read_json(str(path)) == obj
    assert [p for p in os.listdir(path.parent)] == ["split.json"]  # no temporary file left


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(str(path), b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(str(path), b"new content")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]
    # The final file gets the usual permissions (0666 minus umask), not mkstemp's private 0600.
    assert os.stat(path).st_mode & 0o777 == utils._FILE_MODE


def test_listdir_and_mkdir(tmp_path):
    for name in ("b", "a", ".hidden"):
        (tmp_path / name).write_text("")
    assert listdir_nohidden(str(tmp_path), sort=True) == ["a", "b"]
    assert sorted(listdir_nohidden(str(tmp_path))) == ["a", "b"]
    mkdir_if_missing(str(tmp_path / "x" / "y"))
    mkdir_if_missing(str(tmp_path / "x" / "y"))
    assert (tmp_path / "x" / "y").is_dir()
    assert check_isfile(str(tmp_path / "a"))
    with pytest.warns(UserWarning, match="No file found"):
        assert not check_isfile(str(tmp_path / "missing"))


def test_read_image(tmp_path):
    path = tmp_path / "img.png"
    Image.new("L", (4, 3), color=128).save(path)
    img = read_image(str(path))
    assert img.mode == "RGB" and img.size == (4, 3) and img.getpixel((0, 0)) == (128, 128, 128)

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="bad.jpg"):
        read_image(str(bad))
    with pytest.raises(DatasetError, match="image not found: .*nope.jpg"):
        read_image(str(tmp_path / "nope.jpg"))


def test_tolist_if_not():
    assert tolist_if_not(3) == [3]
    assert tolist_if_not([3]) == [3]


def test_set_random_seed_repeats_all_generators():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    set_random_seed(5)
    first = draw()
    set_random_seed(5)
    assert draw() == first


def test_meters():
    meter = AverageMeter()
    meter.update(2.0)
    meter.update(torch.tensor(4.0), n=3)
    assert meter.val == 4.0 and meter.count == 4 and meter.avg == pytest.approx(3.5)
    ema = AverageMeter(ema=True)
    ema.update(10.0)
    assert ema.avg == pytest.approx(1.0)

    mm = MetricMeter()
    mm.update({"loss": 1.5, "acc": torch.tensor(50.0)})
    mm.update({"loss": 0.5, "acc": 40.0})
    assert str(mm) == "loss 0.5000 (1.0000) acc 40.0000 (45.0000)"
    with pytest.raises(TypeError):
        mm.update([1.0])


def test_compute_accuracy():
    output = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.3, 0.4, 0.35]])
    target = torch.tensor([1, 0, 0, 2])
    top1, top2 = compute_accuracy(output, target, topk=(1, 2))
    assert top1.item() == pytest.approx(50.0)  # rows 0, 1 right
    assert top2.item() == pytest.approx(75.0)  # row 3: top-2 is {1, 2}
    assert compute_accuracy((output, None), target)[0].item() == pytest.approx(50.0)


def test_count_num_param_and_eta():
    model = torch.nn.Linear(3, 2)
    assert count_num_param(model) == 8
    assert count_num_param(params=[torch.zeros(2, 2)]) == 4
    assert format_eta(0) == "0:00:00"
    assert format_eta(3725.7) == "1:02:05"
    assert format_eta(90061) == "25:01:01"
