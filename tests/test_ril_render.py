"""The RIL summary picture (ril_tools.render, ``inspect --summary``) on a tiny table built with the fake teacher."""
import json
import os

import numpy as np
import pytest

from ril_tools import format as fmt
from ril_tools import inspect
from ril_tools.reader import RilTable
from ril_tools.render import render_summary, summary_numbers
from ril_tools.testing import build_tiny_table

M, K, N = 4, 2, 6


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("render"))
    out = os.path.join(root, "ril")
    build_tiny_table(root, out, num_images=N, num_crops=M, k=K)
    return root, RilTable.open(out)


def test_numbers_match_the_table(table):
    _, t = table
    numbers = summary_numbers(t, num_images=3)
    rec = t.fetch(np.repeat(np.arange(N), M), np.tile(np.arange(M), N))
    assert numbers["records"] == numbers["num_records"] == N * M and not numbers["sampled"]
    assert numbers["w_hist"]["counts"] == np.histogram(rec["weight"], bins=10, range=(0, 1))[0].tolist()
    assert sum(numbers["w_hist"]["counts"]) == N * M
    assert numbers["top1_counts"]["counts"] == np.bincount(rec["indices"][:, 0], minlength=5).tolist()
    assert [e["image"] for e in numbers["images"]] == [0, 2, 5]  # spread over the table
    last = numbers["images"][-1]
    mine = t.fetch(np.full(M, 5), np.arange(M))
    assert np.allclose(last["w"], mine["weight"]) and last["topk"] == mine["indices"].tolist()
    assert last["flipped"] == ((mine["flags"] & fmt.FLAG_HFLIP) > 0).tolist()
    assert np.allclose(np.asarray(last["probs"]), np.exp(mine["logprobs"]), atol=1e-6)
    assert last["label"] == t.manifest["dataset"]["labels"][5]


def test_summary_command_writes_png_and_json(table, tmp_path, capsys):
    from PIL import Image

    root, t = table
    out = str(tmp_path / "sub" / "summary.png")
    inspect.main([t.path, "--summary", out, "--root", root])
    assert "summary.json" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size == (1100, int(100 * (2.6 * 4 + 0.4)))  # 3 image rows + the table row
    numbers = json.load(open(str(tmp_path / "sub" / "summary.json")))
    assert numbers == json.loads(json.dumps(summary_numbers(t, num_images=3)))


def test_summary_needs_the_images(table, tmp_path):
    from engine.errors import RilError

    _, t = table
    with pytest.raises(RilError, match="--root"):
        inspect.main([t.path, "--summary", str(tmp_path / "s.png")])
    with pytest.raises(RilError, match="is missing"):
        render_summary(t, str(tmp_path), str(tmp_path / "s.png"))
