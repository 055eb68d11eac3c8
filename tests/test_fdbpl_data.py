"""FDBPL replay data: epoch-carrying sampler, known-answer crops, worker processes, table checks and errors.

The world: the ``fdbpl_world`` fixture (tests/fixtures/fdbpl_world.py), shared with test_fdbpl.py and
test_promptsrc_variants.py.
"""

import os
import re
import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import ConfigError, RilError
from engine.registry import build_dataset
from engine.utils import read_image
from ril_tools.crops import crop_schedule, image_keys, sample_crops
from ril_tools.reader import RilTable
from ril_tools.replay import (
    EpochSampler,
    RilReplayDataset,
    build_ril_loader,
    teacher_targets,
)
from ril_tools.table_check import open_ril_table, rebuild_command
from tests.fixtures.fdbpl_world import RUN, K, M, build_table
from tests.fixtures.toy_data import toy_cfg


@pytest.fixture(scope="module")
def world(fdbpl_world):
    return fdbpl_world


@pytest.fixture(scope="module")
def run_data(world):
    """(cfg, train items, class names, opened table) of the base-class run the table was built for."""
    cfg = toy_cfg(world["root"], dict(RUN, **{"TRAINER.FDBPL.RIL_DIR": world["table"]}))
    dataset = build_dataset(cfg)
    return cfg, dataset.train_x, dataset.classnames, RilTable.open(world["table"])


def test_sampler_encodes_the_epoch_and_depends_only_on_seed_and_epoch():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    assert len(sampler) == 10 and sorted(first) == list(range(20, 30))
    again = EpochSampler(10, seed=3)
    again.set_epoch(2)
    assert list(again) == first  # a resumed run gets the same order
    sampler.set_epoch(3)
    assert sorted(x - 30 for x in sampler) == list(range(10)) and [x - 30 for x in sampler] != [x - 20 for x in first]
    fixed = EpochSampler(4, seed=3, shuffle=False)
    fixed.set_epoch(1)
    assert list(fixed) == [4, 5, 6, 7]
    with pytest.raises(ConfigError):
        EpochSampler(0, seed=1)


def test_served_crop_equals_the_hand_computed_crop(run_data):
    """Known answer: crop m(e, n) of image n, cut and flipped by hand from the build's own crop draw."""
    cfg, items, _, table = run_data
    dataset = RilReplayDataset(cfg, items, table, schedule_seed=1)
    n_items = len(items)
    mean, std = np.array(cfg.INPUT.PIXEL_MEAN), np.array(cfg.INPUT.PIXEL_STD)
    flips_seen = set()
    for epoch, n in [(0, 0), (1, 0), (2, 5), (3, 17), (6, n_items - 1)] + [(e, 9) for e in range(M)]:
        item = dataset[epoch * n_items + n]
        rel = os.path.relpath(items[n].impath, cfg.DATASET.ROOT)
        image_id = table.relpaths.index(rel)
        key = image_keys([rel])[0]  # crops and schedule are keyed by the image's path (scheme v2)
        crop = int(crop_schedule(1, epoch, [key], M)[0])
        assert (item["index"], item["epoch"], item["crop"]) == (n, epoch, crop)
        pil = read_image(items[n].impath)
        boxes, flips = sample_crops(1, key, pil.height, pil.width, M)  # what the build drew
        top, left, h, w = boxes[crop]
        pixels = np.asarray(pil)[top:top + h, left:left + w]
        pixels = np.asarray(Image.fromarray(pixels).resize((32, 32), Image.BICUBIC), dtype=np.float64) / 255
        if flips[crop]:
            pixels = pixels[:, ::-1]
        flips_seen.add(bool(flips[crop]))
        expected = ((pixels - mean) / std).transpose(2, 0, 1)
        assert np.allclose(item["img"].numpy(), expected, atol=1e-5)
        record = table.fetch([image_id], [crop])
        assert torch.equal(item["ril_idx"], torch.from_numpy(record["indices"][0]))
        assert torch.equal(item["ril_logp"], torch.from_numpy(record["logprobs"][0]))
        assert float(item["w"]) == float(record["weight"][0]) and item["label"] == items[n].label
    assert flips_seen == {True, False}  # both branches were checked
    # within the first M epochs every image sees each of its M crops once
    seen = np.stack([dataset.crop_ids(e, np.arange(n_items)) for e in range(M)])
    assert (np.sort(seen, axis=0) == np.arange(M)[:, None]).all()


