"""PromptSRC_KDPL (KDPL's distillation in place of CE) and FDBPL on a PromptSRC base, on the tiny world."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

import train
from clip_tools import loading as cb
from clip_tools import tokens as _tokens
from clip_tools.prompted import normalize
from engine.errors import ConfigError
from engine.logger import close_logger
from engine.results import parse_log
from engine.trainer import build_trainer
from tests.fixtures.fdbpl_world import REPO
from tests.fixtures.tiny_clip import tiny_clip_file
from tests.fixtures.toy_data import shared_toyshapes_root, toy_cfg
from trainers.losses import fdbpl_total_loss, promptsrc_regularisation

SMALL = {"TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT": 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION": 2,
         "TRAINER.PROMPTSRC.N_CTX_VISION": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ PromptSRC_KDPL


@pytest.fixture(scope="module")
def kdpl_files(tmp_path_factory):
    student = tiny_clip_file(tmp_path_factory)
    model, arch = cb.build_tiny_clip(seed=7, embed_dim=48, vision_width=96, text_width=96, heads=2)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # not the student's: the loss must use the student's scale
    teacher = cb.save_clip_file(model, arch, str(tmp_path_factory.mktemp("teacher") / "teacher.pt"))
    return student, teacher


def kdpl_trainer(files, tmp_path, **opts):
    base = {"TRAINER.NAME": "PromptSRC_KDPL", "MODEL.BACKBONE.NAME": files[0], "TRAINER.KDPL.TEACHER": files[1],
            "DATASET.NUM_SHOTS": 1, "DATASET.SUBSAMPLE_CLASSES": "base", "OPTIM.NAME": "sgd", "OPTIM.LR": 0.01,
            "OPTIM.MAX_EPOCH": 1, "OUTPUT_DIR": str(tmp_path / "out"), "TRAIN.PRINT_FREQ": 1000, **SMALL}
    base.update(opts)
    return build_trainer(toy_cfg(shared_toyshapes_root(), base))


def test_promptsrc_kdpl_replaces_ce_by_the_symmetric_kl(kdpl_files, tmp_path):
    trainer = kdpl_trainer(kdpl_files, tmp_path)
    trainer.build_teacher()
    trainer.build_fixed_text_features()
    batch = next(iter(trainer.train_loader_x))
    image = batch["img"]
    teacher = cb.load_clip(kdpl_files[1])
    names = [c.replace("_", " ") for c in trainer.dm.dataset.classnames]
    model = trainer.model
    with torch.no_grad():
        s_scale = model.logit_scale.exp()
        t_txt = F.normalize(teacher.encode_text(_tokens.tokenize([f"a photo of a {n}." for n in names], 16)), dim=-1)
        t_logits = s_scale * F.normalize(teacher.encode_image(image), dim=-1) @ t_txt.t()
        img, txt = model.image_features(image), model.text_features()
        logits = s_scale * img @ txt.t()
        ps, pt = logits.double().softmax(-1), t_logits.double().softmax(-1)
        kd = 0.5 * (pt * (pt.log() - ps.log())).sum(-1).mean() + 0.5 * (ps * (ps.log() - pt.log())).sum(-1).mean()
        zs = model.zero_shot_image_features(image)
        reg = promptsrc_regularisation(txt, trainer.fixed_text_features, img, zs, logits,
                                       s_scale * zs @ trainer.fixed_text_features.t())
    trainer.set_model_mode("train")
    out = trainer.forward_backward(batch)
    assert "loss_ce" not in out and out["loss_kd"] == pytest.approx(kd.item(), rel=1e-4)
    assert out["loss_scl_text"] == pytest.approx(reg.loss_text.item(), rel=1e-4)
    assert out["loss"] == pytest.approx(kd.item() + reg.total.item(), rel=1e-4)
    assert trainer.gpa is not None and len(trainer.gpa.weights) == 1


def test_promptsrc_kdpl_refuses_class_agnostic(kdpl_files, tmp_path):
    with pytest.raises(ConfigError, match="CLASS_AGNOSTIC True is not supported by PromptSRC_KDPL"):
        kdpl_trainer(kdpl_files, tmp_path, **{"TRAINER.KDPL.CLASS_AGNOSTIC": True})


# ------------------------------------------------------------------------------------------ FDBPL + PromptSRC

FDBPL_SRC_YAML = os.path.join(REPO, "configs/trainers/FDBPL/promptsrc_toyshapes.yaml")
TOY_YAML = os.path.join(REPO, "configs/datasets/toyshapes.yaml")


@pytest.fixture(scope="module")
def world(fdbpl_world):
    return fdbpl_world  # tiny student, tiny teacher, RIL table for 2-shot base (M 4, K 3)


def fdbpl_src_args(world, out, *extra, epochs=2, flags=()):
    return ["--root", world["root"], "--seed", "1", "--trainer", "FDBPL", "--dataset-config-file", TOY_YAML,
            "--config-file", FDBPL_SRC_YAML, "--output-dir", out, *flags,
            "MODEL.BACKBONE.NAME", world["student"], "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", str(epochs),
            "OPTIM.LR", "0.01", "TRAINER.PROMPTSRC.GPA_MEAN", "1.0", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "32", "DATALOADER.TEST.BATCH_SIZE", "96", "DATASET.NUM_SHOTS", "2",
            "DATASET.SUBSAMPLE_CLASSES", "base", "TRAIN.PRINT_FREQ", "1", "TRAINER.FDBPL.RIL_DIR", world["table"],
            *[str(v) for kv in SMALL.items() for v in kv], *extra]


def fdbpl_src_trainer(world, tmp_path):
    args = train.build_parser().parse_args(fdbpl_src_args(world, str(tmp_path / "out")))
    return build_trainer(train.setup_cfg(args))


def test_fdbpl_step_shares_vision_prompts_and_duplicates_text_prompts(world, tmp_path):
    from trainers.promptsrc_fdbpl import PromptSRC_FDBPL

    trainer = fdbpl_src_trainer(world, tmp_path)
    assert type(trainer) is PromptSRC_FDBPL
    learner = trainer.model.prompt_learner
    assert {k for k, _ in learner.named_parameters()} == {
        "pos.ctx", "pos.deep_text.0", "pos.vision_ctx", "pos.deep_vision.0", "neg.ctx", "neg.deep_text.0"}
    trainer.setup_ril_loader()
    trainer.build_fixed_text_features()
    trainer.train_loader_x.sampler.set_epoch(0)
    batch = next(iter(trainer.train_loader_x))
    image, probs, labels, w = trainer.parse_batch_train(batch)
    model, node = trainer.model, trainer.cfg.TRAINER.FDBPL
    with torch.no_grad():  # expected values with each branch encoded on its own (no stacking)
        img = model.image_features(image)
        enc = model.text_encoder
        pos = normalize(enc(learner.pos(), learner.pos.tokenized_prompts, deep_prompts=learner.pos.text_deep_prompts()))
        neg = normalize(enc(learner.neg(), learner.neg.tokenized_prompts, deep_prompts=learner.neg.text_deep_prompts()))
        scale = model.logit_scale.exp()
        fd = fdbpl_total_loss(scale * img @ pos.t(), scale * img @ neg.t(), probs, w, img, pos, neg,
                              lambda_neg=node.LAMBDA_NEG, lambda_diff1=node.LAMBDA_DIFF1,
                              lambda_diff2=node.LAMBDA_DIFF2, alpha=node.ALPHA, delta=node.DELTA, labels=labels)
        zs = model.zero_shot_image_features(image)
        fixed = trainer.fixed_text_features
        reg = promptsrc_regularisation(pos, fixed, img, zs, scale * img @ pos.t(), scale * zs @ fixed.t())
    calls = {"image": 0, "prompted_image": 0, "text": 0}
    original_image, original_text = type(model.image_encoder).forward, type(model.text_encoder).forward

    def count_image(self, images, vision_prompts=None, deep_vision_prompts=None):
        calls["image"] += 1
        calls["prompted_image"] += vision_prompts is not None
        return original_image(self, images, vision_prompts, deep_vision_prompts)

    def count_text(self, *a, **k):
        calls["text"] += 1
        return original_text(self, *a, **k)

    type(model.image_encoder).forward, type(model.text_encoder).forward = count_image, count_text
    try:
        trainer.set_model_mode("train")
        out = trainer.forward_backward(batch)
    finally:
        type(model.image_encoder).forward, type(model.text_encoder).forward = original_image, original_text
    # one prompted image pass feeds both branches, one frozen pass for the regulariser, one text call for both
    assert calls == {"image": 2, "prompted_image": 1, "text": 1}
    for key, value in fd.as_dict().items():
        if key != "loss":
            assert out[key] == pytest.approx(value.item(), rel=1e-4, abs=1e-6), key
    assert out["loss_scl_image"] == pytest.approx(reg.loss_image.item(), rel=1e-4)
    assert out["loss_scl_logits"] == pytest.approx(reg.loss_logits.item(), rel=1e-4, abs=1e-7)
    assert out["loss"] == pytest.approx(fd.total.item() + reg.total.item(), rel=1e-4)
    assert "loss_ce" not in out


@pytest.mark.slow  # end to end, several seconds
def test_fdbpl_on_promptsrc_trains_end_to_end_and_evaluates(world, tmp_path):
    out = str(tmp_path / "train")
    try:
        train.cli(fdbpl_src_args(world, out))
    finally:
        close_logger()
    log = open(os.path.join(out, "log.txt")).read()
    assert "FDBPL on PromptSRC" in log and "GPA: loaded the Gaussian-weighted average" in log
    trained_acc = parse_log(os.path.join(out, "log.txt"))
    assert trained_acc is not None
    ckpt = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-2"), weights_only=True)
    assert ckpt["trainer_state"]["extra"]["gpa"]["epochs"] == [0, 1]
    assert not any("visual" in k or "transformer" in k for k in ckpt["state_dict"])
    evaluated = str(tmp_path / "eval")
    try:
        train.cli(fdbpl_src_args(world, evaluated, "TRAINER.FDBPL.RIL_DIR", "",  # evaluation needs no table
                                 flags=("--model-dir", out, "--load-epoch", "2", "--eval-only")))
    finally:
        close_logger()
    assert parse_log(os.path.join(evaluated, "log.txt"), test_log=True) == pytest.approx(trained_acc)
