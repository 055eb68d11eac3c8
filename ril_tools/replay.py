"""FDBPL's training data: replay of the crops stored in an RIL table.

For epoch ``e`` and training image ``n`` the loader serves crop ``m(e, n) = crop_schedule(seed, e, key(n), M)``
of the table: the image is decoded, cut with the stored box (``ril_tools.format.crop_box_pixels``), resized
to ``INPUT.SIZE`` with ``INPUT.INTERPOLATION``, flipped if the record says so (resize then flip, the order
the build used), and normalised with ``INPUT.PIXEL_MEAN/STD``. Each item also carries the record's sparse
teacher label (top-K ``ril_idx`` / ``ril_logp``) and information weight ``w``. Densification into a dense
[B, C] label happens later, batched, on the training device (:func:`teacher_targets`).

The epoch reaches loader workers through the indices themselves: :class:`EpochSampler` lives in the main
process, has ``set_epoch()``, and yields ``epoch * N + n``; workers (persistent or not) hold no epoch state.

The table is checked against the run before the first step (:func:`open_ril_table`); every failure names
what differs and gives the ``python -m ril_tools.build`` command that builds the right table. What is
checked: the table's own integrity (``RilTable.open``: manifest fields, parts of one build, checksums and
every record's values for tables up to 2 GiB; larger tables check each record as it is read), the run's
ordered image list and byte sizes, class names, the teacher's prompt strings (CoOp's "_" -> " " rule) and
K. With ``TRAINER.FDBPL.CHECK_IMAGE_HASH`` every image read is also hashed against the fingerprint taken at
build time (one BLAKE2b pass over bytes that are read anyway, ~1 ms per MB).
"""

import glob
import os
import shlex

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import functional as TF

from engine.data.transforms import INTERPOLATION_MODES
from engine.errors import ConfigError, RilError
from engine.utils import read_image
from ril_tools import format as fmt
from ril_tools.crops import crop_schedule, stream_key
from ril_tools.integrity import read_image_with_hash
from ril_tools.labels import densify, teacher_argmax
from ril_tools.plan import relpath_of, training_image_list

__all__ = [
    "LABEL_MODES",
    "EpochSampler",
    "RilReplayDataset",
    "build_ril_loader",
    "flatten_crops",
    "open_ril_table",
    "rebuild_command",
    "replay_crop",
    "teacher_targets",
]

LABEL_MODES = ("full", "ms", "mr")
STREAM_SHUFFLE = 3  # ril_tools.crops uses streams 1 (crops) and 2 (crop schedule)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What `python -m ril_tools.build` uses when nothing else is known (FDBPL paper: ViT-L/14 teacher, M = 500).
BUILD_DEFAULTS = {"teacher": "ViT-L/14", "template": "a photo of a {}.", "num_crops": 500, "k": 20,
                  "label_kind": "topk"}


# ------------------------------------------------------------------------------------- the sampler


