"""ToyScenes generator (toy world v2): small marked shapes in cluttered scenes, written in CoOp's dataset layout.

64 classes named "<shade> <hue> <mark> <shape>" ("dark red dotted star"): shade in {light, dark}, hue in
{red, green, blue, yellow}, mark in {plain, dotted, striped}, shape in 8 outlines. The classes come in
32 PAIRS OF NEAR-DUPLICATES that differ by exactly one small attribute:

* the 32 *base* classes (labels 0-31, what CoOp's ``subsample_classes`` calls base) are 16 pairs that differ
  only by SHADE ("light red dotted star" / "dark red dotted star");
* the 32 *new* classes (labels 32-63) are 16 pairs that differ only by MARK ("dark green plain star" /
  "dark green striped star").

Every word occurs in both halves; each (shape, hue) combination belongs to one half only, so new classes
are unseen combinations. Base training can separate its classes without looking at marks (a base pair never
differs by mark), while new classes cannot be told apart without them: that asymmetry is what lets a
context fitted on base classes hurt new ones (``models/README.md``).

Scenes, not icons: one object (diameter 28-46% of the side in 45% of the images, 12-22% in the rest), anywhere
in the image, on a textured background with grey distractor shapes, lines and dotted / striped grey patches that
are not class objects, so a random crop at CoOp's crop scale (0.08-1 of the area) often misses the object.

``--variant`` renders the same classes under a domain shift (domain generalisation) or another class set
(cross-dataset); each variant is its own dataset folder and registered dataset (``datasets/toyscenes.py``):

* ``clean`` (default): the world above, folder ``toyscenes``;
* ``sketch``: outlines only, marks drawn as outline dots / lines, on a pale paper background;
* ``night``: dark, noisy backgrounds with low-contrast clutter and dimmed objects;
* ``palette``: another palette (each hue rotated toward its neighbour, other shade levels);
* ``xshapes``: 32 OTHER classes (other outlines: heart, moon, arrow, pentagon, and other hue / mark
  combinations), rendered like ``clean`` (cross-dataset).

Each image is drawn from its own RNG (seed, variant, split, class, index): output bytes depend only on the
arguments, not on generation order. Layout (CoOp's): ``ROOT/<folder>/images/<dark_red_dotted_star>/..jpg``,
``ROOT/<folder>/split_<folder>.json`` and ``ROOT/<folder>/manifest.json`` (the arguments; a second run with
the same arguments does nothing, with different ones it regenerates). Uses only NumPy and PIL.

    python -m datasets.toyscenes_render --root DATA [--variant clean] [--train 60 --val 10 --test 30] [--seed 0]
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from datasets._shapes import TOYSCENES, shape_mask
from engine.utils import atomic_write_bytes

__all__ = [
    "SHADES", "HUES", "MARKS", "SHAPES", "XSHAPES", "VARIANTS", "CLASSES", "CLASSNAMES", "NUM_BASE",
    "classes_of", "classnames_of", "dataset_dir_of", "split_file_of", "generate", "render_image",
    "is_generated", "generate_command", "pair_of",
]

SHADES = ("light", "dark")
HUES = ("red", "green", "blue", "yellow")
MARKS = ("plain", "dotted", "striped")
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "ring", "crescent")
XSHAPES = ("heart", "moon", "arrow", "pentagon")  # the cross-dataset variant's outlines
VARIANTS = ("clean", "sketch", "night", "palette", "xshapes")
_HUE_RGB = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (35, 70, 225), "yellow": (235, 205, 20)}
# palette variant: every hue moved toward its neighbour on the colour wheel
_PALETTE_RGB = {"red": (225, 40, 120), "green": (30, 170, 130), "blue": (90, 40, 220), "yellow": (240, 150, 20)}

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 2  # 2: smaller objects (v2.1). Bump when the drawing changes, so old folders are regenerated
SPLITS = ("train", "val", "test")
_SUPERSAMPLE = 4


def _make_classes():
    """Label order: 16 base pairs (differ by shade), then 16 new pairs (differ by mark).

    For shape s, base uses hues s and s+2 (mod 4), new uses hues s+1 and s+3: a (shape, hue) combination is
    base or new, never both. Marks and shades rotate so every word occurs in both halves.
    """
    base, new = [], []
    mark_pairs = ((0, 1), (1, 2), (0, 2))
    for s in range(len(SHAPES)):
        for j, h in enumerate(((s) % 4, (s + 2) % 4)):
            m = (s + j) % 3
            base += [(0, h, m, s), (1, h, m, s)]  # light / dark
        for j, h in enumerate(((s + 1) % 4, (s + 3) % 4)):
            shade = (s + j) % 2
            m0, m1 = mark_pairs[(2 * s + j) % 3]
            new += [(shade, h, m0, s), (shade, h, m1, s)]
    return tuple(base + new)


def _make_xclasses():
    """Cross-dataset classes: 4 other outlines x (hue, mark) combinations, in pairs differing by shade or mark."""
    rows = []
    for s in range(len(XSHAPES)):
        for j in range(4):
            h, m = (s + j) % 4, (s + 2 * j) % 3
            if j % 2 == 0:  # a shade pair
                rows += [(0, h, m, s), (1, h, m, s)]
            else:  # a mark pair
                rows += [(j // 2 % 2, h, m, s), (j // 2 % 2, h, (m + 1) % 3, s)]
    return tuple(rows)


CLASSES = _make_classes()
XCLASSES = _make_xclasses()


def classes_of(variant):
    """(shade, hue, mark, shape) index tuples of a variant, in label order."""
    return XCLASSES if variant == "xshapes" else CLASSES


def _shapes_of(variant):
    return XSHAPES if variant == "xshapes" else SHAPES


def classnames_of(variant="clean"):
    shapes = _shapes_of(variant)
    return tuple(f"{SHADES[a]} {HUES[h]} {MARKS[m]} {shapes[s]}" for a, h, m, s in classes_of(variant))


CLASSNAMES = classnames_of("clean")
NUM_BASE = math.ceil(len(CLASSES) / 2)  # 32


def pair_of(label, variant="clean"):
    """The label of ``label``'s near-duplicate (classes come in consecutive pairs)."""
    return label ^ 1


