"""Read accuracies back out of ``log.txt`` files and summarise them over seeds and datasets.

Understands both Dassl log generations: ``Finish training`` / ``Finished training``, 1- or 2-decimal
``* accuracy: X%`` lines, and the old tab-separated progress lines (which are simply skipped). As in CoOp's
``parse_test_res.py`` the number taken is the last match after the end signal: ``Finish training`` for a
training log (the final test) or ``=> result`` for an evaluation log (``--test-log``).
"""
import math
import os
import os.path as osp
import re

import numpy as np

END_SIGNALS_TRAIN = ("Finish training", "Finished training")
END_SIGNALS_TEST = ("=> result",)


def parse_log(path, test_log=False, keyword="accuracy"):
    """The last ``* {keyword}: X%`` value after the end signal in ``path``, or None if there is none."""
    signals = END_SIGNALS_TEST if test_log else END_SIGNALS_TRAIN
    pattern = re.compile(r"\* " + re.escape(keyword) + r": ([\.\deE+-]+)%")
    started, value = False, None
    with open(path, errors="replace") as f:
        for line in f:
            stripped = line.strip()
            if stripped in signals:
                started = True
            if started:
                m = pattern.search(stripped)
                if m:
                    value = float(m.group(1))
    return value


def _log_files(directory):
    """log.txt of each non-hidden sub-folder (sorted); newest timestamped log if several."""
    found = []
    for sub in sorted(os.listdir(directory)):
        folder = osp.join(directory, sub)
        if sub.startswith(".") or not osp.isdir(folder):
            continue
        logs = sorted(f for f in os.listdir(folder) if f.startswith("log.txt"))
        if logs:
            # log.txt is the first run; log.txt-<timestamp> are later runs (eval re-runs): take the newest.
            found.append(osp.join(folder, logs[-1] if len(logs) > 1 else logs[0]))
    return found


def summarize(values, ci95=False):
    """(mean, spread): spread is the population std as in CoOp, or 1.96*std/sqrt(n) with ``ci95``."""
    arr = np.asarray(values, dtype=float)
    std = float(arr.std())
    return float(arr.mean()), (1.96 * std / math.sqrt(len(arr)) if ci95 else std)


def collect_seeds(directory, test_log=False, keyword="accuracy"):
    """{log path: value} for every seed folder of ``directory`` that has a result."""
    out = {}
    for path in _log_files(directory):
        value = parse_log(path, test_log=test_log, keyword=keyword)
        if value is not None:
            out[path] = value
    return out


def harmonic_mean(base, new):
    """H = 2BN / (B + N) of base and new accuracy (0 when both are 0)."""
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)


def base2new_rows(root, shots=16):
    """Rows (dataset, trainer, config, base, base_std, new, new_std, hm, n_seeds) from a base-to-new tree.

    ``root`` is the ``output/base2new`` folder: base accuracy is read from the training logs under
    ``train_base/<dataset>/shots_<S>/<trainer>/<cfg>/seed*/`` and new accuracy from the evaluation logs under
    ``test_new/...``. HM is taken of the seed-averaged base and new accuracies (as the papers do).
    """
    rows = []
    train_root = osp.join(root, "train_base")
    if not osp.isdir(train_root):
        return rows
    for dataset in sorted(os.listdir(train_root)):
        shot_dir = osp.join(train_root, dataset, f"shots_{shots}")
        if not osp.isdir(shot_dir):
            continue
        for trainer in sorted(os.listdir(shot_dir)):
            for cfg_name in sorted(os.listdir(osp.join(shot_dir, trainer))):
                rel = osp.join(dataset, f"shots_{shots}", trainer, cfg_name)
                base = collect_seeds(osp.join(train_root, rel))
                new_dir = osp.join(root, "test_new", rel)
                new = collect_seeds(new_dir, test_log=True) if osp.isdir(new_dir) else {}
                if not base:
                    continue
                b, bs = summarize(list(base.values()))
                n, ns = summarize(list(new.values())) if new else (float("nan"), float("nan"))
                hm = harmonic_mean(b, n) if new else float("nan")
                rows.append((dataset, trainer, cfg_name, b, bs, n, ns, hm, len(base)))
    return rows


def average_rows(rows):
    """Per (trainer, config): mean base and new over datasets, and the HM of those means."""
    groups = {}
    for dataset, trainer, cfg_name, b, _, n, _, _, _ in rows:
        groups.setdefault((trainer, cfg_name), []).append((b, n))
    out = []
    for (trainer, cfg_name), pairs in sorted(groups.items()):
        b = float(np.mean([p[0] for p in pairs]))
        n = float(np.mean([p[1] for p in pairs]))
        out.append(("Average", trainer, cfg_name, b, n, harmonic_mean(b, n), len(pairs)))
    return out
