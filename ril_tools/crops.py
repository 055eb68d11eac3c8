"""Counter-based randomness for the RIL table: which crops an image gets and which crop an epoch reads.

Every random number is a pure function of (seed, stream, a, b, draw): no generator state, so the crops
of an image do not depend on batch size, worker count, number of ranks or processing order, and a
resumed build redraws exactly the crops an uninterrupted build would have drawn.

Seed scheme ``SEED_SCHEME`` (recorded in the manifest)::

    fmix(z)      = splitmix64 finaliser: z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
                   z *= 0x94D049BB133111EB; z ^= z >> 31          (uint64 arithmetic, wrapping)
    key          = fmix(fmix(fmix(fmix(seed) ^ stream) ^ a) ^ b)
    u(draw)      = (fmix(key + (draw + 1) * 0x9E3779B97F4A7C15) >> 11) * 2**-53   in [0, 1)

Image key (scheme v2, ``SEED_SCHEME``): ``a`` below is the image's path key, :func:`image_keys` = xxh3-64 of its
path relative to the dataset root (``ril_tools.integrity.path_hash``, also stored per image in images.npy), so
an image's crops and crop schedule do not depend on which other images a table holds: a table for the union of
many few-shot subsets stores the same crops for an image as a table built for one run. Scheme v1
(``SEED_SCHEME_V1``, tables built before) used the image id (position in the table's sorted path list);
such tables are still read with their own keys (``RilTable.crop_keys``).

Crop sampling (stream 1, a = image key, b = crop id) follows RandomResizedCrop: up to 10 attempts,
attempt t uses draws 4t..4t+3 (area scale, log aspect ratio, top, left); the first attempt whose
(h, w) fits wins; otherwise the centre crop with the ratio clamped into range. Draw 40 is the flip
(flip when u < flip_p). The crop schedule (stream 2, a = image key, b = epoch // M) orders the M
crops of an image by their hash for every block of M epochs.
"""

import math

import numpy as np

from engine.errors import RilError

SEED_SCHEME = "splitmix64-counter-v2-pathkey"
SEED_SCHEME_V1 = "splitmix64-counter-v1"
SEED_SCHEMES = (SEED_SCHEME, SEED_SCHEME_V1)
STREAM_CROPS = 1
STREAM_SCHEDULE = 2
ATTEMPTS = 10
FLIP_DRAW = 4 * ATTEMPTS

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK = (1 << 64) - 1


def _u64(x):
    """Any int or int array (negative allowed) -> uint64 array, wrapping modulo 2**64."""
    arr = np.asarray(x)
    if arr.size == 0:
        return arr.astype(np.uint64)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64).astype(np.uint64)
    return np.asarray(int(x) & _MASK, dtype=np.uint64)


def fmix(z):
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = np.array(z, dtype=np.uint64, ndmin=1)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def stream_key(seed, stream, a, b):
    """The 64-bit key of (seed, stream, a, b); a and b broadcast."""
    a, b = np.broadcast_arrays(_u64(a), _u64(b))
    key = fmix(fmix(_u64(seed)) ^ np.uint64(stream))
    return fmix(fmix(key ^ a) ^ b).reshape(a.shape)


def uniforms(key, num_draws):
    """Uniform floats in [0, 1): key [...] -> [..., num_draws] (draw d = u(d) of the scheme)."""
    key = np.asarray(key, dtype=np.uint64)[..., None]
    counter = np.arange(1, num_draws + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = fmix(key + counter * _GOLDEN).reshape(key.shape[:-1] + (num_draws,))
    return (bits >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def image_keys(relpaths):
    """The scheme-v2 image keys (uint64 [B]) of paths relative to the dataset root ("/"-separated)."""
    from ril_tools.integrity import path_hash

    return np.fromiter((path_hash(p) for p in relpaths), dtype=np.uint64, count=len(relpaths))


def check_crop_params(scale, ratio, flip_p):
    scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise RilError(f"crop scale {scale} must be (min, max) with 0 < min <= max <= 1 (INPUT.RRCROP_SCALE)")
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise RilError(f"crop ratio {ratio} must be (min, max) with 0 < min <= max")
    if not 0 <= float(flip_p) <= 1:
        raise RilError(f"flip probability {flip_p} must lie in [0, 1]")
    return scale, ratio, float(flip_p)


def sample_crops(seed, image_key, height, width, num_crops, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 flip_p=0.5):
    """The M crops of one image: int64 pixel boxes (top, left, h, w) [M, 4] and bool flips [M]."""
    scale, ratio, flip_p = check_crop_params(scale, ratio, flip_p)
    height, width = int(height), int(width)
    u = uniforms(stream_key(seed, STREAM_CROPS, image_key, np.arange(num_crops)), FLIP_DRAW + 1)
    tries = u[:, :FLIP_DRAW].reshape(num_crops, ATTEMPTS, 4)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * tries[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * tries[..., 1])
    w = np.rint(np.sqrt(area * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = np.argmax(fits, axis=1)  # index of the first fitting attempt (0 if none fits)
    rows = np.arange(num_crops)
    h, w = h[rows, first], w[rows, first]
    top = np.minimum(np.floor(tries[rows, first, 2] * (height - h + 1)), height - h).astype(np.int64)
    left = np.minimum(np.floor(tries[rows, first, 3] * (width - w + 1)), width - w).astype(np.int64)
    none_fit = ~fits.any(axis=1)
    if none_fit.any():
        c_top, c_left, c_h, c_w = _centre_crop(height, width, ratio)
        top[none_fit], left[none_fit], h[none_fit], w[none_fit] = c_top, c_left, c_h, c_w
    flips = u[:, FLIP_DRAW] < flip_p
    return np.stack([top, left, h, w], axis=1), flips


def _centre_crop(height, width, ratio):
    """Fallback crop: the whole image, trimmed to the nearest allowed aspect ratio, centred."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def crop_schedule(seed, epoch, image_ids, num_crops):
    """Crop id m(e, n) that epoch ``epoch`` reads for each image key in ``image_ids`` [B] -> int64 [B]
    (image keys of the table's scheme: :func:`image_keys` for v2, image ids for v1).

    For each image and each block of M epochs, the M crop ids are ordered by a seeded hash, so no crop
    repeats within epochs 0..M-1 (nor within any later block of M epochs).
    """
    image_ids = _u64(np.asarray(image_ids).reshape(-1))
    if epoch < 0 or num_crops < 1:
        raise RilError(f"crop_schedule needs epoch >= 0 and num_crops >= 1 (got {epoch}, {num_crops})")
    block, position = divmod(int(epoch), int(num_crops))
    keys = stream_key(seed, STREAM_SCHEDULE, image_ids, block)
    draws = uniforms(keys, num_crops)  # [B, M]; the crop order is the argsort of these draws
    order = np.argsort(draws, axis=1, kind="stable")
    return order[:, position].astype(np.int64)
