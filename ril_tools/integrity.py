"""What makes an RIL table trustworthy beyond its checksums: field types, the parts binding to each other,
and the values of every record.

A checksum only says that a file is the one the manifest names; it says nothing when the manifest itself
was edited, a shard was copied from another table and its checksum recomputed, or a buggy or overflowing
build wrote well-formed nonsense. These checks close those gaps, and both ``python -m ril_tools.verify``
and training (``RilTable.open`` / ``RilTable.fetch``) run the same functions:

* :func:`check_manifest_fields`: every manifest key has the right type and range, and the counts agree
  (rows == images x crops per shard, one shard per rank, file names are the format's own names).
* :func:`check_image_table`: ``images.npy`` agrees with the manifest row by row (image ids, shard and
  ``first_row`` of every image, a hash of every image path and its byte size).
* Part tags: each shard file ends with the random id of the build that wrote it and ``images.npy`` with
  the table's id; the manifest lists both, so parts of two tables never mix.
* :func:`record_problem`: the values of records (class index range, distinct classes, log-probabilities
  <= 0 and best first, boxes inside the image, w in [0, 1], no NaN, no unknown flag bits).
"""

import hashlib
import io
import re

import numpy as np
import xxhash

from engine.errors import DatasetError, RilError

# A part tag is appended after a .npy file's data (numpy ignores bytes after the array): 16 + 32 bytes.
TAG_PREFIX = b"\nfdbpl-ril-part:"
TAG_BYTES = len(TAG_PREFIX) + 32
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
# Tolerances for values stored in float16: log-probabilities round up to about 1e-3 above their true value.
LOGP_SLACK = 1e-3
BOX_SLACK = 1e-6
W_MAX = 1.001


def part_tag(part_id):
    """The bytes appended to a table file to bind it to the build ``part_id`` (32 hex digits)."""
    if not isinstance(part_id, str) or not _HEX_ID.match(part_id):
        raise RilError(f"table part id {part_id!r} is not 32 hex digits")
    return TAG_PREFIX + part_id.encode("ascii")


def path_hash(relpath):
    """64-bit hash of an image path relative to the dataset root (stored per image in images.npy)."""
    return xxhash.xxh3_64_intdigest(relpath.encode("utf-8"))


