"""Errors a user can act on.

Every message is one line that names the bad file, key or value and says what to do about it.
Command-line entry points catch :class:`FdbplError`, print ``error: <message>`` and exit with code 2
instead of showing a traceback (set ``FDBPL_DEBUG=1`` to see the traceback).
"""


class FdbplError(Exception):
    """Base class: a problem in the user's input, files or configuration."""


class ConfigError(FdbplError):
    """Unknown config key, trainer or dataset name, or a bad value."""


class DatasetError(FdbplError):
    """Missing or malformed dataset folder, split file, class-name file or image."""


class CheckpointError(FdbplError):
    """Missing or incompatible checkpoint or weight file."""


class RilError(FdbplError):
    """Region Information Lookup table missing, corrupt, or built for another run."""
