"""The paper's figures from our own runs: Table 2 as bars, Figure 8 (training time), Figure 9 (against K).

    python -m tools.plots OUTPUT_ROOT [--out-dir DIR] [--shots S]      # e.g. output/demo

``OUTPUT_ROOT`` is laid out as the demo writes it (each part is drawn only when its input is there):

* ``base2new/train_base|test_new/<dataset>/shots_<S>/<method>/<cfg>/seed*/log.txt`` -> ``table2_base_new_hm.png``:
  base, new and HM per method, averaged over seeds (error bars: std over seeds) or, with several datasets,
  over datasets as ``scripts/parse_results.py --base2new`` prints them (read by ``engine.results``), plus the
  zero-shot rows of ``zeroshot/<role>/<base|new>/log.txt`` when present;
* ``timings.json`` (``{"train": {method: {seed: seconds}}, "ril": {seed: seconds}}``, the demo's) ->
  ``fig8_train_time.png``: median training time per method over seeds (bars: min-max), and the one-off RIL
  table build as its own bar;
* ``k_sweep.json`` (``{"rows": [{"k", "train_time_s", "build_time_s", "table_bytes", "peak_rss_bytes",
  "base", "new", "hm"}, ...]}``, written by ``python -m tools.k_sweep``) -> ``fig9_k_sweep.png``: training
  and build time, table size, peak memory and accuracy against K.

* ``base2new/train_base/.../seed*/tensorboard/`` -> ``curves_<dataset>_shots_<S>_<method>_<cfg>.png`` per method
  over its seeds (:mod:`tools.curves`).

Each PNG has a CSV of the numbers drawn beside it (same stem). :func:`write_figures` is the entry point for
other scripts (the demo).
"""

import argparse
import glob
import os
import os.path as osp

import numpy as np

from engine.errors import ConfigError
from engine.results import average_rows, base2new_rows, harmonic_mean, parse_log
from engine.utils import read_json
from tools.mpl import pyplot, save, write_csv

__all__ = ["table2_numbers", "train_time_numbers", "k_sweep_numbers", "write_figures", "main"]

K_SWEEP_KEYS = ("k", "train_time_s", "build_time_s", "table_bytes", "peak_rss_bytes", "base", "new", "hm")


def _base2new_root(output_root):
    return output_root if osp.isdir(osp.join(output_root, "train_base")) else osp.join(output_root, "base2new")


def _shots_found(b2n):
    found = {int(osp.basename(p)[len("shots_"):]) for p in glob.glob(osp.join(b2n, "train_base", "*", "shots_*"))
             if osp.basename(p)[len("shots_"):].isdigit()}
    return sorted(found)


def table2_numbers(output_root, shots=None):
    """Rows ``{method, base, base_std, new, new_std, hm, seeds, datasets}`` (NaN std when averaged over datasets)."""
    b2n = _base2new_root(output_root)
    shots = shots if shots is not None else (_shots_found(b2n) or [16])[-1]
    rows = base2new_rows(b2n, shots=shots)
    out = []
    zs_root = osp.join(output_root, "zeroshot")
    for role in sorted(os.listdir(zs_root)) if osp.isdir(zs_root) else []:
        logs = [osp.join(zs_root, role, sub, "log.txt") for sub in ("base", "new")]
        values = [parse_log(p, test_log=True) if osp.isfile(p) else None for p in logs]
        if None not in values:
            out.append({"method": f"ZS {role}", "base": values[0], "base_std": 0.0, "new": values[1], "new_std": 0.0,
                        "hm": harmonic_mean(*values), "seeds": 1, "datasets": 1})
    configs = {}
    for _, trainer, cfg_name, *_ in rows:
        configs.setdefault(trainer, set()).add(cfg_name)

    def name(trainer, cfg_name):
        return trainer if len(configs[trainer]) == 1 else f"{trainer}/{cfg_name}"

    if len({r[0] for r in rows}) > 1:  # several datasets: the means over datasets, as parse_results prints
        for _, trainer, cfg_name, b, n, h, k in average_rows(rows):
            out.append({"method": name(trainer, cfg_name), "base": b, "base_std": float("nan"), "new": n,
                        "new_std": float("nan"), "hm": h, "seeds": None, "datasets": k})
    else:
        for _, trainer, cfg_name, b, bs, n, ns, h, k in rows:
            out.append({"method": name(trainer, cfg_name), "base": b, "base_std": bs, "new": n, "new_std": ns,
                        "hm": h, "seeds": k, "datasets": 1})
    return out, shots


