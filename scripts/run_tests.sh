#!/usr/bin/env bash
# The test command of the README: sets up the environment if needed, then runs the whole test suite on CPU.
# Extra arguments go to pytest (e.g. `bash scripts/run_tests.sh -k ril -x`); `-m "not slow"` skips the end-to-end
# tests (the demo, the README's commands, ...) for a fast inner loop. CI runs it without arguments: every test.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$REPO/scripts/setup_env.sh" | tail -n 1)"
cd "$REPO"
set +e
start=$SECONDS
"$PY" -m pytest -q "$@"
rc=$?
set -e
echo "Test suite time: $((SECONDS - start)) s (pytest ${*:-with no arguments}; setup excluded)"
if [[ $rc -eq 5 ]]; then
    echo "error: pytest collected no tests (exit 5); the test suite must not be empty" >&2
    exit 1
fi
exit $rc
