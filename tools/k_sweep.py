"""FDBPL against K (classes stored per crop) in the toy world: the input of Figure 9 (``k_sweep.json``).

    python -m tools.k_sweep --root data/toy --out output/k_sweep --ks 1 3 10 32     # then:
    python -m tools.plots output/k_sweep                                             # fig9_k_sweep.png

For each K: build the base-class RIL table (``ril_tools.build``), train FDBPL on it and evaluate on the new
classes (``train.py``), each in its own process so its wall time and peak resident memory (the process's
own VmHWM) are its own. Recorded per K: ``train_time_s`` (training incl. its final test on base),
``build_time_s``, ``table_bytes`` (all table files on disk), ``peak_rss_bytes`` of training, and base / new /
HM accuracy read back with ``engine.results.parse_log``. Finished steps are skipped on a rerun (their
times are kept in ``k_sweep.json``). The defaults are a quick CPU setting (4 shots, 8 crops, 2 epochs).
"""

import argparse
import os
import os.path as osp
import subprocess
import sys
import time

from engine.errors import ConfigError
from engine.results import harmonic_mean, parse_log
from engine.utils import read_json, write_json

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DATASET_CFG = "configs/datasets/toyshapes.yaml"
FDBPL_CFG = "configs/trainers/FDBPL/toyshapes.yaml"


# Runs a script (or ``-m module``) and, at exit, writes its own VmHWM (peak resident set) to $FDBPL_PEAK_FILE.
# Read inside the child because a child's rusage ru_maxrss includes the parent's size at fork (Linux keeps the
# pre-exec high-water mark), which would report the sweep driver's memory instead of the run's.
_RUNNER = """
import atexit, os, runpy, sys
def _peak():
    with open('/proc/self/status') as f:
        kib = next(int(l.split()[1]) for l in f if l.startswith('VmHWM:'))
    with open(os.environ['FDBPL_PEAK_FILE'], 'w') as f:
        f.write(str(kib * 1024))
atexit.register(_peak)
args = sys.argv[1:]
if args[0] == '-m':
    sys.argv = [args[1]] + args[2:]
    runpy.run_module(args[1], run_name='__main__', alter_sys=True)
else:
    sys.argv = args
    runpy.run_path(args[0], run_name='__main__')
"""


def _run(args, log_path):
    """Run ``python ARGS`` in the repository root -> (seconds, its peak RSS bytes); output goes to ``log_path``."""
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    peak_file = log_path + ".peak"
    if osp.exists(peak_file):
        os.remove(peak_file)
    start = time.time()
    with open(log_path, "w") as log:
        code = subprocess.call([sys.executable, "-c", _RUNNER] + list(args), cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT, env=dict(os.environ, TQDM_DISABLE="1",
                                                                  FDBPL_PEAK_FILE=peak_file))
    if code != 0:
        raise ConfigError(f"'python {' '.join(args[:3])} ...' failed (exit {code}); see {log_path}")
    with open(peak_file) as f:
        return time.time() - start, int(f.read())


def _finished(run_dir, test_log):
    log = osp.join(run_dir, "log.txt")
    return osp.isfile(log) and parse_log(log, test_log=test_log) is not None


def sweep_one(args, k, rows):
    common = ["--root", args.root, "--seed", str(args.seed), "--dataset-config-file", DATASET_CFG,
              "--config-file", FDBPL_CFG]
    shots = ["DATASET.NUM_SHOTS", str(args.shots)]
    row = dict(rows.get(str(k), {}), k=k)
    table = osp.join(args.out, "ril", f"base_M{args.crops}_K{k}")
    if not osp.isfile(osp.join(table, "manifest.json")):
        row["build_time_s"], _ = _run(["-m", "ril_tools.build"] + common + [
            "--output", table, "--teacher", args.teacher, "--num-crops", str(args.crops), "--topk", str(k),
            "--workers", "0"] + shots + ["DATASET.SUBSAMPLE_CLASSES", "base"], osp.join(args.out, "logs", f"build_K{k}.log"))
    row["table_bytes"] = sum(osp.getsize(osp.join(table, f)) for f in os.listdir(table))
    opts = ["MODEL.BACKBONE.NAME", args.student, "TRAINER.FDBPL.RIL_DIR", table, "OPTIM.MAX_EPOCH", str(args.epochs),
            "DATALOADER.NUM_WORKERS", "0"] + shots
    train_dir = osp.join(args.out, "runs", f"K{k}", "train_base")
    if not _finished(train_dir, False):
        row["train_time_s"], row["peak_rss_bytes"] = _run(
            ["train.py"] + common + ["--trainer", "FDBPL", "--output-dir", train_dir] + opts
            + ["DATASET.SUBSAMPLE_CLASSES", "base"], osp.join(args.out, "logs", f"train_K{k}.log"))
    new_dir = osp.join(args.out, "runs", f"K{k}", "test_new")
    if not _finished(new_dir, True):
        _run(["train.py"] + common + ["--trainer", "FDBPL", "--output-dir", new_dir, "--eval-only",
                                                      "--model-dir", train_dir, "--load-epoch", str(args.epochs)]
             + opts + ["DATASET.SUBSAMPLE_CLASSES", "new"], osp.join(args.out, "logs", f"test_K{k}.log"))
    row["base"] = parse_log(osp.join(train_dir, "log.txt"))
    row["new"] = parse_log(osp.join(new_dir, "log.txt"), test_log=True)
    row["hm"] = harmonic_mean(row["base"], row["new"])
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="data/toy", help="dataset root holding toyshapes/ (made by the demo)")
    p.add_argument("--out", default="output/k_sweep")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 3, 10, 32])
    p.add_argument("--shots", type=int, default=4)
    p.add_argument("--crops", type=int, default=8, help="crops per image (M)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher", default="models/toy_teacher.pt")
    p.add_argument("--student", default="models/toy_student.pt")
    args = p.parse_args(argv)
    if not osp.isdir(osp.join(args.root, "toyshapes")):
        raise ConfigError(f"{args.root}/toyshapes is missing; run python scripts/demo.py --quick (or pass --root)")
    args.out = osp.abspath(args.out)
    args.root, args.teacher, args.student = (osp.abspath(x) for x in (args.root, args.teacher, args.student))
    path = osp.join(args.out, "k_sweep.json")
    done = {str(r["k"]): r for r in read_json(path)["rows"]} if osp.isfile(path) else {}
    settings = {"shots": args.shots, "crops": args.crops, "epochs": args.epochs, "seed": args.seed,
                "teacher": args.teacher, "student": args.student}
    for k in args.ks:
        done[str(k)] = sweep_one(args, k, done)
        write_json({"settings": settings, "rows": sorted(done.values(), key=lambda r: r["k"])}, path)
        r = done[str(k)]
        print(f"K={k}: build {r.get('build_time_s', float('nan')):.1f} s, train {r.get('train_time_s', float('nan')):.1f} s, "
              f"table {r['table_bytes'] / 2**10:.0f} KiB, base {r['base']:.2f} new {r['new']:.2f}", flush=True)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    from engine.cli import run_cli

    run_cli(main)
