"""Summarise results over seeds, like CoOp's parse_test_res.py, plus base-to-new tables with the harmonic mean.

    python scripts/parse_results.py output/base2new/train_base/oxford_pets/shots_16/CoOp/vit_b32_ep50_ctxv1
    python scripts/parse_results.py output/base2new/test_new/oxford_pets/shots_16/CoOp/vit_b32_ep50_ctxv1 --test-log
    python scripts/parse_results.py --base2new output/base2new          # every dataset/method: base, new, HM
    python scripts/parse_results.py output/evaluation/CoOp --multi-exp --test-log
    python scripts/parse_results.py --xd output     # Table 1: ImageNet source + 10 cross-dataset targets + average
    python scripts/parse_results.py --dg output     # Table 6: ImageNet source + -V2/-S/-A/-R + average
    python scripts/parse_results.py output          # everything found: methods as rows, datasets as columns

PromptKD's runs (``train_all_transductive/<dataset>/<trainer>/<cfg>/seed*`` with ``test_base/`` and
``test_new/`` evaluations beside them, see scripts/promptkd/) are reported with the others, their method
marked "[transductive]": they train on the unlabelled images of every class, not on few-shot base classes.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
# Started with a Python outside the project's environment: say how to enter it in one line, not a traceback.
for _name in ("numpy", "tabulate"):
    if importlib.util.find_spec(_name) is None:
        sys.exit(f"error: {_name} is not installed for {sys.executable}; enter the environment first: "
                 "source .venv/bin/activate (bash scripts/setup_env.sh creates it)")

from tabulate import tabulate  # noqa: E402

from engine.results import (  # noqa: E402
    DG_TARGETS,
    TRANSDUCTIVE_NOTE,
    TRANSDUCTIVE_TRAIN,
    XD_TARGETS,
    average_rows,
    base2new_rows,
    collect_seeds,
    harmonic_mean,
    summarize,
    transductive_rows,
    transfer_rows,
    transfer_table,
)

TRANSDUCTIVE_MARK = " [transductive]"  # after a method's name wherever its rows are printed


def fmt(mean, spread):
    return "-" if mean != mean else f"{mean:.2f} +- {spread:.2f}"


def print_directory(directory, args):
    values = collect_seeds(directory, test_log=args.test_log, keyword=args.keyword)
    for path, value in values.items():
        print(f"file: {path}. {args.keyword}: {value:.2f}%.")
    if not values:
        print(f"No results found under {directory} (each seed folder needs a log.txt with "
              f"{'an => result block' if args.test_log else 'a Finish training line and a final test'})")
        return None
    mean, spread = summarize(list(values.values()), ci95=args.ci95)
    print("===")
    print(f"Summary of directory: {directory}")
    print(f"* {args.keyword}: {mean:.2f}% +- {spread:.2f}%")
    print("===")
    return mean


def print_transfer(args):
    """Print the --xd (Table 1) or --dg (Table 6) layout; returns the exit status."""
    root = args.directory
    if osp.basename(osp.normpath(root)) == "evaluation":  # also accept the evaluation folder itself
        root = osp.dirname(osp.normpath(root))
    targets = XD_TARGETS if args.xd else DG_TARGETS
    rows = transfer_rows(root, targets, shots=args.shots)
    if not rows:
        print(f"error: no evaluation/<trainer>/<cfg>_{args.shots}shots/<dataset>/seed*/log.txt for "
              f"{', '.join(targets)} under {root}", file=sys.stderr)
        return 1
    headers, body = transfer_table(rows, targets, show_std=args.std)
    print(tabulate(body, headers=headers))
    if any(not r["complete"] for r in rows):
        print("* average over the targets found (some are missing)")
    return 0


# ------------------------------------------------------------------ one table per protocol for a whole output folder

def _subdirs(folder):
    return sorted(d for d in os.listdir(folder) if not d.startswith(".") and osp.isdir(osp.join(folder, d))) \
        if osp.isdir(folder) else []


def _method_names(keys):
    """Row label per (trainer, config[, shots]): the trainer alone unless it ran with several configs or shots."""
    count = {}
    for trainer, *_ in keys:
        count[trainer] = count.get(trainer, 0) + 1
    return {k: k[0] if count[k[0]] == 1 else "/".join(map(str, k)) for k in keys}


def base2new_overview(root):
    """(headers, body): methods as rows, each dataset's 'base / new / HM' as a column, plus their average."""
    cells, datasets = {}, []
    for shots in sorted(int(d[len("shots_"):]) for ds in _subdirs(osp.join(root, "train_base"))
                        for d in _subdirs(osp.join(root, "train_base", ds)) if d.startswith("shots_")):
        for dataset, trainer, cfg_name, b, _, n, _, h, _ in base2new_rows(root, shots=shots):
            cells.setdefault((trainer, cfg_name, f"{shots} shots"), {})[dataset] = (b, n, h)
            datasets += [dataset] if dataset not in datasets else []
    for dataset, trainer, cfg_name, b, _, n, _, h, _ in transductive_rows(root):
        cells.setdefault((trainer, cfg_name, "transductive"), {})[dataset] = (b, n, h)
        datasets += [dataset] if dataset not in datasets else []
    if not cells:
        return None
    names = _method_names([k for k in cells if k[2] != "transductive"])
    transductive = [k for k in cells if k[2] == "transductive"]
    names.update({k: v + TRANSDUCTIVE_MARK for k, v in _method_names([k[:2] for k in transductive]).items()})
    names.update({k: names.pop(k[:2]) for k in transductive})
    nan = "-"

    def fmt_cell(b, n, h):
        return " / ".join(nan if v != v else f"{v:.2f}" for v in (b, n, h))

    body = []
    for key, per in cells.items():
        row = [names[key]]
        for d in datasets:
            b, n, h = per.get(d, (None, None, None))
            row.append(nan if b is None else fmt_cell(b, n, h))
        if len(datasets) > 1:
            bs = [v[0] for v in per.values()]
            ns = [v[1] for v in per.values() if v[1] == v[1]]
            mb = sum(bs) / len(bs)
            mn = sum(ns) / len(ns) if len(ns) == len(bs) else float("nan")
            row.append(fmt_cell(mb, mn, harmonic_mean(mb, mn)))
        body.append(row)
    headers = ["method"] + [f"{d}: base / new / HM" for d in datasets] + (["average"] if len(datasets) > 1 else [])
    return headers, body


