"""Checkpoints in Dassl's layout: ``<dir>/model.pth.tar-<epoch>``, a ``checkpoint`` pointer file, ``model-best.pth.tar``.

Writes are atomic (temporary file + ``os.replace``), so an interrupted save never leaves a truncated
file under the final name. Loading tries ``torch.load(weights_only=True)`` first (our own checkpoints
hold only tensors and plain data) and falls back to a full unpickle for legacy CoOp/Dassl checkpoints,
which pickle scheduler objects. Those are trusted local files; classes from a ``dassl`` package that is
not installed are replaced by a plain stand-in, so ``state_dict`` and ``epoch`` stay readable.
"""

import glob
import io
import os
import pickle
import warnings
from collections import OrderedDict

import torch

from engine.errors import CheckpointError
from engine.utils import atomic_write_bytes, mkdir_if_missing

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "resume_from_checkpoint",
    "load_pretrained_weights",
    "LegacyObject",
    "POINTER_FILE",
    "BEST_FILE",
]

POINTER_FILE = "checkpoint"
BEST_FILE = "model-best.pth.tar"


def _strip_module_prefix(state_dict):
    """Copy of ``state_dict`` without a leading ``module.`` (left by nn.DataParallel) on its keys."""
    stripped = OrderedDict()
    for key, value in state_dict.items():
        stripped[key[7:] if key.startswith("module.") else key] = value
    return stripped


def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True, model_name=""):
    """Save ``state`` (with ``epoch`` and ``state_dict``) to ``save_dir``; returns the file path.

    The file is ``model_name`` if given, else ``model.pth.tar-{state['epoch']}``; the ``checkpoint`` pointer
    file then names it, and ``is_best`` also copies it to ``model-best.pth.tar``.
    """
    mkdir_if_missing(save_dir)
    state = dict(state)
    if remove_module_from_keys and isinstance(state.get("state_dict"), dict):
        state["state_dict"] = _strip_module_prefix(state["state_dict"])

    fname = model_name or f"model.pth.tar-{state['epoch']}"
    fpath = os.path.join(save_dir, fname)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(fpath, data)
    print(f"Checkpoint saved to {fpath}")

    atomic_write_bytes(os.path.join(save_dir, POINTER_FILE), (os.path.basename(fpath) + "\n").encode("utf-8"))

    if is_best:
        best_fpath = os.path.join(os.path.dirname(fpath), BEST_FILE)
        atomic_write_bytes(best_fpath, data)
        print(f'Best checkpoint saved to "{best_fpath}"')
    return fpath


class LegacyObject:
    """Stand-in for a pickled class that cannot be imported (e.g. Dassl's schedulers without Dassl).

    Unpickling restores the object's attributes into ``__dict__`` and keeps the original name in
    ``_legacy_class``, so the surrounding data (state dicts, epoch) stays usable.
    """

    _legacy_class = "?"

    def __init__(self, *args, **kwargs):
        self._legacy_args = args

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_legacy_state"] = state

    def __repr__(self):
        return f"<LegacyObject {self._legacy_class}>"


def _legacy_stand_in(module, name):
    """A LegacyObject subclass named after the missing class."""
    return type(name, (LegacyObject,), {"_legacy_class": f"{module}.{name}"})


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickler mapping unimportable ``dassl.*`` classes to stand-ins (everything else resolves normally)."""

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if module == "dassl" or module.startswith("dassl."):
                return _legacy_stand_in(module, name)
            raise


class _LegacyPickleModule:
    """A ``pickle_module`` for ``torch.load`` that uses :class:`_LegacyUnpickler`."""

    Unpickler = _LegacyUnpickler
    load = pickle.load
    __name__ = "fdbpl_legacy_pickle"


def _existing_checkpoints(directory):
    found = sorted(glob.glob(os.path.join(directory, "model.pth.tar-*")))
    best = os.path.join(directory, BEST_FILE)
    if os.path.isfile(best):
        found.append(best)
    return [os.path.basename(f) for f in found]


def load_checkpoint(fpath):
    """Load a checkpoint on the CPU; weights-only first, then the legacy (full unpickle) fallback."""
    fpath = os.fspath(fpath)
    if not os.path.isfile(fpath):
        directory = os.path.dirname(fpath) or "."
        existing = _existing_checkpoints(directory) if os.path.isdir(directory) else []
        listing = ", ".join(existing) if existing else "none"
        raise CheckpointError(
            f"checkpoint not found: {fpath} (checkpoint files in {directory}: {listing}; check --model-dir and --load-epoch)"
        )
    try:
        return torch.load(fpath, map_location="cpu", weights_only=True)
    except Exception as first_error:
        weights_only_error = first_error
    try:
        # Trusted local file written by CoOp/Dassl: it pickles scheduler objects, which weights_only refuses.
        return torch.load(fpath, map_location="cpu", weights_only=False, pickle_module=_LegacyPickleModule)
    except Exception as exc:
        raise CheckpointError(
            f"cannot load checkpoint {fpath}: {type(exc).__name__}: {exc} "
            f"(weights-only load said: {type(weights_only_error).__name__}); the file may be truncated or not a torch checkpoint"
        ) from None


def _read_pointer(fdir):
    pointer = os.path.join(fdir, POINTER_FILE)
    if not os.path.isfile(pointer):
        raise CheckpointError(
            f"no '{POINTER_FILE}' pointer file in {fdir}; cannot tell which checkpoint to resume from "
            f"(files present: {', '.join(_existing_checkpoints(fdir)) or 'none'})"
        )
    with open(pointer, "r", encoding="utf-8") as f:
        name = f.readline().strip()
    if not name:
        raise CheckpointError(f"pointer file {pointer} is empty; delete it or write the checkpoint file name into it")
    return os.path.join(fdir, name)


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
    """Restore model (and optimizer/scheduler if given) from the file named by ``fdir/checkpoint``; returns its epoch."""
    fpath = _read_pointer(fdir)
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def load_pretrained_weights(model, weight_path):
    """Load the entries of a weight file whose names AND shapes match ``model``; report the rest.

    Accepts a checkpoint dict (uses its ``state_dict``) or a bare state dict; ``module.`` prefixes are removed.
    Returns ``(matched_keys, discarded_keys)``.
    """
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"weight file {weight_path} holds no state dict (got {type(checkpoint).__name__})")
    state_dict = _strip_module_prefix(state_dict)

    model_dict = model.state_dict()
    new_state_dict = OrderedDict()
    matched, discarded = [], []
    for key, value in state_dict.items():
        if key in model_dict and hasattr(value, "size") and model_dict[key].size() == value.size():
            new_state_dict[key] = value
            matched.append(key)
        else:
            discarded.append(key)
    model_dict.update(new_state_dict)
    model.load_state_dict(model_dict)

    if not matched:
        warnings.warn(
            f'The pretrained weights "{weight_path}" cannot be loaded: no key matches the model by name and shape'
        )
    else:
        print(f'Successfully loaded pretrained weights from "{weight_path}"')
        if discarded:
            print(f"** The following keys are discarded due to unmatched keys or layer size: {discarded}")
    return matched, discarded
