"""PromptSRC and IVLP trainers on the tiny world: loss known answers, GPA (weights, aggregate, resume), checkpoints
holding only the prompts, evaluation on other classes, fp32 training on the CPU."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

import train
from clip_tools import loading as cb
from clip_tools import tokens as _tokens
from engine.logger import close_logger
from engine.results import parse_log
from engine.trainer import build_trainer
from tests.fixtures.interrupt import interrupted_after_epoch
from tests.fixtures.tiny_clip import tiny_clip_file
from tests.fixtures.toy_data import shared_toyshapes_root, toy_cfg
from trainers.promptsrc import GpaAccumulator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC_YAML = os.path.join(REPO, "configs/trainers/PromptSRC/toyshapes.yaml")
TOY_YAML = os.path.join(REPO, "configs/datasets/toyshapes.yaml")
SMALL = {"TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT": 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION": 2,
         "TRAINER.PROMPTSRC.N_CTX_VISION": 2}


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return tiny_clip_file(tmp_path_factory)  # 2 text + 2 vision blocks, 32 px, context 16


pytestmark = pytest.mark.usefixtures("one_thread")


def trainer_for(clip_path, tmp_path, name="PromptSRC", **opts):
    base = {"TRAINER.NAME": name, "MODEL.BACKBONE.NAME": clip_path, "DATASET.NUM_SHOTS": 1,
            "DATASET.SUBSAMPLE_CLASSES": "base", "OPTIM.NAME": "sgd", "OPTIM.LR": 0.01, "OPTIM.MAX_EPOCH": 2,
            "OUTPUT_DIR": str(tmp_path / "out"), "TRAIN.PRINT_FREQ": 1000, "TEST.NO_TEST": True}
    base.update(SMALL if name == "PromptSRC" else {})
    base.update(opts)
    return build_trainer(toy_cfg(shared_toyshapes_root(), base))


def test_promptsrc_loss_known_answer_fp32_on_cpu(clip_path, tmp_path):
    """CE + 25 L1(text, 60-template mean) + 10 L1(image, frozen image) + KL(zero-shot || prompted) / (B C),
    with the frozen targets computed independently through open_clip's own encode_text / encode_image."""
    from datasets.templates import PROMPTSRC_TEMPLATES

    trainer = trainer_for(clip_path, tmp_path, **{"TRAINER.PROMPTSRC.PREC": "fp16"})  # fp16 maps to fp32 on CPU
    assert trainer.precision == "fp32"
    batch = next(iter(trainer.train_loader_x))
    image, label = batch["img"], batch["label"]
    model, clip = trainer.model, cb.load_clip(clip_path)
    names = [c.replace("_", " ") for c in trainer.dm.dataset.classnames]
    with torch.no_grad():
        raw = torch.stack([clip.encode_text(_tokens.tokenize([t.format(n) for n in names], 16))
                           for t in PROMPTSRC_TEMPLATES])
        fixed = F.normalize(raw.mean(0), dim=-1)
        zs_img = F.normalize(clip.encode_image(image), dim=-1)
        img, txt = model.image_features(image), model.text_features()
        scale = clip.logit_scale.exp()
        logits, zs_logits = scale * img @ txt.t(), scale * zs_img @ fixed.t()
        p_zs = zs_logits.softmax(-1)
        expected = {
            "loss_ce": F.cross_entropy(logits, label).item(),
            "loss_scl_text": 25 * (txt - fixed).abs().mean().item(),
            "loss_scl_image": 10 * (img - zs_img).abs().mean().item(),
            "loss_scl_logits": (p_zs * (p_zs.log() - logits.log_softmax(-1))).sum().item() / logits.numel(),
        }
    expected["loss"] = sum(expected.values())
    frozen_before = clip.visual.conv1.weight.clone()
    ctx_before = model.prompt_learner.ctx.detach().clone()
    trainer.set_model_mode("train")
    out = trainer.forward_backward(batch)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key
    assert expected["loss_scl_logits"] > 0 and expected["loss_scl_image"] > 0
    assert not torch.equal(ctx_before, model.prompt_learner.ctx)  # the step trained the prompts ...
    assert torch.equal(trainer.model.image_encoder.visual.conv1.weight, frozen_before)  # ... and nothing else
    assert trainer.get_model_names() == ["VLPromptLearner"]


