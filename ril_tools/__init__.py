import importlib.util as _util
import sys as _sys

# `python -m ril_tools.*` started outside the project's environment: one line that says how to enter it.
for _name in ("torch", "yacs", "open_clip"):
    if _util.find_spec(_name) is None:
        _sys.exit(f"error: {_name} is not installed for {_sys.executable}; enter the environment first: "
                  "source .venv/bin/activate (bash scripts/setup_env.sh creates it)")
