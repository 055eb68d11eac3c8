"""Cached student features: the same losses as decoding + encoding each crop, and refusals of a wrong key.

The features are computed with ``python -m ril_tools.student_features`` (in-process) into a copy of the
shared tiny-world table; float32 storage for the 1e-5 equivalence, float16 (the default) within 2e-3.
"""

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch

import train
from engine.errors import ConfigError, RilError
from ril_tools import format as fmt
from tests.fixtures.fdbpl_world import REPO
from tests.test_fdbpl import fdbpl_args

FDBPL_YAML = os.path.join(REPO, "configs/trainers/FDBPL/toyshapes.yaml")
TOY_YAML = os.path.join(REPO, "configs/datasets/toyshapes.yaml")


@pytest.fixture(scope="module")
def world(fdbpl_world):
    return fdbpl_world


def feature_args(world, table, *extra):
    return ["--table", table, "--root", world["root"], "--seed", "1", "--dataset-config-file", TOY_YAML,
            "--config-file", FDBPL_YAML, "--batch-size", "7", *extra,
            "MODEL.BACKBONE.NAME", world["student"], "INPUT.SIZE", "(32, 32)"]


@pytest.fixture(scope="module")
def cached_tables(world, tmp_path_factory):
    """{dtype: copy of the base table with student features of that dtype}."""
    from ril_tools import student_features

    out = {}
    for dtype in ("float32", "float16"):
        table = str(tmp_path_factory.mktemp("cached") / f"ril_{dtype}")
        shutil.copytree(world["table"], table)
        student_features.main(feature_args(world, table, "--dtype", dtype))
        out[dtype] = table
    return out


def make_trainer(world, out, table, *opts):
    from engine.trainer import build_trainer

    args = train.build_parser().parse_args(fdbpl_args(world, out, *opts, ril=table))
    trainer = build_trainer(train.setup_cfg(args))
    trainer.setup_ril_loader()
    return trainer


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float16", 2e-3)])
def test_training_from_cached_features_gives_the_same_losses(world, cached_tables, tmp_path, dtype, tol):
    table = cached_tables[dtype]
    plain = make_trainer(world, str(tmp_path / "plain"), table)
    cached = make_trainer(world, str(tmp_path / "cached"), table, "TRAINER.FDBPL.CACHED_FEATURES", "True")
    steps = 0
    for epoch in range(3):  # several epochs: different crops, and prompts that moved
        for trainer in (plain, cached):
            trainer.epoch = epoch
            trainer.before_epoch()
        for a, b in zip(plain.train_loader_x, cached.train_loader_x):
            assert "img" not in b and b["feat"].shape[0] == len(a["img"]) and b["feat"].dtype == torch.float32
            assert torch.equal(a["crop"], b["crop"]) and torch.equal(a["ril_idx"], b["ril_idx"])
            got_plain, got_cached = plain.forward_backward(a), cached.forward_backward(b)
            for key, value in got_plain.items():
                assert got_cached[key] == pytest.approx(value, abs=tol, rel=tol), (epoch, key)
            steps += 1
    assert steps >= 3
    ctx_a, ctx_b = plain.model.prompt_learner.pos.ctx, cached.model.prompt_learner.pos.ctx
    assert torch.allclose(ctx_a, ctx_b, atol=tol * 10)


def test_cached_step_runs_no_image_encoder_and_reads_no_image(world, cached_tables, tmp_path, monkeypatch):
    trainer = make_trainer(world, str(tmp_path / "c"), cached_tables["float16"], "TRAINER.FDBPL.CACHED_FEATURES",
                           "True")

    def forbidden(*a, **k):
        raise AssertionError("the cached step must not decode images or run the image encoder")

    monkeypatch.setattr(trainer.model.image_encoder, "forward", forbidden)
    monkeypatch.setattr("ril_tools.replay.read_image", forbidden)
    trainer.before_epoch()
    got = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert np.isfinite(got["loss"])
    dataset = trainer.train_loader_x.dataset  # a feature row read in training is checked (large files are
    dataset.features = np.full_like(np.asarray(dataset.features), np.nan)  # not scanned at open)
    with pytest.raises(RilError, match="cached student feature of image .* is not finite"):
        dataset[0]


def test_cached_training_drops_the_image_tower_and_evaluation_loads_it_again(world, cached_tables, tmp_path):
    """The step needs no image tower, so its weights are not resident while training (peak memory below CoOp's);
    evaluation loads the same weights again and gives what a model that kept them gives."""
    cached = make_trainer(world, str(tmp_path / "c"), cached_tables["float16"], "TRAINER.FDBPL.CACHED_FEATURES",
                          "True")
    assert cached.model.image_encoder.visual is None
    assert not any(name.startswith("image_encoder.") for name, _ in cached.model.named_parameters())
    cached.before_epoch()
    for batch in cached.train_loader_x:
        cached.forward_backward(batch)
    plain = make_trainer(world, str(tmp_path / "p"), cached_tables["float16"])
    plain.model.prompt_learner.load_state_dict(cached.model.prompt_learner.state_dict())
    assert cached.test() == plain.test()  # reloaded, checked against the features' weights hash
    assert cached.model.image_encoder.visual is not None
    want = {n: p.clone() for n, p in plain.model.image_encoder.state_dict().items()}
    got = cached.model.image_encoder.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[n], got[n]) for n in want)
    assert not any(p.requires_grad for p in cached.model.image_encoder.parameters())
    cached.epoch = 1
    cached.before_epoch()  # the next epoch trains without it again
    assert cached.model.image_encoder.visual is None


