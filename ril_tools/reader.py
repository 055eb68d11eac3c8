"""Reading an RIL table: read-only memory maps, integrity checks, run matching, batched fetch."""

import mmap
import os

import numpy as np

from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools import integrity

# Tables up to this size get a full checksum pass on open with verify="auto" (~0.1 s per GB, warm) and
# have all their pages mapped up front with populate="auto" (training-sized tables live in page cache).
AUTO_VERIFY_BYTES = 2 << 30
VERIFY_MODES = ("full", "auto", "size")


def _npy_layout(path, what):
    """(shape, dtype, data offset) of a .npy file, without reading its data."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version} is not one numpy.save writes for this table")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as exc:
        raise RilError(f"{what} {path} is not a readable .npy file ({exc}); rebuild the table") from None
    if fortran or dtype.hasobject:
        raise RilError(f"{what} {path} has an unexpected layout; rebuild the table")
    return shape, dtype, offset


def map_npy(path, what, populate=False, dtype=None, shape=None, tag=None):
    """Read-only memory map of a .npy file (np.load(mmap_mode="r") semantics, plus two kernel hints).

    Never unpickles: the header is parsed first and object dtypes are refused. ``dtype`` / ``shape``:
    what the array must be. ``tag``: the part tag that must follow the data (``ril_tools.integrity``).
    ``populate``: map every page up front (MAP_POPULATE; the file is read once if not cached), so
    random reads later take no page faults: ~0.1 ms per 500 records instead of ~1 us per record per
    fault. Otherwise MADV_RANDOM: a cold random read faults in one page, not a 128 KiB read-ahead.
    """
    if not os.path.isfile(path):
        raise RilError(f"{what} {path} is missing; the table is incomplete, rebuild it")
    found_shape, found_dtype, offset = _npy_layout(path, what)
    if (dtype is not None and found_dtype != dtype) or (shape is not None and found_shape != tuple(shape)):
        raise RilError(f"{what} {path} holds {found_shape} of {found_dtype}, the manifest implies "
                       f"{tuple(shape) if shape is not None else found_shape} of {dtype or found_dtype}; "
                       "rebuild the table")
    shape, dtype = found_shape, found_dtype
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    extra = len(tag) if tag is not None else 0
    if size < offset + nbytes + extra:
        raise RilError(f"{what} {path} is truncated ({size} bytes, needs {offset + nbytes + extra}); "
                       "rebuild the table")
    if tag is not None:
        with open(path, "rb") as f:
            f.seek(offset + nbytes)
            tail = f.read()
        if tail != tag:
            found = tail[len(integrity.TAG_PREFIX):].decode("ascii", "replace") \
                if tail.startswith(integrity.TAG_PREFIX) else "none"
            raise RilError(f"{what} {path} belongs to another table or is damaged (its build id is {found!r}, "
                           f"the manifest expects {tag[len(integrity.TAG_PREFIX):].decode()}); do not mix files of "
                           "two tables, rebuild the table")
    if nbytes == 0:
        return np.empty(shape, dtype=dtype)
    flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
    with open(path, "rb") as f:
        handle = mmap.mmap(f.fileno(), offset + nbytes, flags=flags, prot=mmap.PROT_READ)
    if not populate and hasattr(mmap, "MADV_RANDOM"):
        try:
            handle.madvise(mmap.MADV_RANDOM)
        except OSError:
            pass
    return np.ndarray(shape, dtype=dtype, buffer=handle, offset=offset)


class RilTable:
    """An opened, checked RIL table. Build it with ``python -m ril_tools.build``; open with :meth:`open`."""

    def __init__(self, path, manifest, images, populate=False):
        self.path = path
        self.populate = populate
        self.manifest = manifest
        self.images = images
        self.record_dtype = fmt.record_dtype(manifest["k"], manifest["num_classes"], manifest["logp_dtype"])
        self._shards = None
        # True once every record passed integrity.record_problem; until then fetch() checks what it reads.
        self.records_checked = False

    # ---------------------------------------------------------------------------------- opening

    @classmethod
    def open(cls, path, verify="auto", populate="auto"):
        """Open a table read-only. ``verify``: "full" hashes every file, "size" checks only shapes and
        sizes, "auto" hashes tables up to AUTO_VERIFY_BYTES (training-sized ones) and sizes the rest.
        ``populate`` (True / False / "auto" = up to AUTO_VERIFY_BYTES): map all pages at open, for the
        fastest random reads while training; False suits a quick look at a huge table."""
        if verify not in VERIFY_MODES:
            raise RilError(f"unknown verify mode {verify!r}; use one of {', '.join(VERIFY_MODES)}")
        path = os.fspath(path)
        manifest = fmt.read_manifest(path)  # also checks every field's type and the counts
        images_path = os.path.join(path, fmt.IMAGES)
        if fmt.checksum_file(images_path) != manifest["images_file"]["checksum"]:
            raise RilError(f"{images_path} does not match its checksum in the manifest; rebuild the table")
        images = np.array(map_npy(images_path, "RIL image table", dtype=fmt.IMAGE_DTYPE,
                                  shape=(manifest["num_images"],), tag=integrity.part_tag(manifest["table_id"])))
        integrity.check_image_table(images, manifest, images_path)
        total = sum(int(s["rows"]) for s in manifest["shards"]) * \
            fmt.record_dtype(manifest["k"], manifest["num_classes"], manifest["logp_dtype"]).itemsize
        populate = total <= AUTO_VERIFY_BYTES if populate == "auto" else bool(populate)
        table = cls(path, manifest, images, populate=populate)
        full = verify == "full" or (verify == "auto" and total <= AUTO_VERIFY_BYTES)
        if full:
            table.verify_checksums()  # first: it also brings the files into page cache for the mapping
        table._open_shards()
        if full:
            table.check_all_records()
        return table

    def _open_shards(self):
        shards = []
        for info in self.manifest["shards"]:
            shard_path = os.path.join(self.path, info["file"])
            shards.append(map_npy(shard_path, "RIL shard", self.populate, dtype=self.record_dtype,
                                  shape=(int(info["rows"]),), tag=integrity.part_tag(info["part_id"])))
        self._shards = shards

    @property
    def shards(self):
        if self._shards is None:  # e.g. after unpickling in a DataLoader worker
            self._open_shards()
        return self._shards

    def __getstate__(self):
        # Memory maps must not be pickled (spawned DataLoader workers would copy whole shards).
        state = dict(self.__dict__)
        state["_shards"] = None
        return state

    def verify_checksums(self):
        """Hash every shard and compare with the manifest; RilError naming the first bad file."""
        for info in self.manifest["shards"]:
            shard_path = os.path.join(self.path, info["file"])
            if fmt.checksum_file(shard_path) != info["checksum"]:
                raise RilError(f"RIL shard {shard_path} does not match its checksum (corrupt or modified); "
                               "rebuild the table")

    def check_all_records(self, chunk_bytes=256 << 20):
        """Check the values of every record, a chunk at a time (vectorised); RilError names the first bad row."""
        chunk = max(1, chunk_bytes // self.record_dtype.itemsize)
        for s, shard in enumerate(self.shards):
            for start in range(0, len(shard), chunk):
                self._check_records(np.asarray(shard[start:start + chunk]), s, start + np.arange(
                    min(chunk, len(shard) - start)))
        self.records_checked = True

    def _check_records(self, rec, shard, rows):
        problem = integrity.record_problem(rec, self.num_classes)
        if problem is None:
            return
        i, what = problem
        row = int(rows[i])
        local, crop = divmod(row, self.num_crops)
        image = int(shard) + local * int(self.manifest["world_size"])
        raise RilError(f"RIL table {self.path}: {self.manifest['shards'][shard]['file']} row {row} (image {image} "
                       f"{self.manifest['dataset']['relpaths'][image]}, crop {crop}) has a {what} "
                       f"({integrity.describe_record(rec[i])}); the build wrote bad labels, rebuild the table")

    # ------------------------------------------------------------------------------ description

    num_images = property(lambda self: int(self.manifest["num_images"]))
    num_crops = property(lambda self: int(self.manifest["num_crops"]))
    k = property(lambda self: int(self.manifest["k"]))
    num_classes = property(lambda self: int(self.manifest["num_classes"]))
    classnames = property(lambda self: list(self.manifest["classnames"]))
    label_kind = property(lambda self: self.manifest["label_kind"])
    teacher = property(lambda self: self.manifest["teacher"])
    fingerprint = property(lambda self: self.manifest["dataset"]["fingerprint"])
    relpaths = property(lambda self: list(self.manifest["dataset"]["relpaths"]))
    seed = property(lambda self: int(self.manifest["seed_scheme"]["seed"]))

    def __len__(self):
        return self.num_images * self.num_crops

    def _rebuild_hint(self):
        argv = self.manifest.get("run", {}).get("command")
        hint = f"rebuild it with python -m ril_tools.build ... --output {self.path} --overwrite"
        return hint + (f" (it was built by: {argv})" if argv else "")

    def check_matches(self, classnames=None, fingerprint=None, teacher=None, k=None, num_crops=None,
                      label_kind=None):
        """Refuse a table built for another run: RilError naming the first difference and the fix.
        Arguments left as None are not checked; ``teacher`` is compared with the stored teacher name."""
        problems = []
        if classnames is not None and list(classnames) != self.classnames:
            diff = _first_list_difference(self.classnames, list(classnames))
            problems.append(f"class list differs ({diff})")
        if fingerprint is not None and fingerprint != self.fingerprint:
            problems.append(f"training images differ (fingerprint {self.fingerprint[:19]} in the table, "
                            f"{fingerprint[:19]} now)")
        if teacher is not None and teacher not in (self.teacher.get("name"), self.teacher.get("resolved")):
            problems.append(f"teacher differs ({self.teacher.get('name')!r} in the table, {teacher!r} requested)")
        if k is not None and int(k) != self.k:
            problems.append(f"top-K differs ({self.k} in the table, {k} requested)")
        if num_crops is not None and int(num_crops) != self.num_crops:
            problems.append(f"crops per image differ ({self.num_crops} in the table, {num_crops} requested)")
        if label_kind is not None and label_kind != self.label_kind:
            problems.append(f"label kind differs ({self.label_kind!r} in the table, {label_kind!r} requested)")
        if problems:
            raise RilError(f"RIL table {self.path} does not match this run: {'; '.join(problems)}; "
                           f"{self._rebuild_hint()}")

    verify_against = check_matches  # the name used in docs/ARCHITECTURE.md

    def image_ids(self, relpaths):
        """Image ids for paths relative to the dataset root ("/"-separated) -> int64 [B]."""
        lookup = getattr(self, "_id_of", None)
        if lookup is None:
            lookup = self._id_of = {p: i for i, p in enumerate(self.manifest["dataset"]["relpaths"])}
        try:
            return np.fromiter((lookup[p] for p in relpaths), dtype=np.int64)
        except KeyError as exc:
            raise RilError(f"image {exc.args[0]} is not in RIL table {self.path}; build a table that holds the run's "
                           "images: python -m ril_tools.build with the run's flags and options, adding --seeds/--shots "
                           "for the union of several runs' few-shot subsets") from None

    def crop_keys(self, image_ids):
        """The keys ``ril_tools.crops`` draws crops and crop schedules with for these image ids: the path
        hashes (scheme v2: independent of the table's other images) or the ids themselves (scheme v1)."""
        from ril_tools.crops import SEED_SCHEME_V1

        image_ids = np.asarray(image_ids, dtype=np.int64)
        if self.manifest["seed_scheme"].get("name") == SEED_SCHEME_V1:
            return image_ids
        return self.images["path_hash"][image_ids]

    def image_ids_for_paths(self, impaths, root):
        """Image ids for absolute image paths (``Datum.impath``) under the dataset root -> int64 [B]."""
        from ril_tools.plan import relpath_of

        return self.image_ids([relpath_of(p, root) for p in impaths])

    # ------------------------------------------------------------------------------------ fetch

    def fetch_records(self, image_idx, crop_idx):
        """Raw records (record dtype) of the (image, crop) pairs [B]."""
        image_idx, crop_idx = np.broadcast_arrays(np.asarray(image_idx, np.int64), np.asarray(crop_idx, np.int64))
        image_idx, crop_idx = image_idx.reshape(-1), crop_idx.reshape(-1)
        if image_idx.size and (image_idx.min() < 0 or image_idx.max() >= self.num_images):
            raise RilError(f"image index out of range 0..{self.num_images - 1} for RIL table {self.path}")
        if crop_idx.size and (crop_idx.min() < 0 or crop_idx.max() >= self.num_crops):
            raise RilError(f"crop index out of range 0..{self.num_crops - 1} for RIL table {self.path}")
        rows = self.images["first_row"][image_idx] + crop_idx
        shards = self.shards
        shard_of = self.images["shard"][image_idx]
        if len(shards) == 1:
            out = np.asarray(shards[0][rows])
        else:
            out = np.empty(rows.shape, dtype=self.record_dtype)
            for s in np.unique(shard_of):  # a loop over shards, not records
                mask = shard_of == s
                out[mask] = shards[s][rows[mask]]
        if not self.records_checked:  # a table too large to check at open: check what training reads
            for s in np.unique(shard_of):
                mask = shard_of == s
                self._check_records(out[mask], int(s), rows[mask])
        return out

    def fetch(self, image_idx, crop_idx):
        """Labels of the (image, crop) pairs: dict of numpy arrays ``indices`` int64 [B, K] (best
        first), ``logprobs`` float32 [B, K], ``box`` float32 [B, 4], ``flags`` uint8 [B], ``weight`` float32 [B]."""
        rec = self.fetch_records(image_idx, crop_idx)
        return {
            "indices": rec["idx"].astype(np.int64),
            "logprobs": rec["logp"].astype(np.float32),
            "box": rec["box"].astype(np.float32),
            "flags": rec["flags"].copy(),
            "weight": rec["w"].astype(np.float32),
        }


def _first_list_difference(old, new):
    if len(old) != len(new):
        return f"{len(old)} classes in the table, {len(new)} now"
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return f"class {i} is {a!r} in the table, {b!r} now"
    return "same names"
