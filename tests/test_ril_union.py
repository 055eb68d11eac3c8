"""One table for many runs: a table built for the union of few-shot subsets serves each of those runs with the
labels a table built for that run alone has; a run with an image the table lacks is refused naming the image."""

import numpy as np
import pytest
import torch

from engine.errors import RilError
from engine.registry import build_dataset
from ril_tools.crops import crop_schedule, image_keys
from ril_tools.plan import training_image_list
from ril_tools.reader import RilTable
from ril_tools.replay import RilReplayDataset
from ril_tools.table_check import open_ril_table
from tests.fixtures.fdbpl_world import RUN, M, build_table
from tests.fixtures.toy_data import toy_cfg


@pytest.fixture(scope="module")
def world(fdbpl_world):
    return fdbpl_world


@pytest.fixture(scope="module")
def union(world):
    # seeds 0 and 1, shots 1 and 2: the seed-1 2-shot run (world["table"]) is one of the four subsets
    return build_table(world, "ril_union_s01_k12", "--seeds", "0", "1", "--shots", "1", "2")


def run_split(world, table, **opts):
    cfg = toy_cfg(world["root"], dict(RUN, **{"TRAINER.FDBPL.RIL_DIR": table}, **opts))
    dataset = build_dataset(cfg)
    return cfg, dataset.train_x, dataset.classnames


def test_union_table_serves_a_run_with_the_labels_of_its_own_table(world, union, capsys):
    cfg, items, classnames = run_split(world, union)
    big = open_ril_table(cfg, items, classnames)
    assert "trains on" in capsys.readouterr().out  # the run says which subset of the table it uses
    own = RilTable.open(world["table"])
    relpaths = training_image_list(items, cfg.DATASET.ROOT)["relpaths"]
    assert big.num_images > own.num_images == len(relpaths)
    assert big.manifest["dataset"]["seeds"] == [0, 1] and big.manifest["dataset"]["shots"] == [1, 2]
    a, b = big.fetch_records(np.repeat(big.image_ids(relpaths), M), np.tile(np.arange(M), len(relpaths))), \
        own.fetch_records(np.repeat(own.image_ids(relpaths), M), np.tile(np.arange(M), len(relpaths)))
    assert big.image_ids(relpaths).tolist() != own.image_ids(relpaths).tolist()  # other positions, same crops
    for field in ("box", "flags", "idx", "logp", "w"):
        assert np.array_equal(a[field], b[field]), field
    # the replay schedule is the same from either table (keyed by image path)
    served_big = RilReplayDataset(cfg, items, big, 1)
    served_own = RilReplayDataset(cfg, items, own, 1)
    for epoch in range(M + 1):
        assert np.array_equal(served_big.crop_ids(epoch, np.arange(len(items))),
                              served_own.crop_ids(epoch, np.arange(len(items))))
    assert np.array_equal(big.crop_keys(big.image_ids(relpaths)), image_keys(relpaths))


def test_a_run_with_an_image_missing_from_the_table_is_refused_naming_it(world, union):
    cfg, items, classnames = run_split(world, union, **{"DATASET.NUM_SHOTS": 4})
    relpaths = training_image_list(items, cfg.DATASET.ROOT)["relpaths"]
    missing = [p for p in relpaths if p not in set(RilTable.open(union).relpaths)]
    assert missing
    with pytest.raises(RilError) as err:
        open_ril_table(cfg, items, classnames)
    msg = str(err.value)
    assert f"{len(missing)} of this run's {len(relpaths)} training images are not in the table " \
           f"(e.g. image {missing[0]!r})" in msg and "\n" not in msg


def test_crop_schedule_accepts_path_keys_and_ids_alike():
    keys = image_keys(["a/1.png", "b/2.png"])
    assert keys.dtype == np.uint64 and keys[0] != keys[1]
    one = crop_schedule(3, 2, keys, 8)
    assert np.array_equal(one, [crop_schedule(3, 2, [k], 8)[0] for k in keys])
    assert crop_schedule(3, 2, np.array([], dtype=np.uint64), 8).shape == (0,)


