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


TRANSDUCTIVE_TRAIN = "train_all_transductive"
TRANSDUCTIVE_NOTE = ("trained on the unlabelled images of the whole training split, base AND new "
                     "classes (PromptKD's protocol), not base-to-new few-shot; compare with care")


def transductive_rows(root):
    """Rows like :func:`base2new_rows` for the transductive runs (PromptKD) of a base-to-new tree.

    ``root`` is the ``output/base2new`` folder; a run is ``train_all_transductive/<dataset>/<trainer>/<cfg>/seed*/``
    (no ``shots_<S>`` level: it trains on every image) and its accuracies are the evaluation logs of the same
    relative path under ``test_base/`` and ``test_new/`` (the training log's final test covers all classes, so it
    is not read). A run with a training folder but no evaluation yet gives NaN there; HM of the seed means.
    """
    rows = []
    train_root = osp.join(root, TRANSDUCTIVE_TRAIN)
    if not osp.isdir(train_root):
        return rows
    for dataset in sorted(os.listdir(train_root)):
        if not osp.isdir(osp.join(train_root, dataset)):
            continue
        for trainer in sorted(os.listdir(osp.join(train_root, dataset))):
            if not osp.isdir(osp.join(train_root, dataset, trainer)):
                continue
            for cfg_name in sorted(os.listdir(osp.join(train_root, dataset, trainer))):
                rel = osp.join(dataset, trainer, cfg_name)
                if not osp.isdir(osp.join(train_root, rel)):
                    continue
                found = {}
                for kind in ("base", "new"):
                    folder = osp.join(root, f"test_{kind}", rel)
                    found[kind] = list(collect_seeds(folder, test_log=True).values()) if osp.isdir(folder) else []
                if not found["base"] and not found["new"]:
                    continue
                nan = (float("nan"), float("nan"))
                b, bs = summarize(found["base"]) if found["base"] else nan
                n, ns = summarize(found["new"]) if found["new"] else nan
                hm = harmonic_mean(b, n) if found["base"] and found["new"] else float("nan")
                rows.append((dataset, trainer, cfg_name, b, bs, n, ns, hm, max(len(found["base"]), len(found["new"]))))
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


# ------------------------------------------------------------------ transfer tables (FDBPL paper Tables 1 and 6)

XD_SOURCE = "imagenet"
# Cross-dataset targets in the column order of CoOp/CoCoOp/PromptSRC tables (folder names = configs/datasets).
XD_TARGETS = ("caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
              "sun397", "dtd", "eurosat", "ucf101")
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
DATASET_TITLES = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT", "ucf101": "UCF101",
    "imagenetv2": "-V2", "imagenet_sketch": "-S", "imagenet_a": "-A", "imagenet_r": "-R",
}


def _seed_summary(directory, test_log):
    """(mean, std, n_seeds) over the seed folders of ``directory``, or None when it has no result."""
    if not osp.isdir(directory):
        return None
    values = list(collect_seeds(directory, test_log=test_log).values())
    if not values:
        return None
    mean, std = summarize(values)
    return mean, std, len(values)


def transfer_rows(output_root, targets, source=XD_SOURCE, shots=16):
    """One row per (trainer, config) of the evaluation tree written by ``scripts/*/xd_test.sh``.

    ``output_root`` holds ``evaluation/<trainer>/<cfg>_<shots>shots/<dataset>/seed*/log.txt`` (evaluation
    logs, ``=> result``) and the source training runs ``<source>/<trainer>/<cfg>_<shots>shots/seed*/log.txt``.
    The source accuracy is read from ``evaluation/.../<source>/`` when that exists, else from the training
    logs' final test. Row: dict ``trainer, config, source, targets`` (dataset -> (mean, std, n_seeds) or
    None), ``average`` (mean of the available target means, NaN if none) and ``complete`` (all targets found).
    """
    eval_root = osp.join(output_root, "evaluation")
    suffix = f"_{shots}shots"
    rows = []
    if not osp.isdir(eval_root):
        return rows
    for trainer in sorted(os.listdir(eval_root)):
        trainer_dir = osp.join(eval_root, trainer)
        if trainer.startswith(".") or not osp.isdir(trainer_dir):
            continue
        for cfg_dir in sorted(os.listdir(trainer_dir)):
            if not cfg_dir.endswith(suffix):
                continue
            exp = osp.join(trainer_dir, cfg_dir)
            found = {t: _seed_summary(osp.join(exp, t), test_log=True) for t in targets}
            if not any(found.values()):
                continue
            src = _seed_summary(osp.join(exp, source), test_log=True) or \
                _seed_summary(osp.join(output_root, source, trainer, cfg_dir), test_log=False)
            means = [v[0] for v in found.values() if v is not None]
            rows.append({"trainer": trainer, "config": cfg_dir[:-len(suffix)], "source": src, "targets": found,
                         "average": float(np.mean(means)) if means else float("nan"),
                         "complete": len(means) == len(targets)})
    return rows


def transfer_table(rows, targets, source=XD_SOURCE, show_std=False):
    """(headers, body) of a Table 1 / Table 6 layout: method, source, each target, average of the targets.

    Missing results print as ``-``; an average over an incomplete set of targets is marked with ``*``.
    """
    def cell(v):
        if v is None:
            return "-"
        return f"{v[0]:.2f} +- {v[1]:.2f}" if show_std else f"{v[0]:.2f}"

    headers = ["method", DATASET_TITLES.get(source, source)] + [DATASET_TITLES.get(t, t) for t in targets] + ["Average"]
    body = []
    for r in rows:
        avg = "-" if r["average"] != r["average"] else f"{r['average']:.2f}" + ("" if r["complete"] else "*")
        body.append([f"{r['trainer']}/{r['config']}", cell(r["source"])] + [cell(r["targets"][t]) for t in targets]
                    + [avg])
    return headers, body
