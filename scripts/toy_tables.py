"""The paper's tables measured in toy world v2 (ToyScenes), over seeds 0-2, resumable, two runs at a time.

    python scripts/toy_tables.py --root data/scenes --out output/tables [--tables b2n xd shots labels crops ablation]
                                 [--seeds 0 1 2] [--jobs 2] [--split test]

Tables (the paper's numbering; every run goes through ``train.py`` or ``python -m ril_tools.build``, in CoOp's
output layout under ``OUT/runs``; a finished run is skipped, so a stopped sweep continues where it stopped):

* ``b2n`` (Table 2): base-to-new, 16 shots, zero-shot teacher / student, CoOp, CoOp_KDPL, FDBPL, IVLP, PromptSRC,
  PromptSRC_KDPL, PromptSRC+FDBPL; base, new, HM.
* ``xd`` (Tables 1 and 6): the PromptSRC family trained on all 64 ToyScenes classes (16 shots) and evaluated on
  the source test set, on the cross-dataset target (ToyScenesXShapes, other classes) and on the domain-shifted
  renderings of the same classes (sketch, night, palette).
* ``shots`` (Table 3): CoOp vs FDBPL at N = 1, 2, 4, 8, 16 shots, base-to-new.
* ``labels`` (Table 4): FDBPL with the table's labels Full / MS / MR (K = 10) and MS at K = 5, 10, 20.
* ``crops`` (Table 5): FDBPL with M = 16, 64, 256 crops per image (``--crops-list``) from the large and the small
  teacher.
* ``ablation`` (Table 6 of RADP / PCD, Figure 10): FDBPL without L_neg, L_diff1, L_diff2, both, and Eq. 13
  mirrored (DIFF1_FORM).

Every FDBPL table is a union table of the seeds' few-shot subsets (one build serves the three seeds), built
with the config's crop scale. ``--split val`` evaluates on the validation split (what hyperparameters are chosen
on). Writes ``OUT/<table>.md`` and ``OUT/<table>.json`` (mean, std over seeds and the per-seed values).
"""

import argparse
import json
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
os.chdir(REPO)

import numpy as np  # noqa: E402

from engine.cli import run_cli  # noqa: E402
from engine.results import harmonic_mean  # noqa: E402
from scripts._runs import Task, result_of, run_tasks  # noqa: E402

MODELS = {"teacher": "models/scenes_teacher_large.pt", "teacher_small": "models/scenes_teacher_small.pt",
          "student": "models/scenes_student.pt"}
DATASETS = {"clean": "configs/datasets/toyscenes.yaml", "xshapes": "configs/datasets/toyscenes_xshapes.yaml",
            "sketch": "configs/datasets/toyscenes_sketch.yaml", "night": "configs/datasets/toyscenes_night.yaml",
            "palette": "configs/datasets/toyscenes_palette.yaml"}
# row name -> (trainer, config under configs/trainers/)
METHODS = {"CoOp": ("CoOp", "CoOp/toyscenes.yaml"), "CoOp_KDPL": ("CoOp_KDPL", "CoOp_KDPL/toyscenes.yaml"),
           "FDBPL": ("FDBPL", "FDBPL/toyscenes.yaml"), "IVLP": ("IVLP", "IVLP/toyscenes.yaml"),
           "PromptSRC": ("PromptSRC", "PromptSRC/toyscenes.yaml"),
           "PromptSRC_KDPL": ("PromptSRC_KDPL", "PromptSRC_KDPL/toyscenes.yaml"),
           "PromptSRC+FDBPL": ("FDBPL", "FDBPL/promptsrc_toyscenes.yaml")}