def content_hash(data):
    """64-bit BLAKE2b of an image file's bytes: the image's content fingerprint.

    A cryptographic hash (not xxh3) so that a different file with the same fingerprint cannot be made on
    purpose short of ~2**64 work; it runs at ~1 GB/s, far below the cost of decoding the image.
    """
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def read_image_with_hash(path):
    """(PIL RGB image, content hash) of an image file, reading its bytes once.

    Decodes like ``engine.utils.read_image`` (PIL, RGB, no EXIF rotation), from the bytes that were hashed.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DatasetError(f"image not found: {path} (check DATASET.ROOT and the split file)") from None
    except OSError as exc:
        raise DatasetError(f"cannot read image {path} ({exc})") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB"), content_hash(data)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path} ({type(exc).__name__}: {exc}); the file is corrupt, "
                           "replace it") from None


def prompts_hash(prompts):
    return "sha256:" + hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------- manifest


def _is_int(value, low=None):
    return isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _str_list(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _int_list(value, low=None):
    return isinstance(value, list) and all(_is_int(v, low) for v in value)


def check_manifest_fields(manifest, path):
    """Types, ranges and cross-field counts of a manifest (the keys are known to exist). RilError names the
    first bad key and its value."""
    from ril_tools import format as fmt

    def bad(key, want):
        value = repr(_get(manifest, key))
        value = value if len(value) <= 60 else value[:57] + "..."
        raise RilError(f"{path}: manifest key {key} = {value} is not {want}; the manifest was edited or "
                       "damaged, rebuild the table")

    for key in ("num_classes", "k", "num_crops", "num_images", "world_size"):
        if not _is_int(manifest[key], 1):
            bad(key, "an integer >= 1")
    for key in ("template", "table_id", "prompts_hash"):
        if not isinstance(manifest[key], str):
            bad(key, "a string")
    if not _HEX_ID.match(manifest["table_id"]):
        bad("table_id", "32 hex digits")
    if not _is_number(manifest["logit_scale"]):
        bad("logit_scale", "a finite number")
    if manifest["label_kind"] not in fmt.LABEL_KINDS:
        bad("label_kind", f"one of {fmt.LABEL_KINDS}")
    if manifest["logp_dtype"] not in fmt.LOGP_DTYPES:
        bad("logp_dtype", f"one of {fmt.LOGP_DTYPES}")
    c, k, m, n, world = (manifest[key] for key in ("num_classes", "k", "num_crops", "num_images", "world_size"))
    if not _str_list(manifest["classnames"]) or len(manifest["classnames"]) != c:
        bad("classnames", f"a list of num_classes={c} strings")
    if k > c or (manifest["label_kind"] == "full" and k != c):
        bad("k", f"1..{c} (num_classes; all of them for label kind 'full')")
    if not _str_list(manifest["prompts"]) or len(manifest["prompts"]) != c:
        bad("prompts", f"a list of num_classes={c} strings")
    if prompts_hash(manifest["prompts"]) != manifest["prompts_hash"]:
        bad("prompts_hash", "the hash of the prompts")
    for key in ("teacher", "crop", "seed_scheme", "dataset", "images_file"):
        if not isinstance(manifest[key], dict):
            bad(key, "a JSON object")
    from ril_tools.crops import SEED_SCHEMES

    if manifest["seed_scheme"].get("name") not in SEED_SCHEMES:
        bad("seed_scheme.name", f"one of {SEED_SCHEMES}")
    if not _is_int(manifest["seed_scheme"].get("seed"), 0):
        bad("seed_scheme.seed", "an integer >= 0")
    ds = manifest["dataset"]
    if not _str_list(ds.get("relpaths")) or len(ds["relpaths"]) != n:
        bad("dataset.relpaths", f"a list of num_images={n} paths")
    if any(a >= b for a, b in zip(ds["relpaths"], ds["relpaths"][1:])):
        bad("dataset.relpaths", "sorted without repeats (image id = position in the sorted list)")
    if not _int_list(ds.get("file_sizes"), 0) or len(ds["file_sizes"]) != n:
        bad("dataset.file_sizes", f"a list of num_images={n} sizes")
    if not _int_list(ds.get("labels")) or len(ds["labels"]) != n:
        bad("dataset.labels", f"a list of num_images={n} labels")
    if manifest["images_file"].get("file") != fmt.IMAGES or not isinstance(manifest["images_file"].get("checksum"), str):
        bad("images_file", f"{{'file': {fmt.IMAGES!r}, 'checksum': ...}}")
    shards = manifest["shards"]
    if not isinstance(shards, list) or len(shards) != world:
        bad("shards", f"a list of world_size={world} shards")
    for rank, info in enumerate(shards):
        local = len(range(rank, n, world))
        want = {"rank": rank, "file": fmt.shard_name(rank), "progress_file": fmt.progress_name(rank),
                "images": local, "rows": local * m}
        for key, value in want.items():
            if not isinstance(info, dict) or info.get(key) != value or isinstance(info.get(key), bool):
                bad(f"shards[{rank}].{key}", f"{value!r} (num_images={n}, num_crops={m}, world_size={world})")
        if not isinstance(info.get("checksum"), str):
            bad(f"shards[{rank}].checksum", "a string")
        if not isinstance(info.get("part_id"), str) or not _HEX_ID.match(info["part_id"]):
            bad(f"shards[{rank}].part_id", "32 hex digits")


def _get(manifest, dotted):
    value = manifest
    for part in re.split(r"\.|\[", dotted):
        part = part.rstrip("]")
        try:
            value = value[int(part)] if part.isdigit() else value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def check_image_table(images, manifest, path):
    """``images.npy`` row by row against the manifest: ids, shard and first row of every image (so every
    fetch stays inside its shard), a hash of every image path and its byte size."""
    n, m, world = manifest["num_images"], manifest["num_crops"], manifest["world_size"]
    ids = np.arange(n, dtype=np.int64)
    ds = manifest["dataset"]
    expected = {
        "image_id": ids, "shard": ids % world, "first_row": (ids // world) * m,
        "path_hash": np.fromiter((path_hash(p) for p in ds["relpaths"]), dtype=np.uint64, count=n),
        "file_size": np.asarray(ds["file_sizes"], dtype=np.int64),
    }
    for field, want in expected.items():
        wrong = np.flatnonzero(images[field] != want)
        if len(wrong):
            i = int(wrong[0])
            what = f"image {i} ({ds['relpaths'][i]})"
            raise RilError(f"{path}: {field} of {what} is {images[field][i]}, the manifest implies {want[i]} "
                           "(the image list or the image table was edited or mixed with another table); "
                           "rebuild the table")
    small = np.flatnonzero((images["height"] < 1) | (images["width"] < 1))
    if len(small):
        raise RilError(f"{path}: image {int(small[0])} has size {images['height'][small[0]]}x"
                       f"{images['width'][small[0]]}; rebuild the table")


# ------------------------------------------------------------------------------------------ records


def record_problem(rec, num_classes):
    """(first bad row, what is wrong) of an array of records, or None when every value is valid.

    Vectorised; NaN fails every comparison, so each test is written as "not valid" rather than "invalid".
    """
    idx = np.ascontiguousarray(rec["idx"])  # packed records: one contiguous copy per field is the fast path
    logp = rec["logp"].astype(np.float32)
    box = rec["box"].astype(np.float64)
    w = rec["w"].astype(np.float32)
    flags = rec["flags"]
    ordered = np.sort(idx, axis=1)
    with np.errstate(invalid="ignore"):
        tests = (
            ((ordered[:, 0] < 0) | (ordered[:, -1] >= num_classes), f"class index outside 0..{num_classes - 1}"),
            ((ordered[:, 1:] == ordered[:, :-1]).any(axis=1), "class stored twice"),
            (~(logp <= LOGP_SLACK).all(axis=1), "log-probability that is NaN or > 0"),
            (~(logp[:, 1:] - logp[:, :-1] <= LOGP_SLACK).all(axis=1), "class order that is not best first"),
            (~((box[:, 0] >= 0) & (box[:, 1] >= 0) & (box[:, 2] > 0) & (box[:, 3] > 0)
               & (box[:, 0] + box[:, 2] <= 1 + BOX_SLACK) & (box[:, 1] + box[:, 3] <= 1 + BOX_SLACK)),
             "crop box that is NaN or outside the image"),
            (~((w >= 0) & (w <= W_MAX)), "information weight w that is NaN or outside [0, 1]"),
            ((flags & np.uint8(0xFE)) != 0, "flag byte with unknown bits"),
        )
    first = None
    for bad, what in tests:
        rows = np.flatnonzero(bad)
        if len(rows) and (first is None or rows[0] < first[0]):
            first = (int(rows[0]), what)
    return first


def describe_record(rec):
    """A short text of one record's values, for error messages."""
    def floats(values):
        return "[" + ", ".join(f"{float(v):.4g}" for v in np.ravel(values)[:4]) + "]"

    return (f"idx {rec['idx'][:4].tolist()}, logp {floats(rec['logp'])}, box {floats(rec['box'])}, "
            f"w {float(rec['w']):.4g}, flags {int(rec['flags'])}")
