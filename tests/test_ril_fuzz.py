"""Property-based fuzzing of RIL manifest fields and record bytes (hypothesis, a few dozen examples each).

Property: whatever one manifest value or one record holds, opening the table either refuses it with a
RilError (one line) or gives a table whose every record is valid for training. Never another exception.
"""

import json
import os
import shutil
import tempfile

import numpy as np
import pytest
import torch

from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools.labels import densify
from ril_tools.reader import RilTable
from ril_tools.testing import build_tiny_table
from tests.test_ril_faults import copy_table, rechecksum

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

N, C, M, K = 6, 5, 4, 2
FUZZ = settings(max_examples=40, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fuzz"))
    out = os.path.join(root, "good")
    build_tiny_table(root, out, num_images=N, num_classes=C, num_crops=M, k=K)
    return out


def _paths(node, prefix=()):
    """Every key path of a JSON tree (lists: first two entries only)."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node[:2]) if isinstance(node, list) else []
    for key, value in items:
        out.append(prefix + (key,))
        out.extend(_paths(value, prefix + (key,)))
    return out


def _all_records_are_valid(table):
    ids = np.repeat(np.arange(table.num_images), table.num_crops)
    crops = np.tile(np.arange(table.num_crops), table.num_images)
    got = table.fetch(ids, crops)
    assert ((got["indices"] >= 0) & (got["indices"] < table.num_classes)).all()
    assert (got["logprobs"] <= 1e-3).all() and np.isfinite(got["logprobs"]).all()
    assert ((got["weight"] >= 0) & (got["weight"] <= 1.001)).all()
    box = got["box"]
    assert (box[:, :2] >= 0).all() and (box[:, 2:] > 0).all() and (box[:, 0] + box[:, 2] <= 1 + 1e-6).all()
    for mode in ("ms", "mr"):
        dense = densify(torch.from_numpy(got["indices"]), torch.from_numpy(got["logprobs"]), table.num_classes, mode)
        assert torch.isfinite(dense).all()


def _open_or_refuse(path):
    try:
        table = RilTable.open(path, verify="full")
    except RilError as exc:
        assert "\n" not in str(exc)
        return None
    _all_records_are_valid(table)
    return table


def test_manifest_fuzz(good):
    with open(os.path.join(good, fmt.MANIFEST)) as f:
        paths = _paths(json.load(f))

    @FUZZ
    @given(path=st.sampled_from(paths), value=JSON | st.just("<delete>"))
    def one(path, value):
        work = tempfile.mkdtemp()
        try:
            bad = copy_table(good, os.path.join(work, "t"))
            with open(os.path.join(bad, fmt.MANIFEST)) as f:
                manifest = json.load(f)
            node = manifest
            for key in path[:-1]:
                node = node[key]
            if value == "<delete>":
                del node[path[-1]]
            else:
                node[path[-1]] = value
            with open(os.path.join(bad, fmt.MANIFEST), "w") as f:
                json.dump(manifest, f)
            _open_or_refuse(bad)
        finally:
            shutil.rmtree(work)

    one()


def test_record_fuzz(good):
    dtype = RilTable.open(good).record_dtype

    @FUZZ
    @given(row=st.integers(0, N * M - 1), field=st.sampled_from(["idx", "logp", "box", "flags", "w"]),
           data=st.data())
    def one(row, field, data):
        size = dtype.fields[field][0].itemsize
        raw = data.draw(st.binary(min_size=size, max_size=size))
        work = tempfile.mkdtemp()
        try:
            bad = copy_table(good, os.path.join(work, "t"))
            shard = np.lib.format.open_memmap(os.path.join(bad, fmt.shard_name(0)), mode="r+")
            shard[field][row] = np.frombuffer(raw, dtype=dtype.fields[field][0])[0] if dtype.fields[field][0].shape \
                == () else np.frombuffer(raw, dtype=dtype.fields[field][0].base).reshape(dtype.fields[field][0].shape)
            shard.flush()
            del shard
            rechecksum(bad)
            _open_or_refuse(bad)
        finally:
            shutil.rmtree(work)

    one()