class EpochSampler(Sampler):
    """Indices ``epoch * N + n`` for the images n of one epoch, shuffled by a (seed, epoch) generator.

    Owned by the main process; call :meth:`set_epoch` before iterating. The order depends only on
    (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(self, num_items, seed, shuffle=True):
        if num_items < 1:
            raise ConfigError("the FDBPL training set is empty; check DATASET.NUM_SHOTS and DATASET.SUBSAMPLE_CLASSES")
        self.num_items, self.seed, self.shuffle = int(num_items), int(seed), bool(shuffle)
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def order(self, epoch):
        """Image positions n in the order epoch ``epoch`` visits them (int64 [N])."""
        if not self.shuffle:
            return torch.arange(self.num_items)
        key = int(stream_key(self.seed, STREAM_SHUFFLE, epoch, 0)[()]) & ((1 << 63) - 1)
        return torch.randperm(self.num_items, generator=torch.Generator().manual_seed(key))

    def __iter__(self):
        base = self.epoch * self.num_items
        return iter((base + self.order(self.epoch)).tolist())

    def __len__(self):
        return self.num_items


# ------------------------------------------------------------------------------------- the dataset


def replay_crop(image, box, flip, size, interpolation):
    """A stored crop of a PIL image: cut ``box`` (pixel top, left, h, w), resize to ``size`` (h, w), flip.

    Resize before flip, as the build did; returns a PIL image.
    """
    top, left, h, w = (int(v) for v in box)
    out = TF.resized_crop(image, top, left, h, w, list(size), interpolation=interpolation, antialias=True)
    return TF.hflip(out) if flip else out


def replay_tensor(image, box, flags, size, interpolation, mean, std):
    """The normalised float [3, H, W] crop of a PIL image for a stored record's normalised ``box`` and
    ``flags``: what training feeds the image encoder, and what ``ril_tools.student_features`` encodes."""
    pixel_box = fmt.crop_box_pixels(box, image.height, image.width)
    flip = bool(int(flags) & fmt.FLAG_HFLIP)
    pixels = TF.to_tensor(replay_crop(image, pixel_box, flip, size, interpolation))
    return TF.normalize(pixels, mean, std)


class RilReplayDataset(Dataset):
    """Item ``epoch * N + n`` -> the table's crop m(epoch, n) of ``data_source[n]`` with its sparse label.

    Returns a dict: ``img`` float [3, H, W] (normalised; or, with cached ``features``, ``feat`` float32 [E],
    the stored L2-normalised student feature of the same crop), ``ril_idx`` int64 [K], ``ril_logp`` float32 [K],
    ``w`` float32, ``label`` (the dataset's hard label, unused by the loss), ``domain``, ``impath``,
    ``index`` (n), ``epoch``, ``crop`` (m).
    """

    def __init__(self, cfg, data_source, table, schedule_seed, features=None, crops_per_image=1):
        self.data_source = list(data_source)
        # several crops of one image per item (TRAINER.FDBPL.CROPS_PER_IMAGE): see _getitem_crops
        self.crops_per_image = int(crops_per_image)
        self.table = table
        # cached student features [num_images * M, E] (ril_tools.student_features): served as ``feat``
        # instead of decoding and cutting the image
        self.features = features
        self.schedule_seed = int(schedule_seed)
        relpaths = [relpath_of(item.impath, cfg.DATASET.ROOT) for item in self.data_source]
        self.image_ids = table.image_ids(relpaths)
        self.num_crops = table.num_crops
        self.size = tuple(int(s) for s in cfg.INPUT.SIZE)
        if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
            raise ConfigError(f"INPUT.INTERPOLATION {cfg.INPUT.INTERPOLATION!r} is not one of "
                              f"{', '.join(INTERPOLATION_MODES)}")
        self.interpolation = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
        self.mean = list(cfg.INPUT.PIXEL_MEAN)
        self.std = list(cfg.INPUT.PIXEL_STD)
        self.check_hash = bool(cfg.TRAINER.FDBPL.get("CHECK_IMAGE_HASH", False))

    def _read(self, impath, image_id):
        if not self.check_hash:
            return read_image(impath)
        image, digest = read_image_with_hash(impath)
        want = int(self.table.images["content_hash"][image_id])
        if digest != want:
            raise RilError(f"image {impath} is not the file RIL table {self.table.path} was built on (content "
                           f"hash {digest:016x}, the table has {want:016x}); restore the original image or "
                           "rebuild the table for this copy of the dataset")
        return image

    def __len__(self):
        return len(self.data_source)

    def crop_ids(self, epoch, positions):
        """The crop ids m(epoch, n) for image positions ``positions`` (int64 [B]); keyed by the image's path
        (``RilTable.crop_keys``), so a run's schedule is the same from any table that holds its images."""
        keys = self.table.crop_keys(self.image_ids[np.asarray(positions)])
        return crop_schedule(self.schedule_seed, epoch, keys, self.num_crops)

    def __getitem__(self, idx):
        if self.crops_per_image > 1:
            return self._getitem_crops(idx)
        epoch, n = divmod(int(idx), len(self.data_source))
        item = self.data_source[n]
        image_id = int(self.image_ids[n])
        crop = int(self.crop_ids(epoch, [n])[0])
        rec = self.table.fetch([image_id], [crop])
        if self.features is not None:
            row = np.array(self.features[image_id * self.num_crops + crop], dtype=np.float32)
            if not np.isfinite(row).all():  # large feature files are not scanned at open: check what is read
                raise RilError(f"RIL table {self.table.path}: cached student feature of image {item.impath} crop "
                               f"{crop} is not finite; recompute the features (python -m ril_tools.student_features)")
            pixels = {"feat": torch.from_numpy(row)}
        else:
            image = self._read(item.impath, image_id)
            pixels = {"img": replay_tensor(image, rec["box"][0], rec["flags"][0], self.size, self.interpolation,
                                           self.mean, self.std)}
        return {
            **pixels,
            "ril_idx": torch.from_numpy(rec["indices"][0]),
            "ril_logp": torch.from_numpy(rec["logprobs"][0]),
            "w": torch.tensor(rec["weight"][0], dtype=torch.float32),
            "label": item.label, "domain": item.domain, "impath": item.impath,
            "index": n, "epoch": epoch, "crop": crop,
        }


    def _getitem_crops(self, idx):
        """CROPS_PER_IMAGE = c > 1: the crops m(e * c + j, n), j < c, of one image decoded once (FKD-style), each
        field stacked on a leading [c] axis (``label``... stay per image); with c = 1 this is __getitem__."""
        c = self.crops_per_image
        epoch, n = divmod(int(idx), len(self.data_source))
        item = self.data_source[n]
        image_id = int(self.image_ids[n])
        key = self.table.crop_keys([image_id])
        crops = np.array([int(crop_schedule(self.schedule_seed, epoch * c + j, key, self.num_crops)[0])
                          for j in range(c)], dtype=np.int64)
        rec = self.table.fetch(np.full(c, image_id), crops)
        if self.features is not None:
            rows = np.array(self.features[image_id * self.num_crops + crops], dtype=np.float32)
            if not np.isfinite(rows).all():
                raise RilError(f"RIL table {self.table.path}: cached student feature of image {item.impath} is not "
                               "finite; recompute the features (python -m ril_tools.student_features)")
            pixels = {"feat": torch.from_numpy(rows)}
        else:
            image = self._read(item.impath, image_id)
            pixels = {"img": torch.stack([replay_tensor(image, rec["box"][j], rec["flags"][j], self.size,
                                                        self.interpolation, self.mean, self.std) for j in range(c)])}
        return {
            **pixels,
            "ril_idx": torch.from_numpy(rec["indices"]), "ril_logp": torch.from_numpy(rec["logprobs"]),
            "w": torch.from_numpy(rec["weight"]),
            "label": item.label, "domain": item.domain, "impath": item.impath,
            "index": n, "epoch": epoch, "crop": torch.from_numpy(crops),
        }


def flatten_crops(batch):
    """A batch of CROPS_PER_IMAGE items ([B, c, ...] crop fields) as one of B * c crops (per-image fields repeated)."""
    if batch["ril_idx"].dim() == 2:
        return batch
    c = batch["ril_idx"].shape[1]
    out = dict(batch)
    for key in ("img", "feat", "ril_idx", "ril_logp", "w", "crop"):
        if key in batch:
            out[key] = batch[key].flatten(0, 1)
    for key in ("label", "index", "epoch"):
        if torch.is_tensor(batch.get(key)):
            out[key] = batch[key].repeat_interleave(c)
    return out


def _worker_message(exc, name):
    """The original message of an error a DataLoader worker re-raised with its traceback appended."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last


def _one_line_loader_class():
    from engine.data.manager import OneLineErrorLoader

    class RilLoader(OneLineErrorLoader):
        """Also keeps a worker's RilError (a bad record or a replaced image) to its one line."""

        @staticmethod
        def _clean(iterator):
            try:
                yield from OneLineErrorLoader._clean(iterator)
            except RilError as exc:
                raise RilError(_worker_message(exc, "RilError")) from None

    return RilLoader


def build_ril_loader(cfg, data_source, table, seed, features=None, crops_per_image=1):
    """The FDBPL training loader: :class:`RilReplayDataset` + :class:`EpochSampler` (``seed`` drives both).

    ``DATALOADER.TRAIN_X.SAMPLER SequentialSampler`` keeps the image order fixed; anything else shuffles.
    The last partial batch is kept (no few-shot image is skipped).
    """
    dataset = RilReplayDataset(cfg, data_source, table, seed, features, crops_per_image)
    shuffle = cfg.DATALOADER.TRAIN_X.SAMPLER != "SequentialSampler"
    workers = int(cfg.DATALOADER.NUM_WORKERS)
    return _one_line_loader_class()(dataset, batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                   sampler=EpochSampler(len(dataset), seed, shuffle), num_workers=workers, drop_last=False,
                   pin_memory=bool(cfg.USE_CUDA and torch.cuda.is_available()), persistent_workers=workers > 0)


def teacher_targets(batch, num_classes, mode, device):
    """Dense teacher labels from a replay batch, on ``device``: (probs [B, C] float32, argmax [B], w [B])."""
    idx = batch["ril_idx"].to(device, non_blocking=True)
    logp = batch["ril_logp"].to(device, non_blocking=True)
    w = batch["w"].to(device, non_blocking=True)
    return densify(idx, logp, num_classes, mode), teacher_argmax(idx), w


# ------------------------------------------------------------------------ opening and checking


def _dataset_config_file(name):
    """The configs/datasets YAML whose DATASET.NAME is ``name`` (for the printed build command)."""
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "datasets", "*.yaml"))):
        try:
            with open(path, encoding="utf-8") as f:
                if (yaml.safe_load(f) or {}).get("DATASET", {}).get("NAME") == name:
                    return os.path.relpath(path, os.getcwd()) if path.startswith(os.getcwd()) else path
        except (OSError, yaml.YAMLError, AttributeError):
            continue
    return f"configs/datasets/{name.lower()}.yaml"


