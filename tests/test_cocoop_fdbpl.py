"""FDBPL on a CoCoOp base: zero meta-nets reduce every Eq. 17 term to FDBPL on CoOp, the per-image second-order term
matches a pair-by-pair loop, and a train + eval run through train.py (positive prompts, no table at eval)."""

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import train
from clip_tools.prompted import normalize
from engine.logger import close_logger
from engine.results import parse_log
from engine.trainer import build_trainer
from tests.fixtures.fdbpl_world import REPO
from trainers.cocoop_fdbpl import CoCoOp_FDBPL, per_image_second_order_loss
from trainers.losses import fdbpl_total_loss

YAML = os.path.join(REPO, "configs/trainers/FDBPL/cocoop_toyshapes.yaml")
TOY_YAML = os.path.join(REPO, "configs/datasets/toyshapes.yaml")
LAMBDAS = ["TRAINER.FDBPL.LAMBDA_DIFF1", "0.5", "TRAINER.FDBPL.LAMBDA_DIFF2", "0.5"]  # every term counts


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(fdbpl_world):
    return fdbpl_world  # tiny student, tiny teacher, RIL table for 2-shot base


def args_for(world, out, *extra, flags=()):
    return ["--root", world["root"], "--seed", "1", "--trainer", "FDBPL", "--dataset-config-file", TOY_YAML,
            "--config-file", YAML, "--output-dir", out, *flags,
            "MODEL.BACKBONE.NAME", world["student"], "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1",
            "OPTIM.LR", "0.05", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
            "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "TRAIN.PRINT_FREQ", "1",
            "TRAINER.FDBPL.RIL_DIR", world["table"], *LAMBDAS, *extra]


def test_zero_meta_nets_reduce_to_fdbpl_on_coop(world, tmp_path):
    trainer = build_trainer(train.setup_cfg(train.build_parser().parse_args(args_for(world, str(tmp_path)))))
    assert type(trainer) is CoCoOp_FDBPL
    learner = trainer.model.prompt_learner
    assert {k for k, _ in learner.named_parameters()} == {
        f"{b}.{k}" for b in ("pos", "neg") for k in ("ctx", "meta_net.0.weight", "meta_net.0.bias",
                                                      "meta_net.2.weight", "meta_net.2.bias")}
    for branch in (learner.pos, learner.neg):
        nn.init.zeros_(branch.meta_net[2].weight)
        nn.init.zeros_(branch.meta_net[2].bias)
    trainer.setup_ril_loader()
    trainer.train_loader_x.sampler.set_epoch(0)
    image, probs, labels, w = trainer.parse_batch_train(next(iter(trainer.train_loader_x)))
    model, node = trainer.model, trainer.cfg.TRAINER.FDBPL
    with torch.no_grad():
        img = model.image_features(image)
        enc = model.text_encoder
        pos = normalize(enc(learner.pos(), learner.pos.tokenized_prompts))  # [C, E]: CoOp's text features
        neg = normalize(enc(learner.neg(), learner.neg.tokenized_prompts))
        scale = model.logit_scale.exp()
        expected = fdbpl_total_loss(scale * img @ pos.t(), scale * img @ neg.t(), probs, w, img, pos, neg,
                                    lambda_neg=node.LAMBDA_NEG, lambda_diff1=0.5, lambda_diff2=0.5,
                                    alpha=node.ALPHA, delta=node.DELTA, labels=labels)
        _, _, _, got = trainer.distillation_losses(image, probs, labels, w)
    for key, value in expected.as_dict().items():
        assert got.as_dict()[key].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-6), key
    assert expected.loss_diff2.item() > 0  # the reduction covers a non-trivial pairwise term


def test_per_image_second_order_term_matches_a_pair_loop():
    g = torch.Generator().manual_seed(0)
    n, c, e = 5, 4, 6
    img, pos, neg = torch.randn(n, e, generator=g), torch.randn(n, c, e, generator=g), torch.randn(n, c, e, generator=g)
    labels, w, delta = torch.tensor([0, 1, 1, 3, 2]), torch.rand(n, generator=g), 0.1
    total = 0.0
    for i in range(n):
        d1 = pos[i] - neg[i]  # image i's own prompts
        for j in range(n):
            if i != j and labels[i] != labels[j]:
                s2 = F.cosine_similarity(img[i], d1[labels[i]] - d1[labels[j]], dim=0)
                total += w[i] * w[j] * max(0.0, s2.item() + delta)
    assert per_image_second_order_loss(img, pos, neg, labels, w, delta).item() == pytest.approx(
        float(total) / (n * (n - 1)), rel=1e-5)
    assert per_image_second_order_loss(img[:1], pos[:1], neg[:1], labels[:1], w[:1], delta).item() == 0.0


def test_trains_through_train_py_and_evaluates_without_the_table(world, tmp_path):
    out, evaluated = str(tmp_path / "train"), str(tmp_path / "eval")
    try:
        train.cli(args_for(world, out))
        train.cli(args_for(world, evaluated, "TRAINER.FDBPL.RIL_DIR", "", "DATASET.SUBSAMPLE_CLASSES", "new",
                           flags=("--model-dir", out, "--load-epoch", "1", "--eval-only")))
    finally:
        close_logger()
    log = open(os.path.join(out, "log.txt")).read()
    assert "FDBPL on CoCoOp" in log and "loss_diff2" in log
    assert parse_log(os.path.join(out, "log.txt")) is not None
    assert parse_log(os.path.join(evaluated, "log.txt"), test_log=True) is not None
    ckpt = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-1"), weights_only=True)
    assert {k for k in ckpt["state_dict"] if "token_" not in k} == {
        f"{b}.{k}" for b in ("pos", "neg") for k in ("ctx", "meta_net.0.weight", "meta_net.0.bias",
                                                      "meta_net.2.weight", "meta_net.2.bias")}