def test_batched_crop_resize_equals_the_per_crop_resize_and_the_stored_boxes():
    """The GPU build's batched resize (two matrix products) against one F.interpolate per crop, on boxes drawn
    as the build draws them; and the stored normalised box replays to the same pixel box (training's path)."""
    from ril_tools import format as fmt
    from ril_tools.crops import sample_crops
    from ril_tools.pipeline import make_crops

    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (3, 61, 83), dtype=np.uint8))
    boxes, flips = sample_crops(5, image_keys(["a/b.jpg"])[0], 61, 83, 24)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    exact = make_crops(image, boxes, flips, 16, mean, std, batched=False)
    fast = make_crops(image, boxes, flips, 16, mean, std, batched=True)
    assert flips.any() and not flips.all()
    assert torch.allclose(fast, exact, atol=1e-3)  # normalised units: ~0.05 grey levels of 255
    assert not torch.allclose(fast[1:], exact[:-1], atol=1e-2)  # a shifted crop would be caught
    stored = fmt.normalise_box(boxes, 61, 83)
    assert np.array_equal(fmt.crop_box_pixels(stored, 61, 83), boxes)


def _run_suggested_build(msg, output):
    """Run the ``python -m ril_tools.build`` command an error line suggests, with ``--output`` redirected."""
    import shlex

    from ril_tools import build

    argv = shlex.split(msg.split("rebuild it with: ", 1)[1])
    assert argv[:3] == ["python", "-m", "ril_tools.build"]
    argv = argv[3:]
    argv[argv.index("--output") + 1] = output
    # the world's tiny teacher takes 32 px crops (a setting of this test world, not of the run)
    build.main(argv + ["--device", "cpu", "--workers", "0", "INPUT.SIZE", "(32, 32)"])
    return argv


@pytest.mark.parametrize("opts,want", [
    ({"DATASET.NUM_SHOTS": 4}, ["--seeds", "0", "1", "--shots", "1", "2", "4"]),  # images missing
    ({"TRAINER.FDBPL.TOPK": 2}, ["--topk", "2", "--overwrite", "--seeds", "0", "1", "--shots", "1", "2"]),  # K
])
def test_the_suggested_rebuild_of_a_union_table_fits_this_run_and_the_old_ones(world, union, tmp_path, capsys,
                                                                               monkeypatch, opts, want):
    from engine.cli import run_cli

    monkeypatch.delenv("FDBPL_DEBUG", raising=False)
    cfg, items, classnames = run_split(world, union, **opts)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(open_ril_table, cfg, items, classnames)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert " ".join(want) in lines[0], lines[0]
    rebuilt = str(tmp_path / "rebuilt")
    argv = _run_suggested_build(lines[0], rebuilt)
    assert "--overwrite" in argv and argv[argv.index("--seed") + 1] == "1"  # the old table's crop seed
    cfg, items, classnames = run_split(world, rebuilt, **opts)
    assert open_ril_table(cfg, items, classnames).num_images >= len(items)  # this run accepts it
    for seed, shots in ((0, 1), (1, 2)):  # and so do the runs the old table served
        old_cfg, old_items, _ = run_split(world, rebuilt, **{"DATASET.NUM_SHOTS": shots, **{
            k: v for k, v in opts.items() if k != "DATASET.NUM_SHOTS"}})
        old_cfg.defrost()
        old_cfg.SEED = seed
        old_cfg.freeze()
        old_items = build_dataset(old_cfg).train_x
        open_ril_table(old_cfg, old_items, classnames)


def test_the_suggested_rebuild_of_another_runs_table_is_the_union_of_both(world, tmp_path, capsys):
    # the seed-1 2-shot table, given to the seed-1 4-shot run: a table of both subsets, not one replacing the other
    cfg, items, classnames = run_split(world, world["table"], **{"DATASET.NUM_SHOTS": 4})
    with pytest.raises(RilError) as err:
        open_ril_table(cfg, items, classnames)
    msg = str(err.value)
    assert "--seeds 1 --shots 2 4" in msg and "\n" not in msg
    rebuilt = str(tmp_path / "both")
    _run_suggested_build(msg, rebuilt)
    for shots in (2, 4):
        cfg, items, classnames = run_split(world, rebuilt, **{"DATASET.NUM_SHOTS": shots})
        open_ril_table(cfg, items, classnames)


def test_reading_an_image_the_table_lacks_names_it_and_the_union_build(world, union):
    with pytest.raises(RilError) as err:
        RilTable.open(union).image_ids(["toyshapes/images/not_there.png"])
    msg = str(err.value)
    assert "image toyshapes/images/not_there.png is not in RIL table" in msg and "--seeds/--shots" in msg
    assert "\n" not in msg