def test_a_replaced_student_file_is_refused_when_evaluation_loads_the_tower_again(world, cached_tables, tmp_path):
    cached = make_trainer(world, str(tmp_path / "c"), cached_tables["float16"], "TRAINER.FDBPL.CACHED_FEATURES",
                          "True")
    cached._image_tower["hash"] = "xxh3_128:0"  # as if the weight file changed since training started
    with pytest.raises(RilError, match="is not the one training started with") as err:
        cached.test()
    assert "\n" not in str(err.value)


def test_stored_features_equal_the_encoded_replay(world, cached_tables, tmp_path):
    """Known answer: row image_id * M + crop is image_features(replayed crop)."""
    trainer = make_trainer(world, str(tmp_path / "p"), cached_tables["float32"])
    entry = read_manifest(cached_tables["float32"])["student_features"][0]
    feats = np.load(os.path.join(cached_tables["float32"], entry["file"]), mmap_mode="r")
    trainer.before_epoch()
    batch = next(iter(trainer.train_loader_x))
    with torch.no_grad():
        want = trainer.model.image_features(batch["img"]).numpy()
    ids = trainer.train_loader_x.dataset.image_ids[batch["index"].numpy()]
    rows = ids * trainer.ril_table.num_crops + batch["crop"].numpy()
    assert np.allclose(feats[rows], want, atol=1e-5)


def read_manifest(table):
    with open(os.path.join(table, fmt.MANIFEST)) as f:
        return json.load(f)


def _edit_key(table, **changes):
    manifest = read_manifest(table)
    manifest["student_features"][0]["key"].update(changes)
    with open(os.path.join(table, fmt.MANIFEST), "w") as f:
        json.dump(manifest, f)


@pytest.mark.parametrize("field, value", [("weights_hash", "xxh3_128:0"), ("input_size", [64, 64]),
                                          ("interpolation", "bilinear"), ("mean", [0.5, 0.5, 0.5])])
def test_features_of_another_student_or_preprocessing_are_refused(world, cached_tables, tmp_path, field, value):
    table = str(tmp_path / "t")
    shutil.copytree(cached_tables["float16"], table)
    _edit_key(table, **{field: value})
    with pytest.raises(RilError, match=f"another student or preprocessing \\({field} ") as exc:
        make_trainer(world, str(tmp_path / "o"), table, "TRAINER.FDBPL.CACHED_FEATURES", "True")
    assert "\n" not in str(exc.value) and "ril_tools.student_features" in str(exc.value)


def test_missing_or_damaged_features_are_refused(world, cached_tables, tmp_path):
    with pytest.raises(RilError, match="has no cached student features"):
        make_trainer(world, str(tmp_path / "a"), world["table"], "TRAINER.FDBPL.CACHED_FEATURES", "True")
    table = str(tmp_path / "t")
    shutil.copytree(cached_tables["float16"], table)
    name = read_manifest(table)["student_features"][0]["file"]
    feats = np.load(os.path.join(table, name))
    with open(os.path.join(table, name), "r+b") as f:  # flip one feature value, tag left intact
        f.seek(128 + 2 * 5)
        f.write(np.float16(7.0).tobytes())
    with pytest.raises(RilError, match="do not match their checksum"):
        make_trainer(world, str(tmp_path / "b"), table, "TRAINER.FDBPL.CACHED_FEATURES", "True")
    from ril_tools.verify import verify_table

    verify_table(cached_tables["float16"])  # python -m ril_tools.verify covers the feature file too
    with pytest.raises(RilError, match="do not match their checksum"):
        verify_table(table)
    from ril_tools.student_features import check_feature_values

    feats[3, 0] = np.nan
    with pytest.raises(RilError, match="row 3 is not a finite unit vector"):
        check_feature_values(feats, "x.npy")


def test_vision_prompt_base_is_refused(world, tmp_path):
    from engine.trainer import build_trainer

    args = train.build_parser().parse_args(fdbpl_args(world, str(tmp_path), "TRAINER.FDBPL.BASE", "PromptSRC",
                                                      "TRAINER.FDBPL.CACHED_FEATURES", "True"))
    with pytest.raises(ConfigError, match=re.escape("CACHED_FEATURES True needs BASE CoOp")):
        build_trainer(train.setup_cfg(args))


def test_features_do_not_depend_on_loader_workers_or_batch(world, cached_tables, tmp_path):
    """The crops are decoded and cut in loader workers (DATALOADER.NUM_WORKERS 2 in the config): the same features
    as in the main process with another forward batch (up to float32 rounding of the other batch size)."""
    from ril_tools import student_features

    table = str(tmp_path / "ril")
    shutil.copytree(world["table"], table)
    for name in os.listdir(table):
        if name.startswith("student_features"):
            os.remove(os.path.join(table, name))
    args = feature_args(world, table, "--dtype", "float32", "DATALOADER.NUM_WORKERS", "0")
    args[args.index("--batch-size") + 1] = "3"
    student_features.main(args)

    def features(path):
        with open(os.path.join(path, fmt.MANIFEST)) as f:
            entry = json.load(f)["student_features"][0]
        return np.load(os.path.join(path, entry["file"]))

    main_process, in_workers = features(table), features(cached_tables["float32"])
    assert main_process.shape == in_workers.shape and main_process.shape[0] > 7
    np.testing.assert_allclose(main_process, in_workers, rtol=0, atol=1e-6)
    assert not np.array_equal(main_process[:4], main_process[4:8])  # distinct crops, distinct features
