"""Fault injection: every damaged, edited, mixed or malicious RIL table ends in ONE ``error:`` line and exit
code 2, both in ``python -m ril_tools.verify`` and where training opens the table, and never runs code.

One tiny table (fake teacher, 6 images, M = 4, K = 2) is built per module and copied for each fault; faults
that keep the checksums consistent recompute them, as a buggy build or a careful hand edit would.
"""

import json
import os
import pickle
import re
import shutil

import numpy as np
import pytest

from engine.cli import run_cli
from engine.data.datum import Datum
from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools import integrity, verify
from ril_tools.reader import RilTable
from ril_tools.table_check import open_ril_table
from ril_tools.testing import build_tiny_table, make_image_folder
from tests.fixtures.toy_data import toy_cfg

N, C, M, K = 6, 5, 4, 2
CLASSNAMES = [f"class {i}" for i in range(C)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(dataset root, a good table, a second table of the same shape from another build seed)."""
    root = str(tmp_path_factory.mktemp("faults"))
    good, other = os.path.join(root, "good"), os.path.join(root, "other")
    build_tiny_table(root, good, num_images=N, num_classes=C, num_crops=M, k=K)
    build_tiny_table(root, other, num_images=N, num_classes=C, num_crops=M, k=K, seed=2)
    return root, good, other


def copy_table(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock-*"))
    return dst


# ------------------------------------------------------------------------------------ fault helpers


def _manifest_path(d):
    return os.path.join(d, fmt.MANIFEST)


def edit_manifest(d, change):
    path = _manifest_path(d)
    with open(path) as f:
        manifest = json.load(f)
    change(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f)


def rechecksum(d):
    """Make the manifest's checksums agree with the files again (what a careless edit or a buggy build does)."""
    def fix(manifest):
        for info in manifest["shards"]:
            info["checksum"] = fmt.checksum_file(os.path.join(d, info["file"]))
        manifest["images_file"]["checksum"] = fmt.checksum_file(os.path.join(d, fmt.IMAGES))
    edit_manifest(d, fix)


def set_field(dotted, value):
    def change(manifest):
        *parents, last = dotted.split(".")
        node = manifest
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return change


def edit_npy(d, name, change):
    """Change a table .npy in place (its tag is kept), then recompute the checksums."""
    array = np.lib.format.open_memmap(os.path.join(d, name), mode="r+")
    change(array)
    array.flush()
    del array
    rechecksum(d)


def set_record(field, row, value):
    def fault(d, ctx):
        def change(shard):
            shard[field][row] = value
        edit_npy(d, fmt.shard_name(0), change)
    return fault


def flip_byte(d, ctx):
    path = os.path.join(d, fmt.shard_name(0))
    data = bytearray(open(path, "rb").read())
    data[-integrity.TAG_BYTES - 3] ^= 0x40
    open(path, "wb").write(bytes(data))


def truncate_shard(d, ctx):
    path = os.path.join(d, fmt.shard_name(0))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 100)


def rotate_paths(d, ctx):
    """Image paths rotated together with their sizes (and the fingerprint recomputed): ids now point at
    other images' labels."""
    def change(manifest):
        ds = manifest["dataset"]
        ds["relpaths"] = ds["relpaths"][1:] + ds["relpaths"][:1]
        ds["file_sizes"] = ds["file_sizes"][1:] + ds["file_sizes"][:1]
        ds["fingerprint"] = fmt.dataset_fingerprint(ds["relpaths"], ds["file_sizes"])
    edit_manifest(d, change)


def swap_paths(d, ctx):
    def change(manifest):
        ds = manifest["dataset"]
        for key in ("relpaths", "file_sizes"):
            ds[key][1], ds[key][2] = ds[key][2], ds[key][1]
    edit_manifest(d, change)


def swap_paths_and_path_hashes(d, ctx):
    """Swapped paths with images.npy edited to match (a careful forgery): training's own ordered image list
    still refuses it."""
    swap_paths(d, ctx)

    def change(images):
        for field in ("path_hash", "file_size"):
            images[field][[1, 2]] = images[field][[2, 1]]
    edit_npy(d, fmt.IMAGES, change)


def foreign_file(name):
    def fault(d, ctx):
        shutil.copy(os.path.join(ctx["other"], name), os.path.join(d, name))
        rechecksum(d)
    return fault