def _int_list(value):
    """A manifest's seeds/shots field (an int or a list of ints) as a sorted list; None if malformed."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(type(v) is int for v in values):
        return None
    return sorted(set(values))


def _union_for_run(cfg, manifest):
    """(seeds, shots) of a table that serves this run AND every run the table served: the table's few-shot
    subsets plus the run's, when the table holds the same dataset and class subset; else None (a table of
    this run's images alone is the fitting one)."""
    info = (manifest or {}).get("dataset")
    if not isinstance(info, dict) or info.get("name") != cfg.DATASET.NAME \
            or info.get("subsample") != str(cfg.DATASET.SUBSAMPLE_CLASSES):
        return None
    seeds = _int_list(info.get("seeds", info.get("few_shot_seed")))
    shots = _int_list(info.get("shots", info.get("num_shots")))
    if seeds is None or shots is None:
        return None
    seeds, shots = sorted(set(seeds) | {int(cfg.SEED)}), sorted(set(shots) | {int(cfg.DATASET.NUM_SHOTS)})
    return (seeds, shots) if len(seeds) * len(shots) > 1 else None


def rebuild_command(cfg, output, manifest=None, node="FDBPL", overwrite=None):
    """The ``python -m ril_tools.build`` command that builds ``output`` so that this run accepts it.

    Teacher, template and M are the table's (``manifest``) when one is given, else the paper's defaults; K and
    the label kind are the run's when it asks for them (``TRAINER.<node>.TOPK``, ``LABEL_MODE full``), else the
    table's. When the table holds few-shot subsets of the run's dataset and class subset (one table for many
    runs), the command builds the union of those subsets and the run's (``--seeds``/``--shots``, the table's crop
    seed), so the rebuilt table still serves every run the old one served. Flags come before the KEY VALUE
    options (the CLI's last argument swallows the rest). A prompted teacher (``teacher.prompts_checkpoint``, PromptKD's)
    gets ``--teacher-prompts`` instead of a template. ``--overwrite`` when a manifest is given (or ``overwrite``).
    """
    m = manifest or {}
    teacher_info = m.get("teacher") or {}
    teacher = teacher_info.get("name", BUILD_DEFAULTS["teacher"])
    run = cfg.TRAINER[node] if node in cfg.TRAINER else {}
    label_kind = "full" if run.get("LABEL_MODE") == "full" else m.get("label_kind", BUILD_DEFAULTS["label_kind"])
    k = int(run.get("TOPK", 0) or 0) or m.get("k", BUILD_DEFAULTS["k"])
    union = _union_for_run(cfg, m)
    seed = cfg.SEED
    if union is not None:
        scheme_seed = (m.get("seed_scheme") or {}).get("seed")
        seed = scheme_seed if type(scheme_seed) is int else union[0][0]
    args = ["python", "-m", "ril_tools.build", "--root", cfg.DATASET.ROOT, "--seed", str(seed),
            "--dataset-config-file", _dataset_config_file(cfg.DATASET.NAME),
            "--output", output, "--teacher", teacher]
    if teacher_info.get("prompts_checkpoint"):
        args += ["--teacher-prompts", teacher_info["prompts_checkpoint"],
                 "--teacher-ctx-init", teacher_info.get("ctx_init", "a photo of a")]
    else:
        args += ["--template", m.get("template", BUILD_DEFAULTS["template"])]
    args += ["--num-crops", str(m.get("num_crops", BUILD_DEFAULTS["num_crops"]))]
    args += ["--label-kind", "full"] if label_kind == "full" else ["--topk", str(k)]
    if (manifest is not None) if overwrite is None else overwrite:
        args.append("--overwrite")
    if union is not None:
        args += ["--seeds", *map(str, union[0]), "--shots", *map(str, union[1])]
    args += ["DATASET.NUM_SHOTS", str(cfg.DATASET.NUM_SHOTS),
             "DATASET.SUBSAMPLE_CLASSES", str(cfg.DATASET.SUBSAMPLE_CLASSES)]
    scale = tuple(float(s) for s in cfg.INPUT.RRCROP_SCALE)
    if scale != (0.08, 1.0):
        args += ["INPUT.RRCROP_SCALE", f"({scale[0]}, {scale[1]})"]
    return " ".join(shlex.quote(str(a)) for a in args)