ZS_CONFIG = "CoOp/toyscenes.yaml"  # ZeroshotCLIP has no settings of its own: input size and normalisation
B2N_ROWS = list(METHODS)
XD_ROWS = ["IVLP", "PromptSRC", "PromptSRC_KDPL", "PromptSRC+FDBPL"]
TABLES = ("b2n", "xd", "shots", "labels", "crops", "ablation")
SHOTS = (1, 2, 4, 8, 16)
TABLE_M, TABLE_K = 64, 10  # the default table: 64 crops per image, top-10 labels (the demo's)
ABLATIONS = {"default": [], "no_neg": ["TRAINER.FDBPL.LAMBDA_NEG", "0"], "no_diff1": ["TRAINER.FDBPL.LAMBDA_DIFF1", "0"],
             "no_diff2": ["TRAINER.FDBPL.LAMBDA_DIFF2", "0"],
             "no_pcd": ["TRAINER.FDBPL.LAMBDA_DIFF1", "0", "TRAINER.FDBPL.LAMBDA_DIFF2", "0"],
             "diff1_mirrored": ["TRAINER.FDBPL.DIFF1_FORM", "mirrored"]}


def log(msg):
    print(msg, flush=True)


class Sweep:
    def __init__(self, args):
        self.a = args
        self.models = {"teacher": args.teacher, "teacher_small": args.teacher_small, "student": args.student}
        self.runs = osp.join(args.out, "runs")
        self.split = ["TEST.SPLIT", args.split]

    # ---------------------------------------------------------------- tasks
    def argv(self, trainer, config, seed, dataset="clean"):
        return ["--root", self.a.root, "--seed", str(seed), "--trainer", trainer,
                "--dataset-config-file", DATASETS[dataset], "--config-file", "configs/trainers/" + config]

    def table(self, shots=16, sub="base", teacher="teacher", m=TABLE_M, k=TABLE_K):
        """The union RIL table of the seeds' ``shots``-shot subsets (k "full": every class's probability)."""
        name = f"{sub}_{osp.splitext(osp.basename(self.models[teacher]))[0]}_M{m}_" + ("full" if k == "full" else f"K{k}")
        out = osp.join(self.a.out, "ril", f"shots_{shots}", "seeds_" + "-".join(map(str, self.a.seeds)), name)
        labels = ["--label-kind", "full"] if k == "full" else ["--topk", str(k)]
        argv = (self.argv("FDBPL", METHODS["FDBPL"][1], self.a.seeds[0])
                + ["--output", out, "--teacher", self.models[teacher], "--num-crops", str(m), "--workers", "0"]
                + labels + ["--seeds"] + [str(s) for s in self.a.seeds] + ["--shots", str(shots),
                "DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", sub])
        return Task("build", out, argv)

    def opts(self, method, shots, table):
        o = ["MODEL.BACKBONE.NAME", self.models["student"], "DATASET.NUM_SHOTS", str(shots),
             "DATALOADER.NUM_WORKERS", "0"] + self.split + list(self.a.opts)
        trainer = METHODS[method][0]
        if trainer.endswith("_KDPL"):
            o += ["TRAINER.KDPL.TEACHER", self.models["teacher"]]
        if trainer == "FDBPL":
            o += ["TRAINER.FDBPL.RIL_DIR", table.out]
        return o

    def base2new(self, method, seed, shots=16, tag=None, table=None, extra=()):
        """(train on base, evaluate on new) tasks of one run; returns (tasks, train out, new out). Every table's
        base-to-new runs share one folder tree, so a setting that two tables use (tag None: the method's
        default, 16 shots, the default RIL table) runs once."""
        trainer, config = METHODS[method]
        if trainer == "FDBPL" and table is None:
            table = self.table(shots)
        leaf = osp.join(f"shots_{shots}", method + (f"/{tag}" if tag else ""), f"seed{seed}")
        train_out = osp.join(self.runs, "b2n", "train_base", leaf)
        new_out = osp.join(self.runs, "b2n", "test_new", leaf)
        opts = self.opts(method, shots, table) + list(extra)
        tasks = [] if table is None else [table]
        tasks.append(Task("train", train_out, self.argv(trainer, config, seed) + ["--output-dir", train_out] + opts
                          + ["DATASET.SUBSAMPLE_CLASSES", "base"], after=[table.out] if table else []))
        tasks.append(Task("eval", new_out, self.argv(trainer, config, seed) + ["--output-dir", new_out, "--eval-only",
                          "--model-dir", train_out] + opts + ["DATASET.SUBSAMPLE_CLASSES", "new"], after=[train_out]))
        return tasks, train_out, new_out

    def zero_shot(self, role, dataset="clean", sub="all"):
        out = osp.join(self.runs, "zeroshot", role, dataset, sub)
        return Task("eval", out, ["--eval-only", "--output-dir", out] + self.argv("ZeroshotCLIP", ZS_CONFIG, 1, dataset)
                    + ["MODEL.BACKBONE.NAME", self.models[role], "DATASET.SUBSAMPLE_CLASSES", sub,
                       "DATALOADER.NUM_WORKERS", "0"] + self.split)

    # ---------------------------------------------------------------- tables
    def plan(self, name):
        """(tasks, rows): rows are (row label, {column: [outs of seeds, kind]})."""
        tasks, rows = [], []
        seeds = self.a.seeds

        def b2n_row(label, method, **kw):
            cols = {"base": ([], "train"), "new": ([], "eval")}
            for seed in seeds:
                t, tr, nw = self.base2new(method, seed, **kw)
                tasks.extend(t)
                cols["base"][0].append(tr)
                cols["new"][0].append(nw)
            rows.append((label, cols))

        if name in ("b2n", "shots"):
            for role in ("teacher", "student"):
                zs = {sub: self.zero_shot(role, sub=sub) for sub in ("base", "new")}
                tasks.extend(zs.values())
                rows.append((f"ZS {role}", {sub: ([t.out], "eval") for sub, t in zs.items()}))
        if name == "b2n":
            for method in self.a.methods or B2N_ROWS:
                b2n_row(method, method)
        elif name == "shots":
            for shots in SHOTS:
                for method in ("CoOp", "FDBPL"):
                    b2n_row(f"{method} N={shots}", method, shots=shots)
        elif name == "labels":
            for label, k, mode in (("Full", "full", "full"), ("MS K=10", TABLE_K, "ms"), ("MR K=10", TABLE_K, "mr"),
                                   ("MS K=5", 5, "ms"), ("MS K=20", 20, "ms")):
                default = (k, mode) == (TABLE_K, "ms")  # FDBPL's defaults: the b2n table's run
                b2n_row(label, "FDBPL", tag=None if default else f"{mode}_K{k}", table=self.table(k=k),
                        extra=["TRAINER.FDBPL.LABEL_MODE", mode])
        elif name == "crops":
            for teacher in ("teacher", "teacher_small"):
                for m in self.a.crops_list:
                    default = (teacher, m) == ("teacher", TABLE_M)
                    b2n_row(f"{teacher} M={m}", "FDBPL", tag=None if default else f"{teacher}_M{m}",
                            table=self.table(teacher=teacher, m=m))
        elif name == "ablation":
            for tag, extra in ABLATIONS.items():
                b2n_row(tag, "FDBPL", tag=None if tag == "default" else tag, extra=extra)
        elif name == "xd":
            targets = ("clean", "xshapes", "sketch", "night", "palette")
            for role in ("teacher", "student"):
                zs = {d: self.zero_shot(role, d) for d in targets}
                tasks.extend(zs.values())
                rows.append((f"ZS {role}", {d: ([t.out], "eval") for d, t in zs.items()}))
            for method in XD_ROWS:
                trainer, config = METHODS[method]
                table = self.table(sub="all", m=self.a.xd_crops) if trainer == "FDBPL" else None
                cols = {d: ([], "train" if d == "clean" else "eval") for d in targets}
                for seed in seeds:
                    train_out = osp.join(self.runs, "xd", "train_all", "shots_16", method, f"seed{seed}")
                    opts = self.opts(method, 16, table) + ["DATASET.SUBSAMPLE_CLASSES", "all"]
                    if table:
                        tasks.append(table)
                    tasks.append(Task("train", train_out, self.argv(trainer, config, seed) + ["--output-dir", train_out]
                                      + opts, after=[table.out] if table else []))
                    cols["clean"][0].append(train_out)
                    for d in targets[1:]:
                        out = osp.join(self.runs, "xd", f"test_{d}", method, f"seed{seed}")
                        tasks.append(Task("eval", out, self.argv(trainer, config, seed, d) + [
                            "--output-dir", out, "--eval-only", "--model-dir", train_out] + opts, after=[train_out]))
                        cols[d][0].append(out)
                rows.append((method, cols))
        return tasks, rows

    # ---------------------------------------------------------------- report
    def summarise(self, name, rows):
        result, lines = {}, []
        cols = list(rows[0][1]) if rows else []
        hm = cols == ["base", "new"]
        head = ["row"] + cols + (["HM"] if hm else [])
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for label, spec in rows:
            cells, entry = [], {}
            for col, (outs, kind) in spec.items():
                vals = [result_of(o, kind) for o in outs]
                vals = [v for v in vals if v is not None]
                entry[col] = {"per_seed": vals, "mean": float(np.mean(vals)) if vals else None,
                              "std": float(np.std(vals)) if vals else None, "runs": len(outs)}
                if not vals:
                    cells.append("missing")
                elif len(outs) == 1:
                    cells.append(f"{vals[0]:.2f}")
                else:
                    cells.append(f"{np.mean(vals):.2f} +- {np.std(vals):.2f}" + ("" if len(vals) == len(outs)
                                                                               else f" ({len(vals)}/{len(outs)})"))
            if hm and all(entry[c]["mean"] is not None for c in cols):
                entry["HM"] = harmonic_mean(entry["base"]["mean"], entry["new"]["mean"])
                cells.append(f"{entry['HM']:.2f}")
            elif hm:
                cells.append("")
            result[label] = entry
            lines.append("| " + " | ".join([label] + cells) + " |")
        os.makedirs(self.a.out, exist_ok=True)
        with open(osp.join(self.a.out, f"{name}.json"), "w") as f:
            json.dump({"seeds": self.a.seeds, "split": self.a.split, "models": self.models, "rows": result}, f, indent=1)
        text = "\n".join(lines)
        with open(osp.join(self.a.out, f"{name}.md"), "w") as f:
            f.write(f"{name}: seeds {' '.join(map(str, self.a.seeds))}, {self.a.split} split, mean +- std over seeds\n\n"
                    + text + "\n")
        log(f"\n[{name}] mean +- std over seeds {self.a.seeds} ({self.a.split} split)\n{text}")
        return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="dataset root; ToyScenes and its variants are generated there if missing")
    p.add_argument("--out", default="output/tables")
    p.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--split", choices=("test", "val"), default="test", help="evaluation split (val: tuning)")
    p.add_argument("--gen-seed", type=int, default=0, help="ToyScenes generation seed of the world")
    p.add_argument("--teacher", default=MODELS["teacher"])
    p.add_argument("--teacher-small", default=MODELS["teacher_small"])
    p.add_argument("--student", default=MODELS["student"])
    p.add_argument("--methods", nargs="+", choices=B2N_ROWS, default=None, help="b2n: only these rows (tuning)")
    p.add_argument("--opts", nargs="*", default=[],
                   help="KEY VALUE pairs for every training run (tuning: give each setting its own --out)")
    p.add_argument("--crops-list", type=int, nargs="+", default=[16, 64, 256], help="crops: the M values (Table 5)")
    p.add_argument("--xd-crops", type=int, default=TABLE_M,
                   help="xd: crops per image of the all-class table (its 16-shot union covers 64 classes x 3 seeds)")
    p.add_argument("--plan", action="store_true", help="print how many runs each table needs and stop")
    args = p.parse_args(argv)

    from datasets.toyscenes import ensure_toyscenes

    variants = {"clean"} | ({"xshapes", "sketch", "night", "palette"} if "xd" in args.tables else set())
    for v in sorted(variants):
        ensure_toyscenes(args.root, seed=args.gen_seed, variant=v, verbose=False)
    sweep = Sweep(args)
    plans = {name: sweep.plan(name) for name in args.tables}
    if args.plan:
        for name, (tasks, _) in plans.items():
            log(f"{name}: {len({t.out for t in tasks})} tasks")
        return 0
    failed = []
    for name, (tasks, rows) in plans.items():
        log(f"[{name}] running")
        failed += run_tasks(tasks, jobs=args.jobs, log=log)
        sweep.summarise(name, rows)
    if failed:
        log(f"{len(failed)} runs failed or were skipped; see their console.txt: " + ", ".join(failed[:5]))
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
