"""Shape masks shared by the toy worlds' generators (ToyShapes, ToyScenes): one drawing, each world's proportions.

Masks are drawn with PIL at whatever resolution the caller asks (the generators supersample and downsample for
anti-aliased edges). A world's look is fixed by its proportions: changing a constant changes every image.
"""

import math

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["TOYSHAPES", "TOYSCENES", "polygon", "shape_mask"]

# Relative sizes (of the outer radius): ring hole, diamond half-width, star inner radius, cross half arm width.
TOYSHAPES = {"ring": 0.6, "diamond": 0.6, "star": 0.42, "cross": 0.34}
TOYSCENES = {"ring": 0.5, "diamond": 0.62, "star": 0.45, "cross": 0.36}


def polygon(cx, cy, radii, angles, rot):
    return [(cx + r * math.cos(a + rot), cy + r * math.sin(a + rot)) for r, a in zip(radii, angles)]


def shape_mask(shape, n, cx, cy, r, rot, proportions):
    """An ``n x n`` 'L' PIL mask (255 = object) of ``shape`` centred at (cx, cy) with outer radius r.

    ``proportions``: a world's shape constants (``TOYSHAPES`` or ``TOYSCENES``), relative to r.
    """
    p = proportions
    mask = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "ring":
        draw.ellipse(box, fill=255)
        inner = p["ring"] * r
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    elif shape in ("crescent", "moon"):
        draw.ellipse(box, fill=255)
        off = (0.55 if shape == "crescent" else 0.8) * r
        draw.ellipse((cx - r + off * math.cos(rot), cy - r + off * math.sin(rot),
                      cx + r + off * math.cos(rot), cy + r + off * math.sin(rot)), fill=0)
    elif shape == "square":
        draw.polygon(polygon(cx, cy, [r] * 4, [math.pi / 4 + k * math.pi / 2 for k in range(4)], rot), fill=255)
    elif shape == "diamond":
        draw.polygon(polygon(cx, cy, [r, p["diamond"] * r, r, p["diamond"] * r], [-math.pi / 2, 0, math.pi / 2, math.pi], rot),
                     fill=255)
    elif shape == "triangle":
        draw.polygon(polygon(cx, cy, [r] * 3, [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)], rot), fill=255)
    elif shape == "pentagon":
        draw.polygon(polygon(cx, cy, [r] * 5, [-math.pi / 2 + k * 2 * math.pi / 5 for k in range(5)], rot), fill=255)
    elif shape == "star":
        radii = [r if k % 2 == 0 else p["star"] * r for k in range(10)]
        draw.polygon(polygon(cx, cy, radii, [-math.pi / 2 + k * math.pi / 5 for k in range(10)], rot), fill=255)
    elif shape in ("cross", "arrow", "heart"):
        if shape == "cross":
            w = p["cross"] * r  # half arm width
            pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w),
                   (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
        elif shape == "arrow":
            pts = [(0, -r), (r, 0), (0.4 * r, 0), (0.4 * r, r), (-0.4 * r, r), (-0.4 * r, 0), (-r, 0)]
        else:  # heart: a polygonised cardioid-like outline
            ts = np.linspace(0, 2 * math.pi, 40, endpoint=False)
            xs = 16 * np.sin(ts) ** 3
            ys = -(13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts))
            pts = list(zip(xs * r / 17, (ys + 2) * r / 17))
        c, s = math.cos(rot), math.sin(rot)
        draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return mask
