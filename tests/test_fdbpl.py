"""FDBPL trainer end to end on the tiny world: train, checkpoint, resume, eval-only, no teacher, errors, ablations."""

import os
import re

import pytest
import torch

import train
from engine.errors import ConfigError
from engine.logger import close_logger
from engine.results import parse_log
from tests.fixtures.fdbpl_world import REPO, build_table
from tests.fixtures.interrupt import interrupted_after_epoch

FDBPL_YAML = os.path.join(REPO, "configs/trainers/FDBPL/toyshapes.yaml")
TOY_YAML = os.path.join(REPO, "configs/datasets/toyshapes.yaml")
COMPONENTS = ("loss_pos", "loss_neg", "loss_diff1", "loss_diff2")


@pytest.fixture(scope="module")
def world(fdbpl_world):
    return fdbpl_world


def fdbpl_args(world, out, *extra, epochs=2, ril=None, subsample="base"):
    """An FDBPL run as scripts/fdbpl launches it, shrunk to the tiny CLIP (32 px) and 2-shot ToyShapes."""
    return [
        "--root", world["root"], "--seed", "1", "--trainer", "FDBPL",
        "--dataset-config-file", TOY_YAML, "--config-file", FDBPL_YAML, "--output-dir", out,
        "MODEL.BACKBONE.NAME", world["student"], "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", str(epochs),
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "32", "DATALOADER.TEST.BATCH_SIZE", "96",
        "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", subsample, "TRAIN.PRINT_FREQ", "1",
        "TRAINER.FDBPL.RIL_DIR", world["table"] if ril is None else ril, *extra,
    ]


def run(args):
    try:
        train.cli(args)
    finally:
        close_logger()


def final_state(out, epoch):
    path = os.path.join(out, "prompt_learner", f"model.pth.tar-{epoch}")
    return torch.load(path, weights_only=True)["state_dict"]


def logged(out, key):
    """Every value of ``key`` printed on the progress lines of log.txt."""
    text = open(os.path.join(out, "log.txt")).read()
    return [float(v) for v in re.findall(rf"(?<![\w]){key} (-?[\d.]+) \(", text)]


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """One uninterrupted 2-epoch run; records every CLIP load made while it ran."""
    import clip_tools.loading
    import clip_tools.teacher
    import trainers.base

    out = str(tmp_path_factory.mktemp("fdbpl_run") / "seed1")
    loads = []
    saved = (trainers.base.load_clip, clip_tools.loading.load_clip, clip_tools.teacher.FrozenTeacher.load)

    def counting(name, *a, **k):
        loads.append(str(name))
        return saved[1](name, *a, **k)

    def no_teacher(*a, **k):
        raise AssertionError("FDBPL training must not build a teacher")

    trainers.base.load_clip = clip_tools.loading.load_clip = counting
    clip_tools.teacher.FrozenTeacher.load = no_teacher
    try:
        run(fdbpl_args(world, out))
    finally:
        trainers.base.load_clip, clip_tools.loading.load_clip, clip_tools.teacher.FrozenTeacher.load = saved
    return out, loads


@pytest.mark.slow  # end to end, several seconds
def test_training_logs_checkpoints_and_loads_no_teacher(world, trained):
    out, loads = trained
    assert loads == [world["student"]]  # the student only; the teacher file is never read
    state = final_state(out, 2)
    assert set(k for k in state if k.endswith("ctx")) == {"pos.ctx", "neg.ctx"}
    from clip_tools.loading import load_clip
    from clip_tools.prompt_learners import init_context

    clip = load_clip(world["student"])
    pos0, _, _ = init_context("a photo of a", clip)
    neg0, _, _ = init_context("a photo of no", clip)
    assert not torch.allclose(state["pos.ctx"], pos0) and not torch.allclose(state["neg.ctx"], neg0)
    losses = logged(out, "loss")
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))  # 2 epochs x 2 batches of 32
    for key in COMPONENTS + ("acc",):
        assert len(logged(out, key)) == 4, key
    assert any(v != 0 for v in logged(out, "loss_diff1")) and any(v != 0 for v in logged(out, "loss_neg"))
    events = os.listdir(os.path.join(out, "tensorboard"))
    assert events and os.path.getsize(os.path.join(out, "tensorboard", events[0])) > 0
    assert parse_log(os.path.join(out, "log.txt")) is not None  # the final "=> result" block


@pytest.mark.slow  # end to end, several seconds
def test_eval_only_on_base_new_and_all_classes_needs_no_table(world, trained, tmp_path, capsys):
    out, _ = trained
    base_acc = parse_log(os.path.join(out, "log.txt"))
    # "all" has 64 classes: loading the 32 base classes' token buffers would fail, so they must be rebuilt
    for sub, classes in (("base", 32), ("new", 32), ("all", 64)):
        out_eval = str(tmp_path / f"test_{sub}")
        args = ["--eval-only", "--model-dir", out, "--load-epoch", "2"] + fdbpl_args(
            world, out_eval, ril=os.path.join(str(tmp_path), "no_table_here"), subsample=sub)
        run(args)
        log = open(os.path.join(out_eval, "log.txt")).read()
        assert "* accuracy:" in log and f"# classes  {classes}" in log
        assert not os.path.exists(os.path.join(out_eval, "prompt_learner"))
        if sub == "base":  # the deployed positive prompts reproduce the end-of-training result
            assert parse_log(os.path.join(out_eval, "log.txt"), test_log=True) == pytest.approx(base_acc)
    assert "accuracy:" in capsys.readouterr().out


