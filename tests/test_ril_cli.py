"""The command lines on a tiny ToyShapes with a tiny CLIP teacher: build, inspect (+ render), verify."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from engine.registry import build_dataset
from ril_tools import build, inspect, verify
from ril_tools import format as fmt
from ril_tools.plan import items_fingerprint
from ril_tools.reader import RilTable
from tests.fixtures.tiny_clip import tiny_clip_file
from tests.fixtures.toy_data import make_toyshapes, toy_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = ["DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toy"))
    make_toyshapes(root)
    teacher = tiny_clip_file(tmp_path_factory)
    out = os.path.join(root, "ril")
    config = os.path.join(REPO, "configs/datasets/toyshapes.yaml")
    args = ["--root", root, "--seed", "1", "--dataset-config-file", config,
            "--output", out, "--teacher", teacher, "--num-crops", "3", "--topk", "4", "--batch-size", "16",
            "--workers", "0"]
    build.main(args + SHOTS)
    return root, out, teacher, args


def test_build_uses_trainings_images_and_classes(built):
    root, out, teacher, _ = built
    table = RilTable.open(out, verify="full")
    dataset = build_dataset(toy_cfg(root, SHOTS))  # what training sees for the same command line
    assert table.classnames == dataset.classnames and table.num_classes == 32
    table.check_matches(classnames=dataset.classnames, fingerprint=items_fingerprint(dataset.train_x, root),
                        teacher=teacher, k=4, num_crops=3)
    assert table.num_images == len(dataset.train_x) == 32
    m = table.manifest
    assert m["teacher"]["precision"] == "fp32" and m["teacher"]["input_size"] == 32
    assert m["dataset"]["num_shots"] == 1 and m["dataset"]["subsample"] == "base"
    assert m["crop"]["scale"] == [0.08, 1.0] and m["seed_scheme"]["seed"] == 1
    assert m["logit_scale"] > 1
    rec = table.fetch(np.arange(32), np.zeros(32, dtype=np.int64))
    assert np.allclose(np.sort(rec["logprobs"], axis=1)[:, ::-1], rec["logprobs"])  # best first
    assert ((rec["weight"] >= 0) & (rec["weight"] <= 1)).all()


def test_rerun_is_a_no_op_and_other_settings_are_refused(built, capsys):
    root, out, teacher, args = built
    before = os.path.getmtime(os.path.join(out, fmt.MANIFEST))
    build.main(args + SHOTS)
    assert "already complete" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(out, fmt.MANIFEST)) == before
    with pytest.raises(SystemExit) as exit_info:
        build.cli(args + ["--topk", "2"] + SHOTS)
    assert exit_info.value.code == 2
    assert "other settings (k: 4 != 2); use --overwrite" in capsys.readouterr().err


def test_inspect_summary_and_render(built, tmp_path, capsys):
    root, out, _, _ = built
    png = str(tmp_path / "grid.png")
    inspect.main([out, "--render", "5", "--root", root, "--out", png])
    text = capsys.readouterr().out
    assert "32 images x 3 crops = 96" in text and "K=4 of C=32" in text and "w histogram" in text
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_verify_passes_then_catches_a_changed_image(built, tmp_path, capsys):
    root, out, _, _ = built
    verify.main([out, "--root", root, "--decode"])
    assert capsys.readouterr().out.startswith("OK:")
    table = RilTable.open(out)
    victim = os.path.join(root, table.relpaths[5])
    with open(victim, "ab") as f:
        f.write(b"\0")  # one byte more: another copy of the dataset
    try:
        with pytest.raises(SystemExit):
            verify.cli([out, "--root", root])
        assert "the table was built on" in capsys.readouterr().err
    finally:
        with open(victim, "r+b") as f:
            f.truncate(os.path.getsize(victim) - 1)


def test_verify_catches_an_unset_flag(built, tmp_path):
    root, out, _, _ = built
    copy = str(tmp_path / "copy")
    os.makedirs(copy)
    for name in os.listdir(out):
        with open(os.path.join(out, name), "rb") as f, open(os.path.join(copy, name), "wb") as g:
            g.write(f.read())
    progress = np.lib.format.open_memmap(os.path.join(copy, fmt.progress_name(0)), mode="r+")
    progress["done"][3] = 0
    progress.flush()
    del progress
    with pytest.raises(Exception, match="1 of 32 images are not marked done"):
        verify.verify_table(copy)
    manifest = json.load(open(os.path.join(copy, fmt.MANIFEST)))
    assert manifest["shards"][0]["progress_file"] == fmt.progress_name(0)


@pytest.mark.slow  # end to end, several seconds
def test_build_runs_as_a_script():
    # python ril_tools/build.py (and torchrun ril_tools/build.py) must not let ril_tools/inspect.py shadow the
    # standard library's inspect module, which torch imports
    proc = subprocess.run([sys.executable, "ril_tools/build.py", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "--num-crops" in proc.stdout and "--label-kind" in proc.stdout


def test_clip_teacher_is_clip_zero_shot(built):
    import torch
    import torch.nn.functional as F

    from clip_tools.loading import load_clip
    from clip_tools.teacher import FrozenTeacher
    from clip_tools.tokens import tokenize

    _, _, teacher_path, _ = built
    names = ["red circle", "blue star", "green square"]
    teacher = FrozenTeacher.load(teacher_path, names, "a photo of a {}.", "cpu", "bf16")
    assert teacher.prec == "fp32" and teacher.describe()["resolved"] == os.path.abspath(teacher_path)
    model = load_clip(teacher_path)
    x = torch.randn(4, 3, teacher.input_size, teacher.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        image = F.normalize(model.encode_image(x), dim=-1)
        text = F.normalize(model.encode_text(tokenize([f"a photo of a {n}." for n in names],
                                                      model.positional_embedding.shape[0])), dim=-1)
        expected = torch.log_softmax(model.logit_scale.exp() * image @ text.T, dim=1)
    assert torch.allclose(teacher.log_probs(x), expected, atol=1e-5)