def dataset_dir_of(variant="clean"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown ToyScenes variant {variant!r}; known: {', '.join(VARIANTS)}")
    return "toyscenes" if variant == "clean" else f"toyscenes_{variant}"


def split_file_of(variant="clean"):
    return f"split_{dataset_dir_of(variant)}.json"


def generate_command(root, variant="clean"):
    extra = "" if variant == "clean" else f" --variant {variant}"
    return f"python -m datasets.toyscenes_render --root {root}{extra}"


# ------------------------------------------------------------------------------------------ drawing


_MAX_ROT = {"square": 0.26, "diamond": 0.26, "cross": 0.35, "pentagon": 0.3, "heart": 0.35, "arrow": 0.4}


def _mark_pattern(mark, n, rng, scale):
    """An ``n x n`` float mask in [0, 1] of the mark's pattern (1 = mark colour), ``scale`` px per unit."""
    if mark == "plain":
        return np.zeros((n, n), np.float32)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / scale  # image pixels
    if mark == "dotted":
        period = rng.uniform(3.6, 4.6)
        ox, oy = rng.uniform(0, period, size=2)
        dx = (xx - ox) % period - period / 2
        dy = (yy - oy) % period - period / 2
        return ((dx * dx + dy * dy) <= (0.3 * period) ** 2).astype(np.float32)
    if mark == "striped":
        period = rng.uniform(3.6, 4.6)
        theta = rng.uniform(0, math.pi)
        phase = (xx * math.cos(theta) + yy * math.sin(theta)) / period + rng.uniform(0, 1)
        return ((phase % 1.0) < 0.45).astype(np.float32)
    raise ValueError(f"unknown mark {mark!r}")


def _down(a, size):
    """Box-downsample an ``n x n`` float array to ``size x size``."""
    n = a.shape[0]
    k = n // size
    return a.reshape(size, k, size, k).mean(axis=(1, 3))


def _colours(shade, hue, variant, rng):
    """(fill RGB, mark RGB) of an object, with per-image jitter."""
    base = np.array((_PALETTE_RGB if variant == "palette" else _HUE_RGB)[hue], np.float32)
    base = base * rng.uniform(0.92, 1.06) + rng.uniform(-10, 10, size=3)
    if variant == "palette":
        light, dark = 0.62, 0.42
    else:
        light, dark = 0.55, 0.5
    if shade == "light":
        fill = light * base + (1 - light) * 255.0
        mark = 0.5 * fill  # darker marks on light objects
    else:
        fill = dark * base
        mark = 0.45 * fill + 0.55 * 235.0  # lighter marks on dark objects
    return np.clip(fill, 0, 255), np.clip(mark, 0, 255)


def _background(rng, size, variant):
    """Textured clutter: a tone gradient, grey blobs, lines, grey distractor shapes and grey dotted / striped
    patches (not class objects: they are never saturated)."""
    if variant == "sketch":
        grey, spread = rng.uniform(215, 245), 10
    elif variant == "night":
        grey, spread = rng.uniform(20, 55), 12
    else:
        grey, spread = rng.uniform(70, 190), 30
    base = np.clip(grey + rng.uniform(-12, 12, size=3), 0, 255)
    n = size * 2
    img = Image.new("RGB", (n, n), tuple(int(v) for v in base))
    draw = ImageDraw.Draw(img)

    def tone(amount):
        return tuple(int(v) for v in np.clip(base + rng.uniform(-amount, amount) + rng.uniform(-8, 8, size=3), 0, 255))

    if variant != "sketch":
        for _ in range(int(rng.integers(4, 10))):
            x, y = rng.uniform(-0.2, 1.0, size=2) * n
            w, h = rng.uniform(0.1, 0.5, size=2) * n
            draw.ellipse((x, y, x + w, y + h), fill=tone(spread))
    for _ in range(int(rng.integers(3, 8))):
        x0, y0, x1, y1 = rng.uniform(0, 1, size=4) * n
        draw.line((x0, y0, x1, y1), fill=tone(spread * 1.3), width=int(rng.integers(1, 4)))
    # grey distractor shapes, outlines and filled, of the same outlines as the classes
    for _ in range(int(rng.integers(1, 4))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        r = rng.uniform(0.06, 0.16) * n
        cx, cy = rng.uniform(0, n, size=2)
        m = shape_mask(shape, n, cx, cy, r, rng.uniform(-math.pi, math.pi), TOYSCENES)
        colour = tone(spread * 1.5)
        if rng.uniform() < 0.5:
            m = Image.fromarray((np.asarray(m) > 0).astype(np.uint8) * 255).filter(ImageFilter.FIND_EDGES)
        img.paste(colour, (0, 0), m)
    arr = np.asarray(img.resize((size, size), Image.BOX), dtype=np.float32)
    # grey dotted / striped patches: texture that is not a mark of an object
    for _ in range(int(rng.integers(0, 3))):
        pat = _mark_pattern(("dotted", "striped")[int(rng.integers(2))], size, rng, 1.0)
        x0, y0 = rng.integers(0, size, size=2)
        w, h = rng.integers(size // 8, size // 3, size=2)
        box = np.zeros((size, size), np.float32)
        box[y0:y0 + h, x0:x0 + w] = 1.0
        delta = rng.uniform(-spread, spread)
        arr = arr + (pat * box)[..., None] * delta
    # a smooth brightness gradient
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a, b = rng.uniform(-1, 1, size=2) * spread * 0.6
    arr = arr + (a * (gx - 0.5) + b * (gy - 0.5))[..., None]
    return arr


def render_image(cls, size, rng, variant="clean"):
    """One RGB PIL image of class ``cls`` = (shade, hue, mark, shape) indices, drawn from ``rng``."""
    shade, hue, mark = SHADES[cls[0]], HUES[cls[1]], MARKS[cls[2]]
    shape = _shapes_of(variant)[cls[3]]
    bg = _background(rng, size, variant)
    # Object size, two modes (close-ups and distant objects): diameter 28-46% of the side in 45% of the
    # images, 12-22% in the others. The distant ones make crops that miss the object common (criterion 4).
    frac = rng.uniform(0.14, 0.23) if rng.uniform() < 0.45 else rng.uniform(0.06, 0.11)
    r = frac * size
    cx, cy = rng.uniform(r * 0.8, size - r * 0.8, size=2)
    limit = _MAX_ROT.get(shape, math.pi)
    rot = rng.uniform(-limit, limit)
    n = size * _SUPERSAMPLE
    big = shape_mask(shape, n, cx * _SUPERSAMPLE, cy * _SUPERSAMPLE, r * _SUPERSAMPLE, rot, TOYSCENES)
    fill, mark_rgb = _colours(shade, hue, variant, rng)
    pattern = _mark_pattern(mark, n, rng, _SUPERSAMPLE)
    if variant == "sketch":
        solid = np.asarray(big, np.float32) / 255.0
        edge = np.asarray(Image.fromarray((solid > 0.5).astype(np.uint8) * 255)
                          .filter(ImageFilter.MaxFilter(2 * _SUPERSAMPLE + 1)), np.float32) / 255.0
        outline = np.clip(edge - solid, 0, 1)  # a band just outside the shape
        inner = solid * pattern
        if mark != "plain":  # marks as outlines of the dots / stripes
            m8 = Image.fromarray((inner > 0.5).astype(np.uint8) * 255).filter(ImageFilter.FIND_EDGES)
            inner = np.asarray(m8, np.float32) / 255.0
        ink = np.clip(outline + inner, 0, 1)
        mask = _down(ink, size)[..., None]
        img = bg * (1.0 - mask) + fill * mask
    else:
        solid = _down(np.asarray(big, np.float32) / 255.0, size)[..., None]
        marks = _down(np.asarray(big, np.float32) / 255.0 * pattern, size)[..., None]
        colour = fill * (solid - marks) + mark_rgb * marks
        if variant == "night":
            colour = colour * 0.6
        img = bg * (1.0 - solid) + colour
    noise = 14.0 if variant == "night" else 5.0
    img = img + rng.standard_normal(img.shape).astype(np.float32) * noise
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------------------- generation


def _folder(name):
    return name.replace(" ", "_")


def _plan(classnames, counts):
    rows = []
    for label, name in enumerate(classnames):
        idx = 0
        for split in SPLITS:
            for _ in range(counts[split]):
                rows.append((split, label, idx, f"{_folder(name)}/{_folder(name)}_{idx:04d}.jpg"))
                idx += 1
    return rows


def _args_record(size, train, val, test, seed, variant):
    return {"size": int(size), "train": int(train), "val": int(val), "test": int(test), "seed": int(seed),
            "variant": str(variant)}


def _manifest(args):
    return {"format": "toyscenes", "version": FORMAT_VERSION, "args": args,
            "classnames": list(classnames_of(args["variant"]))}


def is_generated(root, size=64, train=60, val=10, test=30, seed=0, variant="clean"):
    path = os.path.join(root, dataset_dir_of(variant), MANIFEST_FILE)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f) == _manifest(_args_record(size, train, val, test, seed, variant))
    except (OSError, ValueError):
        return False


def generate(root, size=64, train=60, val=10, test=30, seed=0, variant="clean", verbose=True):
    """Write one ToyScenes variant under ``root/<folder>`` (skipped if already there with these arguments)."""
    if size < 32 or size % 8 or min(train, val, test) < 1:
        raise ValueError(f"ToyScenes needs size >= 32 (a multiple of 8) and at least 1 image per split; got "
                         f"size={size}, train={train}, val={val}, test={test}")
    folder = dataset_dir_of(variant)
    root = os.path.abspath(os.path.expanduser(root))
    dataset_dir = os.path.join(root, folder)
    if is_generated(root, size, train, val, test, seed, variant):
        if verbose:
            print(f"ToyScenes ({variant}) already generated at {dataset_dir}")
        return dataset_dir
    image_dir = os.path.join(dataset_dir, "images")
    split_file = split_file_of(variant)
    for name in (MANIFEST_FILE, split_file):
        if os.path.exists(os.path.join(dataset_dir, name)):
            os.remove(os.path.join(dataset_dir, name))
    for name in ("images", "split_fewshot"):
        shutil.rmtree(os.path.join(dataset_dir, name), ignore_errors=True)

    classes, names = classes_of(variant), classnames_of(variant)
    args = _args_record(size, train, val, test, seed, variant)
    counts = {"train": train, "val": val, "test": test}
    split = {s: [] for s in SPLITS}
    for name in names:
        os.makedirs(os.path.join(image_dir, _folder(name)), exist_ok=True)
    vid = VARIANTS.index(variant)
    for split_name, label, idx, relpath in _plan(names, counts):
        rng = np.random.default_rng([seed, vid, SPLITS.index(split_name), label, idx])
        img = render_image(classes[label], size, rng, variant)
        img.save(os.path.join(image_dir, relpath), format="JPEG", quality=92)
        split[split_name].append([relpath, label, names[label]])

    atomic_write_bytes(os.path.join(dataset_dir, split_file),
                       json.dumps(split, indent=4, separators=(",", ": ")).encode("utf-8"))
    atomic_write_bytes(os.path.join(dataset_dir, MANIFEST_FILE), json.dumps(_manifest(args), indent=4).encode("utf-8"))
    if verbose:
        print(f"Generated ToyScenes {variant} ({len(names)} classes, {len(names) * (train + val + test)} images "
              f"of {size}px) at {dataset_dir}")
    return dataset_dir


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate a ToyScenes variant (CoOp layout) under ROOT/<folder>.")
    p.add_argument("--root", required=True, help="dataset root (DATASET.ROOT / --root of train.py)")
    p.add_argument("--variant", default="clean", choices=VARIANTS, help="rendering / class set (default clean)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--train", type=int, default=60, help="train images per class (default 60)")
    p.add_argument("--val", type=int, default=10, help="val images per class (default 10)")
    p.add_argument("--test", type=int, default=30, help="test images per class (default 30)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    args = p.parse_args(argv)
    try:
        generate(args.root, size=args.size, train=args.train, val=args.val, test=args.test, seed=args.seed,
                 variant=args.variant)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
