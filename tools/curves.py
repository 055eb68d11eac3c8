"""Training curves of finished runs, read from what a run already writes (no TensorBoard server needed).

    python -m tools.curves RUN [RUN ...] [--out curves.png]     # one run, or several seeds of one method
    python -m tools.curves --tree output/demo/base2new/train_base --out-dir output/curves   # a PNG per method

Source: the run's ``tensorboard/`` events (``train/<part>`` every iteration, as the epoch's running mean, and
``val|test/accuracy`` at evaluations). The epoch value of a loss part is its running mean at the epoch's last
iteration, i.e. the mean over that epoch; the iterations per epoch are read from the ``batch [b/B]`` of the
run's log.txt (without it the x axis is the iteration). Several runs (seeds) are drawn as their mean with the
min-max range shaded. Left: the loss parts (FDBPL: L_pos, L_neg, L_diff1, L_diff2 and the total); right:
training accuracy per epoch and the evaluation accuracy points. A CSV with the plotted numbers goes beside.
"""

import argparse
import glob
import os
import os.path as osp
import re

import numpy as np

from engine.errors import ConfigError
from tools.mpl import pyplot, save, write_csv

__all__ = ["read_run", "plot_curves", "write_method_curves", "main"]

LOSS_ORDER = ("loss", "loss_pos", "loss_neg", "loss_diff1", "loss_diff2")
LABELS = {"loss": "total loss", "loss_pos": "L_pos", "loss_neg": "L_neg", "loss_diff1": "L_diff1",
          "loss_diff2": "L_diff2", "loss_ce": "L_ce", "loss_kd": "L_kd"}
_BATCH = re.compile(r"epoch \[\d+/\d+\] batch \[\d+/(\d+)\]")


def _batches_per_epoch(run):
    logs = sorted(glob.glob(osp.join(run, "log.txt*")))
    for path in logs:
        with open(path, errors="replace") as f:
            for line in f:
                m = _BATCH.search(line)
                if m:
                    return int(m.group(1))
    return None


