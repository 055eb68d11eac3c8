"""One labelled image (``Datum``) and a reader for CoOp/Dassl pickles of them.

``Datum`` has Dassl's constructor and read-only properties, but does not ``stat`` the file when it is
built (Dassl asserts that every file exists, one ``stat`` per image, which is slow on ImageNet); a
missing file is reported when the image is read (``engine.utils.read_image``).

CoOp stores few-shot subsets (``split_fewshot/shot_K-seed_S.pkl``) and ImageNet's ``preprocessed.pkl``
as pickled ``dassl.data.datasets.base_dataset.Datum`` objects with **absolute** paths of the machine
that made them. ``load_legacy_pickle`` reads them without Dassl installed, through an unpickler that only
resolves that class and a few container types, and moves the paths under a new dataset folder.
"""

import io
import os
import pickle
from collections import OrderedDict, defaultdict

from engine.errors import DatasetError
from engine.safe_pickle import restricted_unpickler

__all__ = ["Datum", "load_legacy_pickle", "reroot_path"]


class Datum:
    """An image path with its class label, domain label and class name (all read-only)."""

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath="", label=0, domain=0, classname=""):
        if isinstance(impath, os.PathLike):
            impath = os.fspath(impath)
        if not isinstance(impath, str):
            raise TypeError(f"Datum impath must be a str, got {type(impath).__name__}")
        self._impath = impath
        self._label = int(label)
        self._domain = int(domain)
        self._classname = classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label

    @property
    def domain(self):
        return self._domain

    @property
    def classname(self):
        return self._classname

    def _key(self):
        return (self._impath, self._label, self._domain, self._classname)

    def __eq__(self, other):
        if not isinstance(other, Datum):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __reduce__(self):
        # Pickles of our own Datum carry the constructor arguments, not the slots.
        return (Datum, self._key())

    def __repr__(self):
        return (
            f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, "
            f"classname={self._classname!r})"
        )


class _LegacyDatum:
    """Receives the ``__dict__`` of an unpickled Dassl ``Datum`` (``_impath``, ``_label``, ...)."""

    def __setstate__(self, state):
        self.__dict__.update(state)

    def to_datum(self):
        state = self.__dict__
        return Datum(
            impath=state.get("_impath", ""),
            label=state.get("_label", 0),
            domain=state.get("_domain", 0),
            classname=state.get("_classname", ""),
        )


# The only globals a CoOp/Dassl pickle of Datums (inside dicts and lists) needs.
_ALLOWED = {
    ("dassl.data.datasets.base_dataset", "Datum"): _LegacyDatum,
    ("engine.data.datum", "Datum"): Datum,
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): defaultdict,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "object"): object,
    # Protocol 0/1 pickles rebuild plain objects through copyreg._reconstructor(cls, object, None).
    ("copyreg", "_reconstructor"): None,  # filled below
}


def _safe_reconstructor(cls, base, state):
    if cls is not _LegacyDatum or base is not object:
        raise pickle.UnpicklingError(f"refusing to rebuild {cls!r} from a legacy pickle")
    return object.__new__(cls)


_ALLOWED[("copyreg", "_reconstructor")] = _safe_reconstructor
# Protocols 0/1 write Python 2 names (fix_imports); find_class sees them before any mapping.
_ALLOWED[("copy_reg", "_reconstructor")] = _safe_reconstructor
_ALLOWED[("__builtin__", "object")] = object


# Dataset pickles and checkpoints share one allow-list unpickler (engine.safe_pickle).
_RestrictedUnpickler = restricted_unpickler(_ALLOWED, "dataset pickle")


def _convert(obj):
    """Replace every ``_LegacyDatum`` inside dicts/lists/tuples by a ``Datum``."""
    if isinstance(obj, _LegacyDatum):
        return obj.to_datum()
    if isinstance(obj, dict):
        out = type(obj)() if not isinstance(obj, defaultdict) else defaultdict(obj.default_factory)
        for key, value in obj.items():
            out[key] = _convert(value)
        return out
    if isinstance(obj, list):
        return [_convert(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_convert(v) for v in obj)
    return obj


def reroot_path(path, root, _cache=None):
    """``path`` moved under ``root`` if it does not exist and contains ``basename(root)`` as a component.

    ``/old/data/oxford_pets/images/a.jpg`` with ``root=/new/DATA/oxford_pets`` becomes
    ``/new/DATA/oxford_pets/images/a.jpg`` when ``/old/data/oxford_pets`` is gone. The last component
    equal to the dataset folder name is used. Existence is checked once per old prefix (``_cache``),
    not once per file, so re-rooting ImageNet costs a handful of ``stat`` calls.
    """
    if not root:
        return path
    folder = os.path.basename(os.path.normpath(root))
    parts = path.replace("\\", "/").split("/")
    try:
        cut = len(parts) - 1 - parts[::-1].index(folder)
    except ValueError:
        return path  # not under a folder of that name: leave it alone
    old_prefix = "/".join(parts[: cut + 1])
    cache = _cache if _cache is not None else {}
    if old_prefix not in cache:
        cache[old_prefix] = os.path.isdir(old_prefix)
    if cache[old_prefix]:
        return path  # the old location still exists: keep it
    return os.path.join(root, *parts[cut + 1 :])


def _reroot(obj, root, cache):
    if isinstance(obj, Datum):
        new = reroot_path(obj.impath, root, cache)
        return obj if new == obj.impath else Datum(new, obj.label, obj.domain, obj.classname)
    if isinstance(obj, dict):
        for key in list(obj.keys()):
            obj[key] = _reroot(obj[key], root, cache)
        return obj
    if isinstance(obj, list):
        return [_reroot(v, root, cache) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_reroot(v, root, cache) for v in obj)
    return obj


def load_legacy_pickle(path, root=None):
    """Read a CoOp/Dassl pickle of Datums (e.g. ``{"train": [...], "val": [...]}``) without Dassl.

    ``root`` is the dataset folder on this machine (e.g. ``DATA/oxford_pets``): absolute image paths
    that do not exist and contain that folder's name are moved under it. Anything in the pickle other
    than Datums, dicts, lists, tuples and sets is refused (a pickle can run code).
    """
    if not os.path.isfile(path):
        raise DatasetError(f"pickle not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise DatasetError(
            f"cannot read {path} as a CoOp/Dassl dataset pickle ({exc}); delete it to regenerate"
        ) from None
    obj = _convert(obj)
    if root is not None:
        obj = _reroot(obj, os.path.abspath(os.path.expanduser(root)), {})
    return obj
