"""CoCoOp on the tiny CLIP: batched logits == the released per-image loop, zero meta-net == CoOp, what trains,
checkpoint round trip, evaluation on new classes, and one train + eval run through train.py."""

import os

import pytest
import torch
from torch import nn

import train
from clip_tools.loading import build_tiny_clip, load_clip
from clip_tools.prompt_learners import CoOpPromptLearner
from clip_tools.prompted import PromptedCLIP, normalize
from engine.logger import close_logger
from engine.results import parse_log
from engine.trainer import build_trainer
from tests.fixtures.toy_data import shared_toyshapes_root, toy_cfg
from trainers.cocoop import CoCoOpCLIP, CoCoOpPromptLearner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["red circle", "blue star", "a very long green triangle name"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip():
    return build_tiny_clip()[0]


def images(n=5, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def per_image_loop(model, image):
    """The released CoCoOp's forward: per image, shift the context, encode that image's n_cls prompts, dot."""
    learner = model.prompt_learner
    rows = []
    for f in model.image_features(image):
        prompts = learner().clone()
        prompts[:, 1:1 + learner.n_ctx] += learner.meta_net(f)
        txt = normalize(model.text_encoder(prompts, learner.tokenized_prompts, truncate=False))
        rows.append(model.logit_scale.exp() * txt @ f)
    return torch.stack(rows)


def test_batched_logits_equal_the_per_image_loop(clip):
    torch.manual_seed(0)
    learner = CoCoOpPromptLearner(NAMES, clip, n_ctx=4, ctx_init="a photo of a")
    with torch.no_grad():  # a meta-net whose shift is large enough to change the logits visibly
        learner.meta_net[2].weight.mul_(20)
    model = CoCoOpCLIP(clip, learner)
    x = images()
    with torch.no_grad():
        expected = per_image_loop(model, x)
        batched = model(x)
        model.rows_per_call = 2 * len(NAMES)  # chunks of two images, the last one alone
        chunked = model(x)
        coop = PromptedCLIP(clip, learner)(x)  # the same context without the shift
    assert batched.shape == (5, 3)
    assert (batched - expected).abs().max() < 1e-5
    assert (chunked - expected).abs().max() < 1e-5
    assert (coop - expected).abs().max() > 1e-2  # the per-image shift matters, so the check can fail


def test_zero_meta_net_output_is_coop(clip):
    learner = CoCoOpPromptLearner(NAMES, clip, n_ctx=4, ctx_init="a photo of a")
    nn.init.zeros_(learner.meta_net[2].weight)
    nn.init.zeros_(learner.meta_net[2].bias)
    coop = CoOpPromptLearner(NAMES, clip, n_ctx=4, ctx_init="a photo of a")
    x = images(seed=1)
    with torch.no_grad():
        assert torch.allclose(CoCoOpCLIP(clip, learner)(x), PromptedCLIP(clip, coop)(x), atol=1e-5)


def test_meta_net_shapes_and_context_length(clip):
    learner = CoCoOpPromptLearner(NAMES[:2], clip, n_ctx=8, ctx_init="")
    assert learner.ctx.shape == (8, 64) and learner.prompt_prefix == " ".join(["X"] * 8)
    assert learner.meta_net[0].in_features == 32 and learner.meta_net[0].out_features == 2  # vis_dim / 16
    assert learner.meta_net[2].out_features == 64  # the text width
    assert CoCoOpPromptLearner(NAMES, clip, n_ctx=16, ctx_init="a photo of a").n_ctx == 4  # follows the phrase


def trainer_for(clip_path, tmp_path, name="CoCoOp", **opts):
    base = {"TRAINER.NAME": name, "MODEL.BACKBONE.NAME": clip_path, "TRAINER.COCOOP.N_CTX": 4,
            "TRAINER.COCOOP.CTX_INIT": "a photo of a", "DATASET.NUM_SHOTS": 1, "DATASET.SUBSAMPLE_CLASSES": "base",
            "OPTIM.LR": 0.05, "OPTIM.MAX_EPOCH": 1, "OUTPUT_DIR": str(tmp_path / "out"), "TRAIN.PRINT_FREQ": 1000,
            "TEST.NO_TEST": True}
    base.update(opts)
    return build_trainer(toy_cfg(shared_toyshapes_root(), base))


def test_only_context_and_meta_net_train_and_round_trip_to_new_classes(tiny_clip_path, tmp_path):
    trainer = trainer_for(tiny_clip_path, tmp_path, **{"OPTIM.WARMUP_EPOCH": 0})
    model = trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_learner.ctx", "prompt_learner.meta_net.0.weight", "prompt_learner.meta_net.0.bias",
                         "prompt_learner.meta_net.2.weight", "prompt_learner.meta_net.2.bias"}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    after = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed == trainable  # the step reached the context and both meta-net layers, nothing else

    x = images(4, seed=2)
    trainer.set_model_mode("eval")
    with torch.no_grad():
        trained_logits = model(x)
    again = trainer_for(tiny_clip_path, tmp_path / "again")
    again.load_model(trainer.cfg.OUTPUT_DIR, epoch=1)
    again.set_model_mode("eval")
    with torch.no_grad():
        assert torch.allclose(again.model(x), trained_logits, atol=1e-6)

    new = trainer_for(tiny_clip_path, tmp_path / "new", **{"DATASET.SUBSAMPLE_CLASSES": "new"})
    new.load_model(trainer.cfg.OUTPUT_DIR, epoch=1)
    learner = new.model.prompt_learner
    assert learner.classnames != model.prompt_learner.classnames and learner.n_cls == 32
    for key, value in model.prompt_learner.state_dict().items():
        if not key.startswith("token_"):
            assert torch.equal(learner.state_dict()[key], value), key
    fresh = CoCoOpPromptLearner(learner.classnames, load_clip(tiny_clip_path), n_ctx=4, ctx_init="a photo of a")
    assert torch.equal(learner.token_suffix, fresh.token_suffix)  # rebuilt for the new classes, not loaded
    new.set_model_mode("eval")
    with torch.no_grad():
        assert torch.allclose(new.model(x), per_image_loop(new.model, x), atol=1e-5)


def test_train_and_eval_on_new_classes_through_train_py(tiny_clip_path, tmp_path):
    common = ["--root", shared_toyshapes_root(), "--seed", "1", "--trainer", "CoCoOp",
              "--dataset-config-file", os.path.join(REPO, "configs/datasets/toyshapes.yaml"),
              "--config-file", os.path.join(REPO, "configs/trainers/CoCoOp/toyshapes.yaml")]
    opts = ["MODEL.BACKBONE.NAME", tiny_clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1",
            "DATALOADER.NUM_WORKERS", "0", "DATASET.NUM_SHOTS", "1"]
    out, evaluated = str(tmp_path / "train"), str(tmp_path / "eval")
    try:
        train.cli(common + ["--output-dir", out] + opts + ["DATASET.SUBSAMPLE_CLASSES", "base"])
        train.cli(common + ["--output-dir", evaluated, "--model-dir", out, "--load-epoch", "1", "--eval-only"]
                  + opts + ["DATASET.SUBSAMPLE_CLASSES", "new"])
    finally:
        close_logger()
    assert parse_log(os.path.join(out, "log.txt")) is not None
    assert parse_log(os.path.join(evaluated, "log.txt"), test_log=True) is not None
    ckpt = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-1"), weights_only=True)
    assert set(ckpt["state_dict"]) == {"ctx", "meta_net.0.weight", "meta_net.0.bias", "meta_net.2.weight",
                                       "meta_net.2.bias", "token_prefix", "token_suffix"}
