"""Writing an RIL table: one resumable shard per rank, then the manifest (rank 0, last, atomically).

Crash safety (the order is what matters, a SIGKILL may land anywhere):

1. A rank's shard and progress files are preallocated under temporary names and renamed into place,
   then its ``plan-RRR.json`` is written (atomically). Resume trusts the files only if that plan exists
   and equals the new run's plan.
2. Records of finished images are written into the shard mapping, the shard is flushed, and only
   then are those images' done flags set and flushed. An image without its flag is redone; its crops
   are a pure function of (seed, image id, crop id), so the redo writes the same bytes.
3. A finished rank hashes its shard and writes ``done-RRR.json``; rank 0 writes ``images.npy`` and,
   last, ``manifest.json``. Readers refuse a directory without the manifest.

A rank holds an exclusive ``flock`` on ``.lock-RRR`` while it builds, so a second build into the same
folder is refused at once (not queued: two users pointing at one folder is a mistake to report). A
SIGKILL can leave temporary files (``.tmp-*`` of atomic writes, ``*.npy.tmp`` of preallocation); each
rank deletes its own when it starts, and ``--overwrite`` deletes them all.
"""

import contextlib
import errno
import io
import os
import uuid

import numpy as np

from engine.errors import RilError
from engine.utils import atomic_write_bytes
from ril_tools import format as fmt
from ril_tools import integrity

