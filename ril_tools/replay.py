"""FDBPL's training data: replay of the crops stored in an RIL table.

For epoch ``e`` and training image ``n`` the loader serves crop ``m(e, n) = crop_schedule(seed, e, key(n), M)``
of the table: the image is decoded, cut with the stored box (``ril_tools.format.crop_box_pixels``), resized
to ``INPUT.SIZE`` with ``INPUT.INTERPOLATION``, flipped if the record says so (resize then flip, the order
the build used), and normalised with ``INPUT.PIXEL_MEAN/STD``. Each item also carries the record's sparse
teacher label (top-K ``ril_idx`` / ``ril_logp``) and information weight ``w``. Densification into a dense
[B, C] label happens later, batched, on the training device (:func:`teacher_targets`).

The epoch reaches loader workers through the indices themselves: :class:`EpochSampler` lives in the main
process, has ``set_epoch()``, and yields ``epoch * N + n``; workers (persistent or not) hold no epoch state.

The table is checked against the run before the first step (``ril_tools.table_check.open_ril_table``). With
``TRAINER.FDBPL.CHECK_IMAGE_HASH`` every image read is also hashed against the fingerprint taken at
build time (one BLAKE2b pass over bytes that are read anyway, ~1 ms per MB).
"""


import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import functional as TF

from engine.data.transforms import INTERPOLATION_MODES
from engine.errors import ConfigError, RilError
from engine.utils import read_image
from ril_tools import format as fmt
from ril_tools.crops import crop_schedule, stream_key
from ril_tools.integrity import read_image_with_hash
from ril_tools.labels import densify, teacher_argmax
from ril_tools.plan import relpath_of

__all__ = ["LABEL_MODES", "EpochSampler", "RilReplayDataset", "build_ril_loader", "flatten_crops", "replay_crop",
           "replay_tensor", "teacher_targets"]

LABEL_MODES = ("full", "ms", "mr")
STREAM_SHUFFLE = 3  # ril_tools.crops uses streams 1 (crops) and 2 (crop schedule)
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


def build_ril_loader(cfg, data_source, table, seed=None, features=None, crops_per_image=1):
    """The training loader of every table-fed method: :class:`RilReplayDataset` + :class:`EpochSampler`
    (``seed`` drives both; default the run's ``SEED``, or a random one when it is negative).

    ``DATALOADER.TRAIN_X.SAMPLER SequentialSampler`` keeps the image order fixed; anything else shuffles.
    The last partial batch is kept (no few-shot image is skipped).
    """
    if seed is None:
        seed = cfg.SEED if cfg.SEED >= 0 else int(torch.randint(0, 2**31 - 1, ()).item())
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