def read_run(run):
    """``{"epochs": bool, "train": {part: (x [N], y [N])}, "eval": {split: (epoch [N], accuracy [N])}}``.

    With the iterations per epoch known, ``train`` has one point per epoch (x = 1, 2, ...); otherwise one
    per iteration (x = iteration + 1).
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = osp.join(run, "tensorboard")
    if not glob.glob(osp.join(folder, "events.out.tfevents.*")):
        raise ConfigError(f"{folder} has no TensorBoard event file; is {run} a training run folder?")
    acc = EventAccumulator(folder, size_guidance={"scalars": 0})  # 0 = keep every point
    acc.Reload()
    per_epoch = _batches_per_epoch(run)
    train, evals = {}, {}
    for tag in acc.Tags()["scalars"]:
        split, _, name = tag.partition("/")
        events = {e.step: e.value for e in acc.Scalars(tag)}  # a resumed run rewrites steps: keep the last
        steps = np.array(sorted(events))
        values = np.array([events[s] for s in steps], dtype=float)
        if split == "train" and name != "lr":
            if per_epoch:
                last = steps[(steps + 1) % per_epoch == 0]
                train[name] = ((last + 1) // per_epoch, np.array([events[s] for s in last], dtype=float))
            else:
                train[name] = (steps + 1, values)
        elif split in ("val", "test") and name == "accuracy":
            evals[split] = (steps + 1, values)
    return {"epochs": per_epoch is not None, "train": train, "eval": evals}


def _stack(series):
    """Mean / min / max over runs of ``(x, y)`` pairs, on the x values all of them have."""
    common = sorted(set.intersection(*(set(x.tolist()) for x, _ in series)))
    ys = np.array([[dict(zip(x.tolist(), y.tolist()))[c] for c in common] for x, y in series])
    return np.array(common), ys.mean(0), ys.min(0), ys.max(0)


def plot_curves(runs, out, title=None):
    """Draw the curves of ``runs`` (one, or several seeds of one method) to ``out``; CSV beside; -> paths."""
    data = [read_run(r) for r in runs]
    parts = [p for p in LOSS_ORDER if all(p in d["train"] for d in data)]
    parts += sorted(p for p in data[0]["train"] if p.startswith("loss") and p not in parts
                    and all(p in d["train"] for d in data))
    if not parts:
        raise ConfigError(f"{runs[0]} has no train/loss* scalars in its TensorBoard events")
    plt = pyplot()
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.8))
    xlabel = "epoch" if all(d["epochs"] for d in data) else "iteration"
    rows = []
    colours = plt.get_cmap("tab10")
    for i, part in enumerate(parts):
        x, mean, lo, hi = _stack([d["train"][part] for d in data])
        ax_l.plot(x, mean, marker="o" if len(x) < 30 else None, ms=3, color=colours(i), label=LABELS.get(part, part))
        if len(data) > 1:
            ax_l.fill_between(x, lo, hi, color=colours(i), alpha=0.2)
        rows += [(part, int(a), b, c, d) for a, b, c, d in zip(x, mean, lo, hi)]
    ax_l.axhline(0, color="grey", lw=0.5)
    ax_l.set_xlabel(xlabel)
    ax_l.set_ylabel("loss")
    ax_l.legend(fontsize=8)
    if all("acc" in d["train"] for d in data):
        x, mean, lo, hi = _stack([d["train"]["acc"] for d in data])
        ax_a.plot(x, mean, marker="o" if len(x) < 30 else None, ms=3, label="train (batch labels)")
        if len(data) > 1:
            ax_a.fill_between(x, lo, hi, alpha=0.2)
        rows += [("train_acc", int(a), b, c, d) for a, b, c, d in zip(x, mean, lo, hi)]
    for split, marker in (("val", "s"), ("test", "*")):
        if all(split in d["eval"] for d in data):
            x, mean, lo, hi = _stack([d["eval"][split] for d in data])
            ax_a.plot(x, mean, marker=marker, ms=9, ls="--" if len(x) > 1 else "none", label=f"{split} accuracy")
            rows += [(f"{split}_accuracy", int(a), b, c, d) for a, b, c, d in zip(x, mean, lo, hi)]
    ax_a.set_xlabel(xlabel if xlabel == "epoch" else "iteration (eval points: epoch)")
    ax_a.set_ylabel("accuracy %")
    ax_a.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_l, ax_a):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    seeds = f" ({len(runs)} runs: mean, min-max shaded)" if len(runs) > 1 else ""
    fig.suptitle((title or osp.normpath(runs[0])) + seeds, fontsize=9)
    fig.tight_layout()
    csv_path = osp.splitext(out)[0] + ".csv"
    write_csv(csv_path, ["series", "x", "mean", "min", "max"], rows)
    return [save(fig, out), csv_path]


def _runs_by_method(tree):
    """``{method/config: [seed folders]}`` of a ``train_base``-style tree (folders with tensorboard/ events)."""
    found = {}
    for events in sorted(glob.glob(osp.join(tree, "**", "tensorboard", "events.out.tfevents.*"), recursive=True)):
        run = osp.dirname(osp.dirname(events))
        key = osp.relpath(osp.dirname(run), tree)
        if run not in found.setdefault(key, []):
            found[key].append(run)
    return found


def write_method_curves(tree, out_dir):
    """A curves PNG (+ CSV) per method/config folder of ``tree`` over its seeds; returns the paths written."""
    groups = _runs_by_method(tree)
    paths = []
    for key, runs in groups.items():
        name = key.replace(os.sep, "_")
        paths += plot_curves(runs, osp.join(out_dir, f"curves_{name}.png"), title=key)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", help="run folders (with tensorboard/ and log.txt); several = seeds of one method")
    p.add_argument("--out", default="curves.png", help="PNG for the runs given")
    p.add_argument("--tree", default="", help="instead: every method under this folder, one PNG each in --out-dir")
    p.add_argument("--out-dir", default="output/curves")
    args = p.parse_args(argv)
    if args.tree:
        paths = write_method_curves(args.tree, args.out_dir)
        if not paths:
            raise ConfigError(f"no run with tensorboard/ events under {args.tree}")
    elif args.runs:
        paths = plot_curves(args.runs, args.out)
    else:
        p.error("give run folders or --tree")
    for path in paths:
        print(f"wrote {path}")
    return paths


if __name__ == "__main__":
    from engine.cli import run_cli

    run_cli(main)
