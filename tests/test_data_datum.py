"""Datum and reading CoOp/Dassl pickles (few-shot .pkl, ImageNet preprocessed.pkl) without Dassl."""

import os
import pickle
import random
import sys
import types

import pytest

from engine.config import get_cfg_default
from engine.data.datum import Datum, load_legacy_pickle, reroot_path
from engine.data.splits import fewshot_cache_path, fewshot_splits
from engine.errors import DatasetError


class _DasslDatum:
    """Stand-in for dassl.data.datasets.base_dataset.Datum: same attribute names."""

    def __init__(self, impath="", label=0, domain=0, classname=""):
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname


@pytest.fixture
def fake_dassl(monkeypatch):
    """Register a fake ``dassl.data.datasets.base_dataset`` module so pickle writes Dassl's class path."""
    names = ["dassl", "dassl.data", "dassl.data.datasets", "dassl.data.datasets.base_dataset"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    _DasslDatum.__module__ = "dassl.data.datasets.base_dataset"
    _DasslDatum.__qualname__ = "Datum"
    sys.modules["dassl.data.datasets.base_dataset"].Datum = _DasslDatum
    return _DasslDatum


def _write_pickle(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def test_datum_is_read_only_and_does_not_stat():
    d = Datum("/does/not/exist.jpg", 3, classname="red circle")  # no error: files are checked when read
    assert (d.impath, d.label, d.domain, d.classname) == ("/does/not/exist.jpg", 3, 0, "red circle")
    with pytest.raises(AttributeError):
        d.label = 4
    assert pickle.loads(pickle.dumps(d)) == d
    with pytest.raises(TypeError):
        Datum(123)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_legacy_pickle_rerooted(tmp_path, fake_dassl, protocol):
    new_dir = tmp_path / "new" / "oxford_pets"
    (new_dir / "images").mkdir(parents=True)
    old = "/old/machine/DATA/oxford_pets/images"
    obj = {
        "train": [fake_dassl(f"{old}/a.jpg", 0, 0, "abyssinian"), fake_dassl(f"{old}/b.jpg", 1, 0, "beagle")],
        "val": [fake_dassl("/other/place/c.jpg", 1, 2, "beagle")],
    }
    path = tmp_path / "shot_1-seed_1.pkl"
    _write_pickle(path, obj, protocol)

    data = load_legacy_pickle(str(path), root=str(new_dir))
    assert data["train"] == [
        Datum(str(new_dir / "images" / "a.jpg"), 0, 0, "abyssinian"),
        Datum(str(new_dir / "images" / "b.jpg"), 1, 0, "beagle"),
    ]
    # Not under a folder named like the dataset: left as it was.
    assert data["val"] == [Datum("/other/place/c.jpg", 1, 2, "beagle")]
    # Without a root, paths are kept.
    assert load_legacy_pickle(str(path))["train"][0].impath == f"{old}/a.jpg"


def test_reroot_keeps_paths_whose_old_folder_exists(tmp_path):
    existing = tmp_path / "here" / "eurosat"
    existing.mkdir(parents=True)
    path = str(existing / "2750" / "x.jpg")
    assert reroot_path(path, str(tmp_path / "there" / "eurosat")) == path
    moved = reroot_path("/gone/eurosat/2750/x.jpg", str(tmp_path / "there" / "eurosat"))
    assert moved == str(tmp_path / "there" / "eurosat" / "2750" / "x.jpg")


def test_legacy_pickle_refuses_other_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pkl"
    _write_pickle(path, {"train": [Evil()]})
    with pytest.raises(DatasetError, match="evil.pkl"):
        load_legacy_pickle(str(path))
    with pytest.raises(DatasetError, match="not found"):
        load_legacy_pickle(str(tmp_path / "none.pkl"))


def test_fewshot_splits_reads_coop_pickle_when_no_json(tmp_path, fake_dassl, capsys):
    dataset_dir = tmp_path / "dtd"
    pkl = fewshot_cache_path(str(dataset_dir), 2, 1, "pkl")
    os.makedirs(os.path.dirname(pkl))
    old = "/home/someone/data/dtd/images"
    obj = {
        "train": [fake_dassl(f"{old}/banded/1.jpg", 0, 0, "banded")],
        "val": [fake_dassl(f"{old}/banded/2.jpg", 0, 0, "banded")],
    }
    _write_pickle(pkl, obj)
    cfg = get_cfg_default()
    cfg.DATASET.NUM_SHOTS, cfg.SEED = 2, 1
    random.seed(0)
    train, val = fewshot_splits(cfg, str(dataset_dir), [], [])
    assert train == [Datum(str(dataset_dir / "images" / "banded" / "1.jpg"), 0, 0, "banded")]
    assert val[0].impath.endswith(os.path.join("dtd", "images", "banded", "2.jpg"))
    assert "Loading preprocessed few-shot data from" in capsys.readouterr().out
    assert not os.path.exists(fewshot_cache_path(str(dataset_dir), 2, 1))  # nothing rewritten
