"""Plugin discovery: import every trainer and dataset module so their ``register()`` decorators run.

CoOp needs one ``import trainers.x`` line in ``train.py`` per method and dataset, and forgetting it is a
common source of "not registered" errors. Here every module of the ``trainers`` and ``datasets`` packages
is imported automatically, plus extra modules named in the environment variable ``FDBPL_PLUGINS``
(comma-separated import paths, e.g. ``FDBPL_PLUGINS=my_pkg.my_trainer,my_pkg.my_dataset``).
"""

import importlib
import os
import pkgutil

from engine.errors import ConfigError

__all__ = ["import_plugins", "PLUGIN_PACKAGES", "PLUGIN_ENV_VAR"]

PLUGIN_PACKAGES = ("trainers", "datasets")
PLUGIN_ENV_VAR = "FDBPL_PLUGINS"


def _import(module_name, origin):
    """Import one module; a failure raises ConfigError naming the module and the cause."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import plugin module '{module_name}' ({origin}): {type(exc).__name__}: {exc}"
        ) from exc


def _package_modules(package_name):
    """Dotted names of the public modules directly inside ``package_name`` (sorted, '_' names skipped)."""
    package = _import(package_name, "plugin package")
    paths = getattr(package, "__path__", None)
    if paths is None:
        return []
    names = sorted(info.name for info in pkgutil.iter_modules(paths) if not info.name.startswith("_"))
    return [f"{package_name}.{name}" for name in names]


def _env_modules(environ=None):
    """Module names listed in FDBPL_PLUGINS (blank entries ignored)."""
    raw = (environ if environ is not None else os.environ).get(PLUGIN_ENV_VAR, "")
    return [part.strip() for part in raw.split(",") if part.strip()]


def import_plugins(packages=PLUGIN_PACKAGES, environ=None):
    """Import every module of ``packages`` and of FDBPL_PLUGINS; returns the imported module names.

    Idempotent: Python caches imported modules, so a second call registers nothing twice.
    """
    imported = []
    for package_name in packages:
        for module_name in _package_modules(package_name):
            _import(module_name, f"found in package '{package_name}'")
            imported.append(module_name)
    for module_name in _env_modules(environ):
        _import(module_name, f"listed in {PLUGIN_ENV_VAR}")
        imported.append(module_name)
    return imported