def _list_difference(what, old, new):
    old_set, new_set = set(old), set(new)
    missing = [x for x in new if x not in old_set]
    extra = [x for x in old if x not in new_set]
    if missing or extra:
        first = f"e.g. {missing[0]!r} is not in the table" if missing else f"e.g. {extra[0]!r} is not in this run"
        return f"{what} differ ({len(old)} in the table, {len(new)} in this run, {first})"
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return f"{what} are in another order ({i}: {a!r} in the table, {b!r} in this run)"
    return ""


def _table_problems(table, cfg, classnames, image_list, node="FDBPL"):
    """Human-readable differences between the table and this run (empty list when it matches)."""
    from datasets.templates import class_prompts

    problems = []
    diff = _list_difference("class names", table.classnames, list(classnames))
    if diff:
        problems.append(diff)
    else:
        prompts = class_prompts(table.manifest["template"], classnames)
        diff = _list_difference("teacher prompts", table.manifest["prompts"], prompts)
        if diff:
            problems.append(diff + " (the table's teacher read other prompt strings than this run's classes give)")
    # A table may hold more images than the run (one table for many few-shot subsets): every training image
    # must be in it. Crops are keyed by the image's path (ril_tools.crops), so the extra images change nothing.
    ids = {p: i for i, p in enumerate(table.relpaths)}
    missing = [p for p in image_list["relpaths"] if p not in ids]
    if missing:
        problems.append(f"{len(missing)} of this run's {len(image_list['relpaths'])} training images are not in "
                        f"the table (e.g. image {missing[0]!r})")
    else:
        # the table's images must be in the run's (sorted) order: image id = position, and the records of id i
        # are the crops of the image at position i
        runset = set(image_list["relpaths"])
        diff = _list_difference("training images", [p for p in table.relpaths if p in runset],
                                image_list["relpaths"])
        if diff:
            problems.append(diff)
        sizes = table.manifest["dataset"]["file_sizes"]
        changed = [(p, s) for p, s in zip(image_list["relpaths"], image_list["file_sizes"]) if sizes[ids[p]] != s]
        if changed:
            p, s = changed[0]
            problems.append(f"{len(changed)} training image files differ in size (e.g. {p!r}: "
                            f"{sizes[ids[p]]} bytes in the table, {s} now; were images replaced?)")
    mode, num_classes = cfg.TRAINER[node].LABEL_MODE, len(classnames)
    if mode == "full" and table.k != num_classes:
        problems.append(f"LABEL_MODE full needs all {num_classes} classes stored but the table keeps top-K={table.k}")
    wanted_k = int(cfg.TRAINER[node].get("TOPK", 0))  # 0 accepts the table's K
    if wanted_k and mode != "full" and wanted_k != table.k:
        problems.append(f"top-K differs ({table.k} in the table, TRAINER.{node}.TOPK {wanted_k})")
    if problems:
        info = table.manifest.get("dataset", {})
        problems.append(f"the table was built for {info.get('name')} NUM_SHOTS {info.get('num_shots')} "
                        f"SUBSAMPLE_CLASSES {info.get('subsample')} seed {info.get('few_shot_seed')}, this run is "
                        f"{cfg.DATASET.NAME} NUM_SHOTS {cfg.DATASET.NUM_SHOTS} SUBSAMPLE_CLASSES "
                        f"{cfg.DATASET.SUBSAMPLE_CLASSES} seed {cfg.SEED}")
    return problems


