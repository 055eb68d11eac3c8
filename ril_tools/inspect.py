"""Summarise an RIL table, or render some of its crops with their teacher labels.

    python -m ril_tools.inspect TABLE
    python -m ril_tools.inspect TABLE --render 16 --root DATA --out grid.png
    python -m ril_tools.inspect TABLE --summary summary.png --root DATA
"""

import argparse
import math
import os

import numpy as np

from engine.cli import run_cli
from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools.reader import RilTable

SAMPLE_RECORDS = 200_000  # statistics use at most this many records (a seeded sample)


def _sample(table, limit=SAMPLE_RECORDS, seed=0):
    total = len(table)
    if total <= limit:
        rows = np.arange(total)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(total, limit, replace=False))
    return rows // table.num_crops, rows % table.num_crops


def label_statistics(table):
    """Mean w, w histogram, label entropy, top-K mass, top-1 probability and teacher/label agreement."""
    images, crops = _sample(table)
    rec = table.fetch(images, crops)
    probs = np.exp(rec["logprobs"].astype(np.float64))
    mass = probs.sum(1)
    rest = np.clip(1.0 - mass, 0.0, 1.0)
    c, k = table.num_classes, table.k
    # entropy of the MS-densified label (the stored classes plus the rest spread over C - K), in units of log C
    entropy = -(probs * np.log(probs + 1e-12)).sum(1)
    if c > k:
        entropy += -rest * np.log(rest / (c - k) + 1e-12)
    labels = np.asarray(table.manifest["dataset"]["labels"])[images]
    hist, edges = np.histogram(rec["weight"], bins=10, range=(0.0, 1.0))
    return {
        "records": len(images), "w_mean": float(rec["weight"].mean()), "w_hist": hist, "w_edges": edges,
        "entropy": float((entropy / math.log(c)).mean()), "topk_mass": float(mass.mean()),
        "top1": float(probs[:, 0].mean()), "agreement": float((rec["indices"][:, 0] == labels).mean()),
        "flip_rate": float((rec["flags"] & fmt.FLAG_HFLIP).astype(bool).mean()),
        "crop_area": float((rec["box"][:, 2] * rec["box"][:, 3]).mean()),
    }


def summary_lines(table):
    m = table.manifest
    files = [s["file"] for s in m["shards"]] + [m["images_file"]["file"]]
    on_disk = sum(os.path.getsize(os.path.join(table.path, f)) for f in files)
    teacher = m["teacher"]
    ds = m["dataset"]
    stats = label_statistics(table)
    lines = [
        f"RIL table      {table.path}  ({m['format']} v{m['version']})",
        f"records        {table.num_images} images x {table.num_crops} crops = {len(table)}, "
        f"{table.record_dtype.itemsize} B each, {fmt.human_bytes(on_disk)} on disk in {len(m['shards'])} shard(s)",
        f"labels         {table.label_kind}, K={table.k} of C={table.num_classes}, log-probs as {m['logp_dtype']}",
        f"teacher        {teacher['name']} ({teacher['resolved']}), {teacher['precision']}, "
        f"input {teacher['input_size']} px, logit scale {m['logit_scale']:.2f}, weights {teacher['weights_hash']}",
        f"template       {m['template']!r}",
        *([f"prompts        learned, from {teacher.get('prompts_checkpoint')} ({teacher.get('prompts_hash')}); "
           f"kind {teacher.get('kind')!r}: {teacher.get('stores')}"] if teacher.get("kind") else []),
        f"dataset        {ds.get('name')} shots={ds.get('num_shots')} subsample={ds.get('subsample')} "
        f"seed={ds.get('few_shot_seed')} fingerprint={ds['fingerprint'][:23]}...",
        f"crops          scale {m['crop']['scale']}, ratio {[round(r, 4) for r in m['crop']['ratio']]}, "
        f"flip p={m['crop']['flip_p']}, {m['crop']['interpolation']}; seed {m['seed_scheme']['seed']} "
        f"({m['seed_scheme']['name']})",
        f"statistics     over {stats['records']} records: mean w {stats['w_mean']:.3f}, "
        f"label entropy {stats['entropy']:.3f} x log C, top-K mass {stats['topk_mass']:.3f}, "
        f"top-1 p {stats['top1']:.3f}, teacher top-1 = image label on {100 * stats['agreement']:.1f}% of crops, "
        f"mean crop area {stats['crop_area']:.3f}, flipped {100 * stats['flip_rate']:.1f}%",
        "w histogram",
    ]
    peak = max(int(stats["w_hist"].max()), 1)
    for count, lo, hi in zip(stats["w_hist"], stats["w_edges"][:-1], stats["w_edges"][1:]):
        lines.append(f"  [{lo:.1f}, {hi:.1f}{']' if hi == 1.0 else ')'} {'#' * round(40 * count / peak):<40} {count}")
    return lines


def render_grid(table, root, out, count, seed=0):
    """Draw ``count`` random crops (replayed from the images under ``root``) with top-3 classes and w."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engine.utils import read_image

    rng = np.random.default_rng(seed)
    images = rng.integers(0, table.num_images, count)
    crops = rng.integers(0, table.num_crops, count)
    rec = table.fetch(images, crops)
    cols = min(count, 4)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.6 * rows), squeeze=False)
    names = table.classnames
    for ax in axes.flat:
        ax.axis("off")
    for j, ax in enumerate(axes.flat[:count]):
        relpath = table.relpaths[images[j]]
        image = read_image(os.path.join(root, relpath))
        top, left, h, w = fmt.crop_box_pixels(rec["box"][j], image.height, image.width).tolist()
        crop = np.asarray(image)[top:top + h, left:left + w]
        if rec["flags"][j] & fmt.FLAG_HFLIP:
            crop = crop[:, ::-1]
        ax.imshow(crop)
        title = [f"{names[c]} {np.exp(lp):.2f}" for c, lp in zip(rec["indices"][j][:3], rec["logprobs"][j][:3])]
        ax.set_title("\n".join(title + [f"w={rec['weight'][j]:.2f}  img {images[j]} crop {crops[j]}"]), fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("table", help="RIL table directory")
    parser.add_argument("--render", type=int, default=0, metavar="N", help="draw N random crops to --out")
    parser.add_argument("--root", type=str, default="", help="dataset root (for --render)")
    parser.add_argument("--out", type=str, default="ril_crops.png", help="PNG file for --render")
    parser.add_argument("--seed", type=int, default=0, help="which crops --render draws")
    parser.add_argument("--summary", type=str, default="", metavar="OUT.png",
                        help="draw a summary to OUT.png (+ its numbers in OUT.json): 3 images (spread over the table) with all "
                             "their crop boxes (colour = w, dashed = flipped) and each crop's teacher top-K as a "
                             "stacked bar, the w histogram and the teacher's top-1 class counts; needs --root")
    args = parser.parse_args(argv)
    table = RilTable.open(args.table, verify="size")
    print("\n".join(summary_lines(table)))
    if args.render:
        if not args.root:
            raise RilError("--render needs --root (the dataset root the table was built from)")
        print(f"wrote {render_grid(table, args.root, args.out, args.render, args.seed)}")
    if args.summary:
        if not args.root:
            raise RilError("--summary needs --root (the dataset root the table was built from)")
        from ril_tools.render import (
            render_summary,  # matplotlib is imported only when drawing
        )

        print("wrote " + " and ".join(render_summary(table, args.root, args.summary, seed=args.seed)))


def cli(argv=None):
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
