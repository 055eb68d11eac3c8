"""Unpickling with an allow-list: the one mechanism behind every pickle the project reads from a user's file.

A pickle names the functions and classes it needs ("globals") and the unpickler calls them, so an
unrestricted load of a shared file can run any code (``os.system`` through ``__reduce__``). Here each
reader declares the exact globals its files may name, mapped to the object to use for them (which may
be a harmless stand-in); any other global stops the load with :class:`RefusedGlobal` before anything
is called. Dataset pickles (``engine.data.datum``) and checkpoints (``engine.checkpoint``) use it.
"""

import io
import pickle

__all__ = ["RefusedGlobal", "RestrictedUnpickler", "restricted_unpickler", "pickle_module_for"]


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allow-list; ``global_name`` is ``module.name``."""

    def __init__(self, global_name, kind):
        self.global_name = global_name
        self.kind = kind
        super().__init__(f"global '{global_name}' is not allowed in a {kind}")


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the ``(module, name)`` pairs of ``allowed``; subclasses set ``allowed`` and ``kind``.

    ``find_class`` is also the path of the EXT opcodes and protocol 0/1 ``INST``/``OBJ``, so no global
    reaches the unpickler any other way.
    """

    allowed = {}
    kind = "pickle"

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise RefusedGlobal(f"{module}.{name}", self.kind) from None


def restricted_unpickler(allowed, kind):
    """A :class:`RestrictedUnpickler` subclass bound to ``allowed`` (a dict) and ``kind`` (for messages)."""
    return type("RestrictedUnpickler_" + kind.replace(" ", "_"), (RestrictedUnpickler,),
                {"allowed": dict(allowed), "kind": kind})


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` uses: ``Unpickler`` (subclassed by torch) and ``load``.

    torch reads the header of a legacy (non-zip) file with ``pickle_module.load``, so ``load`` must be
    restricted too: a raw pickle's payload would otherwise run there.
    """

    def __init__(self, unpickler_cls):
        self.Unpickler = unpickler_cls
        self.__name__ = unpickler_cls.__name__

    def load(self, file, **kwargs):
        return self.Unpickler(file, **kwargs).load()

    def loads(self, data, **kwargs):
        return self.Unpickler(io.BytesIO(data), **kwargs).load()


def pickle_module_for(unpickler_cls):
    """A ``pickle_module`` object for ``torch.load`` built on ``unpickler_cls``."""
    return _PickleModule(unpickler_cls)
