"""The command line every entry point shares: CoOp/Dassl's ``train.py`` flags, the config they set up, and
one way to report a user error (one ``error:`` line, exit code 2).

``train.py`` and the table build (``python -m ril_tools.build``) parse the same flags and set the config up
the same way, so a table is built for exactly the images and classes a training run sees.
"""
import argparse
import importlib
import os
import sys

from engine.config import get_cfg_default, merge_cfg_file, merge_cfg_opts
from engine.discovery import import_plugins
from engine.errors import FdbplError

__all__ = ["run_cli", "build_parser", "reset_cfg", "default_cfg", "setup_cfg"]


def run_cli(main, *args, **kwargs):
    """Call ``main(*args, **kwargs)``; an :class:`FdbplError` becomes ``error: <message>`` on stderr + exit 2.

    ``FDBPL_DEBUG=1`` re-raises instead, to see the traceback. Returns what ``main`` returns.
    """
    try:
        return main(*args, **kwargs)
    except FdbplError as exc:
        if os.environ.get("FDBPL_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def build_parser():
    p = argparse.ArgumentParser(description="Train or evaluate a prompt learner (CoOp / Dassl command line).")
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


def default_cfg():
    """Dassl's defaults plus every plugin's ``extend_cfg`` (each method's own ``TRAINER.<NODE>``), unfrozen."""
    cfg = get_cfg_default()
    for module_name in import_plugins():
        extend = getattr(importlib.import_module(module_name), "extend_cfg", None)
        if callable(extend):
            extend(cfg)
    return cfg


def setup_cfg(args):
    """Defaults -> plugin extensions -> dataset YAML -> method YAML -> flags -> KEY VALUE opts, then freeze."""
    cfg = default_cfg()
    if args.dataset_config_file:
        merge_cfg_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_cfg_file(cfg, args.config_file)
    reset_cfg(cfg, args)
    merge_cfg_opts(cfg, args.opts or [])
    cfg.freeze()
    return cfg