def plot_table2(rows, out, shots):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(rows) + 1.5), 3.8))
    x = np.arange(len(rows))
    width = 0.27
    for j, (key, colour) in enumerate((("base", "#4c72b0"), ("new", "#dd8452"), ("hm", "#55a868"))):
        vals = np.array([r[key] for r in rows], dtype=float)
        # error bars only where a spread exists: the std over more than one seed
        err = np.array([r[f"{key}_std"] if key != "hm" and (r["seeds"] or 0) > 1 else np.nan for r in rows])
        bars = ax.bar(x + (j - 1) * width, vals, width, color=colour, label=key.upper() if key == "hm" else key,
                      yerr=None if np.isnan(err).all() else err, capsize=2)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(x, [r["method"] for r in rows], fontsize=8)
    ax.set_ylabel("accuracy %")
    ax.set_ylim(0, 105)
    seeds = sorted({r["seeds"] for r in rows if r["seeds"]})
    ax.set_title(f"Base-to-new ({shots} shots; mean over {'/'.join(map(str, seeds)) or '?'} seed(s))", fontsize=9)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    fig.tight_layout()
    csv_path = osp.splitext(out)[0] + ".csv"
    write_csv(csv_path, ["method", "base", "base_std", "new", "new_std", "hm", "seeds", "datasets"],
              [[r[k] for k in ("method", "base", "base_std", "new", "new_std", "hm", "seeds", "datasets")]
               for r in rows])
    return [save(fig, out), csv_path]


def train_time_numbers(timings):
    """Rows ``{name, kind, median, min, max, n}`` from a demo ``timings.json`` dict (the table build last)."""
    rows = []
    for method, per_seed in timings.get("train", {}).items():
        v = np.array(list(per_seed.values()), dtype=float)
        if len(v):
            rows.append({"name": method, "kind": "train", "median": float(np.median(v)), "min": float(v.min()),
                         "max": float(v.max()), "n": len(v)})
    v = np.array(list(timings.get("ril", {}).values()), dtype=float)
    if len(v):
        rows.append({"name": "RIL table build", "kind": "one-off", "median": float(np.median(v)),
                     "min": float(v.min()), "max": float(v.max()), "n": len(v)})
    return rows


def plot_train_time(rows, out):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(rows) + 1.5), 3.6))
    x = np.arange(len(rows))
    med = np.array([r["median"] for r in rows])
    err = np.array([[r["median"] - r["min"] for r in rows], [r["max"] - r["median"] for r in rows]])
    colours = ["#4c72b0" if r["kind"] == "train" else "#c44e52" for r in rows]
    bars = ax.bar(x, med, 0.6, color=colours, yerr=err, capsize=3,
                  hatch=None, edgecolor="black", lw=0.3)
    for bar, r in zip(bars, rows):
        if r["kind"] != "train":
            bar.set_hatch("//")
    ax.bar_label(bars, labels=[f"{m:.1f} s" for m in med], fontsize=7, padding=2)
    ax.set_xticks(x, [r["name"].replace("RIL table build", "RIL table\nbuild (once)") for r in rows], fontsize=8)
    ax.set_ylabel("wall time (s)")
    ax.set_ylim(0, max(r["max"] for r in rows) * 1.2)
    n = sorted({r["n"] for r in rows})
    ax.set_title(f"Training time per method (median over {'/'.join(map(str, n))} run(s), bars: min-max)", fontsize=9)
    fig.tight_layout()
    csv_path = osp.splitext(out)[0] + ".csv"
    write_csv(csv_path, ["name", "kind", "median_s", "min_s", "max_s", "runs"],
              [[r["name"], r["kind"], r["median"], r["min"], r["max"], r["n"]] for r in rows])
    return [save(fig, out), csv_path]


def k_sweep_numbers(sweep, source="k_sweep.json"):
    """The sweep's rows sorted by K, each checked for the keys Figure 9 draws."""
    rows = sweep.get("rows") if isinstance(sweep, dict) else None
    if not rows:
        raise ConfigError(f"{source} has no 'rows'; expected {{'rows': [{{{', '.join(K_SWEEP_KEYS)}}}, ...]}}")
    for i, row in enumerate(rows):
        missing = [k for k in K_SWEEP_KEYS if k not in row]
        if missing:
            raise ConfigError(f"{source}: row {i} lacks {', '.join(missing)}; rerun python -m tools.k_sweep")
    return sorted(rows, key=lambda r: r["k"])


