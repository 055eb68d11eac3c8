"""A one-page picture of an RIL table (``python -m ril_tools.inspect TABLE --summary OUT.png --root DATA``).

For a few images spread over the table: the whole image with every stored crop box drawn on it (colour = the crop's w,
dashed = stored flipped), and beside it the teacher's top-K of each crop as one stacked bar per crop (a colour
per class, the image's own label hatched). Over the whole table (or a seeded sample of at most
``SAMPLE_RECORDS`` records): the histogram of w and how often each class is the teacher's top-1.

The numbers behind it are written beside the PNG as ``OUT.json`` (same stem).
"""

import os

import numpy as np

from engine.errors import RilError
from ril_tools import format as fmt

__all__ = ["render_summary", "summary_numbers", "SAMPLE_RECORDS"]

SAMPLE_RECORDS = 200_000
W_BINS = 10


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def summary_numbers(table, num_images=3, seed=0):
    """The numbers of the summary picture: per shown image its crops, and the table-wide w / top-1 counts."""
    total = len(table)
    if total <= SAMPLE_RECORDS:
        rows = np.arange(total)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(total, SAMPLE_RECORDS, replace=False))
    rec = table.fetch(rows // table.num_crops, rows % table.num_crops)
    w_counts, w_edges = np.histogram(rec["weight"], bins=W_BINS, range=(0.0, 1.0))
    top1 = np.bincount(rec["indices"][:, 0], minlength=table.num_classes)
    labels = table.manifest["dataset"].get("labels")
    shown = []
    # spread over the table: images are stored class by class, so the first few often share a label
    for i in sorted(set(np.linspace(0, table.num_images - 1, min(num_images, table.num_images)).astype(int).tolist())):
        crops = table.fetch(np.full(table.num_crops, i), np.arange(table.num_crops))
        shown.append({
            "image": i, "relpath": table.relpaths[i], "label": None if labels is None else int(labels[i]),
            "box": crops["box"].tolist(), "flipped": (crops["flags"] & fmt.FLAG_HFLIP).astype(bool).tolist(),
            "w": crops["weight"].tolist(), "topk": crops["indices"].tolist(),
            "probs": np.exp(crops["logprobs"].astype(np.float64)).tolist()})
    return {"table": table.path, "records": int(len(rows)), "num_records": total, "sampled": bool(len(rows) < total),
            "w_hist": {"edges": w_edges.tolist(), "counts": w_counts.tolist()},
            "top1_counts": {"classnames": table.classnames, "counts": top1.tolist()}, "images": shown}


def _class_colours(num_classes):
    plt = _pyplot()
    cmap = plt.get_cmap("tab20")
    return [cmap(c % 20) for c in range(num_classes)]


def _draw_boxes(ax, image, entry, cmap):
    from matplotlib.patches import Rectangle

    ax.imshow(np.asarray(image))
    lw = 1.0 if len(entry["w"]) <= 16 else 0.5  # dozens of boxes: thin lines keep the image visible
    for box, flipped, w in zip(entry["box"], entry["flipped"], entry["w"]):
        top, left, h, wd = fmt.crop_box_pixels(np.asarray(box), image.height, image.width).tolist()
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), wd, h, fill=False, lw=lw, color=cmap(w),
                               ls="--" if flipped else "-"))
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_topk(ax, entry, names, colours):
    probs, topk = np.asarray(entry["probs"]), np.asarray(entry["topk"])
    x = np.arange(len(probs))
    bottom = np.zeros(len(probs))
    for j in range(probs.shape[1]):
        for c in np.unique(topk[:, j]):
            sel = topk[:, j] == c
            ax.bar(x[sel], probs[sel, j], bottom=bottom[sel], width=0.85, color=colours[c],
                   hatch="//" if c == entry["label"] else None, edgecolor="black" if c == entry["label"] else None,
                   lw=0.3)
        bottom += probs[:, j]
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.6, len(probs) - 0.4)
    ax.set_xlabel("crop", fontsize=8)
    ax.set_ylabel("teacher p (top-K)", fontsize=8)
    ax.tick_params(labelsize=7)
    # name the classes that take most of this image's top-K mass
    mass = np.bincount(topk.reshape(-1), weights=probs.reshape(-1), minlength=len(names))
    best = np.argsort(-mass)[:4]
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colours[c], hatch="//" if c == entry["label"] else None, label=names[c][:20])
               for c in best if mass[c] > 0]
    ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def render_summary(table, root, out, num_images=3, seed=0):
    """Draw the summary picture to ``out`` (PNG) and its numbers to ``out`` with ``.json``; returns both paths."""
    from engine.utils import read_image, write_json

    numbers = summary_numbers(table, num_images, seed)
    plt = _pyplot()
    names = table.classnames
    colours = _class_colours(table.num_classes)
    cmap = plt.get_cmap("viridis")
    n = len(numbers["images"])
    fig = plt.figure(figsize=(11, 2.6 * (n + 1) + 0.4))
    grid = fig.add_gridspec(n + 1, 3, width_ratios=[1, 2.6, 0.6])
    for r, entry in enumerate(numbers["images"]):
        path = os.path.join(root, entry["relpath"])
        if not os.path.isfile(path):
            raise RilError(f"image {path} of the table is missing; pass --root, the dataset root the table was "
                           f"built from")
        ax = fig.add_subplot(grid[r, 0])
        _draw_boxes(ax, read_image(path), entry, cmap)
        label = "" if entry["label"] is None else f" ({names[entry['label']][:20]})"
        ax.set_title(f"image {entry['image']}{label}: {len(entry['w'])} crops\ncolour = w, dashed = flipped",
                     fontsize=8)
        _draw_topk(fig.add_subplot(grid[r, 1:]), entry, names, colours)
    ax_w = fig.add_subplot(grid[n, 0])
    w = numbers["w_hist"]
    ax_w.bar(np.asarray(w["edges"][:-1]), w["counts"], width=np.diff(w["edges"]), align="edge",
             color=[cmap(e + 0.05) for e in w["edges"][:-1]], edgecolor="black", lw=0.3)
    ax_w.set_xlabel("w", fontsize=8)
    ax_w.set_ylabel("crops", fontsize=8)
    ax_w.set_title("w over the table" + (" (sample)" if numbers["sampled"] else "") + "\nbar colour = box colour",
                   fontsize=8)
    ax_w.tick_params(labelsize=7)
    ax_c = fig.add_subplot(grid[n, 1:])
    counts = np.asarray(numbers["top1_counts"]["counts"])
    ax_c.bar(np.arange(len(counts)), counts, width=0.85, color=colours)
    ax_c.set_xlim(-0.6, len(counts) - 0.4)
    ax_c.set_xlabel("class index (names in the JSON)" if len(counts) > 40 else "class", fontsize=8)
    if len(counts) <= 40:
        ax_c.set_xticks(np.arange(len(counts)), [s[:14] for s in names], rotation=90, fontsize=6)
    ax_c.set_ylabel("crops", fontsize=8)
    ax_c.set_title(f"teacher top-1 class over {numbers['records']} crops", fontsize=8)
    ax_c.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    json_path = os.path.splitext(out)[0] + ".json"
    write_json(numbers, json_path)
    return out, json_path
