#!/usr/bin/env bash
# The README's main job: set up the environment if needed, then run the ToyShapes demo (scripts/demo.py).
# Arguments go to demo.py, e.g. `bash scripts/demo.sh --quick`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$REPO/scripts/setup_env.sh" | tail -n 1)"
exec "$PY" "$REPO/scripts/demo.py" "$@"
