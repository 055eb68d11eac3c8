"""One way for every command-line entry point to report a user error: one ``error:`` line, exit code 2."""
import os
import sys

from engine.errors import FdbplError


def run_cli(main, *args, **kwargs):
    """Call ``main(*args, **kwargs)``; an :class:`FdbplError` becomes ``error: <message>`` on stderr + exit 2.

    ``FDBPL_DEBUG=1`` re-raises instead, to see the traceback. Returns what ``main`` returns.
    """
    try:
        return main(*args, **kwargs)
    except FdbplError as exc:
        if os.environ.get("FDBPL_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
