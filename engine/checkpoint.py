"""Checkpoints in Dassl's layout: ``<dir>/model.pth.tar-<epoch>``, a ``checkpoint`` pointer file, ``model-best.pth.tar``.

Writes are atomic (temporary file + ``os.replace``), so an interrupted save never leaves a truncated
file under the final name. Loading never runs code from the file: every checkpoint, ours or a legacy
CoOp/Dassl one (which pickles optimizer and scheduler objects), is unpickled through an allow-list of
globals (``engine.safe_pickle``). Dassl's classes are replaced by plain stand-ins, so ``state_dict``,
``epoch`` and the scheduler's counters stay readable without Dassl.
"""

import codecs
import glob
import io
import os
import types
import warnings
from collections import OrderedDict, defaultdict

import torch

from engine.errors import CheckpointError
from engine.safe_pickle import RefusedGlobal, pickle_module_for, restricted_unpickler
from engine.utils import atomic_write_bytes, mkdir_if_missing, remove_stale_temp_files

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
    remove_stale_temp_files(save_dir)  # left by a save that was killed (SIGKILL) before os.replace
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
    """Stand-in for a Dassl class a legacy checkpoint pickles (warm-up schedulers, Dassl's RAdam).

    Unpickling restores the object's attributes into ``__dict__`` and keeps the original name in
    ``_legacy_class``, so the surrounding data (state dicts, epoch, the scheduler's counters) stays
    usable. Dassl itself is never imported, even when installed: importing runs its code.
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
    """A LegacyObject subclass named after the Dassl class."""
    return type(name, (LegacyObject,), {"_legacy_class": f"{module}.{name}", "__module__": __name__})


# Dassl classes a CoOp/Dassl checkpoint may pickle. Dassl's scheduler state_dict() holds the successor
# *object* with its optimizer; Dassl's own classes appear there when that optimizer is Dassl's RAdam,
# or when a warm-up wrapper was nested or pickled whole.
DASSL_CLASSES = {
    "dassl.optim.lr_scheduler": ("_BaseWarmupScheduler", "ConstantWarmupScheduler", "LinearWarmupScheduler"),
    "dassl.optim.radam": ("RAdam", "PlainRAdam", "AdamW"),
}


def _subclasses_in(module, base):
    """``{(module_name, class_name): class}`` for the ``base`` subclasses found in ``module`` (both the
    defining module's name and ``module``'s, since either may be recorded)."""
    found = {}
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, base):
            found[(obj.__module__, obj.__name__)] = obj
            found[(module.__name__, obj.__name__)] = obj
    return found


def _checkpoint_globals():
    """Every global a checkpoint may name: what torch.save writes for tensors, plain containers, numpy
    scalars, torch optimizer and LR-scheduler objects, and stand-ins for Dassl's classes."""
    import numpy as np
    import torch._utils as tu
    from torch._tensor import _rebuild_from_type_v2

    allowed = {}
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                 "_rebuild_parameter_with_state"):
        if hasattr(tu, name):
            allowed[("torch._utils", name)] = getattr(tu, name)
    allowed[("torch._tensor", "_rebuild_from_type_v2")] = _rebuild_from_type_v2
    # Storage classes appear only as tags in a tensor's storage record (uint32 numpy RNG state, ...).
    allowed[("torch.storage", "UntypedStorage")] = torch.UntypedStorage
    allowed[("torch", "UntypedStorage")] = torch.UntypedStorage
    allowed[("torch", "Tensor")] = torch.Tensor
    allowed[("torch.nn.parameter", "Parameter")] = torch.nn.Parameter
    allowed[("torch", "Size")] = torch.Size
    allowed[("torch", "device")] = torch.device
    for name, value in vars(torch).items():
        if isinstance(value, torch.dtype):
            allowed[("torch", name)] = value
    # Protocol 2 names builtins "__builtin__" and pickles bytes through _codecs.encode.
    for module in ("builtins", "__builtin__"):
        for obj in (dict, list, tuple, set, frozenset, int, float, bool, str, bytes, bytearray, complex):
            allowed[(module, obj.__name__)] = obj
    allowed[("_codecs", "encode")] = codecs.encode
    allowed[("collections", "OrderedDict")] = OrderedDict
    allowed[("collections", "defaultdict")] = defaultdict
    # numpy scalars (a val_result computed with numpy, e.g. sklearn's F1), under numpy 1 and 2 module names.
    try:
        from numpy._core import multiarray as np_multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray as np_multiarray
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(core, "scalar")] = np_multiarray.scalar
    allowed[("numpy", "dtype")] = np.dtype
    allowed.update(_subclasses_in(torch.optim, torch.optim.Optimizer))
    for module_name in dir(torch.optim):
        module = getattr(torch.optim, module_name)
        if isinstance(module, types.ModuleType) and module.__name__.startswith("torch.optim."):
            allowed.update(_subclasses_in(module, torch.optim.Optimizer))
    allowed.update(_subclasses_in(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler))
    allowed.update(_subclasses_in(torch.optim.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau))
    for module, names in DASSL_CLASSES.items():
        for name in names:
            allowed[(module, name)] = _legacy_stand_in(module, name)
    return allowed


