"""Run log: a tee of ``sys.stdout`` into ``log.txt``, and a short environment report.

Path rules follow Dassl so existing scripts and result parsers find the log: an ``output`` ending in
``.txt`` or ``.log`` is the log file itself, anything else is a folder that gets ``log.txt``. An existing
log is never overwritten: the new one gets a ``-%Y-%m-%d-%H-%M-%S`` suffix (``log.txt-2024-01-31-12-00-00``).

Only stdout is copied (tqdm bars and warnings go to stderr, as in Dassl). Calling ``setup_logger`` again
in the same process ends the previous tee first, so output is never written twice; ``close_logger()``
restores the original ``sys.stdout``.
"""

import os
import platform
import sys
import time

from engine.utils import mkdir_if_missing

__all__ = ["setup_logger", "close_logger", "current_log_path", "collect_env_info", "StdoutTee"]


class StdoutTee:
    """A file-like object that writes to the console stream and to a log file."""

    def __init__(self, console, fpath):
        self.console = console
        self.fpath = fpath
        # "x": create, never overwrite; buffering=1: line-buffered, so a crash loses at most one line.
        self.file = open(fpath, "x", buffering=1, encoding="utf-8")

    def write(self, msg):
        self.console.write(msg)
        if not self.file.closed:
            self.file.write(msg)
        return len(msg)

    def flush(self):
        self.console.flush()
        if not self.file.closed:
            self.file.flush()

    def close(self):
        """Close the log file (the console stream stays open)."""
        if not self.file.closed:
            self.file.flush()
            self.file.close()

    def __getattr__(self, name):
        # isatty, fileno, encoding, ... behave like the console's, so libraries that probe stdout work.
        return getattr(self.console, name)


_active_tee = None


def _log_path(output):
    """The file the log goes to for ``output``, with a timestamp suffix if that file exists."""
    output = os.fspath(output)
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = os.path.join(output, "log.txt")
    if os.path.exists(fpath):
        stamped = fpath + time.strftime("-%Y-%m-%d-%H-%M-%S")
        # Two runs in the same second: add a counter rather than overwrite.
        candidate, n = stamped, 1
        while os.path.exists(candidate):
            candidate = f"{stamped}-{n}"
            n += 1
        fpath = candidate
    return fpath


def close_logger():
    """Stop the tee started by ``setup_logger``: restore ``sys.stdout`` and close the log file."""
    global _active_tee
    if _active_tee is None:
        return
    tee = _active_tee
    _active_tee = None
    if sys.stdout is tee:
        sys.stdout = tee.console
    tee.close()


def current_log_path():
    """Path of the active log file, or None when no tee is active."""
    return _active_tee.fpath if _active_tee is not None else None


def setup_logger(output=None):
    """Copy everything printed to stdout into the log file for ``output``; returns the file's path.

    ``output`` None or empty starts no log and returns None.
    """
    global _active_tee
    close_logger()
    if not output:
        return None
    fpath = _log_path(output)
    mkdir_if_missing(os.path.dirname(os.path.abspath(fpath)))
    _active_tee = StdoutTee(sys.stdout, fpath)
    sys.stdout = _active_tee
    return fpath


def _version(module_name):
    """``module.__version__`` or a short reason it is unavailable."""
    try:
        module = __import__(module_name)
    except Exception as exc:  # a broken optional package must not stop a training run
        return f"not available ({type(exc).__name__})"
    return getattr(module, "__version__", "unknown")


def _cuda_lines():
    import torch

    lines = [
        f"PyTorch built with CUDA: {torch.version.cuda}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    try:
        if torch.cuda.is_available():
            lines.append(f"cuDNN version: {torch.backends.cudnn.version()}")
            for i in range(torch.cuda.device_count()):
                lines.append(f"GPU {i}: {torch.cuda.get_device_name(i)}")
    except Exception as exc:  # driver problems are reported, not raised
        lines.append(f"CUDA query failed: {type(exc).__name__}: {exc}")
    return lines


def collect_env_info(full=False):
    """A multi-line report of Python, platform, package versions and CUDA devices.

    ``full`` appends ``torch.utils.collect_env.get_pretty_env_info()`` (slow: it runs external tools).
    Never raises because CUDA is missing.
    """
    lines = [
        f"Python: {sys.version.split()[0]} ({platform.python_implementation()})",
        f"Platform: {platform.platform()}",
        f"PyTorch: {_version('torch')}",
        f"torchvision: {_version('torchvision')}",
        f"open_clip: {_version('open_clip')}",
        f"NumPy: {_version('numpy')}",
        f"Pillow: {_version('PIL')}",
        f"yacs: {_version('yacs')}",
    ]
    lines.extend(_cuda_lines())
    if full:
        try:
            from torch.utils.collect_env import get_pretty_env_info

            lines.append(get_pretty_env_info())
        except Exception as exc:
            lines.append(f"(torch collect_env failed: {type(exc).__name__}: {exc})")
    return "\n".join(lines)
