"""The shipped real-dataset FDBPL configs: Marginal Re-Norm labels by default (the setting of the paper's
reported numbers), and the paper's own setting as vit_b32_ep50_paper.yaml / vit_b16_ep50_paper.yaml."""

import glob
import os
import re

import pytest
import torch

import train
from engine.cli import default_cfg
from engine.config import merge_cfg_file, merge_cfg_opts
from engine.errors import RilError
from engine.trainer import build_trainer
from ril_tools.replay import LABEL_MODES
from tests.fixtures.fdbpl_world import REPO
from tests.test_fdbpl import TOY_YAML

FDBPL_DIR = os.path.join(REPO, "configs", "trainers", "FDBPL")
REAL = sorted(glob.glob(os.path.join(FDBPL_DIR, "vit_*.yaml")) + glob.glob(os.path.join(FDBPL_DIR, "promptsrc_vit_*.yaml")))
PAPER = {"vit_b32_ep50_paper.yaml": "ViT-B/32", "vit_b16_ep50_paper.yaml": "ViT-B/16"}


@pytest.fixture(scope="module")
def world(fdbpl_world):
    return fdbpl_world


def merged(path, *opts):
    cfg = default_cfg()
    merge_cfg_file(cfg, path)
    return merge_cfg_opts(cfg, list(opts))


def test_real_configs_default_to_marginal_renorm_and_keep_the_other_modes():
    names = {os.path.basename(p) for p in REAL}
    assert {"vit_b32_ep50_ctxv1.yaml", "vit_b16_ep50_ctxv1.yaml", "promptsrc_vit_b32_c2_ep20_batch4_4+4ctx.yaml",
            "promptsrc_vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets.yaml", *PAPER} <= names
    for path in REAL:
        assert merged(path).TRAINER.FDBPL.LABEL_MODE == "mr", path
        for mode in ("ms", "full"):
            assert merged(path, "TRAINER.FDBPL.LABEL_MODE", mode).TRAINER.FDBPL.LABEL_MODE == mode
    assert set(LABEL_MODES) == {"ms", "mr", "full"}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs_carry_the_papers_setting(name):
    cfg = merged(os.path.join(FDBPL_DIR, name))
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.MAX_EPOCH) == ("sgd", 0.1, "cosine", 50)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 128
    node = cfg.TRAINER.FDBPL
    assert (node.BASE, node.LABEL_MODE, node.TOPK, node.DIFF1_FORM) == ("CoOp", "mr", 20, "paper")
    assert (cfg.TRAINER.COOP.CTX_INIT, node.NEG_CTX_INIT) == ("a photo of a", "a photo of no")
    assert cfg.MODEL.BACKBONE.NAME == PAPER[name]
    # the other real configs keep the measured learning rate (the paper config is the only lr-0.1 one)
    ours = merged(os.path.join(FDBPL_DIR, name.replace("_paper", "_ctxv1")))
    assert ours.OPTIM.LR == 0.008 and ours.OPTIM.MAX_EPOCH == 50


def test_paper_table_settings_are_the_build_defaults():
    """M = 500, K = 20 and the ViT-L/14 teacher live in the table: both ways of building one default to them."""
    from ril_tools.build import build_parser

    args = build_parser().parse_args(["--output", "x"])
    assert (args.num_crops, args.topk, args.teacher, args.label_kind) == (500, 20, "ViT-L/14", "topk")
    with open(os.path.join(REPO, "scripts", "fdbpl", "common.sh")) as f:
        text = f.read()
    # the scripts' defaults for real datasets (the toy world has its own, on another line)
    defaults = set(re.findall(r"\b(NUM_CROPS|TOPK|TEACHER|LABEL_KIND)=\$\{\w+:-([^}]*)\}", text))
    assert {("NUM_CROPS", "500"), ("TOPK", "20"), ("TEACHER", "ViT-L/14"), ("LABEL_KIND", "topk")} <= defaults


def paper_trainer(world, out, *opts):
    argv = ["--root", world["root"], "--seed", "1", "--trainer", "FDBPL", "--dataset-config-file", TOY_YAML,
            "--config-file", os.path.join(FDBPL_DIR, "vit_b32_ep50_paper.yaml"), "--output-dir", out,
            "MODEL.BACKBONE.NAME", world["student"], "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "32", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base",
            "TRAINER.FDBPL.PREC", "fp32", "TRAINER.FDBPL.RIL_DIR", world["table"], *opts]
    return build_trainer(train.setup_cfg(train.build_parser().parse_args(argv)))


def test_paper_config_refuses_a_table_with_another_k(world, tmp_path):
    trainer = paper_trainer(world, str(tmp_path))  # the tiny world's table has K = 3
    with pytest.raises(RilError, match=re.escape("top-K differs (3 in the table, TRAINER.FDBPL.TOPK 20)")):
        trainer.setup_ril_loader()


@pytest.mark.parametrize("mode", ["mr", "ms"])
def test_paper_config_trains_a_step_with_each_top_k_label_mode(world, tmp_path, mode):
    trainer = paper_trainer(world, str(tmp_path), "TRAINER.FDBPL.TOPK", "0", "TRAINER.FDBPL.LABEL_MODE", mode)
    trainer.setup_ril_loader()
    trainer.train_loader_x.sampler.set_epoch(0)
    batch = next(iter(trainer.train_loader_x))
    _, probs, _, _ = trainer.parse_batch_train(batch)
    # mr keeps only the K teacher classes (exact zeros elsewhere); ms spreads the rest over the other classes
    assert ((probs > 0).sum(1) <= 3).all() if mode == "mr" else (probs > 0).all()
    before = trainer.model.prompt_learner.pos.ctx.detach().clone()
    out = trainer.forward_backward(batch)
    assert torch.isfinite(torch.tensor(out["loss"]))
    assert not torch.equal(before, trainer.model.prompt_learner.pos.ctx)


def test_fdbpl_base_picks_a_registered_trainer_and_a_mismatch_is_one_line():
    from engine.errors import ConfigError
    from engine.registry import TRAINER_REGISTRY
    from trainers.cocoop_fdbpl import CoCoOp_FDBPL
    from trainers.fdbpl import FDBPL
    from trainers.promptsrc_fdbpl import PromptSRC_FDBPL

    cfg = default_cfg()
    for base, want in (("CoOp", FDBPL), ("PromptSRC", PromptSRC_FDBPL), ("CoCoOp", CoCoOp_FDBPL)):
        cfg.TRAINER.FDBPL.BASE = base
        assert FDBPL.variant_for(cfg) is want
        assert TRAINER_REGISTRY.get(want.__name__) is want
    cfg.TRAINER.FDBPL.BASE = "MaPLe"
    with pytest.raises(ConfigError, match="TRAINER.FDBPL.BASE 'MaPLe' is not one of CoOp, PromptSRC, CoCoOp"):
        FDBPL.variant_for(cfg)
