#!/usr/bin/env bash
# Sourced by the sweep scripts: stop with one line (not a Python traceback) when they are started from the wrong
# folder or with a Python that lacks this project's packages (typically: the environment was not entered).
# PYTHON may hold a command with options ("python -X dev"); with torchrun the plain python on PATH is checked.

require_env() {
    if [[ ! -f train.py || ! -d configs/trainers ]]; then
        echo "error: run the scripts from the repository root (cd $(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd))" >&2
        exit 2
    fi
    local py
    read -r -a py <<< "$PYTHON"
    [[ "${py[0]}" == torchrun* ]] && py=(python)
    local probe="import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('torch', 'yacs', 'open_clip')))"
    if ! command -v "${py[0]}" >/dev/null 2>&1 || ! "${py[@]}" -c "$probe" >/dev/null 2>&1; then
        echo "error: '${py[*]}' has no torch or not this project's packages; enter the environment first:" \
             "source .venv/bin/activate (bash scripts/setup_env.sh creates it), or set PYTHON=/path/to/python" >&2
        exit 2
    fi
}
