"""VPT and MaPLe on the tiny CLIP: known-answer forwards, what trains, the MaPLe coupling, checkpoint round trips,
evaluation on new classes, and one train + eval run per method through train.py."""

import os

import pytest
import torch
import torch.nn.functional as F

import train
from clip_tools.encoders import ImageEncoder
from clip_tools.loading import build_tiny_clip, load_clip
from clip_tools.prompted import normalize
from clip_tools.tokens import tokenize
from clip_tools.vl_prompts import VLPromptedCLIP
from engine.errors import ConfigError
from engine.logger import close_logger
from engine.results import parse_log
from engine.trainer import build_trainer
from tests.fixtures.toy_data import shared_toyshapes_root, toy_cfg
from trainers.maple import MaPLePromptLearner
from trainers.vpt import VPTCLIP, VPTPromptLearner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["red circle", "blue star", "green square"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip3():
    return build_tiny_clip(vision_layers=3, text_layers=3)[0]  # depth 3: two deep prompts per tower


def images(n=4, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def open_clip_text(clip, prompts):
    """Reference text features through open_clip's own encode_text."""
    with torch.no_grad():
        return F.normalize(clip.encode_text(tokenize(prompts, clip.positional_embedding.shape[0])), dim=-1)


# ------------------------------------------------------------------------------------------------ VPT


def test_vpt_scores_prompted_images_against_the_frozen_hand_prompt(clip3):
    torch.manual_seed(0)
    learner = VPTPromptLearner(NAMES, clip3, n_ctx_vision=3, depth_vision=3)
    assert learner.vision_ctx.shape == (3, 64) and len(learner.deep_vision) == 2
    model = VPTCLIP(clip3, learner)
    x = images()
    txt = open_clip_text(clip3, [f"a photo of a {n}." for n in NAMES])
    with torch.no_grad():
        img = F.normalize(ImageEncoder(clip3)(x, learner.vision_ctx, list(learner.deep_vision)), dim=-1)
        assert torch.allclose(model(x), clip3.logit_scale.exp() * img @ txt.t(), atol=1e-5)
        unprompted = clip3.logit_scale.exp() * F.normalize(clip3.encode_image(x), dim=-1) @ txt.t()
        assert (model(x) - unprompted).abs().max() > 1e-3  # the prompts change the image features
    loss = model(x).logsumexp(-1).sum()
    loss.backward()  # every layer's prompts get a gradient; there is nothing learnable on the text side
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())
    other = VPTPromptLearner(NAMES, clip3, prompt_prefix="a picture of")
    assert torch.allclose(VPTCLIP(clip3, other).text_features(), open_clip_text(clip3, [f"a picture of {n}." for n in NAMES]),
                          atol=1e-5)


def test_vpt_config_errors(clip3):
    with pytest.raises(ConfigError, match="TRAINER.VPT.PROMPT_DEPTH_VISION is 4"):
        VPTPromptLearner(NAMES, clip3, depth_vision=4)
    with pytest.raises(ConfigError, match="TRAINER.VPT.N_CTX_VISION is 0"):
        VPTPromptLearner(NAMES, clip3, n_ctx_vision=0)


# ---------------------------------------------------------------------------------------------- MaPLe


def test_maple_vision_prompts_are_projections_of_the_text_prompts(clip3):
    torch.manual_seed(0)
    learner = MaPLePromptLearner(NAMES, clip3, n_ctx=2, depth=3, ctx_init="a photo of a")
    # the first N_CTX tokens of the phrase are learnable, the rest stays in the prompt
    assert learner.prompt_prefix == "a photo of a" and learner.ctx.shape == (2, 64)
    phrase = clip3.token_embedding(tokenize(["a photo"], 16))[0, 1:3]
    assert torch.allclose(learner.ctx, phrase)
    # MaPLe's init: F_1..F_{J-1} start identical, F_0 is drawn on its own
    f1, f2 = learner.deep_proj
    assert torch.equal(f1.weight, f2.weight) and torch.equal(f1.bias, f2.bias)
    assert not torch.equal(learner.proj.weight, f1.weight)
    model = VLPromptedCLIP(clip3, learner)
    x = images(seed=1)
    with torch.no_grad():  # by hand: vision prompt_l = W_l P_l + b_l
        v0 = learner.ctx @ learner.proj.weight.t() + learner.proj.bias
        deep = [p @ f.weight.t() + f.bias for p, f in zip(learner.deep_text, learner.deep_proj)]
        img = F.normalize(ImageEncoder(clip3)(x, v0, deep), dim=-1)
        txt = normalize(model.text_encoder(learner(), learner.tokenized_prompts, deep_prompts=list(learner.deep_text)))
        assert torch.allclose(model(x), clip3.logit_scale.exp() * img @ txt.t(), atol=1e-5)
        for f in (learner.proj, *learner.deep_proj):  # zero couplings: zero vision prompts at every layer
            f.weight.zero_()
            f.bias.zero_()
        zeros = torch.zeros(2, 64)
        img0 = F.normalize(ImageEncoder(clip3)(x, zeros, [zeros, zeros]), dim=-1)
        assert torch.allclose(model.image_features(x), img0, atol=1e-6)


def test_maple_image_loss_trains_the_text_prompts_through_the_coupling(clip3):
    learner = MaPLePromptLearner(NAMES, clip3, n_ctx=2, depth=3)
    model = VLPromptedCLIP(clip3, learner)
    model.image_features(images()).sum().backward()  # no text encoder involved
    assert learner.deep_text[1].grad is not None and learner.deep_text[1].grad.abs().sum() > 0
    assert learner.ctx.grad.abs().sum() > 0 and learner.deep_proj[1].weight.grad.abs().sum() > 0


def test_maple_config_errors(clip3):
    with pytest.raises(ConfigError, match="TRAINER.MAPLE.PROMPT_DEPTH is 4"):
        MaPLePromptLearner(NAMES, clip3, depth=4)
    with pytest.raises(ConfigError, match="TRAINER.MAPLE.N_CTX is 0"):
        MaPLePromptLearner(NAMES, clip3, n_ctx=0, depth=2)


# ------------------------------------------------------------------------------------------ trainers

SETTINGS = {
    "VPT": ({"TRAINER.VPT.N_CTX_VISION": 2, "TRAINER.VPT.PROMPT_DEPTH_VISION": 2}, "prompt_learner",
            {"vision_ctx", "deep_vision.0"}),
    "MaPLe": ({"TRAINER.MAPLE.PROMPT_DEPTH": 2}, "MultiModalPromptLearner",
              {"ctx", "deep_text.0", "proj.weight", "proj.bias", "deep_proj.0.weight", "deep_proj.0.bias"}),
}


def trainer_for(name, clip_path, tmp_path, **opts):
    base = {"TRAINER.NAME": name, "MODEL.BACKBONE.NAME": clip_path, "DATASET.NUM_SHOTS": 1,
            "DATASET.SUBSAMPLE_CLASSES": "base", "OPTIM.LR": 0.05, "OPTIM.MAX_EPOCH": 1, "OPTIM.WARMUP_EPOCH": 0,
            "OUTPUT_DIR": str(tmp_path / "out"), "TRAIN.PRINT_FREQ": 1000, "TEST.NO_TEST": True,
            **SETTINGS[name][0]}
    base.update(opts)
    return build_trainer(toy_cfg(shared_toyshapes_root(), base))


@pytest.mark.parametrize("name", ["VPT", "MaPLe"])
def test_what_trains_checkpoint_round_trip_and_new_classes(name, tiny_clip_path, tmp_path):
    _, slot, keys = SETTINGS[name]
    trainer = trainer_for(name, tiny_clip_path, tmp_path)
    model = trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"prompt_learner.{k}" for k in keys}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed == trainable  # one epoch moved every prompt tensor and nothing of the CLIP
    ckpt = torch.load(os.path.join(trainer.cfg.OUTPUT_DIR, slot, "model.pth.tar-1"), weights_only=True)
    assert set(ckpt["state_dict"]) - {"token_prefix", "token_suffix"} == keys  # prompts only, no CLIP weights

    x = images(seed=3)
    trainer.set_model_mode("eval")
    with torch.no_grad():
        trained = model(x)
    again = trainer_for(name, tiny_clip_path, tmp_path / "again")
    again.load_model(trainer.cfg.OUTPUT_DIR, epoch=1)
    again.set_model_mode("eval")
    with torch.no_grad():
        assert torch.allclose(again.model(x), trained, atol=1e-6)

    new = trainer_for(name, tiny_clip_path, tmp_path / "new", **{"DATASET.SUBSAMPLE_CLASSES": "new"})
    new.load_model(trainer.cfg.OUTPUT_DIR, epoch=1)
    learner = new.model.prompt_learner
    assert learner.n_cls == 32 and learner.classnames != model.prompt_learner.classnames
    new.set_model_mode("eval")
    with torch.no_grad():
        txt = new.model.text_features()
        if name == "VPT":  # the hand prompt, encoded for the new class list
            expected = open_clip_text(load_clip(tiny_clip_path), [f"a photo of a {n}." for n in learner.classnames])
        else:  # the learned prompts around the new class names
            expected = normalize(new.model.text_encoder(learner(), learner.tokenized_prompts,
                                                         deep_prompts=learner.text_deep_prompts(), truncate=False))
        assert torch.allclose(txt, expected, atol=1e-5)
        assert new.model(x).shape == (4, 32)