def plot_k_sweep(rows, out, settings=None):
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.3))
    k = [r["k"] for r in rows]
    ax = axes[0]
    ax.plot(k, [r["train_time_s"] for r in rows], "o-", label="training")
    ax.plot(k, [r["build_time_s"] for r in rows], "s--", label="table build")
    ax.set_ylabel("wall time (s)")
    ax.legend(fontsize=7)
    axes[1].plot(k, [r["table_bytes"] / 2**20 for r in rows], "o-", color="#8172b2")
    axes[1].set_ylabel("RIL table on disk (MiB)")
    axes[2].plot(k, [r["peak_rss_bytes"] / 2**20 for r in rows], "o-", color="#937860")
    axes[2].set_ylabel("training peak RSS (MiB)")
    for key, style in (("base", "o-"), ("new", "s-"), ("hm", "^--")):
        axes[3].plot(k, [r[key] for r in rows], style, label=key.upper() if key == "hm" else key)
    axes[3].set_ylabel("accuracy %")
    axes[3].legend(fontsize=7)
    for i, ax in enumerate(axes):
        ax.set_xlabel("K (classes stored per crop)", fontsize=8)
        if min(k) > 0 and max(k) / min(k) >= 8:  # K spans decades (1 ... C): a log axis keeps small K readable
            ax.set_xscale("log")
        ax.set_xticks(k, [str(v) for v in k])
        ax.minorticks_off()
        ax.tick_params(labelsize=7)
        if i < 3:  # costs from zero, so run-to-run noise does not look like a trend
            ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.1)
    detail = ", ".join(f"{key} {settings[key]}" for key in ("shots", "crops", "epochs", "seed") if key in settings) \
        if settings else ""
    fig.suptitle(f"FDBPL against K ({detail + '; ' if detail else ''}wall times and memory of this machine)",
                 fontsize=9)
    fig.tight_layout()
    csv_path = osp.splitext(out)[0] + ".csv"
    write_csv(csv_path, list(K_SWEEP_KEYS), [[r[key] for key in K_SWEEP_KEYS] for r in rows])
    return [save(fig, out), csv_path]


def write_figures(output_root, out_dir, shots=None):
    """Every figure whose input is under ``output_root`` into ``out_dir``; returns the paths (PNG, CSV, ...)."""
    paths = []
    rows, shots = table2_numbers(output_root, shots)
    if rows:
        paths += plot_table2(rows, osp.join(out_dir, "table2_base_new_hm.png"), shots)
    timing_file = osp.join(output_root, "timings.json")
    if osp.isfile(timing_file):
        times = train_time_numbers(read_json(timing_file))
        if times:
            paths += plot_train_time(times, osp.join(out_dir, "fig8_train_time.png"))
    train_tree = osp.join(_base2new_root(output_root), "train_base")
    if osp.isdir(train_tree):  # training curves per method (tools.curves), from the runs' TensorBoard events
        from tools.curves import write_method_curves

        paths += write_method_curves(train_tree, out_dir)
    sweep_file = osp.join(output_root, "k_sweep.json")
    if osp.isfile(sweep_file):
        sweep = read_json(sweep_file)
        paths += plot_k_sweep(k_sweep_numbers(sweep, sweep_file), osp.join(out_dir, "fig9_k_sweep.png"),
                              sweep.get("settings") if isinstance(sweep, dict) else None)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("output_root", help="folder with base2new/, zeroshot/, timings.json, k_sweep.json (e.g. output/demo)")
    p.add_argument("--out-dir", default="", help="where the PNGs go (default OUTPUT_ROOT/figures)")
    p.add_argument("--shots", type=int, default=None, help="base2new shots folder (default: the largest found)")
    args = p.parse_args(argv)
    if not osp.isdir(args.output_root):
        raise ConfigError(f"{args.output_root} is not a directory")
    paths = write_figures(args.output_root, args.out_dir or osp.join(args.output_root, "figures"), args.shots)
    if not paths:
        raise ConfigError(f"nothing to draw under {args.output_root}: no base2new/ results, timings.json or "
                          f"k_sweep.json")
    for path in paths:
        print(f"wrote {path}")
    return paths


if __name__ == "__main__":
    from engine.cli import run_cli

    run_cli(main)
