"""The embedded main job: FDBPL's whole pipeline in a toy world (ToyScenes by default), on a CPU, in minutes.

    python scripts/demo.py [--quick] [--world toyscenes] [--promptsrc] [--baselines] [--promptkd] [--seeds 0 1 2]
                           [--out output/demo] [--data data]

1. generate the world's dataset (CoOp layout; ``--world toyscenes``, toy world v2, or ``toyshapes``, v1) and
   pick its teacher/student CLIPs (``models/``, see ``models/README.md``),
2. build one RIL table per seed with the toy teacher (base classes, 16 shots),
3. base-to-new for ZeroshotCLIP (teacher and student), CoOp, CoOp_KDPL and FDBPL over the seeds,
4. print (a) base/new/HM as in the paper's Table 2, (b) training wall time per method and KDPL/FDBPL,
   (c) the RIL table's size and build time, (d) how much of the teacher each student took in: top-1
   agreement with the teacher and KL(teacher || student) on held-out base and new images.

Runs use the normal ``train.py`` path and CoOp's output folders under ``--out`` (so
``scripts/parse_results.py OUT`` reads them too); a run whose log already holds its result is skipped, so an
interrupted demo continues where it stopped. ``--promptkd`` adds PromptKD's two stages (a PromptSRC teacher on
the toy TEACHER backbone, few-shot base classes, as scripts/promptkd/toy.sh; then the student distilled on the
unlabelled images of every training class): its rows are marked "[transductive]" since its protocol is not
base-to-new few-shot. Each step shows one live progress line naming its log (the run
folder's log.txt; OUT/logs/ for the table builds). The RIL tables go where scripts/fdbpl/common.sh looks for
them (``--ril-root``, default ``ril/``), so the sweep scripts reuse them.
"""
import argparse
import contextlib
import importlib.util
import os
import os.path as osp
import re
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
# Started with a Python outside the project's environment: say how to enter it in one line, not a traceback.
for _name in ("torch", "yacs", "open_clip", "tabulate"):
    if importlib.util.find_spec(_name) is None:
        sys.exit(f"error: {_name} is not installed for {sys.executable}; enter the environment first: "
                 "source .venv/bin/activate (bash scripts/setup_env.sh creates it)")
os.chdir(REPO)
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch
from tabulate import tabulate

from engine.cli import run_cli
from engine.results import TRANSDUCTIVE_NOTE, harmonic_mean, parse_log
from engine.utils import read_json, write_json
from scripts.demo_progress import StepLine
from tools.plots import write_figures

# world (also its dataset folder and config name) -> title, image counts and shipped CLIPs;
# trainer configs are configs/trainers/<method>/<world>.yaml
WORLDS = {
    "toyscenes": dict(title="ToyScenes (toy world v2)",
                      models={"teacher": "models/scenes_teacher_large.pt", "student": "models/scenes_student.pt"},
                      counts=dict(train=60, val=10, test=30), quick_counts=dict(train=16, val=4, test=10)),
    "toyshapes": dict(title="ToyShapes (toy world v1)",
                      models={"teacher": "models/toy_teacher.pt", "student": "models/toy_student.pt"},
                      counts=dict(train=40, val=10, test=30), quick_counts=dict(train=16, val=4, test=10)),
}
# method shown in the tables -> (trainer, config under configs/trainers/)
METHODS = {"CoOp": ("CoOp", "CoOp/{w}.yaml"), "CoOp_KDPL": ("CoOp_KDPL", "CoOp_KDPL/{w}.yaml"),
           "FDBPL": ("FDBPL", "FDBPL/{w}.yaml")}
PROMPTSRC_METHODS = {"IVLP": ("IVLP", "IVLP/{w}.yaml"), "PromptSRC": ("PromptSRC", "PromptSRC/{w}.yaml"),
                     "PromptSRC_KDPL": ("PromptSRC_KDPL", "PromptSRC_KDPL/{w}.yaml"),
                     "PromptSRC+FDBPL": ("FDBPL", "FDBPL/promptsrc_{w}.yaml")}