def evaluation_overview(root):
    """(headers, body) of every evaluation/<trainer>/<cfg>_<S>shots/<dataset>/ tree: accuracy per target dataset."""
    cells, datasets = {}, []
    for trainer in _subdirs(osp.join(root, "evaluation")):
        for exp in _subdirs(osp.join(root, "evaluation", trainer)):
            for dataset in _subdirs(osp.join(root, "evaluation", trainer, exp)):
                values = list(collect_seeds(osp.join(root, "evaluation", trainer, exp, dataset), test_log=True).values())
                if values:
                    cells.setdefault((trainer, exp), {})[dataset] = summarize(values)[0]
                    datasets += [dataset] if dataset not in datasets else []
    if not cells:
        return None
    names = _method_names(list(cells))
    body = [[names[k]] + [f"{per[d]:.2f}" if d in per else "-" for d in datasets] for k, per in cells.items()]
    return ["method"] + datasets, body


def print_overview(root):
    """Print the table of each protocol found under ``root`` (an output folder or its base2new folder)."""
    b2n_root = root if _is_base2new_root(root) else osp.join(root, "base2new")
    found = False
    b2n = base2new_overview(b2n_root)
    if b2n:
        print(f"Base-to-new ({b2n_root}; accuracy %, mean over seeds; HM of the means)")
        print(tabulate(b2n[1], headers=b2n[0], disable_numparse=True))
        if any(row[0].endswith(TRANSDUCTIVE_MARK) for row in b2n[1]):
            print(f"{TRANSDUCTIVE_MARK.strip()}: {TRANSDUCTIVE_NOTE}")
        found = True
    xd = evaluation_overview(root)
    if xd:
        print(("\n" if found else "") + f"Evaluations ({osp.join(root, 'evaluation')}; accuracy %, mean over seeds)")
        print(tabulate(xd[1], headers=xd[0], disable_numparse=True))  # keep 2 decimals
        found = True
    if not found:
        print(f"error: no results under {root}: expected base2new/train_base/<dataset>/shots_<S>/<trainer>/<cfg>/"
              "seed*/log.txt or evaluation/<trainer>/<cfg>_<S>shots/<dataset>/seed*/log.txt (run a sweep script first)",
              file=sys.stderr)
    return 0 if found else 1