def test_the_epoch_reaches_persistent_worker_processes(run_data):
    cfg, items, _, table = run_data
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.NUM_WORKERS = 1
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = len(items)
    loader = build_ril_loader(cfg, items, table, seed=7)
    assert loader.persistent_workers
    dataset = loader.dataset
    for epoch in (0, 1, 5):
        loader.sampler.set_epoch(epoch)
        (batch,) = list(loader)
        n = batch["index"].numpy()
        assert (batch["epoch"] == epoch).all() and sorted(n.tolist()) == list(range(len(items)))
        assert np.array_equal(batch["crop"].numpy(), dataset.crop_ids(epoch, n))
        assert batch["img"].shape == (len(items), 3, 32, 32) and batch["ril_idx"].shape == (len(items), K)
    del loader  # shuts the persistent worker down now, not at interpreter exit


def test_teacher_targets_densify_on_the_device(run_data):
    _, _, classnames, table = run_data
    record = table.fetch(np.arange(6), np.zeros(6, dtype=np.int64))
    batch = {"ril_idx": torch.from_numpy(record["indices"]), "ril_logp": torch.from_numpy(record["logprobs"]),
             "w": torch.from_numpy(record["weight"])}
    c = len(classnames)
    top = np.exp(record["logprobs"].astype(np.float64))
    for mode in ("ms", "mr"):
        probs, labels, w = teacher_targets(batch, c, mode, torch.device("cpu"))
        assert probs.shape == (6, c) and torch.allclose(probs.sum(1), torch.ones(6), atol=1e-5)
        assert labels.tolist() == record["indices"][:, 0].tolist() and torch.equal(w, batch["w"])
        got = probs.gather(1, batch["ril_idx"]).double().numpy()
        want = top if mode == "ms" else top / top.sum(1, keepdims=True)
        assert np.allclose(got, want, atol=1e-6)
    with pytest.raises(RilError, match="full"):
        teacher_targets(batch, c, "full", torch.device("cpu"))  # K=3 < C=32 cannot be "full"


def test_open_accepts_the_matching_table_and_refuses_others(world, run_data):
    cfg, items, classnames, _ = run_data
    assert open_ril_table(cfg, items, classnames).num_images == len(items)

    empty = toy_cfg(world["root"], RUN)
    with pytest.raises(ConfigError, match=r"RIL_DIR is empty.*python -m ril_tools\.build"):
        open_ril_table(empty, items, classnames)
    missing = os.path.join(world["dir"], "nowhere")
    cfg_missing = toy_cfg(world["root"], dict(RUN, **{"TRAINER.FDBPL.RIL_DIR": missing}))
    with pytest.raises(RilError, match=r"does not exist; build it with: python -m ril_tools\.build .*--output"):
        open_ril_table(cfg_missing, items, classnames)

    other = build_table(world, "ril_all_1shot", shots=1, subsample="all")
    cfg_other = toy_cfg(world["root"], dict(RUN, **{"TRAINER.FDBPL.RIL_DIR": other}))
    with pytest.raises(RilError) as err:
        open_ril_table(cfg_other, items, classnames)
    msg = str(err.value)
    assert "\n" not in msg
    assert "class names differ (64 in the table, 32 in this run" in msg
    assert re.search(r"\d+ of this run's \d+ training images are not in the table \(e\.g\. image '[^']+\.\w+'\)",
                     msg) and "SUBSAMPLE_CLASSES all" in msg
    assert f"--output {other} --teacher {world['teacher']}" in msg and "--overwrite" in msg

    full_mode = toy_cfg(world["root"], dict(RUN, **{"TRAINER.FDBPL.RIL_DIR": world["table"],
                                                    "TRAINER.FDBPL.LABEL_MODE": "full"}))
    with pytest.raises(RilError, match="LABEL_MODE full needs all 32 classes stored but the table keeps top-K=3"):
        open_ril_table(full_mode, items, classnames)


def test_rebuild_command_is_accepted_by_the_build_cli(world, run_data):
    from ril_tools.build import build_parser

    cfg, _, _, table = run_data
    cmd = rebuild_command(cfg, "ril/x y", table.manifest)
    argv = shlex.split(cmd)
    assert argv[:3] == ["python", "-m", "ril_tools.build"]
    args = build_parser().parse_args(argv[3:])
    assert (args.root, args.seed, args.output, args.teacher) == (world["root"], 1, "ril/x y", world["teacher"])
    assert (args.num_crops, args.topk, args.label_kind, args.overwrite) == (M, K, "topk", True)
    assert args.dataset_config_file.endswith("configs/datasets/toyshapes.yaml")
    assert args.opts == ["DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base"]
    fresh = build_parser().parse_args(shlex.split(rebuild_command(cfg, "out"))[3:])
    assert (fresh.teacher, fresh.num_crops, fresh.topk, fresh.overwrite) == ("ViT-L/14", 500, 20, False)
