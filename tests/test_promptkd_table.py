"""Table-fed PromptKD (TRAINER.PROMPTKD.RIL_DIR): a table built by the prompted teacher (ril_tools.build
--teacher-prompts), the same loss as online PromptKD on the same crops, the manifest's record, and refusals.

The world is tests/test_promptkd.py's: tiny ToyShapes, a tiny student (width 32) and a tiny teacher (width 48)
whose prompts an IVLP run saved. Its table holds every training image (PromptKD's transductive run) x 4 crops,
all 64 classes, float32 log-probabilities.
"""

import json
import os

import numpy as np
import pytest
import torch

import train
from clip_tools.loading import load_clip
from clip_tools.prompted_teacher import (
    PromptedTeacher,
    prompts_hash_of,
    teacher_checkpoint_file,
)
from clip_tools.teacher import weights_hash
from engine.checkpoint import load_checkpoint
from engine.errors import ConfigError, RilError
from engine.logger import close_logger
from engine.trainer import build_trainer
from engine.utils import read_image
from ril_tools import format as fmt
from ril_tools.pipeline import make_crops
from ril_tools.reader import RilTable
from tests.fixtures.fdbpl_world import REPO
from tests.fixtures.tiny_clip import tiny_clip_file
from tests.fixtures.toy_data import toy_cfg
from tests.test_promptkd import TEACHER_WIDTH, pkd_args
from tests.test_promptkd import world as promptkd_world  # noqa: F401  (the fixture)
from trainers.losses import promptkd_loss
from trainers.promptkd import PromptKDTeacher

TOY_YAML = os.path.join(REPO, "configs/datasets/toyshapes.yaml")
M = 4


def build(world, out, *extra, teacher=None, prompts=None):
    from ril_tools import build as build_mod

    if not os.path.isfile(os.path.join(out, fmt.MANIFEST)):
        build_mod.main(["--root", world["root"], "--seed", "1", "--dataset-config-file", TOY_YAML, "--output", out,
                        "--teacher", teacher or world["teacher"], "--num-crops", str(M), "--batch-size", "64",
                        "--device", "cpu", "--workers", "0", *(["--teacher-prompts", prompts or world["ckpt"]]
                                                              if prompts is not False else []), *extra,
                        "DATASET.NUM_SHOTS", "-1", "DATASET.SUBSAMPLE_CLASSES", "all", "INPUT.SIZE", "(32, 32)"])
    return out


@pytest.fixture(scope="module")
def world(promptkd_world, tmp_path_factory):  # noqa: F811
    w = dict(promptkd_world)
    w["tables"] = str(tmp_path_factory.mktemp("promptkd_tables"))
    w["table"] = build(w, os.path.join(w["tables"], "prompted_full"), "--label-kind", "full",
                       "--logp-dtype", "float32")
    return w


def make_trainer(world, out, *extra, table=None):
    args = pkd_args(world, out, "TRAINER.PROMPTKD.RIL_DIR", table or world["table"], *extra)
    return build_trainer(train.setup_cfg(train.build_parser().parse_args(args)))


def test_manifest_records_the_prompted_teacher_and_round_trips(world):
    manifest = fmt.read_manifest(world["table"])
    teacher = manifest["teacher"]
    ckpt = teacher_checkpoint_file(world["ckpt"])
    assert teacher["kind"] == "prompted" and teacher["name"] == world["teacher"]
    assert teacher["prompts_checkpoint"] == os.path.abspath(ckpt)
    assert teacher["prompts_hash"] == prompts_hash_of(load_checkpoint(ckpt)["state_dict"])
    assert teacher["weights_hash"] == weights_hash(load_clip(world["teacher"]))
    assert teacher["ctx_init"] == "a photo of a" and "log_softmax" in teacher["stores"]
    assert manifest["label_kind"] == "full" and manifest["k"] == manifest["num_classes"] == 64
    assert manifest["logp_dtype"] == "float32" and manifest["template"] == "a photo of a {}."
    assert manifest["prompts"][0] == f"a photo of a {manifest['classnames'][0].replace('_', ' ')}."
    assert manifest["dataset"]["subsample"] == "all" and manifest["num_images"] == 256  # 64 classes x 4 images
    # what the build's teacher describes is what the manifest holds, through JSON and back
    live = PromptedTeacher.from_run(world["teacher"], world["ckpt"], manifest["classnames"], "cpu")
    assert json.loads(json.dumps(live.describe())) == teacher
    assert RilTable.open(world["table"]).teacher == teacher
    from ril_tools.inspect import summary_lines  # the summary says what the table holds

    line = next(x for x in summary_lines(RilTable.open(world["table"])) if x.startswith("prompts"))
    assert teacher["prompts_hash"] in line and "'prompted'" in line


