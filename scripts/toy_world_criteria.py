"""The success criteria of toy world v2 (issue 15), measured on one generated ToyScenes world.

    python scripts/toy_world_criteria.py --root data/w0 --gen-seed 0 --seeds 0 1 2 --out output/criteria/g0

1. zero-shot (hand prompt "a photo of a {}.", ZeroshotCLIP through train.py) of the teachers and the student on
   base and new classes: teacher >= student + 10 on both (the large teacher; the small one is reported);
2. CoOp base-to-new over the seeds (train.py, CoOp's output layout): CoOp base >= zero-shot student base + 5 and
   CoOp new < zero-shot student new (CoOp overfits the base classes);
3. CoOp_KDPL base-to-new over the same seeds: KDPL new >= CoOp new + 3;
4. the crop-information precondition: an RIL table of the teacher on the base training set (16 shots of the
   first seed, M crops per image at the config's crop scale, the full distribution stored): at least 25% of
   crops with w < 0.5 and at least 25% with w > 0.8 (w = Eq. 6, ril_tools.labels.information_weight).

Criterion 5 is this script on a world generated with another ``--gen-seed`` (the pretrained CLIPs unchanged).
Prints each criterion with its values and PASS/FAIL and writes ``OUT/criteria.json``. A run whose log already
holds its result is skipped, so an interrupted measurement continues; runs go ``--jobs`` at a time (default 2), each
a child process with one thread (scripts/_runs.py: on the 2-core VM a CoOp run takes 20 s so, against 100 s in
one process with two threads beside other work). ``--split val`` evaluates on the
validation split instead of test (what the configs' hyperparameters were chosen on); ``--opts KEY VALUE ...``
goes to every CoOp / CoOp_KDPL run (e.g. ``OPTIM.MAX_EPOCH 20`` while choosing them).

Never runs FDBPL: the world is fixed by these criteria before any FDBPL run (issue 15).
"""

import argparse
import json
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
os.chdir(REPO)
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402

from engine.cli import run_cli  # noqa: E402
from scripts._runs import Task, result_of, run_tasks  # noqa: E402

MODELS = {"teacher": "models/scenes_teacher_large.pt", "teacher_small": "models/scenes_teacher_small.pt",
          "student": "models/scenes_student.pt"}
DATASET_CFG = "configs/datasets/toyscenes.yaml"
TRAINER_CFG = {"ZeroshotCLIP": "configs/trainers/CoOp/toyscenes.yaml", "CoOp": "configs/trainers/CoOp/toyscenes.yaml",
               "CoOp_KDPL": "configs/trainers/CoOp_KDPL/toyscenes.yaml"}


def log(msg):
    print(msg, flush=True)


