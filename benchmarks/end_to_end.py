"""End to end in the toy world: one shared RIL table + FDBPL runs vs KDPL runs vs CoOp runs, over seeds.

    python -m benchmarks.end_to_end [--quick] [--seeds 0 1 2] [--num-crops 64] [--threads 1] [--out DIR]

What a user pays for a sweep over few-shot seeds (issue 17): FDBPL builds ONE union table for all the seeds
(``python -m ril_tools.build --seeds 0 1 2``: M teacher passes per image of the union, once), optionally stores
the student's features of its crops (``python -m ril_tools.student_features``, for
``TRAINER.FDBPL.CACHED_FEATURES True``), then trains one run per seed from it; CoOp_KDPL runs its teacher on
every training crop of every step of every run; CoOp has no teacher. Everything goes through the normal
train path (``train.main``, as ``scripts/demo.py``), with the ToyShapes world (``data/toy``, generated if
missing), the shipped toy CLIPs (``models/toy_*.pt``) and the toy configs
(``configs/trainers/{CoOp,CoOp_KDPL,FDBPL}/toyshapes.yaml``, base classes, 16 shots, 10 epochs).

Measured per step: wall time and process CPU time (user + system of this process and of its reaped child
processes, ``resource.getrusage``). The CPU time is the figure to compare on a shared machine: other jobs
lengthen the wall time, not the work done. Loader workers are child processes, counted only once reaped;
the default ``--workers 0`` keeps all the work in this process so nothing escapes the count. Torch threads
are pinned (``--threads``, default 1: one core's work, no spinning threads in the CPU time).

Runs are interleaved (seed 0: CoOp, KDPL, FDBPL, FDBPL cached; seed 1: ...), so load drifts hit every
method alike. Per method: median [min-max] over seeds of the whole run (model build, training, test on the
base classes) and of its training epochs alone (``run_epoch``). Teacher passes are counted, not assumed: the
table's manifest gives its crops (images x M), the online teacher is wrapped to count the images it sees.

Ratio lines (CPU time; per seed, the shared table build split evenly over the seeds' runs):
``FDBPL end-to-end / KDPL: Rx [min-max]`` and ``FDBPL training / CoOp: Rx [min-max]``, the same for the
cached-features variant, and a WARNING when a method's runs vary by more than 25% of their median.
"""

import argparse
import contextlib
import os
import os.path as osp
import resource
import shutil
import statistics
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

SPREAD_WARNING = 0.25
DATASET_CFG = "configs/datasets/toyshapes.yaml"
MODELS = {"teacher": "models/toy_teacher.pt", "student": "models/toy_student.pt"}
# label -> (trainer, config, extra options)
METHODS = {
    "CoOp": ("CoOp", "configs/trainers/CoOp/toyshapes.yaml", []),
    "CoOp_KDPL": ("CoOp_KDPL", "configs/trainers/CoOp_KDPL/toyshapes.yaml", []),
    "FDBPL": ("FDBPL", "configs/trainers/FDBPL/toyshapes.yaml", []),
    "FDBPL (cached features)": ("FDBPL", "configs/trainers/FDBPL/toyshapes.yaml",
                                ["TRAINER.FDBPL.CACHED_FEATURES", "True"]),
}


# ------------------------------------------------------------------------------------------ measuring


