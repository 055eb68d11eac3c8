"""Table-fed KDPL (TRAINER.KDPL.RIL_DIR): no teacher built, KDPL's loss on the table's targets, table checks.

Uses the FDBPL test world (tiny ToyShapes, tiny student, an RIL table built by ril_tools.build with M = 4, K = 3).
"""

import os

import pytest
import torch
import torch.nn.functional as F

import clip_tools.teacher as teacher_mod
import train
from engine.errors import ConfigError, RilError
from engine.logger import close_logger
from engine.trainer import build_trainer
from ril_tools.labels import densify
from tests.fixtures.fdbpl_world import REPO

TOY_YAML = os.path.join(REPO, "configs/datasets/toyshapes.yaml")
KDPL_YAML = os.path.join(REPO, "configs/trainers/CoOp_KDPL/toyshapes.yaml")


@pytest.fixture(scope="module")
def world(fdbpl_world):
    return fdbpl_world


def kdpl_args(world, out, *extra, trainer="CoOp_KDPL", ril=None, subsample="base"):
    return ["--root", world["root"], "--seed", "1", "--trainer", trainer, "--dataset-config-file", TOY_YAML,
            "--config-file", KDPL_YAML, "--output-dir", out, "MODEL.BACKBONE.NAME", world["student"],
            "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "DATALOADER.TEST.BATCH_SIZE", "96", "DATASET.NUM_SHOTS", "2",
            "DATASET.SUBSAMPLE_CLASSES", subsample, "TRAIN.PRINT_FREQ", "1", "OPTIM.LR", "0.5",
            "TRAINER.KDPL.TEACHER", "/nonexistent/teacher.pt",  # would fail loudly if anything tried to load it
            "TRAINER.KDPL.RIL_DIR", world["table"] if ril is None else ril, *extra]


def make_trainer(world, out, *extra, **kw):
    return build_trainer(train.setup_cfg(train.build_parser().parse_args(kdpl_args(world, out, *extra, **kw))))


@pytest.fixture
def no_teacher(monkeypatch):
    """Constructing or loading the online teacher fails the test."""
    def refuse(*a, **k):
        raise AssertionError("table-fed KDPL built a teacher")

    monkeypatch.setattr(teacher_mod.FrozenTeacher, "__init__", refuse)
    monkeypatch.setattr(teacher_mod.FrozenTeacher, "load", refuse)


def kl_by_hand(student_logits, teacher_probs):
    """0.5 KL(T||S) + 0.5 KL(S||T), batch mean, float64, teacher given as probabilities (no zeros in ms)."""
    ps, pt = F.softmax(student_logits.double(), -1), teacher_probs.double()
    return float(0.5 * (pt * (pt.log() - ps.log())).sum(-1).mean() + 0.5 * (ps * (ps.log() - pt.log())).sum(-1).mean())


def test_training_end_to_end_never_builds_a_teacher(world, tmp_path, no_teacher):
    out = str(tmp_path / "run")
    try:
        train.cli(kdpl_args(world, out))
    finally:
        close_logger()
    log = open(os.path.join(out, "log.txt")).read()
    assert "KDPL teacher from RIL table" in log and "loss" in log
    assert os.path.isfile(os.path.join(out, "prompt_learner", "model.pth.tar-1"))


@pytest.mark.parametrize("trainer_name", ["CoOp_KDPL", "PromptSRC_KDPL"])
def test_one_step_is_kdpl_loss_on_the_replayed_crops_and_table_labels(world, tmp_path, no_teacher, trainer_name):
    depth = ("TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2")  # tiny CLIP
    trainer = make_trainer(world, str(tmp_path), *(depth if trainer_name == "PromptSRC_KDPL" else ()),
                           trainer=trainer_name)
    trainer.setup_teacher_table()
    trainer.epoch = 2
    trainer.before_epoch()
    batch = next(iter(trainer.train_loader_x))
    assert (batch["epoch"] == 2).all()  # the replay schedule sees the epoch
    probs = densify(batch["ril_idx"], batch["ril_logp"], len(trainer.dm.dataset.classnames), "ms")
    with torch.no_grad():
        student = trainer.model(batch["img"])
    expected = kl_by_hand(student, probs)
    uniform = kl_by_hand(student, torch.full_like(probs, 1.0 / probs.shape[1]))
    assert abs(uniform - expected) > 1e-3 * expected  # the check can tell table targets from non-informative ones
    out = trainer.forward_backward(batch)
    key = "loss" if trainer_name == "CoOp_KDPL" else "loss_kd"
    assert out[key] == pytest.approx(expected, rel=1e-4)


def test_table_for_another_run_is_one_line_naming_the_kdpl_key(world, tmp_path, no_teacher):
    trainer = make_trainer(world, str(tmp_path), subsample="new")
    with pytest.raises(RilError) as err:
        trainer.setup_teacher_table()
    msg = str(err.value)
    assert "\n" not in msg and "TRAINER.KDPL.RIL_DIR" in msg and "ril_tools.build" in msg


@pytest.mark.parametrize("opts,key", [(("TRAINER.KDPL.LABEL_MODE", "mr"), "LABEL_MODE"),
                                      (("TRAINER.KDPL.CLASS_AGNOSTIC", "True"), "CLASS_AGNOSTIC")])
def test_settings_the_table_cannot_serve_are_config_errors(world, tmp_path, opts, key):
    with pytest.raises(ConfigError, match=f"TRAINER.KDPL.{key}"):
        make_trainer(world, str(tmp_path), *opts)