class Criteria:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        self.models = {"teacher": args.teacher, "teacher_small": args.teacher_small, "student": args.student}
        self.split_opts = ["TEST.SPLIT", args.split]
        self.result = {"root": args.root, "gen_seed": args.gen_seed, "seeds": args.seeds, "split": args.split,
                       "shots": args.shots, "models": self.models, "opts": args.opts}

    def common(self, trainer, seed):
        return ["--root", self.args.root, "--seed", str(seed), "--trainer", trainer,
                "--dataset-config-file", DATASET_CFG, "--config-file", TRAINER_CFG[trainer]]

    def make_data(self):
        from datasets.toyscenes import ensure_toyscenes

        t = time.time()
        a = self.args
        ensure_toyscenes(a.root, seed=a.gen_seed, train=a.train, val=a.val, test=a.test, verbose=False)
        log(f"[data] ToyScenes, generation seed {self.args.gen_seed}, at {self.args.root} ({time.time() - t:.0f} s)")

    # every run is a Task of scripts/_runs.py: run in parallel child processes, a finished one is skipped
    def zero_shot_tasks(self):
        tasks = []
        for role, path in self.models.items():
            for sub in ("base", "new") if path else ():
                out = osp.join(self.out, "zeroshot", role, sub)
                tasks.append(Task("eval", out, ["--eval-only", "--output-dir", out] + self.common("ZeroshotCLIP", 1)
                                  + ["MODEL.BACKBONE.NAME", path, "DATASET.SUBSAMPLE_CLASSES", sub,
                                     "DATALOADER.NUM_WORKERS", "0"] + self.split_opts))
        return tasks

    def zero_shot(self):
        zs = {}
        for role, path in self.models.items():
            if path:
                zs[role] = {sub: result_of(osp.join(self.out, "zeroshot", role, sub), "eval") for sub in ("base", "new")}
                log(f"[zero-shot] {role}: base {zs[role]['base']:.2f}  new {zs[role]['new']:.2f}")
        self.result["zero_shot"] = zs

    def run_dirs(self, method, seed):
        return (osp.join(self.out, "base2new", "train_base", method, f"seed{seed}"),
                osp.join(self.out, "base2new", "test_new", method, f"seed{seed}"))

    def base2new_tasks(self, method):
        tasks = []
        for seed in self.args.seeds:
            opts = ["MODEL.BACKBONE.NAME", self.models["student"], "DATASET.NUM_SHOTS", str(self.args.shots),
                    "DATALOADER.NUM_WORKERS", "0"] + self.split_opts + list(self.args.opts)
            if method == "CoOp_KDPL":
                opts += ["TRAINER.KDPL.TEACHER", self.models["teacher"]]
            train_out, new_out = self.run_dirs(method, seed)
            tasks.append(Task("train", train_out, self.common(method, seed) + ["--output-dir", train_out] + opts
                              + ["DATASET.SUBSAMPLE_CLASSES", "base"]))
            tasks.append(Task("eval", new_out, self.common(method, seed) + ["--output-dir", new_out, "--eval-only",
                              "--model-dir", train_out] + opts + ["DATASET.SUBSAMPLE_CLASSES", "new"], after=[train_out]))
        return tasks

    def base2new(self, method):
        accs = {"base": [], "new": []}
        for seed in self.args.seeds:
            train_out, new_out = self.run_dirs(method, seed)
            accs["base"].append(result_of(train_out))
            accs["new"].append(result_of(new_out, "eval"))
            log(f"[{method}] seed {seed}: base {accs['base'][-1]:.2f}  new {accs['new'][-1]:.2f}")
        self.result[method] = {k: {"per_seed": v, "mean": float(np.mean(v)), "std": float(np.std(v))}
                               for k, v in accs.items()}

    def table_path(self):
        return osp.join(self.out, "ril", f"base_shots{self.args.shots}_seed{self.args.seeds[0]}_M{self.args.num_crops}_full")

    def table_task(self):
        seed = self.args.seeds[0]
        return Task("build", self.table_path(), self.common("CoOp", seed) + [
            "--output", self.table_path(), "--teacher", self.models["teacher"], "--num-crops", str(self.args.num_crops),
            "--label-kind", "full", "--workers", "0", "--overwrite",
            "DATASET.NUM_SHOTS", str(self.args.shots), "DATASET.SUBSAMPLE_CLASSES", "base"])

    def crop_information(self):
        from ril_tools.reader import RilTable

        path = self.table_path()
        table = RilTable.open(path)
        n = len(table)
        rec = table.fetch(np.arange(n) // table.num_crops, np.arange(n) % table.num_crops)
        w = np.asarray(rec["weight"], dtype=np.float64)
        hist, _ = np.histogram(w, bins=10, range=(0.0, 1.0))
        self.result["crops"] = {"table": path, "records": int(n), "classes": int(table.num_classes),
                                "frac_w_below_0.5": float((w < 0.5).mean()), "frac_w_above_0.8": float((w > 0.8).mean()),
                                "w_mean": float(w.mean()), "w_hist_10bins": hist.tolist()}
        log(f"[crops] {n} crops: w < 0.5 for {100 * (w < 0.5).mean():.1f}%, w > 0.8 for {100 * (w > 0.8).mean():.1f}%")

    def verdict(self):
        r, rows = self.result, []
        zs = r.get("zero_shot", {})

        def row(name, ok, text):
            rows.append({"criterion": name, "pass": bool(ok), "values": text})

        if "teacher" in zs and "student" in zs:
            for role in ("teacher", "teacher_small"):
                if role not in zs:
                    continue
                db = zs[role]["base"] - zs["student"]["base"]
                dn = zs[role]["new"] - zs["student"]["new"]
                row(f"1 {role} >= student + 10 (base, new)" + ("" if role == "teacher" else " [reported]"),
                    db >= 10 and dn >= 10, f"base {zs[role]['base']:.2f} vs {zs['student']['base']:.2f} "
                    f"({db:+.2f}); new {zs[role]['new']:.2f} vs {zs['student']['new']:.2f} ({dn:+.2f})")
        if "CoOp" in r and "student" in zs:
            c = r["CoOp"]
            db = c["base"]["mean"] - zs["student"]["base"]
            dn = c["new"]["mean"] - zs["student"]["new"]
            row("2a CoOp base >= ZS student base + 5", db >= 5,
                f"{c['base']['mean']:.2f} +- {c['base']['std']:.2f} vs {zs['student']['base']:.2f} ({db:+.2f})")
            row("2b CoOp new < ZS student new", dn < 0,
                f"{c['new']['mean']:.2f} +- {c['new']['std']:.2f} vs {zs['student']['new']:.2f} ({dn:+.2f})")
        if "CoOp" in r and "CoOp_KDPL" in r:
            k, c = r["CoOp_KDPL"], r["CoOp"]
            d = k["new"]["mean"] - c["new"]["mean"]
            row("3 CoOp_KDPL new >= CoOp new + 3", d >= 3,
                f"{k['new']['mean']:.2f} +- {k['new']['std']:.2f} vs {c['new']['mean']:.2f} +- "
                f"{c['new']['std']:.2f} ({d:+.2f}); KDPL base {k['base']['mean']:.2f} +- {k['base']['std']:.2f}")
        if "crops" in r:
            lo, hi = r["crops"]["frac_w_below_0.5"], r["crops"]["frac_w_above_0.8"]
            row("4 crops: w < 0.5 >= 25% and w > 0.8 >= 25%", lo >= 0.25 and hi >= 0.25,
                f"w < 0.5: {100 * lo:.1f}%, w > 0.8: {100 * hi:.1f}% of {r['crops']['records']} crops")
        r["criteria"] = rows
        log(f"\nToy world v2 criteria, generation seed {r['gen_seed']}, seeds {r['seeds']}, split {r['split']}:")
        for x in rows:
            log(f"  {'PASS' if x['pass'] else 'FAIL'}  {x['criterion']}: {x['values']}")

    def write(self):
        os.makedirs(self.out, exist_ok=True)
        with open(osp.join(self.out, "criteria.json"), "w") as f:
            json.dump(self.result, f, indent=2)
        log(f"wrote {osp.join(self.out, 'criteria.json')}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="dataset root; ROOT/toyscenes is generated with --gen-seed if missing")
    p.add_argument("--gen-seed", type=int, default=0, help="ToyScenes generation seed (criterion 5: another one)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", required=True, help="output folder (runs, table, criteria.json)")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--train", type=int, default=60, help="images per class generated for train (as pretraining)")
    p.add_argument("--val", type=int, default=10)
    p.add_argument("--test", type=int, default=30)
    p.add_argument("--num-crops", type=int, default=32, help="crops per image of the criterion-4 table")
    p.add_argument("--split", choices=("test", "val"), default="test", help="evaluation split (val: tuning)")
    p.add_argument("--teacher", default=MODELS["teacher"])
    p.add_argument("--teacher-small", default=MODELS["teacher_small"], help="'' to skip")
    p.add_argument("--student", default=MODELS["student"])
    p.add_argument("--skip", nargs="*", default=[], choices=("zero_shot", "CoOp", "CoOp_KDPL", "crops"))
    p.add_argument("--opts", nargs="*", default=[], help="KEY VALUE pairs for the CoOp and CoOp_KDPL runs")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (scripts/_runs.py)")
    args = p.parse_args(argv)
    c = Criteria(args)
    c.make_data()
    tasks = c.zero_shot_tasks() if "zero_shot" not in args.skip else []
    for method in ("CoOp", "CoOp_KDPL"):
        if method not in args.skip:
            tasks += c.base2new_tasks(method)
    if "crops" not in args.skip:
        tasks.append(c.table_task())
    failed = run_tasks(tasks, jobs=args.jobs, log=log)
    if failed:
        log(f"{len(failed)} runs failed; see their console.txt")
        return 1
    if "zero_shot" not in args.skip:
        c.zero_shot()
    for method in ("CoOp", "CoOp_KDPL"):
        if method not in args.skip:
            c.base2new(method)
    if "crops" not in args.skip:
        c.crop_information()
    c.verdict()
    c.write()
    return 0


if __name__ == "__main__":
    run_cli(main)
