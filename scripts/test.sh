#!/usr/bin/env bash
# Set up (if needed) and run asrbench's tests and benchmarks. pytest's exit code 5 (no tests
# collected) counts as a failure. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; failing" >&2
    exit 1
fi
exit "$rc"
