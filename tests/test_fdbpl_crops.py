"""TRAINER.FDBPL.CROPS_PER_IMAGE: several stored crops of one decoded image per step (FKD-style). Item e * N + n
serves the crops of schedule indices e * c .. e * c + c - 1 of image n, equal to what the one-crop replay serves
at those epochs; a step trains on B * c crops; 1 (the default) is the one-crop path itself."""

import numpy as np
import pytest
import torch

import train
from engine.errors import ConfigError
from engine.registry import build_dataset
from ril_tools.reader import RilTable
from ril_tools.replay import RilReplayDataset, build_ril_loader, flatten_crops
from tests.fixtures.fdbpl_world import RUN, M
from tests.fixtures.toy_data import toy_cfg
from tests.test_fdbpl import fdbpl_args


@pytest.fixture(scope="module")
def run_data(fdbpl_world):
    cfg = toy_cfg(fdbpl_world["root"], dict(RUN, **{"TRAINER.FDBPL.RIL_DIR": fdbpl_world["table"]}))
    return cfg, build_dataset(cfg).train_x, RilTable.open(fdbpl_world["table"])


def test_several_crops_per_item_are_the_one_crop_replays_of_consecutive_schedule_indices(run_data):
    cfg, items, table = run_data
    one = RilReplayDataset(cfg, items, table, schedule_seed=5)
    two = RilReplayDataset(cfg, items, table, schedule_seed=5, crops_per_image=2)
    n_items = len(items)
    for epoch in range(M // 2):
        for n in (0, n_items - 1):
            got = two[epoch * n_items + n]
            assert got["img"].shape[0] == 2 and got["ril_idx"].shape[0] == 2 and got["w"].shape == (2,)
            for j in range(2):
                want = one[(2 * epoch + j) * n_items + n]
                assert int(got["crop"][j]) == want["crop"]
                assert torch.equal(got["img"][j], want["img"]) and torch.equal(got["ril_idx"][j], want["ril_idx"])
                assert torch.equal(got["ril_logp"][j], want["ril_logp"]) and float(got["w"][j]) == float(want["w"])
    # M / 2 epochs of two crops read every stored crop of an image once
    seen = [int(c) for epoch in range(M // 2) for c in two[epoch * n_items]["crop"]]
    assert sorted(seen) == list(range(M))


def test_a_batch_of_several_crops_flattens_to_b_times_c_crops(run_data):
    cfg, items, table = run_data
    loader = build_ril_loader(cfg, items, table, seed=5, crops_per_image=3)
    loader.sampler.set_epoch(0)
    batch = next(iter(loader))
    b = len(batch["index"])
    flat = flatten_crops(batch)
    assert flat["img"].shape[0] == flat["ril_idx"].shape[0] == flat["w"].shape[0] == 3 * b
    assert torch.equal(flat["img"][3:6], batch["img"][1]) and torch.equal(flat["index"][:3], batch["index"][:1].repeat(3))
    assert flatten_crops(flat) is flat  # one crop per row already: unchanged


def make_trainer(world, out, *opts):
    from engine.trainer import build_trainer

    trainer = build_trainer(train.setup_cfg(train.build_parser().parse_args(fdbpl_args(world, out, *opts))))
    trainer.setup_ril_loader()
    return trainer


def test_a_step_trains_on_every_crop_of_the_batch(fdbpl_world, tmp_path):
    trainer = make_trainer(fdbpl_world, str(tmp_path / "c2"), "TRAINER.FDBPL.CROPS_PER_IMAGE", "2")
    trainer.before_epoch()
    batch = next(iter(trainer.train_loader_x))
    image, probs, labels, w = trainer.parse_batch_train(batch)
    assert image.shape[0] == probs.shape[0] == labels.shape[0] == w.shape[0] == 2 * len(batch["index"])
    before = trainer.model.prompt_learner.pos.ctx.detach().clone()
    out = trainer.forward_backward(batch)
    assert np.isfinite(out["loss"]) and not torch.equal(before, trainer.model.prompt_learner.pos.ctx)


@pytest.mark.parametrize("opts, words", [
    (("TRAINER.FDBPL.CROPS_PER_IMAGE", "0"), "CROPS_PER_IMAGE is 0; it must be an integer >= 1"),
    (("TRAINER.FDBPL.CROPS_PER_IMAGE", "2", "TRAINER.FDBPL.BASE", "CoCoOp"), "CROPS_PER_IMAGE 2 needs BASE CoOp"),
])
def test_bad_crops_per_image_is_refused(fdbpl_world, tmp_path, opts, words):
    with pytest.raises(ConfigError, match=words):
        make_trainer(fdbpl_world, str(tmp_path / "bad"), *opts)
