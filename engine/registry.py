"""Name -> class registries for trainers, datasets and evaluators, and the builders that use them.

Usage is Dassl's: ``@TRAINER_REGISTRY.register()`` above ``class CoOp(TrainerX)`` registers the class
under its ``__name__``; ``build_dataset(cfg)`` looks up ``cfg.DATASET.NAME``. Unknown names raise
:class:`ConfigError` with the closest registered name, instead of Dassl's ``KeyError``/``ValueError``.
``build_trainer`` lives in ``engine/trainer.py``.
"""

import contextlib
import difflib

from engine.errors import ConfigError

__all__ = [
    "Registry",
    "TRAINER_REGISTRY",
    "DATASET_REGISTRY",
    "EVALUATOR_REGISTRY",
    "check_availability",
    "build_dataset",
    "build_evaluator",
    "plugin_origin",
]

# The plugin module being imported by engine.discovery, if any: registrations made while it is set may
# replace an existing name (with a note) instead of raising Dassl's KeyError.
_current_plugin = []


@contextlib.contextmanager
def plugin_origin(module_name):
    """Mark registrations made inside the block as coming from plugin module ``module_name``."""
    _current_plugin.append(module_name)
    try:
        yield
    finally:
        _current_plugin.pop()


def _closest(name, choices):
    """The choice most similar to ``name`` (difflib ratio, case-insensitive), or None when there are none."""
    if not choices:
        return None
    lowered = str(name).lower()
    return max(choices, key=lambda c: difflib.SequenceMatcher(None, lowered, c.lower()).ratio())


def check_availability(requested, available, kind="name"):
    """Raise ConfigError if ``requested`` is not in ``available``; the message suggests the closest name.

    ``kind`` words the message, e.g. ``"trainer"`` -> ``unknown trainer 'CoOP'; did you mean 'CoOp'?``.
    """
    available = list(available)
    if requested in available:
        return
    listed = ", ".join(sorted(available)) if available else "(none registered)"
    suggestion = _closest(requested, available)
    hint = f"did you mean '{suggestion}'? " if suggestion else ""
    from engine.discovery import plugin_failures

    failures = plugin_failures()
    broken = f" (plugin modules that failed to import: {'; '.join(failures.values())})" if failures else ""
    raise ConfigError(f"unknown {kind} '{requested}'; {hint}Available: {listed}{broken}")


class Registry:
    """A named mapping from class/function name to the object, filled by ``register``."""

    def __init__(self, name):
        self._name = name
        self._obj_map = {}

    @property
    def name(self):
        return self._name

    def _do_register(self, name, obj, force=False):
        previous = self._obj_map.get(name)
        if previous is not None and not force:
            if not _current_plugin:
                raise KeyError(f'An object named "{name}" was already registered in "{self._name}" registry')
            if previous is obj:
                return
            # A plugin standing in for a name we already have (e.g. upstream coop.py beside ours): the later
            # import wins, and the user is told which module replaced which.
            print(f"note: {self._name.lower()} '{name}' from module '{_current_plugin[-1]}' replaces the one from "
                  f"module '{getattr(previous, '__module__', '?')}'")
        self._obj_map[name] = obj

    def register(self, obj=None, force=False):
        """Register ``obj`` under ``obj.__name__``; without ``obj`` return a decorator that does so."""
        if obj is None:

            def decorator(func_or_class):
                self._do_register(func_or_class.__name__, func_or_class, force=force)
                return func_or_class

            return decorator
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name):
        """The object registered as ``name``; ConfigError with a suggestion when there is none."""
        if name not in self._obj_map:
            check_availability(name, self._obj_map.keys(), kind=self._name.lower())
        return self._obj_map[name]

    def registered_names(self):
        """Registered names, in registration order."""
        return list(self._obj_map.keys())

    def __contains__(self, name):
        return name in self._obj_map

    def __len__(self):
        return len(self._obj_map)

    def __repr__(self):
        return f"Registry({self._name!r}, names={self.registered_names()})"


TRAINER_REGISTRY = Registry("TRAINER")
DATASET_REGISTRY = Registry("DATASET")
EVALUATOR_REGISTRY = Registry("EVALUATOR")


def build_dataset(cfg):
    """Instantiate the dataset class named by ``cfg.DATASET.NAME`` with ``cfg``."""
    name = cfg.DATASET.NAME
    check_availability(name, DATASET_REGISTRY.registered_names(), kind="dataset")
    if cfg.VERBOSE:
        print(f"Loading dataset: {name}")
    return DATASET_REGISTRY.get(name)(cfg)


def build_evaluator(cfg, **kwargs):
    """Instantiate the evaluator named by ``cfg.TEST.EVALUATOR`` with ``cfg`` and ``kwargs``."""
    # Imported here so the Classification evaluator is registered whenever an evaluator is built.
    import engine.evaluator  # noqa: F401

    name = cfg.TEST.EVALUATOR
    check_availability(name, EVALUATOR_REGISTRY.registered_names(), kind="evaluator")
    if cfg.VERBOSE:
        print(f"Loading evaluator: {name}")
    return EVALUATOR_REGISTRY.get(name)(cfg, **kwargs)