def _readable_manifest(path):
    """The manifest as plain JSON if it is a JSON object (for the rebuild command), else None."""
    try:
        manifest = fmt.read_json_file(os.path.join(path, fmt.MANIFEST), "RIL manifest")
    except RilError:
        return None
    if not isinstance(manifest, dict):
        return None
    # only well-typed fields reach the command line
    kept = {k: manifest[k] for k in ("template", "label_kind") if isinstance(manifest.get(k), str)}
    kept.update({k: manifest[k] for k in ("num_crops", "k") if type(manifest.get(k)) is int})
    teacher = manifest.get("teacher")
    if isinstance(teacher, dict) and isinstance(teacher.get("name"), str):
        kept["teacher"] = {k: teacher[k] for k in ("name", "prompts_checkpoint", "ctx_init")
                           if isinstance(teacher.get(k), str)}
    # which few-shot subsets it held (so the rebuild keeps serving them); _union_for_run checks the types
    info, scheme = manifest.get("dataset"), manifest.get("seed_scheme")
    if isinstance(info, dict):
        kept["dataset"] = {k: info[k] for k in ("name", "subsample", "seeds", "shots", "few_shot_seed", "num_shots")
                           if k in info}
    if isinstance(scheme, dict) and type(scheme.get("seed")) is int:
        kept["seed_scheme"] = {"seed": scheme["seed"]}
    return kept


