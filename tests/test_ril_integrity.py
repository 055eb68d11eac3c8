"""Table identity beyond the faults suite: teacher prompts (CoOp's "_" rule), image content fingerprints,
the build lock, leftovers of killed builds, and the teacher's default precision."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from engine.data.datum import Datum
from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools import integrity, verify
from ril_tools.build import build_table, default_precision
from ril_tools.reader import RilTable
from ril_tools.replay import RilReplayDataset, build_ril_loader
from ril_tools.table_check import open_ril_table
from ril_tools.testing import build_tiny_table, make_image_folder, tiny_plan
from ril_tools.writer import build_lock
from tests.fixtures.toy_data import toy_cfg

UNDERSCORED = ["american_bulldog", "great_pyrenees", "cat"]
SPACED = ["american bulldog", "great pyrenees", "cat"]


def _build_with_clip(root, out, clip_path, classnames, items):
    from clip_tools.teacher import FrozenTeacher

    teacher = FrozenTeacher.load(clip_path, classnames, "a photo of a {}.", "cpu", "fp32")
    plan, image_list = tiny_plan(items, root, teacher, classnames, num_crops=3, k=2)
    build_table(out, plan, image_list["paths"], teacher, batch_size=8, progress=False)
    return RilTable.open(out)


@pytest.fixture(scope="module")
def clip_tables(tmp_path_factory, tiny_clip_path):
    root = str(tmp_path_factory.mktemp("prompts"))
    items = make_image_folder(root, num_images=4, num_classes=3)
    underscored = _build_with_clip(root, os.path.join(root, "underscored"), tiny_clip_path, UNDERSCORED, items)
    spaced = _build_with_clip(root, os.path.join(root, "spaced"), tiny_clip_path, SPACED, items)
    return root, items, underscored, spaced


def _all_records(table):
    ids = np.repeat(np.arange(table.num_images), table.num_crops)
    return table.fetch_records(ids, np.tile(np.arange(table.num_crops), table.num_images))


def test_underscored_class_names_teach_like_the_spaced_names(clip_tables):
    _, _, underscored, spaced = clip_tables
    assert underscored.manifest["prompts"] == ["a photo of a american bulldog.", "a photo of a great pyrenees.",
                                               "a photo of a cat."]
    assert underscored.manifest["prompts_hash"] == spaced.manifest["prompts_hash"]
    assert _all_records(underscored).tobytes() == _all_records(spaced).tobytes()  # label for label


def test_training_refuses_a_table_whose_teacher_read_other_prompts(clip_tables, tmp_path):
    root, items, underscored, _ = clip_tables
    run = [Datum(impath=i.impath, label=i.label) for i in items]
    cfg = toy_cfg(root, {"TRAINER.FDBPL.RIL_DIR": underscored.path})
    assert open_ril_table(cfg, run, UNDERSCORED).num_images == 4
    old_rule = os.path.join(str(tmp_path), "old_rule")
    os.makedirs(old_rule)
    for name in os.listdir(underscored.path):
        if not name.startswith("."):
            with open(os.path.join(underscored.path, name), "rb") as f, open(os.path.join(old_rule, name), "wb") as g:
                g.write(f.read())
    path = os.path.join(old_rule, fmt.MANIFEST)
    manifest = json.load(open(path))
    manifest["prompts"] = [f"a photo of a {c}." for c in UNDERSCORED]  # what the teacher read before the fix
    manifest["prompts_hash"] = integrity.prompts_hash(manifest["prompts"])
    json.dump(manifest, open(path, "w"))
    cfg_old = toy_cfg(root, {"TRAINER.FDBPL.RIL_DIR": old_rule})
    with pytest.raises(RilError, match=r"teacher prompts differ .*'a photo of a american bulldog\.' is not in the table"
                                       r".*python -m ril_tools\.build .*--overwrite"):
        open_ril_table(cfg_old, run, UNDERSCORED)


@pytest.fixture
def own_table(tmp_path):
    root = str(tmp_path)
    out = os.path.join(root, "table")
    build_tiny_table(root, out)
    return root, out


def _replace_with_same_size_twin(path):
    """Overwrite an image with a different picture of the same size, padded to the same byte count."""
    size = os.path.getsize(path)
    with Image.open(path) as img:
        twin = Image.new("RGB", img.size, (200, 30, 30))
    twin.save(path)
    with open(path, "ab") as f:
        f.write(b"\0" * (size - os.path.getsize(path)))  # PNG readers ignore bytes after IEND
    assert os.path.getsize(path) == size


def test_replaced_image_of_same_size_is_caught_by_its_content_hash(own_table, capsys):
    root, out = own_table
    table = RilTable.open(out)
    relpath = table.relpaths[2]
    verify.main([out, "--root", root, "--decode"])
    _replace_with_same_size_twin(os.path.join(root, relpath))
    verify.main([out, "--root", root])  # byte sizes still match: only the content hash sees it
    with pytest.raises(RilError, match=f"image .*{relpath} is not the file the table was built on"):
        verify.main([out, "--root", root, "--decode"])

    items = [Datum(impath=os.path.join(root, p), label=0) for p in table.relpaths]
    for check, fails in ((False, False), (True, True)):
        cfg = toy_cfg(root, {"TRAINER.FDBPL.RIL_DIR": out, "TRAINER.FDBPL.CHECK_IMAGE_HASH": check})
        dataset = RilReplayDataset(cfg, items, table, schedule_seed=1)
        dataset[0]  # an untouched image is served either way
        if fails:
            with pytest.raises(RilError, match=f"image .*{relpath} is not the file RIL table .* was built on"):
                dataset[2]
            worker_cfg = toy_cfg(root, {"TRAINER.FDBPL.RIL_DIR": out, "TRAINER.FDBPL.CHECK_IMAGE_HASH": True,
                                        "DATALOADER.NUM_WORKERS": 1, "DATALOADER.TRAIN_X.BATCH_SIZE": 6})
            loader = build_ril_loader(worker_cfg, items, table, seed=1)
            with pytest.raises(RilError) as err:  # raised in a worker process: still one line
                list(loader)
            assert "\n" not in str(err.value) and str(err.value).startswith(f"image {items[2].impath} is not")
            del loader
        else:
            assert dataset[2]["img"].shape == (3, 32, 32)


def test_a_second_build_into_the_same_folder_is_refused(own_table):
    root, out = own_table
    with build_lock(out, 0):  # held as a running build holds it (a separate open file description)
        with pytest.raises(RilError, match=rf"another build \(pid {os.getpid()}\) is writing rank 0 of .*table"):
            build_tiny_table(root, out)
    build_tiny_table(root, out)  # released: the build proceeds (and finds the table complete)


def test_a_file_named_as_the_table_folder_is_one_line(tmp_path):
    path = str(tmp_path / "not_a_folder")
    open(path, "w").close()
    with pytest.raises(RilError, match="is a file, not a table folder"):
        build_tiny_table(str(tmp_path), path)
    with pytest.raises(RilError, match="is a file; a table is a folder"):
        RilTable.open(path)


def test_leftover_temporaries_are_cleaned_on_resume_and_overwrite(tmp_path):
    root = str(tmp_path)
    out = os.path.join(root, "table")
    with pytest.raises(RilError, match="rank 1 did not finish"):
        build_tiny_table(root, out, world_size=2, rank=0)  # an unfinished 2-rank build
    mine = [".tmp-manifest.json-a1b2c3", ".tmp-plan-000.json-x9", "shard-000.npy.tmp", ".tmp-images.npy-zz"]
    theirs = [".tmp-plan-001.json-q7", "progress-001.npy.tmp"]  # rank 1 may be writing these right now
    for name in mine + theirs:
        open(os.path.join(out, name), "wb").close()
    with pytest.raises(RilError, match="rank 1 did not finish"):
        build_tiny_table(root, out, world_size=2, rank=0)  # the resume of rank 0
    left = set(os.listdir(out))
    assert not left & set(mine) and set(theirs) <= left
    build_tiny_table(root, out, world_size=1, overwrite=True)
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-") or n.endswith(".tmp")]
    RilTable.open(out, verify="full")


def test_teacher_image_side_defaults_to_fp16_on_gpu():
    assert default_precision("cuda") == "fp16"
    assert default_precision("cuda:1") == "fp16"
    assert default_precision("cpu") == "fp32"