# --baselines: the rest of the paper's comparison (CoCoOp, VPT, MaPLe, their KDPL variants, FDBPL on CoCoOp)
BASELINE_METHODS = {"CoCoOp": ("CoCoOp", "CoCoOp/{w}.yaml"), "VPT": ("VPT", "VPT/{w}.yaml"),
                    "MaPLe": ("MaPLe", "MaPLe/{w}.yaml"),
                    "CoCoOp_KDPL": ("CoCoOp_KDPL", "CoCoOp_KDPL/{w}.yaml"),
                    "VPT_KDPL": ("VPT_KDPL", "VPT_KDPL/{w}.yaml"),
                    "MaPLe_KDPL": ("MaPLe_KDPL", "MaPLe_KDPL/{w}.yaml"),
                    "CoCoOp+FDBPL": ("FDBPL", "FDBPL/cocoop_{w}.yaml")}
# --promptkd: the teacher stage (PromptSRC on the toy teacher backbone) and the transductive student
PROMPTKD_TEACHER = ("PromptSRC", "PromptSRC/{w}.yaml")
PROMPTKD = ("PromptKD", "PromptKD/{w}.yaml")
TRANSDUCTIVE_MARK = " [transductive]"  # as scripts/parse_results.py marks these rows
PROMPTKD_ROW = "PromptKD" + TRANSDUCTIVE_MARK


def log(msg):
    print(msg, flush=True)


def teacher_slug(name):
    """The teacher's part of a RIL table's folder name, as scripts/fdbpl/common.sh's teacher_slug writes it."""
    if osp.isfile(name) or re.search(r"\.(pt|pth|bin|safetensors)$", name):
        name = osp.splitext(osp.basename(name))[0]
    return re.sub(r"[^a-z0-9.]", "_", name.lower().replace("/", ""))


def silent_train(argv, line):
    """Run ``train.py argv`` in this process; its console output goes to the run's log.txt and the progress line."""
    import train
    from engine.logger import close_logger

    with contextlib.redirect_stdout(line):
        try:
            train.main(train.build_parser().parse_args(argv))
        finally:
            close_logger()


def done(out, test_log):
    return osp.isfile(osp.join(out, "log.txt")) and parse_log(osp.join(out, "log.txt"), test_log=test_log) is not None


def pick_models(out, shipped):
    """The world's shipped toy CLIPs, or (clearly labelled) random tiny ones while they are not in the repository."""
    if all(osp.isfile(p) for p in shipped.values()):
        return dict(shipped), True
    from clip_tools.loading import build_tiny_clip, save_clip_file

    folder = osp.join(out, "random_models")
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for role, kw in (("teacher", dict(seed=1, vision_width=128, vision_layers=4, text_width=128, text_layers=4)),
                     ("student", dict(seed=2))):
        path = osp.join(folder, f"random_{role}.pt")
        if not osp.isfile(path):
            model, arch = build_tiny_clip(image_size=64, patch_size=8, context_length=24, **kw)
            model.logit_scale.data.fill_(float(np.log(100.0)))
            save_clip_file(model, arch, path)
        paths[role] = path
    return paths, False


@torch.no_grad()
def test_logits(argv, model_dir=None, epoch=None):
    """Logits [N, C] of a (trained) model on the test split, through the same trainer code as train.py."""
    import train
    from engine.trainer import build_trainer
    from engine.utils import set_random_seed

    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        cfg = train.setup_cfg(train.build_parser().parse_args(argv))
        set_random_seed(max(cfg.SEED, 0))
        trainer = build_trainer(cfg)
        if model_dir:
            trainer.load_model(model_dir, epoch=epoch)
        trainer.set_model_mode("eval")
        out = [trainer.model_inference(trainer.parse_batch_test(b)[0]).float().cpu() for b in trainer.test_loader]
    return torch.cat(out)