def test_gpa_weights_are_promptsrc_reference_values(clip_path, tmp_path):
    trainer = trainer_for(clip_path, tmp_path, **{"OPTIM.MAX_EPOCH": 20, "TRAINER.PROMPTSRC.GPA_MEAN": 15.0,
                                                 "TRAINER.PROMPTSRC.GPA_STD": 1.0})
    w = trainer.gpa.weights
    assert len(w) == 20 and sum(w) == pytest.approx(1.0, abs=1e-12)
    assert [round(w[e - 1], 3) for e in (13, 14, 15, 16, 17)] == [0.054, 0.242, 0.399, 0.242, 0.054]
    assert sum(w[12:17]) == pytest.approx(0.991, abs=1e-3)
    pdf = [math.exp(-0.5 * (e - 15) ** 2) for e in range(1, 21)]
    assert w == pytest.approx([p / sum(pdf) for p in pdf], rel=1e-12)


def test_gpa_accumulator_known_answer_and_round_trip():
    module = torch.nn.Linear(2, 1, bias=False)
    module.weight.requires_grad_(True)
    gpa = GpaAccumulator([0.25, 0.75])
    with torch.no_grad():
        module.weight.fill_(4.0)
        gpa.add(0, module)
        gpa.add(0, module)  # the same epoch twice counts once
        module.weight.fill_(8.0)
        gpa.add(1, module)
    assert gpa.complete and torch.equal(gpa.sum["weight"], torch.full((1, 2), 7.0))
    clone = GpaAccumulator([0.25, 0.75])
    clone.load_state_dict(gpa.state_dict())
    clone.load_into(module)
    assert torch.equal(module.weight, torch.full((1, 2), 7.0)) and clone.epochs == [0, 1]
    with pytest.raises(IndexError, match="2 epochs, not for epoch 3"):
        gpa.add(2, module)


# ------------------------------------------------------------------------------- end to end through train.py


def src_args(clip_path, out, *extra, epochs=3, flags=()):
    """A PromptSRC run as scripts/promptsrc launches it, with the toy config shrunk to the tiny CLIP."""
    return ["--root", shared_toyshapes_root(), "--seed", "1", "--trainer", "PromptSRC",
            "--dataset-config-file", TOY_YAML, "--config-file", SRC_YAML, "--output-dir", out, *flags,
            "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", str(epochs),
            "TRAINER.PROMPTSRC.GPA_MEAN", "2.0", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "16",
            "DATALOADER.TEST.BATCH_SIZE", "96", "DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base",
            "TRAIN.PRINT_FREQ", "1", *[str(v) for kv in SMALL.items() for v in kv], *extra]


def run(args):
    try:
        train.cli(args)
    finally:
        close_logger()


def checkpoint(out, epoch):
    return torch.load(os.path.join(out, "VLPromptLearner", f"model.pth.tar-{epoch}"), weights_only=True)


@pytest.fixture(scope="module")
def full_run(clip_path, tmp_path_factory):
    """An uninterrupted 3-epoch run; records the prompts GPA saw after each epoch."""
    from trainers.promptsrc import GpaAccumulator as Gpa

    out = str(tmp_path_factory.mktemp("promptsrc") / "seed1")
    seen, original = [], Gpa.add

    def recording(self, epoch, module):
        seen.append({k: v.detach().clone() for k, v in module.named_parameters()})
        return original(self, epoch, module)

    Gpa.add = recording
    try:
        run(src_args(clip_path, out))
    finally:
        Gpa.add = original
    return out, seen


