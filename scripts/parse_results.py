"""Summarise results over seeds, like CoOp's parse_test_res.py, plus base-to-new tables with the harmonic mean.

    python scripts/parse_results.py output/base2new/train_base/oxford_pets/shots_16/CoOp/vit_b32_ep50_ctxv1
    python scripts/parse_results.py output/base2new/test_new/oxford_pets/shots_16/CoOp/vit_b32_ep50_ctxv1 --test-log
    python scripts/parse_results.py --base2new output/base2new          # every dataset/method: base, new, HM
    python scripts/parse_results.py output/evaluation/CoOp --multi-exp --test-log
    python scripts/parse_results.py --xd output     # Table 1: ImageNet source + 10 cross-dataset targets + average
    python scripts/parse_results.py --dg output     # Table 6: ImageNet source + -V2/-S/-A/-R + average
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

from engine.results import (DG_TARGETS, XD_TARGETS, average_rows, base2new_rows, collect_seeds,  # noqa: E402
                            summarize, transfer_rows, transfer_table)


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("directory", help="folder of seed folders, or the base2new root with --base2new")
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
        if not rows:
            print(f"error: no train_base/<dataset>/shots_{args.shots}/<trainer>/<cfg>/seed*/log.txt under "
                  f"{args.directory}", file=sys.stderr)
            return 1
        table = [(d, t, c, fmt(b, bs), fmt(n, ns), "-" if h != h else f"{h:.2f}", k)
                 for d, t, c, b, bs, n, ns, h, k in rows]
        table += [(d, t, c, f"{b:.2f}", "-" if n != n else f"{n:.2f}", "-" if h != h else f"{h:.2f}", f"{k} ds")
                  for d, t, c, b, n, h, k in average_rows(rows)]
        print(tabulate(table, headers=["dataset", "trainer", "config", "base", "new", "HM", "seeds"]))
        return 0

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