def _is_base2new_root(directory):
    return any(osp.isdir(osp.join(directory, d)) for d in ("train_base", TRANSDUCTIVE_TRAIN))


def is_output_root(directory):
    return any(osp.isdir(osp.join(directory, d)) for d in ("base2new", "evaluation")) or _is_base2new_root(directory)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("directory", help="an output folder (all protocols found), a folder of seed folders, or the "
                                     "base2new root with --base2new")
    p.add_argument("--test-log", action="store_true", help="parse evaluation logs (=> result) instead of training logs")
    p.add_argument("--ci95", action="store_true", help="print the 95%% confidence interval instead of the std")
    p.add_argument("--multi-exp", action="store_true", help="each child folder is an experiment of seed folders")
    p.add_argument("--keyword", default="accuracy", help="metric name in the result block")
    p.add_argument("--base2new", action="store_true", help="summarise an output/base2new tree: base, new, HM")
    p.add_argument("--xd", action="store_true",
                   help="cross-dataset table (paper Table 1) of an output root holding evaluation/<trainer>/<cfg>_<S>shots/")
    p.add_argument("--dg", action="store_true",
                   help="domain-generalisation table (paper Table 6: ImageNet -> -V2/-S/-A/-R) of the same output root")
    p.add_argument("--std", action="store_true", help="with --xd/--dg: print mean +- std over seeds in each cell")
    p.add_argument("--shots", type=int, default=16)
    args = p.parse_args(argv)
    if not osp.isdir(args.directory):
        print(f"error: {args.directory} is not a directory", file=sys.stderr)
        return 2

    if args.xd or args.dg:
        return print_transfer(args)

    if args.base2new:
        rows = base2new_rows(args.directory, shots=args.shots)
        rows += [(d, t + TRANSDUCTIVE_MARK, *rest) for d, t, *rest in transductive_rows(args.directory)]
        if not rows:
            print(f"error: no train_base/<dataset>/shots_{args.shots}/<trainer>/<cfg>/seed*/log.txt (or "
                  f"{TRANSDUCTIVE_TRAIN}/<dataset>/<trainer>/<cfg>/seed* with test_base/ and test_new/ logs) under "
                  f"{args.directory}", file=sys.stderr)
            return 1
        table = [(d, t, c, fmt(b, bs), fmt(n, ns), "-" if h != h else f"{h:.2f}", k)
                 for d, t, c, b, bs, n, ns, h, k in rows]
        table += [(d, t, c, f"{b:.2f}", "-" if n != n else f"{n:.2f}", "-" if h != h else f"{h:.2f}", f"{k} ds")
                  for d, t, c, b, n, h, k in average_rows(rows)]
        print(tabulate(table, headers=["dataset", "trainer", "config", "base", "new", "HM", "seeds"]))
        if any(r[1].endswith(TRANSDUCTIVE_MARK) for r in rows):
            print(f"{TRANSDUCTIVE_MARK.strip()}: {TRANSDUCTIVE_NOTE}")
        return 0

    if not args.multi_exp and is_output_root(args.directory):
        return print_overview(args.directory)

    if args.multi_exp:
        means = []
        for sub in sorted(os.listdir(args.directory)):
            folder = osp.join(args.directory, sub)
            if osp.isdir(folder) and not sub.startswith("."):
                m = print_directory(folder, args)
                if m is not None:
                    means.append(m)
        if means:
            print(f"Average performance: {sum(means) / len(means):.2f}%")
        return 0 if means else 1
    return 0 if print_directory(args.directory, args) is not None else 1


if __name__ == "__main__":
    sys.exit(main())