# Keys of a plan that may differ between a run and its resume without changing the table.
UNMATCHED_PLAN_KEYS = ("run",)
def plan_difference(old, new, prefix=""):
    """First differing key between two plans as ``"key: old != new"`` (None when they match)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if not prefix and key in UNMATCHED_PLAN_KEYS:
                continue
            diff = plan_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if diff:
                return diff
        return None
    if old == new:
        return None
    key = prefix.rstrip(".")
    if isinstance(old, list) and isinstance(new, list) and (len(old) > 8 or len(new) > 8):
        return f"{key} (lists of {len(old)} and {len(new)} entries differ)"
    return f"{key}: {old!r} != {new!r}"


def _save_npy_atomic(path, array, tag=b""):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue() + tag)


def _create_memmap(path, dtype, shape, tag=b""):
    """Preallocate a zero-filled .npy (followed by ``tag``) under a temporary name, then rename it into place."""
    tmp = path + ".tmp"
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    array.flush()
    del array
    if tag:
        with open(tmp, "ab") as f:
            f.write(tag)
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    return np.lib.format.open_memmap(path, mode="r+")


def read_part_id(path):
    """The build id in the tag at the end of a table file, or None when the file has no valid tag."""
    try:
        with open(path, "rb") as f:
            f.seek(-integrity.TAG_BYTES, os.SEEK_END)
            tail = f.read()
    except OSError:
        return None
    if not tail.startswith(integrity.TAG_PREFIX):
        return None
    return tail[len(integrity.TAG_PREFIX):].decode("ascii", "replace")


# ----------------------------------------------------------------------------- lock and leftovers


def _rank_file_names(rank):
    return (fmt.shard_name(rank), fmt.progress_name(rank), fmt.plan_name(rank), fmt.done_name(rank))


def remove_temporaries(table_dir, rank=None):
    """Delete temporary files a killed build left (``.tmp-NAME-*`` and ``NAME.tmp``): those of ``rank``'s
    files (rank 0 also the manifest's and image table's), or every one when ``rank`` is None."""
    if not os.path.isdir(table_dir):
        return []
    names = None if rank is None else set(_rank_file_names(rank)) | (
        {fmt.MANIFEST, fmt.IMAGES} if rank == 0 else set())
    removed = []
    for entry in os.listdir(table_dir):
        if entry.startswith(".tmp-"):
            target = entry[len(".tmp-"):].rsplit("-", 1)[0]  # mkstemp adds "-<random>"
        elif entry.endswith(".tmp"):
            target = entry[:-len(".tmp")]
        else:
            continue
        if names is None or target in names:
            os.remove(os.path.join(table_dir, entry))
            removed.append(entry)
    return removed


@contextlib.contextmanager
def build_lock(table_dir, rank):
    """Hold an exclusive lock on ``.lock-RRR`` in the table folder, or refuse with one line if another
    process holds it. Released when the process ends, however it ends (kernel-held flock)."""
    import fcntl

    if os.path.exists(table_dir) and not os.path.isdir(table_dir):
        raise RilError(f"--output {table_dir} is a file, not a table folder; choose another --output")
    os.makedirs(table_dir, exist_ok=True)
    path = os.path.join(table_dir, f".lock-{rank:03d}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RilError(f"cannot lock {path} ({exc}); the folder's file system may not support "
                               "locks, build on a local disk") from None
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise RilError(f"another build (pid {holder}) is writing rank {rank} of {table_dir}; wait for it "
                           "to finish or use another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # also releases the lock


class ShardWriter:
    """The shard, progress flags and plan of one rank. ``local`` image j is image id rank + j * world."""

    def __init__(self, table_dir, rank, num_local, num_crops, dtype, plan):
        self.table_dir = table_dir
        self.rank = rank
        self.num_local = int(num_local)
        self.num_crops = int(num_crops)
        self.dtype = np.dtype(dtype)
        self.plan = plan
        self.shard_path = os.path.join(table_dir, fmt.shard_name(rank))
        self.progress_path = os.path.join(table_dir, fmt.progress_name(rank))
        self.plan_path = os.path.join(table_dir, fmt.plan_name(rank))
        self.done_path = os.path.join(table_dir, fmt.done_name(rank))
        self._written = []
        self.shard = self.progress = None
        self.part_id = None

    # Called at the moments a crash matters (stage: "open", "write", "flush", "commit"). A no-op here; the
    # crash tests replace it in their own process (ril_tools.testing), so no setting can kill a real build.
    def crash_point(self, stage):
        pass

    def existing_plan(self):
        """The plan this rank's files were made for, or None if they are absent."""
        if not os.path.isfile(self.plan_path):
            return None
        return fmt.read_json_file(self.plan_path, "RIL build plan")

    def open(self):
        """Reopen matching files for resume, or start this rank afresh. Returns the number already done."""
        old = self.existing_plan()
        if old is not None and plan_difference(old, self.plan) is None and self._reopen():
            return int(self.progress["done"].sum())
        for path in (self.plan_path, self.done_path, self.shard_path, self.progress_path):
            if os.path.exists(path):
                os.remove(path)
        os.makedirs(self.table_dir, exist_ok=True)
        self.part_id = uuid.uuid4().hex  # a fresh build's id, in the shard's tag and (later) the manifest
        self.shard = _create_memmap(self.shard_path, self.dtype, (self.num_local * self.num_crops,),
                                    integrity.part_tag(self.part_id))
        self.crash_point("open")
        self.progress = _create_memmap(self.progress_path, fmt.PROGRESS_DTYPE, (self.num_local,))
        fmt.write_json_atomic(self.plan_path, self.plan)
        return 0

    def _reopen(self):
        self.part_id = read_part_id(self.shard_path)
        if self.part_id is None:  # untagged (or foreign) shard: start afresh
            return False
        try:
            shard = np.lib.format.open_memmap(self.shard_path, mode="r+")
            progress = np.lib.format.open_memmap(self.progress_path, mode="r+")
        except (OSError, ValueError):
            return False
        if (shard.dtype != self.dtype or shard.shape != (self.num_local * self.num_crops,)
                or progress.dtype != fmt.PROGRESS_DTYPE or progress.shape != (self.num_local,)):
            return False
        self.shard, self.progress = shard, progress
        return True

    def pending(self):
        """Local indices of the images still to do, in order."""
        return np.flatnonzero(self.progress["done"] == 0)

    def write_image(self, local, records, height, width, content_hash=0):
        """Put one image's M records in place (not yet marked done: see :meth:`commit`)."""
        if records.shape != (self.num_crops,) or records.dtype != self.dtype:
            raise ValueError(f"image records must be {self.num_crops} of {self.dtype}, got {records.shape}")
        start = int(local) * self.num_crops
        self.shard[start:start + self.num_crops] = records
        self.progress["height"][local] = height
        self.progress["width"][local] = width
        self.progress["content_hash"][local] = content_hash
        self._written.append(int(local))
        self.crash_point("write")

    def commit(self):
        """Flush the shard, then mark the images written since the last commit as done."""
        if not self._written:
            return
        self.shard.flush()
        self.progress.flush()  # sizes first; they are only trusted once the flag is set
        self.crash_point("flush")
        self.progress["done"][self._written] = 1
        self.progress.flush()
        self._written = []
        self.crash_point("commit")

    def finish(self):
        """Check that every image is done, hash the shard and write ``done-RRR.json``."""
        self.commit()
        missing = self.num_local - int(self.progress["done"].sum())
        if missing:
            raise RilError(f"rank {self.rank} of {self.table_dir} still has {missing} images to build; "
                           "re-run the build")
        self.shard.flush()
        self.shard = self.progress = None  # drop the mappings before hashing the files
        info = {
            "rank": self.rank, "file": fmt.shard_name(self.rank), "rows": self.num_local * self.num_crops,
            "images": self.num_local, "checksum": fmt.checksum_file(self.shard_path),
            "progress_file": fmt.progress_name(self.rank), "part_id": self.part_id,
        }
        fmt.write_json_atomic(self.done_path, info)
        return info