class Demo:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.out = args.out
        self.world = args.world
        self.models, self.pretrained = pick_models(args.out, WORLDS[args.world]["models"])
        self.shots = 4 if self.quick else 16
        self.crops = 8 if self.quick else args.num_crops
        self.epochs = ["OPTIM.MAX_EPOCH", "2"] if self.quick else []
        self.methods = dict(METHODS, **(PROMPTSRC_METHODS if args.promptsrc else {}),
                            **(BASELINE_METHODS if args.baselines else {}))
        self.acc = {}
        # wall times survive a resumed demo: {"train": {method: {seed: s}}, "ril": {seed: s}}
        self.timing_file = osp.join(self.out, "timings.json")
        self.timings = read_json(self.timing_file) if osp.isfile(self.timing_file) else {"train": {}, "ril": {}}
        self.timings.setdefault("train_cpu", {})

    def record(self, kind, key, seed, seconds):
        bucket = self.timings[kind] if key is None else self.timings[kind].setdefault(key, {})
        bucket[str(seed)] = seconds
        write_json(self.timings, self.timing_file)

    def common(self, method, seed):
        # ZeroshotCLIP has no settings of its own: it takes the CoOp toy config (input size, normalisation)
        trainer, cfg = ("ZeroshotCLIP", "CoOp/{w}.yaml") if method == "ZeroshotCLIP" else \
            PROMPTKD if method == PROMPTKD_ROW else self.methods[method]
        return self.argv(trainer, cfg, seed)

    def argv(self, trainer, cfg, seed):
        return ["--root", self.data, "--seed", str(seed), "--trainer", trainer, "--dataset-config-file",
                f"configs/datasets/{self.world}.yaml", "--config-file", "configs/trainers/" + cfg.format(w=self.world)]

    def opts(self, method, seed):
        if method == PROMPTKD_ROW:
            return self.promptkd_opts(seed)
        o = ["MODEL.BACKBONE.NAME", self.models["student"], "DATASET.NUM_SHOTS", str(self.shots),
             "DATALOADER.NUM_WORKERS", str(self.args.workers)] + self.epochs
        trainer = self.methods[method][0]
        if trainer.endswith("_KDPL"):
            o += ["TRAINER.KDPL.TEACHER", self.models["teacher"]]
        if trainer == "FDBPL":
            o += ["TRAINER.FDBPL.RIL_DIR", self.ril_dir(seed)]
        return o

    def ril_dir(self, seed):
        # the naming convention of scripts/fdbpl/common.sh (ril_dir), so the sweep scripts find these tables
        name = f"base_{teacher_slug(self.models['teacher'])}_M{self.crops}_K{self.args.topk}"
        return osp.join(self.args.ril_root, self.world, f"shots_{self.shots}", f"seed{seed}", name)

    def run_dir(self, kind, method, seed):
        return osp.join(self.out, "base2new", kind, self.world, f"shots_{self.shots}", method, self.world,
                        f"seed{seed}")

    def promptkd_dir(self, kind, seed):
        """PromptKD's folders in scripts/promptkd/base2new.sh's layout (no shots level: it trains on every image);
        the teacher's PromptSRC run lies outside base2new/, it is not a row of the table."""
        if kind == "teacher":
            return osp.join(self.out, "promptkd_teacher", self.world, f"shots_{self.shots}", "PromptSRC",
                            f"seed{seed}")
        return osp.join(self.out, "base2new", kind, self.world, "PromptKD", self.world, f"seed{seed}")

    def promptkd_opts(self, seed):
        return ["MODEL.BACKBONE.NAME", self.models["student"], "TRAINER.PROMPTKD.TEACHER", self.models["teacher"],
                "TRAINER.PROMPTKD.TEACHER_CKPT", self.promptkd_dir("teacher", seed),
                "DATALOADER.NUM_WORKERS", str(self.args.workers)] + self.epochs

    # ------------------------------------------------------------------ steps
    def make_data(self):
        from datasets.toyscenes import ensure_toyscenes
        from datasets.toyshapes import ensure_toyshapes

        spec = WORLDS[self.world]
        counts = spec["quick_counts"] if self.quick else spec["counts"]
        # ToyShapes keeps its v1 folders (data/toy, data/toy_quick) so earlier runs and scripts find them
        name = "toy" if self.world == "toyshapes" else "scenes"
        self.data = osp.join(self.args.data, name + ("_quick" if self.quick else ""))
        t = time.time()
        ensure = ensure_toyshapes if self.world == "toyshapes" else ensure_toyscenes
        ensure(self.data, size=64, seed=0, verbose=False, **counts)
        log(f"[data] {spec['title']} (64 px, 64 classes, {counts}) at {self.data} ({time.time() - t:.1f} s)")

    def build_tables(self):
        from ril_tools.build import main as build_main
        from ril_tools.reader import RilTable

        self.ril = {}
        for seed in self.args.seeds:
            path = self.ril_dir(seed)
            t = time.time()
            if not osp.isfile(osp.join(path, "manifest.json")):
                argv = self.common("FDBPL", seed)[:-2] + [
                    "--config-file", f"configs/trainers/FDBPL/{self.world}.yaml", "--output", path,
                    "--teacher", self.models["teacher"], "--num-crops", str(self.crops), "--topk", str(self.args.topk),
                    "--workers", "0", "DATASET.NUM_SHOTS", str(self.shots), "DATASET.SUBSAMPLE_CLASSES", "base"]
                log_path = osp.join(self.out, "logs", f"ril_seed{seed}.txt")
                os.makedirs(osp.dirname(log_path), exist_ok=True)
                line = StepLine(f"[ril] seed {seed}: building {path}", log_path)
                # the build's own tqdm bar (stderr) feeds the progress line; it reads TQDM_DISABLE when it starts
                quiet = os.environ.pop("TQDM_DISABLE", None)
                try:
                    with open(log_path, "w") as logf, contextlib.redirect_stdout(logf), \
                            contextlib.redirect_stderr(line):
                        build_main(argv)
                finally:
                    if quiet is not None:
                        os.environ["TQDM_DISABLE"] = quiet
                line.finish()
                self.record("ril", None, seed, time.time() - t)
            self.ril[seed] = self.timings["ril"].get(str(seed))
            table = RilTable.open(path)
            size = sum(osp.getsize(osp.join(path, f)) for f in os.listdir(path))
            self.ril_info = (table.num_images, table.num_crops, table.k, table.num_classes, size)
            took = "build time unknown" if self.ril[seed] is None else f"built in {self.ril[seed]:.1f} s"
            log(f"[ril] seed {seed}: {table.num_images} images x {table.num_crops} crops, K={table.k} "
                f"({size / 2**20:.2f} MiB, {took})")

    def zero_shot(self):
        for role in ("teacher", "student"):
            for sub in ("base", "new"):
                out = osp.join(self.out, "zeroshot", role, sub)
                if not done(out, True):
                    line = StepLine(f"[zero-shot] {role} {sub}", osp.join(out, "log.txt"))
                    silent_train(["--eval-only", "--output-dir", out] + self.common("ZeroshotCLIP", 1)
                                 + ["MODEL.BACKBONE.NAME", self.models[role], "DATASET.SUBSAMPLE_CLASSES", sub], line)
                    line.finish()
                self.acc.setdefault(f"ZS {role}", {})[sub] = [parse_log(osp.join(out, "log.txt"), test_log=True)]
            log(f"[zero-shot] {role}: base {self.acc[f'ZS {role}']['base'][0]:.2f}  "
                f"new {self.acc[f'ZS {role}']['new'][0]:.2f}")

    def train_methods(self):
        total = len(self.methods) * len(self.args.seeds)
        k = 0
        for method in self.methods:
            for seed in self.args.seeds:
                k += 1
                train_out = self.run_dir("train_base", method, seed)
                t, cpu = time.time(), time.process_time()
                label = f"[{k}/{total}] {method} seed {seed}"
                if not done(train_out, False):
                    line = StepLine(f"{label} train", osp.join(train_out, "log.txt"))
                    silent_train(self.common(method, seed) + ["--output-dir", train_out]
                                 + self.opts(method, seed) + ["DATASET.SUBSAMPLE_CLASSES", "base"], line)
                    self.record("train", method, seed, time.time() - t)
                    # the process's CPU time (all its threads; the demo's loaders run in-process) hardly moves
                    # when other jobs share the machine, unlike the wall time
                    self.record("train_cpu", method, seed, time.process_time() - cpu)
                    line.finish()
                new_out = self.run_dir("test_new", method, seed)
                if not done(new_out, True):
                    epochs = self.epochs[1] if self.epochs else None
                    line = StepLine(f"{label} test on new classes", osp.join(new_out, "log.txt"))
                    silent_train(self.common(method, seed) + ["--output-dir", new_out, "--eval-only",
                                                              "--model-dir", train_out]
                                 + (["--load-epoch", epochs] if epochs else [])
                                 + self.opts(method, seed) + ["DATASET.SUBSAMPLE_CLASSES", "new"], line)
                    line.finish()
                base = parse_log(osp.join(train_out, "log.txt"))
                new = parse_log(osp.join(new_out, "log.txt"), test_log=True)
                self.acc.setdefault(method, {}).setdefault("base", []).append(base)
                self.acc[method].setdefault("new", []).append(new)
                log(f"{label}: base {base:.2f}  new {new:.2f}  ({time.time() - t:.0f} s)")

    def train_promptkd(self):
        """PromptKD per seed: the PromptSRC teacher (toy teacher backbone, few-shot base classes), the student's
        transductive distillation (unlabelled images of every class; checkpoint chosen on validation), and the
        evaluation of that checkpoint on the base and the new test classes."""
        for seed in self.args.seeds:
            label = f"[PromptKD] seed {seed}"
            t = time.time()
            teacher = self.promptkd_dir("teacher", seed)
            if not done(teacher, False):
                t0, cpu = time.time(), time.process_time()
                line = StepLine(f"{label} teacher (PromptSRC on the teacher backbone)", osp.join(teacher, "log.txt"))
                silent_train(self.argv(*PROMPTKD_TEACHER, seed) + [
                    "--output-dir", teacher, "MODEL.BACKBONE.NAME", self.models["teacher"], "DATASET.NUM_SHOTS",
                    str(self.shots), "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.NUM_WORKERS",
                    str(self.args.workers)] + self.epochs, line)
                self.record("train", "PromptKD teacher", seed, time.time() - t0)
                self.record("train_cpu", "PromptKD teacher", seed, time.process_time() - cpu)
                line.finish()
            student = self.promptkd_dir("train_all_transductive", seed)
            if not done(student, False):
                t0, cpu = time.time(), time.process_time()
                line = StepLine(f"{label} student (transductive distillation)", osp.join(student, "log.txt"))
                silent_train(self.common(PROMPTKD_ROW, seed) + ["--output-dir", student] + self.promptkd_opts(seed),
                             line)
                self.record("train", PROMPTKD_ROW, seed, time.time() - t0)
                self.record("train_cpu", PROMPTKD_ROW, seed, time.process_time() - cpu)
                line.finish()
            acc = self.acc.setdefault(PROMPTKD_ROW, {})
            for sub in ("base", "new"):
                out = self.promptkd_dir(f"test_{sub}", seed)
                if not done(out, True):  # the best-val checkpoint, the stored teacher class vectors; no teacher
                    line = StepLine(f"{label} test on {sub} classes", osp.join(out, "log.txt"))
                    silent_train(self.common(PROMPTKD_ROW, seed) + ["--output-dir", out, "--eval-only", "--model-dir",
                                                                    student] + self.promptkd_opts(seed)
                                 + ["DATASET.SUBSAMPLE_CLASSES", sub], line)
                    line.finish()
                acc.setdefault(sub, []).append(parse_log(osp.join(out, "log.txt"), test_log=True))
            log(f"{label}: teacher base {parse_log(osp.join(teacher, 'log.txt')):.2f}; student base "
                f"{acc['base'][-1]:.2f}  new {acc['new'][-1]:.2f}  ({time.time() - t:.0f} s)")

    def agreement(self):
        """Top-1 agreement with the teacher and KL(teacher || student) on the test images of base and new."""
        from engine.evaluator import teacher_agreement

        rows = []
        methods = list(self.methods) + ([PROMPTKD_ROW] if getattr(self.args, "promptkd", False) else [])
        steps = 2 * (2 + len(methods) * len(self.args.seeds))
        line = StepLine("[agreement] teacher vs students on the test images", "none, computed in memory",
                        unit="models")
        k = 0
        for sub in ("base", "new"):
            teacher = test_logits(self.common("ZeroshotCLIP", 1) + ["MODEL.BACKBONE.NAME", self.models["teacher"],
                                                                     "DATASET.SUBSAMPLE_CLASSES", sub])
            student = test_logits(self.common("ZeroshotCLIP", 1) + ["MODEL.BACKBONE.NAME", self.models["student"],
                                                                     "DATASET.SUBSAMPLE_CLASSES", sub])
            k += 2
            line.update(k, steps)
            rows.append(("ZS student", sub) + teacher_agreement(teacher, student))
            for method in methods:
                per_seed = []
                for seed in self.args.seeds:
                    pkd = method == PROMPTKD_ROW  # its best-val checkpoint, as its test_base / test_new runs
                    logits = test_logits(self.common(method, seed) + self.opts(method, seed)
                                         + ["DATASET.SUBSAMPLE_CLASSES", sub],
                                         model_dir=self.promptkd_dir("train_all_transductive", seed) if pkd
                                         else self.run_dir("train_base", method, seed),
                                         epoch=int(self.epochs[1]) if self.epochs and not pkd else None)
                    per_seed.append(teacher_agreement(teacher, logits))
                    k += 1
                    line.update(k, steps)
                rows.append((method, sub) + tuple(float(np.mean(v)) for v in zip(*per_seed)))
        line.finish()
        return rows

    # ------------------------------------------------------------------ report
    def report_times(self):
        """(b): per method the median [min-max] over seeds of CPU time (robust to other jobs) and wall time."""
        def spread(per_seed):
            v = np.array(list(per_seed.values()), dtype=float)
            return float(np.median(v)), f"{np.median(v):.1f} s [{v.min():.1f}-{v.max():.1f}]"

        wall, cpu = self.timings["train"], self.timings["train_cpu"]
        methods = [m for m in wall if wall[m]]
        if not methods:
            print("\n(b) Training time: not recorded (runs made outside the demo); delete --out to re-time")
            return
        print("\n(b) Training time per run (median [min-max] over seeds, includes evaluation on base): the process's "
              "CPU time, which other jobs on the machine hardly change, and the wall time")
        rows = [(m, spread(cpu[m])[1] if cpu.get(m) else "not recorded", spread(wall[m])[1]) for m in methods]
        print(tabulate(rows, headers=["method", "CPU time", "wall time"]))
        timed = cpu if all(cpu.get(m) for m in methods) else wall
        med = {m: spread(timed[m])[0] for m in methods}
        kind = "CPU time" if timed is cpu else "wall time (no CPU times recorded)"
        for kdpl, fdbpl, base in (("CoOp_KDPL", "FDBPL", "CoOp"), ("PromptSRC_KDPL", "PromptSRC+FDBPL", "PromptSRC")):
            if all(m in med for m in (kdpl, fdbpl, base)):
                print(f"{kdpl} / {fdbpl}: {med[kdpl] / med[fdbpl]:.2f}x   {fdbpl} / {base}: {med[fdbpl] / med[base]:.2f}x"
                      f"   ({kind})")

    def report(self, agreement_rows):
        def cell(values):
            v = [x for x in values if x is not None]
            return f"{np.mean(v):.2f} +- {np.std(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"

        rows = []
        for name, acc in self.acc.items():
            b, n = float(np.mean(acc["base"])), float(np.mean(acc["new"]))
            rows.append((name, cell(acc["base"]), cell(acc["new"]), f"{harmonic_mean(b, n):.2f}"))
        print(f"\n(a) Base-to-new on {WORLDS[self.world]['title']} (accuracy %, mean +- std over seeds "
              f"{' '.join(map(str, self.args.seeds))}; HM of the means)")
        print(tabulate(rows, headers=["method", "base", "new", "HM"]))
        if PROMPTKD_ROW in self.acc:
            print(f"{TRANSDUCTIVE_MARK.strip()}: {TRANSDUCTIVE_NOTE}; its teacher is PromptSRC on the toy teacher "
                  f"backbone ({self.shots}-shot base classes)")

        self.report_times()

        n_img, m, k, c, size = self.ril_info
        built = [t for t in self.ril.values() if t is not None]
        print("\n(c) RIL table per seed: "
              f"{n_img} images x {m} crops, K={k} of C={c}, {size / 2**20:.2f} MiB; "
              + (f"build time {np.mean(built):.1f} s (mean over seeds)" if built else "build time not recorded"))

        print("\n(d) How much of the teacher the student took in (test images; mean over seeds)")
        print(tabulate([(r[0], r[1], f"{100 * r[2]:.2f}", f"{r[3]:.3f}") for r in agreement_rows],
                       headers=["student", "classes", "top-1 agreement %", "KL(teacher||student)"]))
        if not self.pretrained:
            print("\nNOTE: models/toy_teacher.pt and models/toy_student.pt are not in this checkout, so this run "
                  "used RANDOM tiny CLIPs: the pipeline ran end to end, but the accuracies mean nothing.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a one-minute smoke run: 1 seed, 4 shots, 2 epochs, 8 crops")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --quick)")
    p.add_argument("--world", choices=sorted(WORLDS), default="toyscenes",
                   help="toyscenes: toy world v2, the paper's phenomena (default); toyshapes: v1 (models/README.md)")
    p.add_argument("--out", default=None, help="default output/demo (output/demo_toyshapes for --world toyshapes)")
    p.add_argument("--data", default="data")
    p.add_argument("--ril-root", default="ril",
                   help="where the RIL tables go, named as scripts/fdbpl/common.sh names them (default: ril)")
    p.add_argument("--num-crops", type=int, default=64, help="RIL crops per image (the paper uses 500)")
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--workers", type=int, default=0, help="DATALOADER.NUM_WORKERS for the training runs")
    p.add_argument("--baselines", action="store_true",
                   help="also run CoCoOp, VPT, MaPLe, their KDPL variants and FDBPL on CoCoOp")
    p.add_argument("--promptkd", action="store_true",
                   help="also run PromptKD (a PromptSRC teacher on the toy teacher backbone, then the student distilled "
                        "TRANSDUCTIVELY on the unlabelled images of every training class; rows marked so)")
    p.add_argument("--promptsrc", action="store_true",
                   help="also run IVLP, PromptSRC, PromptSRC_KDPL and FDBPL on PromptSRC (about twice the time)")
    args = p.parse_args(argv)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.out = args.out or ("output/demo" if args.world == "toyscenes" else "output/demo_" + args.world)
    if args.quick:
        args.out = args.out.rstrip("/") + "_quick"
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    demo = Demo(args)
    start = time.time()
    log(f"FDBPL demo ({'quick' if args.quick else 'full'}): models {demo.models['teacher']} (teacher), "
        f"{demo.models['student']} (student); outputs in {args.out}")
    demo.make_data()
    demo.build_tables()
    demo.zero_shot()
    demo.train_methods()
    if args.promptkd:
        demo.train_promptkd()
    rows = demo.agreement()
    demo.report(rows)
    figures = write_figures(args.out, osp.join(args.out, "figures"))
    print("\nFigures (the numbers are in the CSV beside each): "
          + ", ".join(p for p in figures if p.endswith(".png")))
    total = time.time() - start
    print(f"\nTotal demo time: {total:.0f} s ({total / 60:.1f} min)")


if __name__ == "__main__":
    run_cli(main)