@pytest.mark.parametrize("name", ["VPT", "MaPLe"])
def test_train_and_eval_on_new_classes_through_train_py(name, tiny_clip_path, tmp_path):
    common = ["--root", shared_toyshapes_root(), "--seed", "1", "--trainer", name,
              "--dataset-config-file", os.path.join(REPO, "configs/datasets/toyshapes.yaml"),
              "--config-file", os.path.join(REPO, f"configs/trainers/{name}/toyshapes.yaml")]
    opts = ["MODEL.BACKBONE.NAME", tiny_clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1",
            "DATALOADER.NUM_WORKERS", "0", "DATASET.NUM_SHOTS", "1"]
    opts += [str(v) for kv in SETTINGS[name][0].items() for v in kv]  # the tiny CLIP has 2 blocks per tower
    out, evaluated = str(tmp_path / "train"), str(tmp_path / "eval")
    try:
        train.cli(common + ["--output-dir", out] + opts + ["DATASET.SUBSAMPLE_CLASSES", "base"])
        train.cli(common + ["--output-dir", evaluated, "--model-dir", out, "--load-epoch", "1", "--eval-only"]
                  + opts + ["DATASET.SUBSAMPLE_CLASSES", "new"])
    finally:
        close_logger()
    assert parse_log(os.path.join(out, "log.txt")) is not None
    assert parse_log(os.path.join(evaluated, "log.txt"), test_log=True) is not None