def test_stored_logprobs_are_the_prompted_teachers_on_the_build_crops(world):
    table = RilTable.open(world["table"])
    manifest = table.manifest
    teacher = PromptedTeacher.from_run(world["teacher"], world["ckpt"], manifest["classnames"], "cpu")
    paths = manifest["dataset"]["relpaths"][:3]
    crops, stored = [], []
    for image_id, rel in enumerate(paths):
        image = read_image(os.path.join(world["root"], rel))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        r = table.fetch([image_id] * M, list(range(M)))
        box = fmt.crop_box_pixels(r["box"], image.height, image.width)
        crops.append(make_crops(pixels, box, r["flags"] & fmt.FLAG_HFLIP, 32, manifest["crop"]["mean"],
                                manifest["crop"]["std"]))
        dense = torch.full((M, 64), float("nan"))
        stored.append(dense.scatter_(1, torch.from_numpy(r["indices"]), torch.from_numpy(r["logprobs"])))
    want = torch.log_softmax(teacher.logits(torch.cat(crops)), dim=1)
    got = torch.cat(stored)
    assert torch.allclose(got, want, atol=1e-5)
    assert (want.max(1).values - want.min(1).values).min() > 0.1  # not a flat distribution: the check can fail


def test_table_fed_loss_equals_the_online_loss_on_the_same_crops(world, tmp_path, monkeypatch):
    trainer = make_trainer(world, str(tmp_path), "TRAINER.PROMPTKD.TEMPERATURE", "2.0",
                           "TRAINER.PROMPTKD.KD_WEIGHT", "3.0")
    trainer.before_train()
    assert trainer.teacher is None and trainer.ril_table is not None  # no teacher image tower at training time
    trainer.epoch = 1
    trainer.before_epoch()
    batch = next(iter(trainer.train_loader_x))
    assert (batch["epoch"] == 1).all() and batch["ril_idx"].shape[1] == 64
    table = trainer.ril_table
    online = PromptKDTeacher.load(trainer.cfg, trainer.dm.dataset.classnames, torch.device("cpu"))
    assert torch.allclose(online.class_features, trainer.model.class_features, atol=1e-6)
    crops = []
    for impath, n, crop in zip(batch["impath"], batch["index"].tolist(), batch["crop"].tolist()):
        image_id = int(trainer.train_loader_x.dataset.image_ids[n])
        r = table.fetch([image_id], [crop])
        image = read_image(impath)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        box = fmt.crop_box_pixels(r["box"], image.height, image.width)
        crops.append(make_crops(pixels, box, r["flags"] & fmt.FLAG_HFLIP, 32, table.manifest["crop"]["mean"],
                                table.manifest["crop"]["std"]))
    with torch.no_grad():
        student = trainer.model(batch["img"])
        teacher_logits = online.logits(torch.cat(crops))  # the online PromptKD teacher on the crops the table holds
        want = 3.0 * float(promptkd_loss(student, teacher_logits, 2.0))
        flat = 3.0 * float(promptkd_loss(student, torch.zeros_like(teacher_logits), 2.0))
    assert abs(want - flat) > 1e-3  # 100x the tolerance below: the teacher's targets matter, the check can fail
    out = trainer.forward_backward(batch)
    assert out["loss"] == pytest.approx(want, abs=1e-5)


def test_training_end_to_end_from_the_table(world, tmp_path):
    out = str(tmp_path / "run")
    try:
        train.cli(pkd_args(world, out, "TRAINER.PROMPTKD.RIL_DIR", world["table"], epochs=1))
    finally:
        close_logger()
    log = open(os.path.join(out, "log.txt")).read()
    assert "PromptKD teacher targets from RIL table" in log and "Finish training" in log
    store = torch.load(os.path.join(out, "teacher_class_features.pt"), weights_only=True)
    assert store["features"].shape == (64, TEACHER_WIDTH)