def open_ril_table(cfg, items, classnames, node="FDBPL"):
    """Open ``TRAINER.<node>.RIL_DIR`` and check it against this run (images, classes, K); returns the table.

    ``node`` is the config node holding RIL_DIR and LABEL_MODE (and optionally TOPK): table-fed KDPL
    passes "KDPL", so its errors name its own keys.

    Empty RIL_DIR -> ConfigError; missing/incomplete/corrupt table or a table for another run -> RilError;
    both name the ``python -m ril_tools.build`` command that makes the right table.
    """
    from ril_tools.reader import RilTable

    path = cfg.TRAINER[node].RIL_DIR
    if not path:
        example = rebuild_command(cfg, "ril/<dataset>/shots_<N>/seed<S>/<subsample>_vit_l14_M500_K20", node=node)
        raise ConfigError(f"TRAINER.{node}.RIL_DIR is empty; FDBPL trains from a prebuilt RIL table: build one with "
                          f"{example} (or bash scripts/fdbpl/build_ril.sh DATASET SEED) and pass "
                          f"TRAINER.{node}.RIL_DIR <that folder>")
    if not os.path.isfile(os.path.join(path, fmt.MANIFEST)):
        state = "has no manifest.json (an unfinished build: re-running it resumes)" if os.path.isdir(path) \
            else "does not exist"
        raise RilError(f"RIL table {path} {state}; build it with: {rebuild_command(cfg, path, node=node)}")
    try:
        table = RilTable.open(path)
    except RilError as exc:  # corrupt, edited or old-format: say how to rebuild it for this run
        manifest = _readable_manifest(path)
        # an empty manifest still asks for --overwrite: the folder holds a (bad) table
        raise RilError(f"{exc}; the command that rebuilds it for this run: "
                       f"{rebuild_command(cfg, path, manifest or {}, node)}") from None
    if cfg.TRAINER[node].LABEL_MODE not in LABEL_MODES:
        raise ConfigError(f"TRAINER.{node}.LABEL_MODE {cfg.TRAINER[node].LABEL_MODE!r} is not one of "
                          f"{', '.join(LABEL_MODES)}")
    image_list = training_image_list(items, cfg.DATASET.ROOT)
    problems = _table_problems(table, cfg, classnames, image_list, node)
    if problems:
        raise RilError(f"RIL table {path} does not match this run: {'; '.join(problems)}; point "
                       f"TRAINER.{node}.RIL_DIR at a table that holds this run's images, or rebuild it with: "
                       f"{rebuild_command(cfg, path, table.manifest, node)}")
    info = table.manifest.get("dataset", {})
    print(f"RIL table {path}: this run ({cfg.DATASET.NAME} NUM_SHOTS {cfg.DATASET.NUM_SHOTS} seed {cfg.SEED}) "
          f"trains on {len(image_list['relpaths'])} of its {table.num_images} images (table built for shots "
          f"{info.get('shots', info.get('num_shots'))}, seeds {info.get('seeds', info.get('few_shot_seed'))})")
    return table
