"""Train or evaluate a prompt learner: the CoOp / Dassl command line, unchanged.

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b32_ep50_ctxv1.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

Trainers and datasets are discovered from the ``trainers/`` and ``datasets/`` packages (and from modules named
in the ``FDBPL_PLUGINS`` environment variable); a plugin module may define ``extend_cfg(cfg)`` to add its own
config keys. Problems the user can fix are reported as one ``error:`` line (``FDBPL_DEBUG=1`` for a traceback).
"""
import importlib.util
import os
import sys

# Started with a Python outside the project's environment: say how to enter it in one line, not a traceback.
for _name in ("torch", "yacs", "open_clip"):
    if importlib.util.find_spec(_name) is None:
        sys.exit(f"error: {_name} is not installed for {sys.executable}; enter the environment first: "
                 "source .venv/bin/activate (bash scripts/setup_env.sh creates it)")

import torch

from engine.cli import build_parser, reset_cfg, run_cli, setup_cfg  # noqa: F401 (train.setup_cfg etc. are public)
from engine.errors import ConfigError
from engine.logger import collect_env_info, setup_logger
from engine.trainer import build_trainer
from engine.utils import set_random_seed


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


def check_output_dir(path):
    """Refuse an output folder that is (or lies under) an existing file, before anything is written to it."""
    probe = os.path.abspath(path) if path else ""
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        probe = "" if parent == probe else parent
    if probe and not os.path.isdir(probe):
        raise ConfigError(f"--output-dir {path}: {probe} is a file, not a folder; pass a folder path "
                          f"(it is created if missing)")


def main(args):
    cfg = setup_cfg(args)
    check_output_dir(cfg.OUTPUT_DIR)
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
