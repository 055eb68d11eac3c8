"""DataManager / DatasetWrapper / build_data_loader on ToyShapes and on hand-made image lists."""

import json
import os

import pytest
import torch
from PIL import Image

import datasets.toyshapes  # noqa: F401  (registers ToyShapes)
from datasets.toyshapes import CLASSNAMES
from engine.data.datum import Datum
from engine.data.manager import DataManager, DatasetWrapper, build_data_loader
from engine.data.transforms import build_transform
from engine.errors import ConfigError, DatasetError
from tests.fixtures.toy_data import make_toyshapes, shared_toyshapes_root, toy_cfg


@pytest.fixture(scope="module")
def toy_root():
    return shared_toyshapes_root()


def _images(tmp_path, n, size=(20, 12)):
    items = []
    for i in range(n):
        path = str(tmp_path / f"img{i}.png")
        Image.new("RGB", size, (i * 20 % 256, 100, 50)).save(path)
        items.append(Datum(path, label=i % 3, classname=f"c{i % 3}"))
    return items


def test_datamanager_on_toyshapes_batches_and_properties(toy_root):
    cfg = toy_cfg(toy_root)
    dm = DataManager(cfg)
    assert dm.num_classes == 64 and dm.num_source_domains == 0
    assert [dm.lab2cname[i] for i in range(64)] == list(CLASSNAMES)
    assert dm.dataset.classnames == list(CLASSNAMES)
    assert (len(dm.dataset.train_x), len(dm.dataset.val), len(dm.dataset.test)) == (256, 128, 192)
    batch = next(iter(dm.train_loader_x))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].shape == (8, 3, 32, 32)
    test_batch = next(iter(dm.test_loader))  # sequential: the first test items in order
    assert test_batch["index"].tolist() == list(range(16))
    assert test_batch["impath"][0] == dm.dataset.test[0].impath
    assert dm.val_loader is not None and dm.train_loader_u is None


def test_datamanager_base_fewshot_and_summary(tmp_path, capsys):
    make_toyshapes(tmp_path)
    cfg = toy_cfg(tmp_path, {"DATASET.NUM_SHOTS": 2, "DATASET.SUBSAMPLE_CLASSES": "new", "VERBOSE": True})
    dm = DataManager(cfg)
    assert dm.num_classes == 32 and dm.dataset.classnames == list(CLASSNAMES[32:])
    assert len(dm.dataset.train_x) == 64 and len(dm.dataset.test) == 96
    out = capsys.readouterr().out
    assert "# classes  32" in out and "# train_x  64" in out


def test_no_image_lost_to_drop_last(tmp_path):
    cfg = toy_cfg(tmp_path)
    data = _images(tmp_path, 10)
    tfm = build_transform(cfg, is_train=True)
    loader = build_data_loader(cfg, "RandomSampler", data, batch_size=4, tfm=tfm, is_train=True)
    sizes, seen = [], []
    for batch in loader:
        sizes.append(len(batch["index"]))
        seen += batch["index"].tolist()
    assert sizes == [4, 4, 2] and sorted(seen) == list(range(10)) and len(loader) == 3


def test_wrapper_multiple_views_k_transforms_and_img0(tmp_path):
    data = _images(tmp_path, 2)
    cfg = toy_cfg(tmp_path, {"DATALOADER.K_TRANSFORMS": 2, "DATALOADER.RETURN_IMG0": True})
    train_tfm, test_tfm = build_transform(cfg, True), build_transform(cfg, False)
    out = DatasetWrapper(cfg, data, transform=[train_tfm, test_tfm], is_train=True)[1]
    assert set(out) == {"img", "img2", "img0", "label", "domain", "impath", "index"}
    assert isinstance(out["img"], list) and len(out["img"]) == 2 and out["img"][0].shape == (3, 32, 32)
    assert out["index"] == 1 and out["label"] == 1 and out["img0"].shape == (3, 32, 32)
    single = DatasetWrapper(cfg, data, transform=test_tfm, is_train=False)[0]  # K applies to training only
    assert torch.is_tensor(single["img"])
    assert isinstance(DatasetWrapper(cfg, data)[0]["img"], Image.Image)
    with pytest.raises(ConfigError, match="K_TRANSFORMS"):
        DatasetWrapper(cfg, data, transform=None, is_train=True)


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_is_dataset_error_naming_it(tmp_path, workers):
    data = _images(tmp_path, 3)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    data[1] = Datum(str(bad), 1, classname="c1")
    cfg = toy_cfg(tmp_path, {"DATALOADER.NUM_WORKERS": workers})
    tfm = build_transform(cfg, False)
    loader = build_data_loader(cfg, "SequentialSampler", data, batch_size=2, tfm=tfm, is_train=False)
    with pytest.raises(DatasetError) as info:
        list(loader)
    message = str(info.value)
    assert str(bad) in message and "\n" not in message


def test_empty_split_errors(tmp_path):
    cfg = toy_cfg(tmp_path)
    with pytest.raises(DatasetError, match="split 'val' is empty"):
        build_data_loader(cfg, data_source=[], name="split 'val'")
    make_toyshapes(tmp_path)
    split_path = os.path.join(tmp_path, "toyshapes", "split_toyshapes.json")
    split = json.loads(open(split_path).read())
    split["test"] = []
    with open(split_path, "w") as f:
        json.dump(split, f)
    with pytest.raises(DatasetError, match=r"ToyShapes split 'test' \(dataset folder .*toyshapes\) is empty"):
        DataManager(cfg)


def test_missing_toyshapes_names_the_command(tmp_path):
    with pytest.raises(DatasetError, match=r"python -m datasets\.toyshapes_render --root"):
        DataManager(toy_cfg(tmp_path / "nothing"))


def test_custom_transforms_and_wrapper_are_used(toy_root, capsys):
    class TaggedWrapper(DatasetWrapper):
        def __getitem__(self, idx):
            out = super().__getitem__(idx)
            out["tag"] = 7
            return out

    custom = build_transform(toy_cfg(toy_root, {"INPUT.SIZE": (24, 24)}), is_train=False)
    cfg = toy_cfg(toy_root, {"VERBOSE": True})
    dm = DataManager(cfg, custom_tfm_train=custom, custom_tfm_test=custom, dataset_wrapper=TaggedWrapper)
    batch = next(iter(dm.train_loader_x))
    assert batch["img"].shape[-1] == 24 and batch["tag"].tolist() == [7] * 8
    assert "* Using custom transform for training" in capsys.readouterr().out