def finalize_table(table_dir, plan):
    """Rank 0, after every rank finished: write ``images.npy`` and then ``manifest.json``."""
    world, num_images, num_crops = plan["world_size"], plan["num_images"], plan["num_crops"]
    from ril_tools.reader import map_npy

    images = np.zeros(num_images, dtype=fmt.IMAGE_DTYPE)
    images["image_id"] = np.arange(num_images)
    relpaths = plan["dataset"]["relpaths"]
    images["path_hash"] = np.fromiter((integrity.path_hash(p) for p in relpaths), dtype=np.uint64,
                                      count=num_images)
    images["file_size"] = plan["dataset"]["file_sizes"]
    shards = []
    for rank in range(world):
        done_path = os.path.join(table_dir, fmt.done_name(rank))
        if not os.path.isfile(done_path):
            raise RilError(f"{done_path} is missing: rank {rank} did not finish; re-run the build to resume")
        rank_plan = fmt.read_json_file(os.path.join(table_dir, fmt.plan_name(rank)), "RIL build plan")
        diff = plan_difference(rank_plan, plan)
        if diff:
            raise RilError(f"rank {rank} of {table_dir} was built with other settings ({diff}); "
                           "rebuild with --overwrite")
        shards.append(fmt.read_json_file(done_path, "RIL shard record"))
        ids = np.arange(rank, num_images, world)
        progress = map_npy(os.path.join(table_dir, fmt.progress_name(rank)), "RIL progress file",
                           dtype=fmt.PROGRESS_DTYPE, shape=(len(ids),))
        images["height"][ids] = progress["height"]
        images["width"][ids] = progress["width"]
        images["content_hash"][ids] = progress["content_hash"]
        images["shard"][ids] = rank
        images["first_row"][ids] = np.arange(len(ids), dtype=np.int64) * num_crops
    table_id = uuid.uuid4().hex
    images_path = os.path.join(table_dir, fmt.IMAGES)
    _save_npy_atomic(images_path, images, integrity.part_tag(table_id))
    manifest = dict(plan, table_id=table_id)
    manifest["shards"] = shards
    manifest["images_file"] = {"file": fmt.IMAGES, "checksum": fmt.checksum_file(images_path)}
    fmt.write_json_atomic(os.path.join(table_dir, fmt.MANIFEST), manifest)
    return manifest


def remove_table_files(table_dir):
    """Delete a table's manifest and image table first (so it stops being a table), then all rank files."""
    if not os.path.isdir(table_dir):
        return
    for name in (fmt.MANIFEST, fmt.IMAGES):
        path = os.path.join(table_dir, name)
        if os.path.exists(path):
            os.remove(path)
    prefixes = ("shard-", "progress-", "plan-", "done-", "features-")
    for name in os.listdir(table_dir):
        if name.startswith(prefixes) and name.endswith((".npy", ".json", ".tmp")):
            os.remove(os.path.join(table_dir, name))
    remove_temporaries(table_dir)