@pytest.mark.slow  # end to end, several seconds
def test_resume_after_interruption_gives_the_same_prompts(world, trained, tmp_path, monkeypatch):
    out = str(tmp_path / "interrupted")
    with interrupted_after_epoch(monkeypatch, 0):
        run(fdbpl_args(world, out, "TEST.NO_TEST", "True"))
    run(fdbpl_args(world, out, "TEST.NO_TEST", "True"))
    full, resumed = final_state(trained[0], 2), final_state(out, 2)
    for key in ("pos.ctx", "neg.ctx"):
        assert torch.equal(full[key], resumed[key]), key


@pytest.mark.slow  # end to end, several seconds
def test_mismatched_or_missing_table_stops_with_one_line(world, tmp_path, capsys):
    other = build_table(world, "ril_all_1shot", shots=1, subsample="all")
    capsys.readouterr()  # the build's progress bars
    with pytest.raises(SystemExit) as exc:
        run(fdbpl_args(world, str(tmp_path / "a"), ril=other))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: RIL table") and "\n" not in err
    assert "class names differ" in err and "python -m ril_tools.build" in err
    with pytest.raises(SystemExit):
        run(fdbpl_args(world, str(tmp_path / "b"), ril=""))
    assert "TRAINER.FDBPL.RIL_DIR is empty" in capsys.readouterr().err


@pytest.mark.parametrize("opts, wrong", [
    (("TRAINER.FDBPL.BASE", "MaPLe"), "is not one of CoOp, PromptSRC"),
    (("TRAINER.FDBPL.LABEL_MODE", "topk"), "LABEL_MODE 'topk' is not one of full, ms, mr"),
    (("TRAINER.FDBPL.LAMBDA_NEG", "-1.0"), "LAMBDA_NEG is -1.0; it must be >= 0"),
])
def test_bad_settings_are_config_errors(world, tmp_path, opts, wrong):
    from engine.trainer import build_trainer

    args = train.build_parser().parse_args(fdbpl_args(world, str(tmp_path), *opts))
    with pytest.raises(ConfigError, match=re.escape(wrong)):
        build_trainer(train.setup_cfg(args))


@pytest.mark.parametrize("opts, off", [
    (("TRAINER.FDBPL.LAMBDA_NEG", "0.0", "TRAINER.FDBPL.LABEL_MODE", "mr"), "loss_neg"),
    (("TRAINER.FDBPL.LAMBDA_DIFF1", "0.0", "TRAINER.FDBPL.LABEL_MODE", "full"), "loss_diff1"),
    (("TRAINER.FDBPL.LAMBDA_DIFF2", "0.0"), "loss_diff2"),
])
@pytest.mark.slow  # end to end, several seconds
def test_ablation_switches_run(world, tmp_path, opts, off):
    ril = world["table"]
    if "full" in opts:
        ril = build_table(world, "ril_base_full", "--label-kind", "full")
    out = str(tmp_path / "ablation")
    run(fdbpl_args(world, out, "TEST.NO_TEST", "True", *opts, epochs=1, ril=ril))
    assert logged(out, off) == [0.0, 0.0]
    for key in set(COMPONENTS) - {off, "loss_diff2"}:  # L_diff2 is ~1e-5 here and prints as 0.0000
        assert any(v != 0 for v in logged(out, key)), key
    assert all(abs(v) < 1e3 for v in logged(out, "loss"))


def test_one_step_equals_eq17_computed_by_hand_and_sees_the_epoch(world, tmp_path):
    """The trainer's step (one image pass, one [2C] text pass, densify on device) against separate passes."""
    from engine.trainer import build_trainer
    from ril_tools.labels import densify
    from trainers.losses import fdbpl_total_loss

    args = train.build_parser().parse_args(fdbpl_args(world, str(tmp_path), "TRAINER.FDBPL.DELTA", "0.5",
                                                      "TRAINER.FDBPL.ALPHA", "0.7", "TRAINER.FDBPL.LAMBDA_NEG", "2.0",
                                                      "TRAINER.FDBPL.LAMBDA_DIFF1", "0.3",
                                                      "TRAINER.FDBPL.LAMBDA_DIFF2", "1.5"))
    trainer = build_trainer(train.setup_cfg(args))
    trainer.setup_ril_loader()
    trainer.epoch = 3
    trainer.before_epoch()
    batch = next(iter(trainer.train_loader_x))
    assert (batch["epoch"] == 3).all()
    model, learner = trainer.model, trainer.model.prompt_learner
    with torch.no_grad():
        img = model.image_features(batch["img"])
        pos = torch.nn.functional.normalize(model.text_encoder(learner.pos(), learner.pos.tokenized_prompts), dim=-1)
        neg = torch.nn.functional.normalize(model.text_encoder(learner.neg(), learner.neg.tokenized_prompts), dim=-1)
        scale = model.logit_scale.exp()
        probs = densify(batch["ril_idx"], batch["ril_logp"], 32, "ms")
        want = fdbpl_total_loss(scale * img @ pos.t(), scale * img @ neg.t(), probs, batch["w"], img, pos, neg,
                                lambda_neg=2.0, lambda_diff1=0.3, lambda_diff2=1.5, alpha=0.7, delta=0.5)
        acc = (scale * img @ pos.t()).argmax(1).eq(batch["ril_idx"][:, 0]).float().mean().item() * 100
    before = learner.neg.ctx.detach().clone()
    got = trainer.forward_backward(batch)
    for key, value in want.as_dict().items():
        assert got[key] == pytest.approx(value.item(), rel=1e-4, abs=1e-6), key
    assert got["loss_diff2"] > 0 and got["acc"] == pytest.approx(acc)
    assert not torch.equal(before, learner.neg.ctx)  # the step updated the negative prompts too