def _one_line(excinfo, *parts):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, (part, msg)


def test_a_zero_shot_table_is_refused_naming_the_kind(world, tmp_path):
    zero_shot = build(world, os.path.join(world["tables"], "zeroshot_full"), "--label-kind", "full", prompts=False)
    with pytest.raises(RilError) as err:
        make_trainer(world, str(tmp_path), table=zero_shot).before_train()
    _one_line(err, "TRAINER.PROMPTKD.RIL_DIR", "teacher.kind", "'prompted'", "--teacher-prompts")


def test_a_top_k_table_is_refused_naming_the_label_kind(world, tmp_path):
    top_k = build(world, os.path.join(world["tables"], "prompted_top3"), "--topk", "3")
    with pytest.raises(RilError) as err:
        make_trainer(world, str(tmp_path), table=top_k).before_train()
    _one_line(err, "TRAINER.PROMPTKD.RIL_DIR", "label_kind", "--label-kind full")


def test_another_teachers_prompts_or_backbone_are_refused(world, tmp_path):
    # the same IVLP layout with other prompt values
    other = str(tmp_path / "other_teacher_run")
    ivlp = build_trainer(toy_cfg(world["root"], {"TRAINER.NAME": "IVLP", "MODEL.BACKBONE.NAME": world["teacher"],
                                                 "TRAINER.IVLP.PROMPT_DEPTH_VISION": 2,
                                                 "TRAINER.IVLP.PROMPT_DEPTH_TEXT": 2, "DATASET.NUM_SHOTS": 1,
                                                 "DATASET.SUBSAMPLE_CLASSES": "base", "OUTPUT_DIR": other}))
    ivlp.save_model(0, other)
    with pytest.raises(RilError) as err:
        make_trainer(world, str(tmp_path / "a"), "TRAINER.PROMPTKD.TEACHER_CKPT", other).before_train()
    _one_line(err, "teacher.prompts_hash", "TRAINER.PROMPTKD.TEACHER_CKPT", "ril_tools.build")
    # a backbone of the same shapes but other weights: the prompts load, the weights hash differs
    twin = tiny_clip_file(tmp_path / "twin", seed=4, embed_dim=TEACHER_WIDTH, vision_layers=3)
    with pytest.raises(RilError) as err:
        make_trainer(world, str(tmp_path / "b"), "TRAINER.PROMPTKD.TEACHER", twin).before_train()
    _one_line(err, "teacher.weights_hash", "TRAINER.PROMPTKD.TEACHER", "ril_tools.build")
    # other prompt words with the same prompt tensors: other prompt strings
    with pytest.raises(RilError) as err:
        make_trainer(world, str(tmp_path / "c"), "TRAINER.PROMPTKD.TEACHER_CTX_INIT", "a picture of a").before_train()
    _one_line(err, "TRAINER.PROMPTKD.TEACHER_CTX_INIT", "'a photo of a'")


def test_another_class_list_a_missing_table_and_a_sparse_label_mode_are_refused(world, tmp_path):
    with pytest.raises(RilError) as err:  # base classes only: not the table's class list
        make_trainer(world, str(tmp_path / "a"), "DATASET.SUBSAMPLE_CLASSES", "base",
                     "TRAINER.PROMPTKD.TRANSDUCTIVE", "False").before_train()
    _one_line(err, "TRAINER.PROMPTKD.RIL_DIR", "class names differ")
    missing = str(tmp_path / "nowhere")
    with pytest.raises(RilError) as err:
        make_trainer(world, str(tmp_path / "b"), table=missing).before_train()
    _one_line(err, f"TRAINER.PROMPTKD.RIL_DIR {missing} does not exist", "--teacher-prompts", "--label-kind full")
    with pytest.raises(ConfigError, match="TRAINER.PROMPTKD.LABEL_MODE"):
        make_trainer(world, str(tmp_path / "c"), "TRAINER.PROMPTKD.LABEL_MODE", "ms")
