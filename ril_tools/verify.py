"""Full integrity check of an RIL table against its files and the dataset it was built from.

    python -m ril_tools.verify TABLE --root DATA [--decode]

Checks: every field of the manifest and its agreement with images.npy and the shards (the checks training
runs when it opens a table, see ``ril_tools.integrity``); every checksum; every image's done flag; record
values (``integrity.record_problem``: class indices in range, distinct and best first, log-probabilities
<= 0, boxes inside the image, w in [0, 1], no NaN); cached student features (tag, shape, checksum,
finite unit vectors); the image list against its fingerprint; every image
file present under --root with the recorded byte size (and, with --decode, the recorded content hash
and decoded height and width). Exit code 0 when all pass, 2 with the first problem otherwise.
"""

import argparse
import os

from engine.cli import run_cli
from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools.integrity import read_image_with_hash
from ril_tools.reader import RilTable, map_npy

CHUNK_BYTES = 256 << 20  # records checked per step: at most this many bytes


def check_flags(table):
    for info in table.manifest["shards"]:
        path = os.path.join(table.path, info["progress_file"])
        progress = map_npy(path, "RIL progress file", dtype=fmt.PROGRESS_DTYPE)
        missing = int((progress["done"] != 1).sum())
        if missing or len(progress) != info["images"]:
            raise RilError(f"{path}: {missing} of {len(progress)} images are not marked done; "
                           "re-run the build to finish them")


def check_records(table):
    """The values of every record (the same check training runs on the rows it uses)."""
    table.check_all_records(CHUNK_BYTES)


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
            image, digest = read_image_with_hash(path)
            if digest != int(table.images["content_hash"][image_id]):
                raise RilError(f"image {path} is not the file the table was built on (content hash "
                               f"{digest:016x}, the table has {int(table.images['content_hash'][image_id]):016x}); "
                               "restore the dataset's original file or rebuild the table for this copy")
            with_size = image.size  # (W, H)
            want = (int(table.images["width"][image_id]), int(table.images["height"][image_id]))
            if with_size != want:
                raise RilError(f"image {path} decodes to {with_size[0]}x{with_size[1]}, the table has "
                               f"{want[0]}x{want[1]}; rebuild the table")


def check_student_features(table):
    """Every cached student feature file (``ril_tools.student_features``): tag, shape, dtype, checksum, values."""
    from ril_tools.student_features import open_features

    entries = table.manifest.get("student_features") or []
    if not isinstance(entries, list):
        raise RilError(f"{table.path}: manifest key student_features is not a list; recompute the features")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), dict):
            raise RilError(f"{table.path}: a student_features entry has no key; recompute the features")
        open_features(table, entry["key"], "python -m ril_tools.student_features --table " + table.path, verify=True)
    return len(entries)


def verify_table(path, root=None, decode=False):
    """Run every check; returns the opened table. RilError names the first failure."""
    table = RilTable.open(path, verify="full")
    check_flags(table)
    check_records(table)
    check_student_features(table)
    if root:
        check_images(table, root, decode)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("table", help="RIL table directory")
    parser.add_argument("--root", type=str, default="", help="dataset root: also check the image files")
    parser.add_argument("--decode", action="store_true",
                        help="also read every image: compare its content hash and decoded size")
    args = parser.parse_args(argv)
    table = verify_table(args.table, args.root, args.decode)
    what = "manifest, checksums, flags, records" + (", image files" if args.root else "") + \
        (" (content hashes, decoded sizes)" if args.decode else "")
    print(f"OK: {args.table} ({table.num_images} images x {table.num_crops} crops): {what}")


def cli(argv=None):
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