_CheckpointUnpickler = None


def _checkpoint_pickle_module():
    global _CheckpointUnpickler
    if _CheckpointUnpickler is None:
        _CheckpointUnpickler = restricted_unpickler(_checkpoint_globals(), "checkpoint")
    return pickle_module_for(_CheckpointUnpickler)


def _existing_checkpoints(directory):
    found = sorted(glob.glob(os.path.join(directory, "model.pth.tar-*")))
    best = os.path.join(directory, BEST_FILE)
    if os.path.isfile(best):
        found.append(best)
    return [os.path.basename(f) for f in found]


def load_checkpoint(fpath):
    """Load a checkpoint on the CPU without running code from it.

    Zip (``torch.save``) and legacy raw-pickle files are read through the checkpoint allow-list
    (tensors, plain containers, numpy scalars, torch optimizers and LR schedulers, stand-ins for Dassl's
    warm-up schedulers); a file naming any other global is refused with a :class:`CheckpointError`
    naming the file and the global, before that global is called.
    """
    fpath = os.fspath(fpath)
    if not os.path.isfile(fpath):
        directory = os.path.dirname(fpath) or "."
        existing = _existing_checkpoints(directory) if os.path.isdir(directory) else []
        listing = ", ".join(existing) if existing else "none"
        raise CheckpointError(
            f"checkpoint not found: {fpath} (checkpoint files in {directory}: {listing}; check --model-dir and --load-epoch)"
        )
    try:
        return torch.load(fpath, map_location="cpu", weights_only=False, pickle_module=_checkpoint_pickle_module())
    except RefusedGlobal as exc:
        raise CheckpointError(
            f"refusing to load checkpoint {fpath}: it names the global '{exc.global_name}', which a checkpoint "
            f"may not contain (loading it could run code); only tensors, plain containers, torch optimizers and "
            f"LR schedulers and Dassl's warm-up schedulers are allowed"
        ) from None
    except Exception as exc:
        first_line = (str(exc).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"cannot load checkpoint {fpath}: {type(exc).__name__}: {first_line}; "
            f"the file may be truncated or not a torch checkpoint"
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
    try:
        model.load_state_dict(checkpoint["state_dict"])
        print("Loaded model weights")
        if optimizer is not None and checkpoint.get("optimizer") is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
            print("Loaded optimizer")
        if scheduler is not None and checkpoint.get("scheduler") is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
            print("Loaded scheduler")
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        reason = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))[:200]
        raise CheckpointError(f"cannot resume from {fpath}: it does not fit this model/optimizer ({reason}); "
                              f"it was trained with another config") from None
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