def save_object_array(name):
    def fault(d, ctx):
        np.save(os.path.join(d, name), np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        rechecksum(d)
    return fault


class Payload:
    """Unpickling this creates the marker folder: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def malicious_pickle(name):
    def fault(d, ctx):
        with open(os.path.join(d, name), "wb") as f:
            pickle.dump(Payload(ctx["marker"]), f)
        rechecksum(d)
    return fault


def delete(name):
    def fault(d, ctx):
        os.remove(os.path.join(d, name))
    return fault


def write_text(name, text):
    def fault(d, ctx):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return fault


def manifest_field(dotted, value):
    def fault(d, ctx):
        edit_manifest(d, set_field(dotted, value))
    return fault


def first_row_out_of_range(d, ctx):
    def change(images):
        images["first_row"][1] = 10 ** 6
    edit_npy(d, fmt.IMAGES, change)


# (name, fault, refused by verify, refused by training's open, expected words in the message)
BOTH, VERIFY_ONLY = (True, True), (True, False)
FAULTS = [
    ("flipped byte", flip_byte, *BOTH, "does not match its checksum"),
    ("truncated shard", truncate_shard, *BOTH, "truncated|does not match its checksum"),
    ("deleted shard", delete(fmt.shard_name(0)), *BOTH, "shard-000.npy is missing"),
    ("deleted images.npy", delete(fmt.IMAGES), *BOTH, "images.npy is missing"),
    ("deleted manifest", delete(fmt.MANIFEST), *BOTH, "manifest.json"),
    ("corrupt manifest", write_text(fmt.MANIFEST, '{"format": "fdbpl-ril", '), *BOTH, "unreadable"),
    ("manifest not an object", write_text(fmt.MANIFEST, "[1, 2]"), *BOTH, "not an RIL manifest"),
    ("k five", manifest_field("k", "five"), *BOTH, "manifest key k = 'five' is not an integer"),
    ("num_classes float", manifest_field("num_classes", 5.0), *BOTH, "num_classes = 5.0"),
    ("relpaths null", manifest_field("dataset.relpaths", None), *BOTH, "dataset.relpaths = None"),
    ("rows string", manifest_field("shards.0.rows", "24"), *BOTH, "shards[0].rows = None|shards\\[0\\].rows"),
    ("shard file escapes", manifest_field("shards.0.file", "../good/shard-000.npy"), *BOTH, "shards\\[0\\].file"),
    ("logit scale text", manifest_field("logit_scale", "x"), *BOTH, "logit_scale"),
    ("version text", manifest_field("version", "2"), *BOTH, "format version '2'"),
    ("old version", manifest_field("version", 1), *BOTH, "format version 1.*prompts"),
    ("teacher not an object", manifest_field("teacher", "ViT"), *BOTH, "manifest key teacher"),
    ("prompts hash", manifest_field("prompts_hash", "sha256:0"), *BOTH, "prompts_hash"),
    ("num_crops 4 -> 8", manifest_field("num_crops", 8), *BOTH, "shards\\[0\\].rows.*num_crops=8"),
    ("num_images 6 -> 5", manifest_field("num_images", 5), *BOTH, "dataset.relpaths"),
    ("first_row out of range", first_row_out_of_range, *BOTH, "first_row of image 1"),
    ("rotated paths", rotate_paths, *BOTH, "sorted|path_hash"),
    ("swapped paths", swap_paths, *BOTH, "sorted|path_hash"),
    ("foreign shard", foreign_file(fmt.shard_name(0)), *BOTH, "belongs to another table"),
    ("foreign images.npy", foreign_file(fmt.IMAGES), *BOTH, "belongs to another table"),
    ("NaN log-probability", set_record("logp", 5, [np.nan, -1.0]), *BOTH, "row 5 .*log-probability that is NaN"),
    ("positive log-probability", set_record("logp", 6, [0.5, 0.2]), *BOTH, "row 6 .*log-probability"),
    ("negative w", set_record("w", 7, -0.5), *BOTH, "row 7 .*information weight"),
    ("w = 50", set_record("w", 8, 50.0), *BOTH, "row 8 .*information weight"),
    ("NaN w", set_record("w", 9, np.nan), *BOTH, "row 9 .*information weight"),
    ("negative box", set_record("box", 10, [-0.1, 0.0, 0.5, 0.5]), *BOTH, "row 10 .*crop box"),
    ("NaN box", set_record("box", 11, [np.nan, 0.0, 0.5, 0.5]), *BOTH, "row 11 .*crop box"),
    ("zero-size box", set_record("box", 12, [0.1, 0.1, 0.0, 0.5]), *BOTH, "row 12 .*crop box"),
    ("class -1", set_record("idx", 13, [-1, 0]), *BOTH, "row 13 .*class index outside 0..4"),
    ("class 999", set_record("idx", 14, [999, 0]), *BOTH, "row 14 .*class index"),
    ("class twice", set_record("idx", 15, [3, 3]), *BOTH, "row 15 .*class stored twice"),
    ("worse class first", set_record("logp", 16, [-3.0, -0.1]), *BOTH, "row 16 .*best first"),
    ("unknown flag bits", set_record("flags", 17, 6), *BOTH, "row 17 .*flag"),
    ("object images.npy", save_object_array(fmt.IMAGES), *BOTH, "images.npy .*rebuild"),
    ("object progress file", save_object_array(fmt.progress_name(0)), *VERIFY_ONLY, "progress-000.npy"),
    ("object shard", save_object_array(fmt.shard_name(0)), *BOTH, "shard-000.npy"),
    ("pickle as shard", malicious_pickle(fmt.shard_name(0)), *BOTH, "shard-000.npy is not a readable .npy"),
    ("pickle as images.npy", malicious_pickle(fmt.IMAGES), *BOTH, "images.npy is not a readable .npy"),
    ("pickle as progress", malicious_pickle(fmt.progress_name(0)), *VERIFY_ONLY, "progress-000.npy is not"),
]


def _run_cli_one_line(capsys, main, *args):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, *args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _training_open(cfg, items):
    return open_ril_table(cfg, items, CLASSNAMES)


def run_items(root):
    return [Datum(impath=item.impath, label=item.label) for item in make_image_folder(root, N, C)]


@pytest.mark.parametrize("name,fault,by_verify,by_training,words", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_is_refused_with_one_line(tiny, tmp_path, capsys, monkeypatch, name, fault, by_verify, by_training,
                                        words):
    monkeypatch.delenv("FDBPL_DEBUG", raising=False)
    root, good, other = tiny
    bad = copy_table(good, str(tmp_path / "bad"))
    marker = str(tmp_path / "code-ran")
    fault(bad, {"other": other, "marker": marker})
    if by_verify:
        line = _run_cli_one_line(capsys, verify.main, [bad, "--root", root])
        assert re.search(words, line), line
    if by_training:
        cfg = toy_cfg(root, {"TRAINER.FDBPL.RIL_DIR": bad})
        line = _run_cli_one_line(capsys, _training_open, cfg, run_items(root))
        assert "python -m ril_tools.build" in line, line  # says how to rebuild it
    else:  # training does not read the file: the table still opens and matches
        assert _training_open(toy_cfg(root, {"TRAINER.FDBPL.RIL_DIR": bad}), run_items(root)).num_images == N
    assert not os.path.exists(marker)  # no pickle payload ran


def test_the_good_table_passes_both(tiny, capsys):
    root, good, _ = tiny
    verify.main([good, "--root", root, "--decode"])
    assert capsys.readouterr().out.startswith("OK: ")
    table = _training_open(toy_cfg(root, {"TRAINER.FDBPL.RIL_DIR": good}), run_items(root))
    assert table.records_checked and len(table.manifest["table_id"]) == 32


def test_forged_swap_is_refused_by_the_runs_own_image_list(tiny, tmp_path):
    root, good, _ = tiny
    bad = copy_table(good, str(tmp_path / "forged"))
    swap_paths_and_path_hashes(bad, {})
    # the manifest is no longer sorted, so even a forgery consistent with images.npy is refused at open
    with pytest.raises(RilError, match="sorted without repeats"):
        RilTable.open(bad)
    from ril_tools.plan import training_image_list
    from ril_tools.table_check import _table_problems

    table = RilTable.open(good)
    table.manifest["dataset"]["relpaths"][1:3] = table.manifest["dataset"]["relpaths"][2:0:-1]
    problems = _table_problems(table, toy_cfg(root), CLASSNAMES, training_image_list(run_items(root), root))
    assert any("training images are in another order (1:" in p for p in problems), problems


def test_large_table_checks_each_record_it_reads(tiny, tmp_path):
    """A table opened without the full pass (too large to check at open) checks the records it serves."""
    root, good, _ = tiny
    bad = copy_table(good, str(tmp_path / "w"))
    set_record("w", 9, -0.5)(bad, {})
    table = RilTable.open(bad, verify="size")
    assert not table.records_checked
    table.fetch([0, 1], [0, 0])  # rows 0 and 4 are fine
    with pytest.raises(RilError, match=r"shard-000.npy row 9 \(image 2 .*crop 1\) has a information weight|"
                                       r"shard-000.npy row 9 \(image 2 .*crop 1\) has a"):
        table.fetch([1, 2], [0, 1])
