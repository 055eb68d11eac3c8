"""The build loop of one rank: decode each image once, cut its crops on the device, batch crops across
images through the teacher, and hand finished images to the :class:`ShardWriter`.

The teacher is any object with ``input_size`` (int), ``mean``/``std`` (3 floats, 0..1 pixel scale) and
``log_probs(x [B, 3, S, S] normalised float on the device) -> float32 [B, C]``. It always runs at
the fixed batch shape ``batch_size`` (the last batch is zero-padded), so a crop's label does not depend
on which other crops share its batch: a resumed or multi-rank build writes the same bytes.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ril_tools import format as fmt
from ril_tools.crops import sample_crops
from ril_tools.integrity import read_image_with_hash
from ril_tools.labels import information_weight


class DecodedImages(Dataset):
    """(local index, uint8 tensor [3, H, W], content hash) for the images still to build; decoding runs
    in workers. The hash is of the very bytes decoded, so the table's fingerprint is of the image it used."""

    def __init__(self, paths, locals_):
        self.paths = list(paths)
        self.locals = [int(i) for i in locals_]

    def __len__(self):
        return len(self.locals)

    def __getitem__(self, i):
        local = self.locals[i]
        image, digest = read_image_with_hash(self.paths[local])
        array = np.asarray(image, dtype=np.uint8)
        return local, torch.from_numpy(array.copy()).permute(2, 0, 1), digest


def resize_weights(n_in, n_out, device):
    """[n_out, n_in] float32 weights of torch's 1-D antialiased bicubic resize n_in -> n_out: the responses to
    unit impulses, so a batched matrix resize uses exactly the filter ``F.interpolate`` uses."""
    key = (int(n_in), int(n_out), str(device))
    weights = _WEIGHTS.get(key)
    if weights is None:
        # 4 identical columns (a 4 -> 4 identity on that axis): with a single column torch's antialiased
        # bicubic returns a constant (torch 2.x), so the impulse response would be wrong
        impulses = torch.eye(n_in, device=device).reshape(n_in, 1, n_in, 1).expand(n_in, 1, n_in, 4).contiguous()
        out = F.interpolate(impulses, size=(n_out, 4), mode="bicubic", align_corners=False, antialias=True)
        weights = _WEIGHTS[key] = out[:, 0, :, 0].T.contiguous()
        if len(_WEIGHTS) > 4096:  # crop sizes of one build are bounded by the image sizes; keep memory bounded
            _WEIGHTS.pop(next(iter(_WEIGHTS)))
    return weights


_WEIGHTS = {}


def batched_resize(pixels, boxes, size):
    """All crops of one image resized in two batched matrix products (one per axis) instead of one
    ``F.interpolate`` call per crop: what keeps a GPU build's host off the critical path. Equal to the
    per-crop path up to float32 summation order (~1e-4 on the 0..255 scale; tests/test_ril_union.py).

    pixels: float32 [3, H, W]; boxes: int (top, left, h, w) [n, 4] -> float32 [n, 3, S, S] (not clamped)."""
    _, height, width = pixels.shape
    boxes = np.asarray(boxes).tolist()
    rows = torch.zeros(len(boxes), size, height, device=pixels.device)
    cols = torch.zeros(len(boxes), size, width, device=pixels.device)
    for j, (top, left, h, w) in enumerate(boxes):
        rows[j, :, top:top + h] = resize_weights(h, size, pixels.device)
        cols[j, :, left:left + w] = resize_weights(w, size, pixels.device)
    tall = torch.einsum("nsh,chw->ncsw", rows, pixels)
    return torch.einsum("ncsw,ntw->ncst", tall, cols)


def make_crops(image, boxes, flips, size, mean, std, batched=None):
    """Cut, resize (bicubic, antialiased) and normalise crops of one image, on the image's device.

    image: [3, H, W] with values 0..255 (uint8 or float32); boxes: int pixel (top, left, h, w) [n, 4];
    flips: bool [n] -> float32 [n, 3, S, S]. ``batched`` (default: on a GPU) resizes all crops at once
    (:func:`batched_resize`); the CPU default keeps one exact ``F.interpolate`` per crop, which is cheaper
    there than the dense matrix products and keeps CPU tables byte-identical to earlier builds.
    """
    pixels = image if image.dtype == torch.float32 else image.float()
    if batched is None:
        batched = image.device.type == "cuda"
    if batched and len(boxes):
        out = batched_resize(pixels, boxes, size)
    else:
        out = torch.empty(len(boxes), 3, size, size, device=image.device)
    for j, (top, left, h, w) in enumerate([] if batched else np.asarray(boxes).tolist()):
        patch = pixels[None, :, top:top + h, left:left + w]  # crops differ in size: one resize each
        out[j] = F.interpolate(patch, size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0]
    flip_rows = torch.from_numpy(np.flatnonzero(np.asarray(flips))).to(image.device)
    if len(flip_rows):
        out[flip_rows] = out[flip_rows].flip(-1)
    mean_t = torch.tensor(mean, device=image.device).view(1, 3, 1, 1) * 255.0
    std_t = torch.tensor(std, device=image.device).view(1, 3, 1, 1) * 255.0
    return (out.clamp_(0.0, 255.0) - mean_t) / std_t


