"""Build + read round trip of a tiny RIL table, integrity checks and run matching (fake teacher)."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from engine.errors import RilError
from engine.utils import read_image
from ril_tools import format as fmt
from ril_tools.crops import image_keys, sample_crops
from ril_tools.integrity import TAG_BYTES
from ril_tools.labels import information_weight
from ril_tools.pipeline import make_crops
from ril_tools.reader import RilTable
from ril_tools.testing import (
    FakeTeacher,
    build_tiny_table,
    make_image_folder,
    tiny_plan,
)

M, C, K = 4, 5, 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ril"))
    out = os.path.join(root, "table")
    build_tiny_table(root, out, num_crops=M, k=K, batch_size=3)
    return root, out


def _all_records(table):
    ids = np.repeat(np.arange(table.num_images), table.num_crops)
    crops = np.tile(np.arange(table.num_crops), table.num_images)
    return table.fetch(ids, crops)


def test_round_trip_matches_an_independent_recomputation(tiny):
    root, out = tiny
    table = RilTable.open(out, verify="full")
    assert (table.num_images, table.num_crops, table.k, table.num_classes) == (6, M, K, C)
    items = make_image_folder(root, 6, C)
    teacher = FakeTeacher(C)
    order = sorted(range(6), key=lambda i: os.path.relpath(items[i].impath, root))
    for image_id, item_index in enumerate(order):
        image = torch.from_numpy(np.asarray(read_image(items[item_index].impath)).copy()).permute(2, 0, 1)
        key = image_keys([table.relpaths[image_id]])[0]  # crops are keyed by the image's path (scheme v2)
        boxes, flips = sample_crops(1, key, image.shape[1], image.shape[2], M)
        logp = teacher.log_probs(make_crops(image, boxes, flips, 16, teacher.mean, teacher.std))
        top, idx = torch.topk(logp, K, dim=1)
        got = table.fetch(np.full(M, image_id), np.arange(M))
        assert np.array_equal(got["indices"], idx.numpy())
        assert np.allclose(got["logprobs"], top.numpy(), rtol=1e-3, atol=1e-6)  # stored as float16
        assert np.allclose(got["weight"], information_weight(logp.exp()).numpy(), atol=1e-3)
        assert np.array_equal(fmt.crop_box_pixels(got["box"], image.shape[1], image.shape[2]), boxes)
        assert np.array_equal(got["flags"] & fmt.FLAG_HFLIP, flips.astype(np.uint8))
        assert table.images["height"][image_id] == image.shape[1]
    assert table.image_ids([table.relpaths[3], table.relpaths[0]]).tolist() == [3, 0]
    impaths = [items[order[4]].impath, items[order[1]].impath]
    assert table.image_ids_for_paths(impaths, root).tolist() == [4, 1]
    assert not table.shards[0].flags.writeable  # mapped read-only


def test_fetch_shapes_dtypes_and_bounds(tiny):
    table = RilTable.open(tiny[1])
    got = table.fetch([0, 5, 5], [3, 0, 3])
    assert got["indices"].shape == (3, K) and got["indices"].dtype == np.int64
    assert got["logprobs"].dtype == np.float32 and got["box"].shape == (3, 4)
    assert got["flags"].shape == (3,) and got["weight"].dtype == np.float32
    with pytest.raises(RilError, match="crop index"):
        table.fetch([0], [M])
    with pytest.raises(RilError, match="image index"):
        table.fetch([6], [0])
    with pytest.raises(RilError, match="not in RIL table"):
        table.image_ids(["nope.png"])


def test_table_pickles_without_its_memory_maps(tiny):
    table = RilTable.open(tiny[1])
    blob = pickle.dumps(table)
    assert len(blob) < 20000  # the shards are reopened by the unpickled copy, not copied
    clone = pickle.loads(blob)
    assert np.array_equal(clone.fetch([2], [1])["indices"], table.fetch([2], [1])["indices"])


def test_rebuild_is_a_no_op_and_batch_size_does_not_change_crops(tiny, tmp_path):
    root, out = tiny
    before = _all_records(RilTable.open(out))
    build_tiny_table(root, out, num_crops=M, k=K, batch_size=3)  # already complete: nothing rewritten
    other = str(tmp_path / "b7")
    build_tiny_table(root, other, num_crops=M, k=K, batch_size=7)
    after = _all_records(RilTable.open(other))
    for key in ("box", "flags"):
        assert np.array_equal(before[key], after[key])
    assert np.array_equal(before["indices"], after["indices"])
    assert np.allclose(before["logprobs"], after["logprobs"], atol=1e-3)


def test_different_settings_are_refused_without_overwrite(tiny):
    root, out = tiny
    with pytest.raises(RilError, match="k: 2 != 3.*--overwrite"):
        build_tiny_table(root, out, num_crops=M, k=3)


def test_check_matches_names_the_difference(tiny):
    table = RilTable.open(tiny[1])
    table.check_matches(classnames=table.classnames, fingerprint=table.fingerprint, k=K, num_crops=M,
                        teacher="fake-linear-0")
    with pytest.raises(RilError, match="class 1 is 'class 1' in the table, 'dog' now.*--overwrite"):
        table.check_matches(classnames=["class 0", "dog", "class 2", "class 3", "class 4"])
    with pytest.raises(RilError, match="5 classes in the table, 4 now"):
        table.check_matches(classnames=table.classnames[:4])
    with pytest.raises(RilError, match="training images differ"):
        table.check_matches(fingerprint=fmt.dataset_fingerprint(["x.png"], [1]))
    with pytest.raises(RilError, match="top-K differs"):
        table.check_matches(k=20)
    with pytest.raises(RilError, match="teacher differs"):
        table.verify_against(teacher="ViT-L/14")


def _copy_table(src, dst):
    os.makedirs(dst)
    for name in os.listdir(src):
        with open(os.path.join(src, name), "rb") as f, open(os.path.join(dst, name), "wb") as g:
            g.write(f.read())
    return dst


def test_corrupt_shard_bytes_fail_the_checksum(tiny, tmp_path):
    bad = _copy_table(tiny[1], str(tmp_path / "bad"))
    shard = os.path.join(bad, fmt.shard_name(0))
    data = bytearray(open(shard, "rb").read())
    data[-5 - TAG_BYTES] ^= 0xFF  # in the last record, before the table-id tag
    open(shard, "wb").write(bytes(data))
    RilTable.open(bad, verify="size")  # sizes still fine
    with pytest.raises(RilError, match="shard-000.npy does not match its checksum"):
        RilTable.open(bad, verify="full")


def test_truncated_shard_missing_manifest_and_wrong_version(tiny, tmp_path):
    bad = _copy_table(tiny[1], str(tmp_path / "trunc"))
    shard = os.path.join(bad, fmt.shard_name(0))
    size = os.path.getsize(shard)
    with open(shard, "r+b") as f:
        f.truncate(size - 50)
    with pytest.raises(RilError, match="truncated"):
        RilTable.open(bad, verify="size")
    os.remove(os.path.join(bad, fmt.MANIFEST))
    with pytest.raises(RilError, match="has no manifest.json: the build did not finish"):
        RilTable.open(bad)
    with pytest.raises(RilError, match="not found"):
        RilTable.open(str(tmp_path / "nowhere"))
    old = _copy_table(tiny[1], str(tmp_path / "old"))
    path = os.path.join(old, fmt.MANIFEST)
    manifest = json.load(open(path))
    manifest["version"] = 0
    json.dump(manifest, open(path, "w"))
    with pytest.raises(RilError, match="format version 0"):
        RilTable.open(old)


def test_label_kind_full_stores_every_class(tiny, tmp_path):
    root = tiny[0]
    out = str(tmp_path / "full")
    build_tiny_table(root, out, num_crops=M, label_kind="full")
    table = RilTable.open(out)
    got = table.fetch([1, 2], [0, 3])
    assert table.k == C and table.label_kind == "full"
    assert np.allclose(np.exp(got["logprobs"]).sum(1), 1.0, atol=3e-3)
    assert sorted(got["indices"][0].tolist()) == list(range(C))


def test_tiny_plan_rejects_unfixed_seed(tiny):
    items = make_image_folder(tiny[0], 6, C)
    with pytest.raises(RilError, match="fixed seed"):
        tiny_plan(items, tiny[0], FakeTeacher(C), [str(i) for i in range(C)], seed=-1)


def test_unfinished_rank_blocks_the_manifest_and_world_size_must_match(tiny, tmp_path):
    root = tiny[0]
    out = str(tmp_path / "half")
    with pytest.raises(RilError, match="rank 1 did not finish"):
        build_tiny_table(root, out, world_size=2, rank=0)  # rank 1 never runs
    assert not os.path.exists(os.path.join(out, fmt.MANIFEST))
    with pytest.raises(RilError, match="world_size: 2 != 1.*number of processes"):
        build_tiny_table(root, out, world_size=1)
    build_tiny_table(root, out, world_size=1, overwrite=True)
    assert RilTable.open(out).manifest["world_size"] == 1


def test_record_sanity_check_catches_a_bad_box(tiny, tmp_path):
    from ril_tools.verify import check_records

    bad = _copy_table(tiny[1], str(tmp_path / "badbox"))
    shard = np.lib.format.open_memmap(os.path.join(bad, fmt.shard_name(0)), mode="r+")
    shard["box"][7] = [0.9, 0.0, 0.5, 0.5]  # top + height > 1
    shard.flush()
    del shard
    with pytest.raises(RilError, match="shard-000.npy row 7 .image 1 .*crop 3. has a crop box that is NaN or "
                                       "outside the image"):
        check_records(RilTable.open(bad, verify="size"))


def test_finished_table_is_accepted_whatever_the_number_of_processes(tiny, capsys):
    root, out = tiny
    before = os.path.getmtime(os.path.join(out, fmt.MANIFEST))
    for rank in (0, 1):  # the same command under a 2-process launcher finds the 1-process table complete
        build_tiny_table(root, out, world_size=2, rank=rank)
    assert os.path.getmtime(os.path.join(out, fmt.MANIFEST)) == before
    assert "already complete" in capsys.readouterr().out
