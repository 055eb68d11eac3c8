"""Plugin discovery: import every trainer and dataset module so their ``register()`` decorators run.

CoOp needs one ``import trainers.x`` line in ``train.py`` per method and dataset, and forgetting it is a
common source of "not registered" errors. Here every module of the ``trainers`` and ``datasets`` packages
is imported automatically (in name order), then the modules named in the environment variable
``FDBPL_PLUGINS`` (comma-separated import paths, e.g. ``FDBPL_PLUGINS=my_pkg.my_trainer,my_pkg.my_dataset``).

Two rules make side-by-side runs with upstream code safe:

* A module that fails to import is reported once, by file, with its error, and skipped: the other trainers
  keep working. Asking for a trainer or dataset that is missing because of it names the failure.
* A plugin that registers a name the project already has replaces it, with a one-line note; the module
  imported later wins (``FDBPL_PLUGINS`` modules come last, so listing an upstream file there is the sure way
  to stand it in for ours).

Before importing, the upstream package names (``dassl``) are made importable from ``compat/`` unless a real
package of that name is installed, which then wins and is named in a one-line note.
"""

import importlib
import importlib.util
import os
import pkgutil
import sys
import traceback

from engine.errors import ConfigError

__all__ = [
    "import_plugins",
    "enable_upstream_names",
    "plugin_failures",
    "PLUGIN_PACKAGES",
    "PLUGIN_ENV_VAR",
    "UPSTREAM_NAMES",
    "COMPAT_DIR",
]

PLUGIN_PACKAGES = ("trainers", "datasets")
PLUGIN_ENV_VAR = "FDBPL_PLUGINS"
# Top-level package names of upstream code that compat/ provides as faces over this project.
UPSTREAM_NAMES = ("dassl", "clip")
COMPAT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compat")

_failures = {}  # module name -> "path: ErrorType: message", kept so later lookups can explain a missing name
_noted_real = set()


def plugin_failures():
    """``{module name: one-line reason}`` for every plugin module that failed to import in this process."""
    return dict(_failures)


def enable_upstream_names():
    """Make ``import dassl`` work for upstream modules; a real installed package is used and named instead.

    ``compat/`` goes to the END of ``sys.path``, so it can never shadow an installed package.
    """
    for name in UPSTREAM_NAMES:
        spec = importlib.util.find_spec(name) if name not in sys.modules else sys.modules[name].__spec__
        origin = getattr(spec, "origin", None) or ""
        if spec is not None and not os.path.abspath(origin).startswith(COMPAT_DIR) and name not in _noted_real:
            _noted_real.add(name)
            print(f"note: using the installed '{name}' package ({origin}) for upstream plugins, not this "
                  f"project's compat/{name}; uninstall it to run upstream modules on this project's engine")
    if os.path.isdir(COMPAT_DIR) and COMPAT_DIR not in sys.path:
        sys.path.append(COMPAT_DIR)


def _display_path(path):
    """``path`` relative to the working directory when it lies below it, else absolute (for messages)."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path
    return rel


def _module_file(module_name):
    """The file a module would be loaded from (for messages), or its dotted name when it cannot be found."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    origin = getattr(spec, "origin", None)
    return _display_path(origin) if origin and os.path.exists(origin) else module_name


def _import(module_name, origin):
    """Import one module; on failure record and print one line naming the file and the cause, return None."""
    if module_name in _failures:
        return None
    from engine.registry import plugin_origin

    try:
        with plugin_origin(module_name):
            return importlib.import_module(module_name)
    except Exception as exc:  # a broken plugin must not take the other trainers down
        # The innermost frame inside the plugin says where it broke (a file and line beats a bare message).
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
        path = _module_file(module_name)
        where = ""
        if frames:
            at = _display_path(frames[-1].filename)
            where = f" (line {frames[-1].lineno})" if at == path else f" (line {frames[-1].lineno} of {at})"
        reason = f"{path}: {type(exc).__name__}: {exc}{where}"
        _failures[module_name] = reason
        sys.modules.pop(module_name, None)
        print(f"warning: plugin module '{module_name}' ({origin}) was not loaded: {reason}; "
              f"the other trainers and datasets are unaffected")
        return None


def _package_modules(package_name):
    """Dotted names of the public modules directly inside ``package_name`` (sorted, '_' names skipped)."""
    try:
        package = importlib.import_module(package_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import plugin package '{package_name}': {type(exc).__name__}: {exc}") from exc
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
    """Import every module of ``packages`` and of FDBPL_PLUGINS; returns the names of the modules imported.

    Idempotent: Python caches imported modules, so a second call registers nothing twice. Modules that
    failed to import are left out of the result (see :func:`plugin_failures`).
    """
    enable_upstream_names()
    imported = []
    for package_name in packages:
        for module_name in _package_modules(package_name):
            if _import(module_name, f"found in package '{package_name}'") is not None:
                imported.append(module_name)
    for module_name in _env_modules(environ):
        if importlib.util.find_spec(module_name.split(".")[0]) is None:
            raise ConfigError(
                f"cannot import plugin module '{module_name}' (listed in {PLUGIN_ENV_VAR}): no such module on the "
                f"Python path; check the name or add its folder to PYTHONPATH"
            )
        if _import(module_name, f"listed in {PLUGIN_ENV_VAR}") is not None:
            imported.append(module_name)
    return imported