def cpu_seconds():
    """User + system CPU seconds of this process and its reaped children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Clock:
    """``with Clock() as c: ...`` -> ``c.wall``, ``c.cpu`` (seconds)."""

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.t0, cpu_seconds() - self.c0


class RunProbe:
    """While installed (``with RunProbe() as probe``), wraps ``TrainerX.run_epoch`` (training time, the trainer)
    and ``FrozenTeacher.logits`` (teacher images); :meth:`reset` before each run. Leaving restores both."""

    def __init__(self):
        self.reset()

    def __enter__(self):
        from clip_tools.teacher import FrozenTeacher
        from engine.trainer import TrainerX

        probe = self
        self.originals = run_epoch, logits = TrainerX.run_epoch, FrozenTeacher.logits

        def timed_epoch(trainer, *a, **kw):
            probe.trainer = trainer
            with Clock() as c:
                out = run_epoch(trainer, *a, **kw)
            probe.train_wall += c.wall
            probe.train_cpu += c.cpu
            probe.epochs += 1
            return out

        def counted_logits(teacher, images, *a, **kw):
            probe.teacher_images += int(images.shape[0])
            return logits(teacher, images, *a, **kw)

        TrainerX.run_epoch, FrozenTeacher.logits = timed_epoch, counted_logits
        return self

    def __exit__(self, *exc):
        from clip_tools.teacher import FrozenTeacher
        from engine.trainer import TrainerX

        TrainerX.run_epoch, FrozenTeacher.logits = self.originals

    def reset(self):
        self.trainer, self.train_wall, self.train_cpu, self.epochs, self.teacher_images = None, 0.0, 0.0, 0, 0


def quiet_call(fn, log_path):
    """Run ``fn()`` with stdout/stderr to ``log_path`` (a run's own log.txt is written by its logger too)."""
    from engine.logger import close_logger

    os.makedirs(osp.dirname(log_path), exist_ok=True)
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            return fn()
        finally:
            close_logger()


def stats(values):
    med = statistics.median(values)
    return med, min(values), max(values)


def fmt_range(values, unit=" s", digits=1):
    med, lo, hi = stats(values)
    return f"{med:.{digits}f}{unit} [{lo:.{digits}f}-{hi:.{digits}f}]"


# ------------------------------------------------------------------------------------------ steps


class EndToEnd:
    def __init__(self, args):
        self.args = args
        self.data = args.data
        self.table = osp.join(args.out, "ril", f"union_seeds{'-'.join(map(str, args.seeds))}_M{args.num_crops}"
                                                f"_K{args.topk}")
        self.common_opts = ["DATASET.NUM_SHOTS", str(args.shots), "DATASET.SUBSAMPLE_CLASSES", "base",
                            "DATALOADER.NUM_WORKERS", str(args.workers), "MODEL.BACKBONE.NAME", MODELS["student"]]
        if args.epochs:
            self.common_opts += ["OPTIM.MAX_EPOCH", str(args.epochs)]
        self.probe = None  # a RunProbe while the runs are made (main)
        self.runs = {m: {} for m in self.methods()}  # method -> seed -> record
        self.steps = {}  # "build" / "features" -> record

    def methods(self):
        return [m for m in METHODS if self.args.cached or "cached" not in m]

    def log(self, msg):
        print(msg, flush=True)

    def make_data(self):
        from datasets.toyshapes import ensure_toyshapes

        ensure_toyshapes(self.data, size=64, seed=0, verbose=False, train=40, val=10, test=30)

    def build_table(self):
        from ril_tools.build import main as build_main

        if osp.isdir(self.table):
            shutil.rmtree(self.table)  # timed from scratch every time
        argv = ["--root", self.data, "--seed", str(self.args.seeds[0]), "--dataset-config-file", DATASET_CFG,
                "--config-file", METHODS["FDBPL"][1], "--output", self.table, "--teacher", MODELS["teacher"],
                "--num-crops", str(self.args.num_crops), "--topk", str(self.args.topk), "--workers",
                str(self.args.workers), "--seeds", *map(str, self.args.seeds), "--shots", str(self.args.shots),
                *self.common_opts]
        with Clock() as c:
            quiet_call(lambda: build_main(argv), osp.join(self.args.out, "logs", "build.txt"))
        from ril_tools.reader import RilTable

        table = RilTable.open(self.table)
        crops = table.num_images * table.num_crops  # teacher passes, from the table's own manifest
        self.steps["build"] = dict(wall=c.wall, cpu=c.cpu, teacher_crops=crops, images=table.num_images,
                                   m=table.num_crops)
        self.log(f"[build] union table of seeds {self.args.seeds}: {table.num_images} images x {table.num_crops} "
                 f"crops = {crops} teacher crops; CPU {c.cpu:.1f} s, wall {c.wall:.1f} s")

    def student_features(self):
        from ril_tools.student_features import main as features_main

        argv = ["--table", self.table, "--root", self.data, "--seed", str(self.args.seeds[0]),
                "--dataset-config-file", DATASET_CFG, "--config-file", METHODS["FDBPL"][1], "--device", "cpu",
                *self.common_opts]
        with Clock() as c:
            quiet_call(lambda: features_main(argv), osp.join(self.args.out, "logs", "features.txt"))
        crops = self.steps["build"]["teacher_crops"]
        self.steps["features"] = dict(wall=c.wall, cpu=c.cpu, student_crops=crops)
        self.log(f"[features] student features of {crops} crops; CPU {c.cpu:.1f} s, wall {c.wall:.1f} s")

    def train(self, method, seed):
        import train
        from engine.results import parse_log

        trainer, cfg_file, extra = METHODS[method]
        out = osp.join(self.args.out, "runs", method.split()[0] + ("_cached" if "cached" in method else ""),
                       f"seed{seed}")
        if osp.isdir(out):
            shutil.rmtree(out)  # never resume: every run is timed whole
        opts = list(self.common_opts) + extra
        if trainer == "CoOp_KDPL":
            opts += ["TRAINER.KDPL.TEACHER", MODELS["teacher"]]
        if trainer == "FDBPL":
            opts += ["TRAINER.FDBPL.RIL_DIR", self.table]
        argv = ["--root", self.data, "--seed", str(seed), "--trainer", trainer, "--dataset-config-file",
                DATASET_CFG, "--config-file", cfg_file, "--output-dir", out] + opts
        self.probe.reset()
        with Clock() as c:
            quiet_call(lambda: train.main(train.build_parser().parse_args(argv)), osp.join(out, "console.txt"))
        p = self.probe
        images = len(p.trainer.dm.dataset.train_x)
        rec = dict(wall=c.wall, cpu=c.cpu, train_wall=p.train_wall, train_cpu=p.train_cpu, epochs=p.epochs,
                   images=images, teacher_images=p.teacher_images, acc=parse_log(osp.join(out, "log.txt")))
        self.runs[method][seed] = rec
        self.log(f"[{method} seed {seed}] {images} training images, {p.epochs} epochs, {p.teacher_images} teacher "
                 f"images; run CPU {c.cpu:.1f} s (training {p.train_cpu:.1f} s), wall {c.wall:.1f} s; base "
                 f"accuracy {rec['acc']}")

    # ------------------------------------------------------------------------------------------ report

    def report(self):
        from tabulate import tabulate

        seeds = self.args.seeds
        build, feats = self.steps["build"], self.steps.get("features")
        rows = [("RIL table build (union)", 1, f"{build['cpu']:.1f} s", f"{build['wall']:.1f} s", "", "",
                 f"{build['cpu']:.1f} s", f"{build['wall']:.1f} s", build["teacher_crops"],
                 f"{build['m']} per table image", "")]
        if feats:
            rows.append(("student features (for cached)", 1, f"{feats['cpu']:.1f} s", f"{feats['wall']:.1f} s", "",
                         "", f"{feats['cpu']:.1f} s", f"{feats['wall']:.1f} s", 0,
                         f"0 ({feats['student_crops']} student crops)", ""))
        run_images = {m: sum(r["images"] for r in self.runs[m].values()) for m in self.runs}
        for m, per_seed in self.runs.items():
            recs = [per_seed[s] for s in seeds]
            teacher = sum(r["teacher_images"] for r in recs)
            per_image = teacher / max(run_images[m], 1)
            if m.startswith("FDBPL"):
                per_image_txt = (f"0 in training; table {build['teacher_crops'] / max(run_images[m], 1):.1f} "
                                 f"per run image")
            else:
                per_image_txt = f"{per_image:.1f}"
            accs = [r["acc"] for r in recs if r["acc"] is not None]
            rows.append((m, len(recs), fmt_range([r["cpu"] for r in recs]), fmt_range([r["wall"] for r in recs]),
                         fmt_range([r["train_cpu"] for r in recs]), fmt_range([r["train_wall"] for r in recs]),
                         f"{sum(r['cpu'] for r in recs):.1f} s", f"{sum(r['wall'] for r in recs):.1f} s", teacher,
                         per_image_txt, f"{statistics.mean(accs):.2f}" if accs else "n/a"))
        print(f"\nEnd to end, toy world, seeds {' '.join(map(str, seeds))} ({self.args.shots} shots, base classes; "
              f"table M={build['m']}, K={self.args.topk}; {torch_threads()} torch thread(s), "
              f"DATALOADER.NUM_WORKERS {self.args.workers}). Per run: median [min-max] over seeds.")
        print(tabulate(rows, headers=["step", "runs", "run CPU", "run wall", "training CPU", "training wall",
                                      "total CPU", "total wall", "teacher crops", "teacher passes / training image",
                                      "base acc %"]))

        print("\nEnd to end (all seeds): "
              + "; ".join(f"{label} CPU {cpu:.1f} s, wall {wall:.1f} s" for label, cpu, wall in self.totals()))
        for line in self.ratio_lines() + self.warnings():
            print(line)
        return rows

    def totals(self):
        seeds, build, feats = self.args.seeds, self.steps["build"], self.steps.get("features")
        out = []
        for m in self.runs:
            cpu = sum(self.runs[m][s]["cpu"] for s in seeds)
            wall = sum(self.runs[m][s]["wall"] for s in seeds)
            if m.startswith("FDBPL"):
                cpu, wall = cpu + build["cpu"], wall + build["wall"]
                label = f"{m}: table build + {len(seeds)} runs"
                if "cached" in m:
                    cpu, wall = cpu + feats["cpu"], wall + feats["wall"]
                    label = f"{m}: table build + features + {len(seeds)} runs"
            else:
                label = f"{m}: {len(seeds)} runs"
            out.append((label, cpu, wall))
        return out

    def ratio_lines(self):
        seeds, n = self.args.seeds, len(self.args.seeds)
        build, feats = self.steps["build"], self.steps.get("features")
        lines = []
        for m in [m for m in self.runs if m.startswith("FDBPL")]:
            once = build["cpu"] + (feats["cpu"] if "cached" in m else 0.0)
            # per seed: this seed's run + its share of the shared build, over that seed's KDPL run
            e2e = [(self.runs[m][s]["cpu"] + once / n) / self.runs["CoOp_KDPL"][s]["cpu"] for s in seeds]
            total = (sum(self.runs[m][s]["cpu"] for s in seeds) + once) / sum(self.runs["CoOp_KDPL"][s]["cpu"]
                                                                              for s in seeds)
            train = [self.runs[m][s]["train_cpu"] / self.runs["CoOp"][s]["train_cpu"] for s in seeds]
            name = "FDBPL" if m == "FDBPL" else "FDBPL (cached features)"
            lines.append(f"{name} end-to-end / KDPL: {total:.2f}x (CPU time, all seeds; per seed "
                         f"{fmt_range(e2e, 'x', 2)})")
            lines.append(f"{name} training / CoOp: {statistics.median(train):.2f}x (CPU time of the training "
                         f"epochs, per seed median [min-max] {fmt_range(train, 'x', 2)})")
        kdpl_crops = sum(self.runs["CoOp_KDPL"][s]["teacher_images"] for s in seeds)
        lines.append(f"teacher crops: table {build['teacher_crops']} (once, for all {n} seeds) vs online KDPL "
                     f"{kdpl_crops} ({n} runs); the table costs fewer teacher passes than KDPL when "
                     f"M < {kdpl_crops / max(build['images'], 1):.1f} here (KDPL's teacher images / the "
                     f"table's images)")
        return lines

    def warnings(self):
        lines = []
        for m, per_seed in self.runs.items():
            for key, what in (("cpu", "run CPU times"), ("wall", "run wall times")):
                med, lo, hi = stats([r[key] for r in per_seed.values()])
                if med > 0 and (hi - lo) / med > SPREAD_WARNING:
                    lines.append(f"WARNING: {m} {what} vary by {(hi - lo) / med * 100:.0f}% of their median "
                                 f"({lo:.1f}-{hi:.1f} s over {len(per_seed)} seeds): the machine is busy or the "
                                 "seeds differ in work; compare CPU-time medians only")
        return lines


def torch_threads():
    import torch

    return torch.get_num_threads()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a few minutes: 4 shots, 2 epochs, M=8 (the ratios then say little about a full run)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--shots", type=int, default=None, help="DATASET.NUM_SHOTS (default 16; 4 with --quick)")
    p.add_argument("--epochs", type=int, default=None, help="OPTIM.MAX_EPOCH (default: the configs' 10; 2 quick)")
    p.add_argument("--num-crops", type=int, default=None, help="table crops per image M (default 64, the demo's; "
                                                                "8 with --quick)")
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--no-cached", dest="cached", action="store_false",
                   help="skip the student features and the FDBPL (cached features) runs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, pinned (0: torch's choice)")
    p.add_argument("--workers", type=int, default=0,
                   help="DATALOADER.NUM_WORKERS (default 0: all work in this process, so the CPU time counts it)")
    p.add_argument("--data", default="data/toy", help="ToyShapes root (generated if missing)")
    p.add_argument("--out", default="output/end_to_end", help="runs, logs and the table (rebuilt every time)")
    args = p.parse_args(argv)
    args.shots = args.shots or (4 if args.quick else 16)
    args.epochs = args.epochs or (2 if args.quick else None)
    args.num_crops = args.num_crops or (8 if args.quick else 64)
    if args.quick:
        args.out = args.out.rstrip("/") + "_quick"
    return args


def main(argv=None):
    args = parse_args(argv)
    os.chdir(REPO)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    e2e = EndToEnd(args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    e2e.log(f"end-to-end benchmark: seeds {args.seeds}, {args.shots} shots, M={args.num_crops}, "
            f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPUs, load average {load:.1f}")
    e2e.make_data()
    e2e.build_table()
    if args.cached:
        e2e.student_features()
    with RunProbe() as e2e.probe:
        for seed in args.seeds:  # interleaved: every method once per seed
            for method in e2e.methods():
                e2e.train(method, seed)
    e2e.report()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end: {load:.1f}")
    return e2e


if __name__ == "__main__":
    from engine.cli import run_cli

    run_cli(main)