class _ImageState:
    """One image between decode and write: its crops and the labels gathered so far."""

    def __init__(self, local, image, boxes, flips, num_crops, k, digest=0):
        self.local, self.image, self.boxes, self.flips, self.digest = local, image, boxes, flips, digest
        self.height, self.width = int(image.shape[1]), int(image.shape[2])
        self.next_crop = 0  # first crop not yet sent to the teacher
        self.filled = 0     # crops whose labels came back
        self.idx = np.zeros((num_crops, k), dtype=np.int64)
        self.logp = np.zeros((num_crops, k), dtype=np.float32)
        self.w = np.zeros(num_crops, dtype=np.float32)


def _records(state, dtype):
    rec = np.zeros(len(state.boxes), dtype=dtype)
    rec["idx"] = state.idx
    rec["logp"] = state.logp
    rec["box"] = fmt.normalise_box(state.boxes, state.height, state.width)
    rec["flags"] = np.where(state.flips, fmt.FLAG_HFLIP, 0).astype(np.uint8)
    rec["w"] = state.w
    return rec


class RankBuilder:
    """Builds the pending images of one rank into its writer."""

    def __init__(self, writer, paths, image_keys, teacher, crop, seed, k, batch_size, device, workers=0):
        # image_keys[local]: the key the crops are drawn with (ril_tools.crops.image_keys, or ids for scheme v1)
        self.writer, self.paths, self.image_keys = writer, list(paths), np.asarray(image_keys)
        self.teacher, self.crop, self.seed, self.k = teacher, crop, int(seed), int(k)
        self.batch_size, self.device, self.workers = int(batch_size), torch.device(device), int(workers)
        self.num_crops = writer.num_crops
        self.queue = []  # _ImageState with crops still to send, in order
        self.crops_done = 0

    def run(self, progress=None):
        """Build every pending image; ``progress`` is a callable(crops_done_now) or None."""
        pending = self.writer.pending()
        loader = DataLoader(DecodedImages(self.paths, pending), batch_size=None, shuffle=False,
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            prefetch_factor=4 if self.workers else None)
        self.progress = progress
        for local, image, digest in loader:
            self._add(int(local), image.to(self.device, non_blocking=True), int(digest))
            while self._queued() >= self.batch_size:
                self._run_batch()
        while self._queued():
            self._run_batch()
        self.writer.commit()

    def _add(self, local, image, digest=0):
        boxes, flips = sample_crops(self.seed, int(self.image_keys[local]), image.shape[1], image.shape[2], self.num_crops,
                                    self.crop["scale"], self.crop["ratio"], self.crop["flip_p"])
        state = _ImageState(local, image.float(), boxes, flips, self.num_crops, self.k, digest)  # converted once
        self.queue.append(state)

    def _queued(self):
        return sum(self.num_crops - s.next_crop for s in self.queue)

    def _run_batch(self):
        size = self.teacher.input_size
        x = torch.zeros(self.batch_size, 3, size, size, device=self.device)
        owners, filled = [], 0
        while filled < self.batch_size and self.queue:
            state = self.queue[0]
            take = min(self.batch_size - filled, self.num_crops - state.next_crop)
            part = slice(state.next_crop, state.next_crop + take)
            x[filled:filled + take] = make_crops(state.image, state.boxes[part], state.flips[part], size,
                                                 self.teacher.mean, self.teacher.std)
            owners.append((state, part, slice(filled, filled + take)))
            state.next_crop += take
            filled += take
            if state.next_crop == self.num_crops:
                self.queue.pop(0)
                state.image = None  # the decoded image is no longer needed
        logp = self.teacher.log_probs(x)[:filled].float()
        weight = information_weight(logp.exp())
        top_logp, top_idx = torch.topk(logp, self.k, dim=1)  # sorted, best first
        top_logp, top_idx, weight = top_logp.cpu().numpy(), top_idx.cpu().numpy(), weight.cpu().numpy()
        for state, part, rows in owners:
            state.idx[part], state.logp[part], state.w[part] = top_idx[rows], top_logp[rows], weight[rows]
            state.filled += part.stop - part.start
            if state.filled == self.num_crops:
                self.writer.write_image(state.local, _records(state, self.writer.dtype), state.height, state.width,
                                        state.digest)
        self.writer.commit()
        self.crops_done += filled
        if self.progress is not None:
            self.progress(filled)

