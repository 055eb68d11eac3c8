"""The RIL table on disk, format v2: file names, record dtypes, box convention, checksums, manifest.

A table is a directory::

    manifest.json     written last, atomically; a directory without it is not a table
    images.npy        IMAGE_DTYPE, one row per image, row i = image id i; ends with the table id's tag
    shard-RRR.npy     record_dtype(K, C), one per writer (rank); row = local image * M + crop; ends with
                      the tag of the build that wrote it (``part_id`` in the manifest's shard entry)
    progress-RRR.npy  PROGRESS_DTYPE, one row per local image of rank RRR (done flag, decoded size, hash)
    plan-RRR.json     what rank RRR was asked to build (used by resume to refuse a different build)
    done-RRR.json     rank RRR finished: row count, shard checksum and part id
    .lock-RRR         held (flock) by the process building rank RRR

Version 2 (over v1): the teacher's prompt strings (``prompts``, CoOp's "_" -> " " rule) and their hash,
a random ``table_id``, part tags, per-image path hash, file size and content hash (``content_hash``,
BLAKE2b-64 of the file's bytes) in ``images.npy``. A tag is 16 bytes ``"\nfdbpl-ril-part:"`` and 32 hex
digits appended after the array data (see ``ril_tools.integrity``). v1 tables are refused.

Image ids: the training split's images sorted by their path relative to the dataset root
(``relpath``, "/"-separated); image id = position in that list. Rank r builds the images whose
id % world_size == r, in id order, so its local image j is id ``r + j * world_size``.

Records (little-endian, packed): ``idx`` [K] int16 (int32 when C > 32767) class indices sorted by
decreasing teacher probability; ``logp`` [K] float16 (or float32) their log-probabilities (all C for
label kind "full"); ``box`` [4] float32 (top, left, height, width) of the crop divided by the decoded
image's (H, W, H, W); ``flags`` uint8, bit 0 = horizontal flip (applied after the crop), bits 1.. = 0
in v1 and v2; ``w`` float16, the information weight (Eq. 6) of the FULL teacher distribution.

Box convention (both build and training replay use :func:`crop_box_pixels`): the decoded image is
``engine.utils.read_image(path)`` (PIL, RGB, no EXIF rotation), size H x W; the pixel crop is
``top = rint(box[0] * H)``, ``left = rint(box[1] * W)``, ``h = rint(box[2] * H)``,
``w = rint(box[3] * W)`` (round half to even), i.e. rows top..top+h-1 and columns left..left+w-1.
The stored float32 values are the exact integer crop divided by the size, so this recovers the
integers exactly for images up to 2**20 pixels on a side.
"""

import hashlib
import json
import os

import numpy as np
import xxhash

from engine.errors import RilError
from engine.utils import atomic_write_bytes

FORMAT_NAME = "fdbpl-ril"
FORMAT_VERSION = 2

MANIFEST = "manifest.json"
IMAGES = "images.npy"
FLAG_HFLIP = 1
LABEL_KINDS = ("topk", "full")
LOGP_DTYPES = ("float16", "float32")

IMAGE_DTYPE = np.dtype(
    [("image_id", "<i8"), ("height", "<i4"), ("width", "<i4"), ("shard", "<i4"), ("first_row", "<i8"),
     ("path_hash", "<u8"), ("file_size", "<i8"), ("content_hash", "<u8")]
)
PROGRESS_DTYPE = np.dtype([("done", "u1"), ("height", "<i4"), ("width", "<i4"), ("content_hash", "<u8")])

# Keys every manifest must have; the reader refuses a manifest missing any of them.
MANIFEST_KEYS = (
    "format", "version", "teacher", "template", "logit_scale", "classnames", "num_classes", "k",
    "num_crops", "label_kind", "logp_dtype", "crop", "seed_scheme", "dataset", "num_images",
    "world_size", "shards", "images_file", "table_id", "prompts", "prompts_hash",
)


def shard_name(rank):
    return f"shard-{rank:03d}.npy"


def progress_name(rank):
    return f"progress-{rank:03d}.npy"


def plan_name(rank):
    return f"plan-{rank:03d}.json"


def done_name(rank):
    return f"done-{rank:03d}.json"


def index_dtype(num_classes):
    """Class-index dtype: int16 while every index fits, else int32."""
    return np.dtype("<i2") if num_classes <= 32767 else np.dtype("<i4")


