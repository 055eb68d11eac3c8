"""Full integrity check of an RIL table against its files and the dataset it was built from.

    python -m ril_tools.verify TABLE --root DATA [--decode]

Checks: every checksum; every image's done flag; record sanity (class indices in range and best first,
log-probabilities <= 0, boxes inside the image, w in [0, 1], no NaN); the image list against its
fingerprint; every image file present under --root with the recorded byte size (and, with --decode,
the recorded decoded height and width). Exit code 0 when all pass, 2 with the first problem otherwise.
"""

import argparse
import os

import numpy as np

from engine.cli import run_cli
from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools.reader import RilTable

CHUNK_BYTES = 256 << 20  # records checked per step: at most this many bytes


def check_flags(table):
    for info in table.manifest["shards"]:
        path = os.path.join(table.path, info["progress_file"])
        if not os.path.isfile(path):
            raise RilError(f"{path} is missing; rebuild the table")
        progress = np.load(path, mmap_mode="r")
        missing = int((progress["done"] != 1).sum())
        if missing or len(progress) != info["images"]:
            raise RilError(f"{path}: {missing} of {len(progress)} images are not marked done; "
                           "re-run the build to finish them")


def check_records(table):
    """Vectorised sanity checks over every record, a chunk at a time."""
    c = table.num_classes
    chunk = max(1, CHUNK_BYTES // table.record_dtype.itemsize)
    for s, shard in enumerate(table.shards):
        for start in range(0, len(shard), chunk):
            rec = np.asarray(shard[start:start + chunk])
            idx, logp = rec["idx"], rec["logp"].astype(np.float32)
            box, w = rec["box"], rec["w"].astype(np.float32)
            where = f"{table.manifest['shards'][s]['file']} rows {start}..{start + len(rec) - 1}"
            if (idx < 0).any() or (idx >= c).any():
                raise RilError(f"{where}: class index outside 0..{c - 1}; rebuild the table")
            if not np.isfinite(logp).all() or (logp > 1e-3).any():
                raise RilError(f"{where}: log-probabilities that are NaN or > 0; rebuild the table")
            if (np.diff(logp, axis=1) > 1e-3).any():
                raise RilError(f"{where}: classes are not stored best first; rebuild the table")
            if not np.isfinite(box).all() or (box < 0).any() or (box[:, 2:] <= 0).any() or \
                    (box[:, 0] + box[:, 2] > 1 + 1e-6).any() or (box[:, 1] + box[:, 3] > 1 + 1e-6).any():
                raise RilError(f"{where}: crop box outside the image; rebuild the table")
            if not np.isfinite(w).all() or (w < 0).any() or (w > 1.001).any():
                raise RilError(f"{where}: information weight outside [0, 1]; rebuild the table")


def check_images(table, root, decode=False):
    """Image list vs fingerprint, and every file under ``root`` with its recorded size."""
    ds = table.manifest["dataset"]
    if fmt.dataset_fingerprint(ds["relpaths"], ds["file_sizes"]) != ds["fingerprint"]:
        raise RilError(f"{table.path}: the image list does not match its fingerprint (manifest edited?); "
                       "rebuild the table")
    for image_id, (relpath, size) in enumerate(zip(ds["relpaths"], ds["file_sizes"])):
        path = os.path.join(root, relpath)
        if not os.path.isfile(path):
            raise RilError(f"image {path} of the table is missing; check --root")
        if os.path.getsize(path) != size:
            raise RilError(f"image {path} has {os.path.getsize(path)} bytes, the table was built on {size}; "
                           "the dataset copy differs, rebuild the table for it")
        if decode:
            from engine.utils import read_image

            with_size = read_image(path).size  # (W, H)
            want = (int(table.images["width"][image_id]), int(table.images["height"][image_id]))
            if with_size != want:
                raise RilError(f"image {path} decodes to {with_size[0]}x{with_size[1]}, the table has "
                               f"{want[0]}x{want[1]}; rebuild the table")


def verify_table(path, root=None, decode=False):
    """Run every check; returns the opened table. RilError names the first failure."""
    table = RilTable.open(path, verify="full")
    check_flags(table)
    check_records(table)
    if root:
        check_images(table, root, decode)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("table", help="RIL table directory")
    parser.add_argument("--root", type=str, default="", help="dataset root: also check the image files")
    parser.add_argument("--decode", action="store_true", help="also decode every image and compare its size")
    args = parser.parse_args(argv)
    table = verify_table(args.table, args.root, args.decode)
    what = "checksums, flags, records" + (", image files" if args.root else "") + (" (decoded)" if args.decode else "")
    print(f"OK: {args.table} ({table.num_images} images x {table.num_crops} crops): {what}")


def cli(argv=None):
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
