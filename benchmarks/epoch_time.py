"""Whole-epoch wall time of CoOp, CoOp_KDPL and FDBPL on ToyShapes, data loading included.

    python -m benchmarks.epoch_time                                  # tiny random 64 px CLIPs, 2 workers
    python -m benchmarks.epoch_time --student toy/student.pt --teacher toy/teacher.pt --workers 4 --epochs 3

Each trainer is configured through train.py's own command-line path (``train.setup_cfg``) with the same
dataset (ToyShapes, 16-shot base classes), student, batch size and ``DATALOADER.NUM_WORKERS``, then trained
with ``trainer.train()``; the time of each ``run_epoch`` (every batch: loading, teacher for KDPL, student
update) is recorded. The first epoch includes starting the loader workers. One-off costs are reported apart:
KDPL's teacher load + text bank (``before_train``) and FDBPL's offline RIL table build (``ril_tools.build``
with the same teacher). Without --student/--teacher, random tiny CLIPs of a toy-world size are used.
"""

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time

import torch

TRAINERS = ("CoOp", "CoOp_KDPL", "FDBPL")
CONFIGS = {"CoOp": "configs/trainers/CoOp_KDPL/toyshapes.yaml",  # same recipe; CoOp ignores the KDPL keys
           "CoOp_KDPL": "configs/trainers/CoOp_KDPL/toyshapes.yaml",
           "FDBPL": "configs/trainers/FDBPL/toyshapes.yaml"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_clips(folder, size):
    """(student, teacher) fdbpl-clip files of random CLIPs: student width 128 x 4 blocks, teacher 256 x 6."""
    from clip_tools.loading import build_tiny_clip, save_clip_file

    paths = []
    for role, width, layers, seed in (("student", 128, 4, 0), ("teacher", 256, 6, 1)):
        model, arch = build_tiny_clip(seed=seed, embed_dim=width, image_size=size, patch_size=8, vision_width=width,
                                      vision_layers=layers, text_width=width, text_layers=layers, heads=width // 64,
                                      context_length=77)
        paths.append(save_clip_file(model, arch, os.path.join(folder, f"{role}.pt")))
    return paths


def common_args(args, trainer, out):
    """train.py arguments shared by the table build and the three trainers."""
    return ["--root", args.root, "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", os.path.join(REPO, "configs/datasets/toyshapes.yaml"),
            "--config-file", os.path.join(REPO, CONFIGS.get(trainer, CONFIGS["FDBPL"])), "--output-dir", out]


def common_opts(args):
    return ["DATASET.NUM_SHOTS", str(args.shots), "DATASET.SUBSAMPLE_CLASSES", "base",
            "DATALOADER.NUM_WORKERS", str(args.workers), "DATALOADER.TRAIN_X.BATCH_SIZE", str(args.batch_size),
            "INPUT.SIZE", f"({args.size}, {args.size})", "MODEL.BACKBONE.NAME", args.student,
            "USE_CUDA", str(args.device == "cuda")]


def build_table(args, folder):
    """Build the FDBPL table with ril_tools.build (the CLI's own code path); returns (dir, seconds)."""
    from ril_tools import build

    out = os.path.join(folder, "ril")
    argv = common_args(args, "FDBPL", os.path.join(folder, "ril_run")) + [
        "--output", out, "--teacher", args.teacher, "--num-crops", str(args.num_crops), "--topk", "20",
        "--device", args.device] + common_opts(args)
    t0 = time.perf_counter()
    with _quiet(args):
        build.main(argv)
    return out, time.perf_counter() - t0


@contextlib.contextmanager
def _quiet(args):
    if args.verbose:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def time_trainer(name, args, folder, table):
    """Train ``name`` for --epochs epochs; returns a result row with per-epoch seconds."""
    import train
    from engine.trainer import build_trainer
    from engine.utils import set_random_seed

    opts = common_opts(args) + ["OPTIM.MAX_EPOCH", str(args.epochs), "TEST.NO_TEST", "True",
                                "TRAIN.PRINT_FREQ", "100000", "TRAINER.KDPL.TEACHER", args.teacher,
                                "TRAINER.FDBPL.RIL_DIR", table]
    argv = common_args(args, name, os.path.join(folder, f"out_{name}")) + opts
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    set_random_seed(cfg.SEED)
    epochs, setup = [], {}
    with _quiet(args):
        trainer = build_trainer(cfg)
        run_epoch, before_train = trainer.run_epoch, trainer.before_train

        def timed_epoch():
            t0 = time.perf_counter()
            run_epoch()
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            epochs.append(time.perf_counter() - t0)

        def timed_before_train():
            t0 = time.perf_counter()
            before_train()
            setup["before_train"] = time.perf_counter() - t0

        trainer.run_epoch, trainer.before_train = timed_epoch, timed_before_train
        trainer.train()
    steps = len(trainer.train_loader_x)
    later = epochs[1:] or epochs
    return {"trainer": name, "steps": steps, "first": epochs[0], "median": statistics.median(later),
            "setup": setup.get("before_train", 0.0)}


def report(rows, table_seconds, args):
    from tabulate import tabulate

    print(tabulate([[r["trainer"], r["steps"], f"{r['first']:.2f}", f"{r['median']:.2f}",
                     f"{r['median'] / r['steps'] * 1e3:.0f}", f"{r['setup']:.2f}"] for r in rows],
                   headers=["trainer", "steps/epoch", "epoch 1 s", f"epoch s (median of {max(args.epochs - 1, 1)})",
                            "ms/step", "before_train s"], tablefmt="github"))
    by = {r["trainer"]: r["median"] for r in rows}
    if "FDBPL" in by and "CoOp" in by:
        print(f"epoch time FDBPL/CoOp {by['FDBPL'] / by['CoOp']:.2f}x")
    if "FDBPL" in by and "CoOp_KDPL" in by:
        print(f"epoch time CoOp_KDPL/FDBPL {by['CoOp_KDPL'] / by['FDBPL']:.2f}x")
    if table_seconds is not None:
        print(f"one-off FDBPL table build ({args.num_crops} crops per image, same teacher): {table_seconds:.1f} s")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="", help="dataset root holding toyshapes/ (default: generate one in a temp dir)")
    p.add_argument("--student", default="", help="student CLIP file (default: a random tiny CLIP)")
    p.add_argument("--teacher", default="", help="teacher CLIP file (KDPL and the FDBPL table; default: random tiny)")
    p.add_argument("--size", type=int, default=64, help="input size in pixels (the CLIPs' resolution)")
    p.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS)
    p.add_argument("--workers", type=int, default=2, help="DATALOADER.NUM_WORKERS for every trainer")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trainer (the first includes worker start-up)")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-crops", type=int, default=4, help="crops per image in the FDBPL table (M)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--verbose", action="store_true", help="show the trainers' logs")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no GPU is visible")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-epoch-") as folder:
        if not args.root:
            from datasets.toyshapes import ensure_toyshapes

            args.root = os.path.join(folder, "data")
            ensure_toyshapes(args.root, size=args.size, train=max(args.shots, 1), val=2, test=2, verbose=False)
        if not args.student or not args.teacher:
            student, teacher = tiny_clips(folder, args.size)
            args.student, args.teacher = args.student or student, args.teacher or teacher
        print(f"ToyShapes {args.shots}-shot base classes, batch {args.batch_size}, {args.workers} workers, "
              f"{args.epochs} epochs, device {args.device} ({torch.get_num_threads()} threads)", file=sys.stderr)
        table, table_seconds = ("", None)
        if "FDBPL" in args.trainers:
            table, table_seconds = build_table(args, folder)
        rows = []
        for name in args.trainers:
            rows.append(time_trainer(name, args, folder, table))
            print(f"  {name}: {rows[-1]['median']:.2f} s/epoch", file=sys.stderr)
    report(rows, table_seconds, args)
    return rows


if __name__ == "__main__":
    main()