def record_dtype(k, num_classes, logp_dtype="float16"):
    """The packed little-endian structured dtype of one crop record."""
    if logp_dtype not in LOGP_DTYPES:
        raise RilError(f"unknown logp dtype {logp_dtype!r}; use one of {', '.join(LOGP_DTYPES)}")
    if not 1 <= k <= num_classes:
        raise RilError(f"top-K {k} is outside 1..{num_classes} (the number of classes); lower --topk")
    logp = "<f2" if logp_dtype == "float16" else "<f4"
    return np.dtype(
        [("idx", index_dtype(num_classes), (k,)), ("logp", logp, (k,)), ("box", "<f4", (4,)),
         ("flags", "u1"), ("w", "<f2")]
    )


def table_bytes(num_images, num_crops, k, num_classes, logp_dtype="float16"):
    """Size in bytes of all shards of a table (headers excluded)."""
    return num_images * num_crops * record_dtype(k, num_classes, logp_dtype).itemsize


def human_bytes(n):
    """1234567 -> '1.2 MiB'."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"


# ------------------------------------------------------------------------------------------ boxes


def normalise_box(pixel_box, height, width):
    """Integer (top, left, h, w) [..., 4] on an H x W image -> float32 normalised box [..., 4]."""
    pixel_box = np.asarray(pixel_box, dtype=np.float64)
    scale = np.stack(np.broadcast_arrays(height, width, height, width), axis=-1).astype(np.float64)
    return (pixel_box / scale).astype(np.float32)


def crop_box_pixels(box, height, width):
    """Normalised box [..., 4] -> int64 pixel (top, left, h, w) [..., 4] on an H x W image.

    The crop is clamped to lie inside the image (h, w >= 1), so a table replayed on a slightly
    different copy of an image still yields a valid crop.
    """
    box = np.asarray(box, dtype=np.float64)
    height = np.asarray(height, dtype=np.int64)
    width = np.asarray(width, dtype=np.int64)
    h = np.clip(np.rint(box[..., 2] * height), 1, height).astype(np.int64)
    w = np.clip(np.rint(box[..., 3] * width), 1, width).astype(np.int64)
    top = np.clip(np.rint(box[..., 0] * height), 0, height - h).astype(np.int64)
    left = np.clip(np.rint(box[..., 1] * width), 0, width - w).astype(np.int64)
    return np.stack([top, left, h, w], axis=-1)


# ------------------------------------------------------------------------------------- checksums


def checksum_file(path, chunk=1 << 24):
    """xxh3-64 of a file's bytes as ``"xxh3_64:<hex>"``."""
    hasher = xxhash.xxh3_64()
    try:
        with open(path, "rb") as f:
            while True:
                block = f.read(chunk)
                if not block:
                    break
                hasher.update(block)
    except FileNotFoundError:
        raise RilError(f"{path} is missing; the table is incomplete, rebuild it") from None
    except OSError as exc:
        raise RilError(f"{path} is unreadable ({exc}); rebuild the table") from None
    return "xxh3_64:" + hasher.hexdigest()


def dataset_fingerprint(relpaths, file_sizes):
    """sha256 over the sorted ``relpath<TAB>size`` lines of the training images."""
    lines = sorted(f"{p}\t{int(s)}\n" for p, s in zip(relpaths, file_sizes))
    return "sha256:" + hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


# -------------------------------------------------------------------------------------- JSON files


def write_json_atomic(path, obj):
    """Write JSON so a reader never sees a partial file (tmp + fsync + os.replace)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_json_file(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise RilError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise RilError(f"{what} {path} is unreadable ({exc}); rebuild the table") from None


def read_manifest(table_dir):
    """Load and check ``manifest.json`` of a table directory (format, version, required keys)."""
    path = os.path.join(table_dir, MANIFEST)
    if os.path.isfile(table_dir):
        raise RilError(f"RIL table {table_dir} is a file; a table is a folder made by python -m ril_tools.build")
    if not os.path.isdir(table_dir):
        raise RilError(f"RIL table not found: {table_dir} (build it with python -m ril_tools.build)")
    if not os.path.isfile(path):
        raise RilError(
            f"{table_dir} has no {MANIFEST}: the build did not finish; re-run the same "
            "python -m ril_tools.build command to resume it"
        )
    manifest = read_json_file(path, "RIL manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise RilError(f"{path} is not an RIL manifest (format must be {FORMAT_NAME!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise RilError(
            f"{path} has RIL format version {manifest.get('version')!r}, this code reads version "
            f"{FORMAT_VERSION} (v2 records the teacher's prompts with CoOp's '_' -> ' ' rule, which v1 tables "
            "lack); rebuild the table with this version's python -m ril_tools.build"
        )
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise RilError(f"{path} lacks keys {missing}; rebuild the table")
    from ril_tools.integrity import check_manifest_fields

    check_manifest_fields(manifest, path)
    return manifest
