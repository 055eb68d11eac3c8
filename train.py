"""Train or evaluate a prompt learner: the CoOp / Dassl command line, unchanged.

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b32_ep50_ctxv1.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

Trainers and datasets are discovered from the ``trainers/`` and ``datasets/`` packages (and from modules named
in the ``FDBPL_PLUGINS`` environment variable); a plugin module may define ``extend_cfg(cfg)`` to add its own
config keys. Problems the user can fix are reported as one ``error:`` line (``FDBPL_DEBUG=1`` for a traceback).
"""
import argparse
import importlib
import importlib.util
import sys

# Started with a Python outside the project's environment: say how to enter it in one line, not a traceback.
for _name in ("torch", "yacs", "open_clip"):
    if importlib.util.find_spec(_name) is None:
        sys.exit(f"error: {_name} is not installed for {sys.executable}; enter the environment first: "
                 "source .venv/bin/activate (bash scripts/setup_env.sh creates it)")

import torch

from engine.cli import run_cli
from engine.config import get_cfg_default, merge_cfg_file, merge_cfg_opts
from engine.discovery import import_plugins
from engine.logger import collect_env_info, setup_logger
from engine.trainer import build_trainer
from engine.utils import set_random_seed


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    p.add_argument("--seed", type=int, default=-1, help="seed >= 0 fixes all random generators (0 included)")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    p.add_argument("--trainer", type=str, default="", help="name of trainer")
    p.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                   help="modify config options using the command-line (KEY VALUE pairs)")
    return p


def reset_cfg(cfg, args):
    """Copy command-line flags into the config (CoOp's rules, except that ``--seed 0`` is honoured)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args):
    """Defaults -> plugin extensions -> dataset YAML -> method YAML -> flags -> KEY VALUE opts, then freeze."""
    cfg = get_cfg_default()
    for module_name in import_plugins():
        extend = getattr(importlib.import_module(module_name), "extend_cfg", None)
        if callable(extend):
            extend(cfg)
    if args.dataset_config_file:
        merge_cfg_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_cfg_file(cfg, args.config_file)
    reset_cfg(cfg, args)
    merge_cfg_opts(cfg, args.opts or [])
    cfg.freeze()
    return cfg


def print_args(args, cfg):
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def main(args):
    cfg = setup_cfg(args)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


def cli(argv=None):
    run_cli(main, build_parser().parse_args(argv))


if __name__ == "__main__":
    cli()
