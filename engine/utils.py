"""Small helpers shared by the engine, trainers and datasets (files, JSON, images, seeds, meters)."""

import errno
import json
import os
import random
import tempfile
import warnings
from collections import defaultdict

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from engine.errors import DatasetError

__all__ = [
    "mkdir_if_missing",
    "read_json",
    "write_json",
    "listdir_nohidden",
    "check_isfile",
    "read_image",
    "tolist_if_not",
    "set_random_seed",
    "AverageMeter",
    "MetricMeter",
    "compute_accuracy",
    "count_num_param",
    "atomic_write_bytes",
    "remove_stale_temp_files",
    "format_eta",
]


# ------------------------------------------------------------------------------------------- files


def mkdir_if_missing(dirname):
    """Create ``dirname`` (and parents) if it does not exist; safe when another process races us."""
    if not dirname or os.path.isdir(dirname):
        return
    try:
        os.makedirs(dirname)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise


def check_isfile(fpath):
    """True if ``fpath`` is an existing file; warns (does not raise) otherwise, like Dassl."""
    isfile = os.path.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"')
    return isfile


def listdir_nohidden(path, sort=False):
    """Entries of ``path`` whose names do not start with '.'; sorted if ``sort``."""
    items = [name for name in os.listdir(path) if not name.startswith(".")]
    if sort:
        items.sort()
    return items


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files with mode 0600; atomic writes restore the usual mode (0666 minus the umask).
_FILE_MODE = 0o666 & ~_current_umask()


TEMP_PREFIX = ".tmp-"


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so a reader never sees a partial file (tmp file + fsync + os.replace)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    mkdir_if_missing(directory)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + "-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        # Leave no temporary file behind; the final name keeps its previous content (if any).
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temp_files(directory):
    """Delete the temporary files :func:`atomic_write_bytes` left in ``directory`` when its process was killed.

    A killed writer cannot clean up after itself, so whoever next writes into or resumes from the folder
    does. Call it only where no other process is writing into ``directory`` at the same time. Returns the
    removed names.
    """
    if not directory or not os.path.isdir(directory):
        return []
    removed = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.startswith(TEMP_PREFIX) and os.path.isfile(path) and not os.path.islink(path):
            try:
                os.remove(path)
            except OSError:  # read-only folder or already gone: nothing to clean up
                continue
            removed.append(name)
    if removed:
        print(f"Removed {len(removed)} temporary file(s) left by an interrupted write in {directory}: "
              f"{', '.join(removed)}")
    return removed


def read_json(fpath):
    """Load a JSON file."""
    with open(fpath, "r", encoding="utf-8") as f:
        return json.load(f)


def write_json(obj, fpath):
    """Write ``obj`` as JSON (indent 4, Dassl's separators), creating parent folders, atomically."""
    text = json.dumps(obj, indent=4, separators=(",", ": "))
    atomic_write_bytes(fpath, text.encode("utf-8"))


def read_image(path):
    """Open an image as a PIL RGB image; a missing or unreadable file raises DatasetError naming it."""
    if not os.path.isfile(path):
        raise DatasetError(f"image not found: {path} (check DATASET.ROOT and the split file)")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"cannot read image {path} ({type(exc).__name__}: {exc}); the file is corrupt, replace it"
        ) from None


def tolist_if_not(x):
    """``x`` itself if it is a list, else ``[x]``."""
    if not isinstance(x, list):
        x = [x]
    return x


# ------------------------------------------------------------------------------------- randomness


def set_random_seed(seed):
    """Seed Python's ``random``, NumPy, torch (CPU) and all CUDA devices."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)  # a no-op without CUDA


# ----------------------------------------------------------------------------------------- meters


class AverageMeter:
    """Running value, sum, count and average (or an exponential moving average when ``ema``)."""

    def __init__(self, ema=False):
        self.ema = ema
        self.reset()

    def reset(self):
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """A named group of AverageMeters, printed as ``name val (avg)`` with 4 decimals."""

    def __init__(self, delimiter=" "):
        self.meters = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict):
        """Update each named meter with a float or one-element tensor."""
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for name, value in input_dict.items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            self.meters[name].update(value)

    def __str__(self):
        return self.delimiter.join(f"{name} {meter.val:.4f} ({meter.avg:.4f})" for name, meter in self.meters.items())


# ---------------------------------------------------------------------------------------- metrics


def compute_accuracy(output, target, topk=(1,)):
    """Top-k accuracies in percent, one 1-element tensor per k; a tuple/list output uses its first element."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    res = []
    for k in topk:
        correct_k = correct[:k].reshape(-1).float().sum(0, keepdim=True)
        res.append(correct_k.mul_(100.0 / batch_size))
    return res


def count_num_param(model=None, params=None):
    """Total number of elements over the parameters of ``model`` (or the iterable ``params``)."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        return sum(p.numel() for p in params)
    raise ValueError("count_num_param needs a model or params")


def format_eta(seconds):
    """Seconds as ``H:MM:SS`` (hours unbounded, no days), like ``str(datetime.timedelta)``."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
