#!/usr/bin/env bash
# Make a Python environment that can run this project, and print its python path on the last line.
#
# Uses the active virtualenv if there is one (or $FDBPL_PYTHON), otherwise creates .venv in the repository root.
# Installs torch/torchvision (tested pair), then this package in editable mode with the test extra.
# Re-running is cheap: pip skips what is already installed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${FDBPL_PYTHON:-}" ]]; then
    PY="$FDBPL_PYTHON"
elif [[ -n "${VIRTUAL_ENV:-}" ]]; then
    PY="$VIRTUAL_ENV/bin/python"
else
    if [[ ! -x "$REPO/.venv/bin/python" ]]; then
        echo "[setup] creating virtual environment $REPO/.venv" >&2
        python3 -m venv "$REPO/.venv"
    fi
    PY="$REPO/.venv/bin/python"
fi
if ! "$PY" -c "import engine, trainers, open_clip, yacs, pytest" >/dev/null 2>&1; then
    echo "[setup] installing torch==2.14.1 torchvision==0.29.1 and the fdbpl package (a few minutes the first time)" >&2
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" >&2
    "$PY" -m pip install -q -e "$REPO[test]" >&2
fi
echo "$PY"
