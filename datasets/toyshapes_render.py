"""ToyShapes generator: coloured shapes on cluttered backgrounds, written in CoOp's dataset layout.

64 classes = 8 colours x 8 shapes, named "<colour> <shape>" ("red circle"). Labels put the 32 *base*
classes first: class (colour c, shape s) is base iff ``(c + s) % 2 == 0``, so every colour word and every
shape word occurs among the base classes, and each *new* class is an unseen combination of seen words.
With CoOp's ``subsample_classes`` (base = first ``ceil(64/2) = 32`` labels) that is exactly the split.

Objects are usually large (crops at scale 0.3-1 often keep them) but sometimes small, at random
positions, so random crops often miss the object -- the low-information case FDBPL's negative prompt
is for. Each image is drawn from its own RNG (seed, split, class, index): output bytes depend only on
the arguments, not on the order of generation.

Layout (CoOp's): ``ROOT/toyshapes/images/<red_circle>/<red_circle>_<idx>.jpg``,
``ROOT/toyshapes/split_toyshapes.json`` and ``ROOT/toyshapes/manifest.json`` (the arguments; a second run
with the same arguments does nothing, with different ones it regenerates). Uses only NumPy and PIL.

    python -m datasets.toyshapes_render --root DATA [--size 64] [--train 40 --val 10 --test 30] [--seed 0]
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from datasets._shapes import TOYSHAPES, shape_mask
from engine.utils import atomic_write_bytes

__all__ = [
    "COLOURS",
    "SHAPES",
    "CLASSES",
    "CLASSNAMES",
    "NUM_BASE",
    "DATASET_DIR",
    "SPLIT_FILE",
    "generate",
    "render_image",
    "is_generated",
    "generate_command",
]

COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "ring", "crescent")
_RGB = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 220, 35),
    "green": (35, 165, 55),
    "cyan": (35, 200, 215),
    "blue": (35, 65, 220),
    "purple": (135, 45, 185),
    "pink": (245, 125, 195),
}

# (colour index, shape index) in label order: base classes ((c + s) even) first, then new ones.
CLASSES = tuple(
    [(c, s) for c in range(len(COLOURS)) for s in range(len(SHAPES)) if (c + s) % 2 == 0]
    + [(c, s) for c in range(len(COLOURS)) for s in range(len(SHAPES)) if (c + s) % 2 == 1]
)
CLASSNAMES = tuple(f"{COLOURS[c]} {SHAPES[s]}" for c, s in CLASSES)
NUM_BASE = math.ceil(len(CLASSES) / 2)  # 32: what subsample_classes calls base

DATASET_DIR = "toyshapes"
SPLIT_FILE = "split_toyshapes.json"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1  # bump when the drawing changes, so old folders are regenerated
SPLITS = ("train", "val", "test")
_SUPERSAMPLE = 4  # masks are drawn at 4x and downsampled: anti-aliased edges


def generate_command(root):
    """The shell command that generates ToyShapes under ``root`` (for error messages)."""
    return f"python -m datasets.toyshapes_render --root {root}"


# ------------------------------------------------------------------------------------------ drawing


# Rotation range per shape (radians): squares, diamonds and crosses stay near upright so a square
# never becomes a diamond; the others may turn freely.
_MAX_ROT = {"square": 0.26, "diamond": 0.26, "cross": 0.35}


def _background(rng, size):
    """A low-saturation base tone with low-contrast blobs and lines, lightly blurred."""
    grey = rng.uniform(70, 185)
    base = np.clip(grey + rng.uniform(-14, 14, size=3), 0, 255)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in base))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        tone = tuple(int(v) for v in np.clip(base + rng.uniform(-28, 28) + rng.uniform(-8, 8, size=3), 0, 255))
        x, y = rng.uniform(-0.2, 1.0, size=2) * size
        w, h = rng.uniform(0.1, 0.5, size=2) * size
        draw.ellipse((x, y, x + w, y + h), fill=tone)
    for _ in range(int(rng.integers(2, 6))):
        tone = tuple(int(v) for v in np.clip(base + rng.uniform(-30, 30) + rng.uniform(-8, 8, size=3), 0, 255))
        x0, y0, x1, y1 = rng.uniform(0, 1, size=4) * size
        draw.line((x0, y0, x1, y1), fill=tone, width=max(1, int(rng.integers(1, 3)) * size // 32))
    return img.filter(ImageFilter.GaussianBlur(radius=size / 64))


def render_image(colour, shape, size, rng):
    """One RGB PIL image of a ``colour`` ``shape`` on clutter, drawn from the NumPy Generator ``rng``."""
    bg = np.asarray(_background(rng, size), dtype=np.float32)
    # Mostly large objects (diameter 44-76% of the side), sometimes small ones (20-40%).
    frac = rng.uniform(0.22, 0.38) if rng.uniform() < 0.8 else rng.uniform(0.10, 0.20)
    r = frac * size
    cx, cy = rng.uniform(r, size - r, size=2)
    limit = _MAX_ROT.get(shape, math.pi)
    rot = rng.uniform(-limit, limit)
    n = size * _SUPERSAMPLE
    mask = shape_mask(shape, n, cx * _SUPERSAMPLE, cy * _SUPERSAMPLE, r * _SUPERSAMPLE, rot, TOYSHAPES)
    mask = np.asarray(mask.resize((size, size), Image.BOX), dtype=np.float32)[..., None] / 255.0
    rgb = np.array(_RGB[colour], dtype=np.float32) * rng.uniform(0.85, 1.08) + rng.uniform(-12, 12, size=3)
    img = bg * (1.0 - mask) + np.clip(rgb, 0, 255) * mask
    img += rng.standard_normal(img.shape, dtype=np.float32) * 5.0
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------------------- generation


def _folder(label):
    return CLASSNAMES[label].replace(" ", "_")


def _plan(counts):
    """``[(split, label, idx, relpath)]``: per class, train images first, then val, then test."""
    rows = []
    for label in range(len(CLASSES)):
        idx = 0
        for split in SPLITS:
            for _ in range(counts[split]):
                folder = _folder(label)
                rows.append((split, label, idx, f"{folder}/{folder}_{idx:04d}.jpg"))
                idx += 1
    return rows


def _args_record(size, train, val, test, seed):
    return {"size": int(size), "train": int(train), "val": int(val), "test": int(test), "seed": int(seed)}


def _manifest(args):
    return {"format": "toyshapes", "version": FORMAT_VERSION, "args": args, "classnames": list(CLASSNAMES)}


def is_generated(root, size=64, train=40, val=10, test=30, seed=0):
    """True if ``root/toyshapes`` holds a complete generation with exactly these arguments."""
    path = os.path.join(root, DATASET_DIR, MANIFEST_FILE)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f) == _manifest(_args_record(size, train, val, test, seed))
    except (OSError, ValueError):
        return False


def generate(root, size=64, train=40, val=10, test=30, seed=0, verbose=True):
    """Write ToyShapes under ``root/toyshapes`` (skipped if already generated with these arguments).

    Returns the dataset folder. A previous generation with other arguments is replaced, including its
    ``split_fewshot/`` caches (they would name images of the old generation).
    """
    if size < 16 or min(train, val, test) < 1:
        raise ValueError(f"ToyShapes needs size >= 16 and at least 1 image per split; got size={size}, "
                         f"train={train}, val={val}, test={test}")
    root = os.path.abspath(os.path.expanduser(root))
    dataset_dir = os.path.join(root, DATASET_DIR)
    if is_generated(root, size, train, val, test, seed):
        if verbose:
            print(f"ToyShapes already generated at {dataset_dir}")
        return dataset_dir
    image_dir = os.path.join(dataset_dir, "images")
    # Remove only what a generation writes (never anything else the user put in the folder).
    for name in (MANIFEST_FILE, SPLIT_FILE):
        if os.path.exists(os.path.join(dataset_dir, name)):
            os.remove(os.path.join(dataset_dir, name))
    for name in ("images", "split_fewshot"):
        shutil.rmtree(os.path.join(dataset_dir, name), ignore_errors=True)

    args = _args_record(size, train, val, test, seed)
    counts = {"train": train, "val": val, "test": test}
    split = {s: [] for s in SPLITS}
    for label in range(len(CLASSES)):
        os.makedirs(os.path.join(image_dir, _folder(label)), exist_ok=True)
    for split_name, label, idx, relpath in _plan(counts):
        colour, shape = COLOURS[CLASSES[label][0]], SHAPES[CLASSES[label][1]]
        rng = np.random.default_rng([seed, SPLITS.index(split_name), label, idx])
        img = render_image(colour, shape, size, rng)
        img.save(os.path.join(image_dir, relpath), format="JPEG", quality=92)
        split[split_name].append([relpath, label, CLASSNAMES[label]])

    atomic_write_bytes(os.path.join(dataset_dir, SPLIT_FILE),
                       json.dumps(split, indent=4, separators=(",", ": ")).encode("utf-8"))
    # The manifest goes last: its presence means the generation is complete.
    atomic_write_bytes(os.path.join(dataset_dir, MANIFEST_FILE), json.dumps(_manifest(args), indent=4).encode("utf-8"))
    if verbose:
        n = len(CLASSES) * (train + val + test)
        print(f"Generated ToyShapes ({len(CLASSES)} classes, {n} images of {size}px) at {dataset_dir}")
    return dataset_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate the ToyShapes dataset (CoOp layout) under ROOT/toyshapes.")
    parser.add_argument("--root", required=True, help="dataset root (DATASET.ROOT / --root of train.py)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--train", type=int, default=40, help="train images per class (default 40)")
    parser.add_argument("--val", type=int, default=10, help="val images per class (default 10)")
    parser.add_argument("--test", type=int, default=30, help="test images per class (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    args = parser.parse_args(argv)
    try:
        generate(args.root, size=args.size, train=args.train, val=args.val, test=args.test, seed=args.seed)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