def test_final_prompts_are_the_gaussian_weighted_average(full_run):
    out, seen = full_run
    ckpt = checkpoint(out, 3)
    weights = [math.exp(-0.5 * (e - 2) ** 2) for e in (1, 2, 3)]
    weights = [w / sum(weights) for w in weights]
    assert len(seen) == 3
    for name, value in ckpt["state_dict"].items():
        if name.startswith("token_"):
            continue
        expected = sum(w * s[name] for w, s in zip(weights, seen))
        assert torch.allclose(value, expected, atol=1e-7), name
        assert not torch.allclose(value, seen[-1][name])  # not simply the last epoch
    # the checkpoint holds the prompts only (no CLIP weights), plus the GPA running sum
    assert {k for k in ckpt["state_dict"] if not k.startswith("token_")} == {
        "ctx", "deep_text.0", "vision_ctx", "deep_vision.0"}
    assert ckpt["trainer_state"]["extra"]["gpa"]["epochs"] == [0, 1, 2]
    log = open(os.path.join(out, "log.txt")).read()
    assert "GPA: loaded the Gaussian-weighted average" in log and parse_log(os.path.join(out, "log.txt")) is not None


@pytest.mark.slow  # end to end, several seconds
def test_resume_mid_run_ends_with_the_same_aggregate(full_run, clip_path, tmp_path, monkeypatch):
    out = str(tmp_path / "interrupted")
    with interrupted_after_epoch(monkeypatch, 1):
        run(src_args(clip_path, out))
    partial = checkpoint(out, 2)["trainer_state"]["extra"]["gpa"]
    assert partial["epochs"] == [0, 1] and set(partial["sum"]) == {"ctx", "deep_text.0", "vision_ctx",
                                                                     "deep_vision.0"}
    run(src_args(clip_path, out))
    a, b = checkpoint(full_run[0], 3), checkpoint(out, 3)
    for name in a["state_dict"]:
        assert torch.equal(a["state_dict"][name], b["state_dict"][name]), name


def test_eval_only_on_new_classes_loads_only_the_prompts(full_run, clip_path, tmp_path):
    out = str(tmp_path / "eval_new")
    run(src_args(clip_path, out, "DATASET.SUBSAMPLE_CLASSES", "new",
                 flags=("--model-dir", full_run[0], "--load-epoch", "3", "--eval-only")))
    log = open(os.path.join(out, "log.txt")).read()
    assert "PromptSRC text targets" not in log  # evaluation never builds the training-only targets
    assert parse_log(os.path.join(out, "log.txt"), test_log=True) is not None


def test_ivlp_trains_with_cross_entropy_from_its_own_node(clip_path, tmp_path):
    trainer = trainer_for(clip_path, tmp_path, name="IVLP", **{
        "TRAINER.IVLP.N_CTX_TEXT": 2, "TRAINER.IVLP.N_CTX_VISION": 3, "TRAINER.IVLP.PROMPT_DEPTH_TEXT": 2,
        "TRAINER.IVLP.PROMPT_DEPTH_VISION": 1, "OPTIM.MAX_EPOCH": 1})
    learner = trainer.model.prompt_learner
    assert learner.num_prompt_params() == {"text": 2 * 64 * 2, "vision": 3 * 64 * 1}
    batch = next(iter(trainer.train_loader_x))
    with torch.no_grad():
        expected = F.cross_entropy(trainer.model(batch["img"]), batch["label"]).item()
    trainer.set_model_mode("train")
    out = trainer.forward_backward(batch)
    assert set(out) == {"loss", "acc"} and out["loss"] == pytest.approx(expected, rel=1e-5)
    trainer.train()
    assert sorted(os.listdir(str(tmp_path / "out" / "VLPromptLearner"))) == ["checkpoint", "model.pth.tar-1"]
    assert not hasattr(trainer, "gpa")  # IVLP: no aggregation, the last epoch is the model
