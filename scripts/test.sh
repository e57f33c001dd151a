#!/usr/bin/env bash
# Set up (if needed) and run asrbench's tests and benchmarks. pytest's exit code 5 (no tests
# collected) counts as a failure. Extra arguments go to pytest.
#
#   bash scripts/test.sh          everything but the heavy tier (what CI runs)
#   bash scripts/test.sh --all    the heavy tier too (tests/conftest.py HEAVY_TESTS: a few bf16
#                                 runs whose fp32 or English twins run above)
set -uo pipefail
cd "$(dirname "$0")/.."
tier=(-m "not heavy")
if [ "${1:-}" = "--all" ]; then
    tier=()
    shift
fi
bash scripts/setup.sh || exit 1
# The benchmarks' session report (and its .md summary) goes to a fresh temporary folder, never
# to reports/latest.json, which belongs to scripts/bench.sh and `asrbench run`; pytest prints
# where it went. An --asrbench-report (or --report) given here comes later and wins.
reports=$(mktemp -d "${TMPDIR:-/tmp}/asrbench-test-reports.XXXXXX") || exit 1
# --asrbench-counters-only: the benchmarks' configs are the default run's (same ids, same baseline
# entries), gated as the pre-screen gates a pull request (docs/counters.md, "Counters-only"):
# transcripts, error rates and the exact work counters against baselines/cpu.json, with no
# timed pass, so throughput is not measured (on a shared machine it could only warn) and its
# test is skipped saying so. Quiet 2-core VM: 123 s against 203 s for one timed pass after a
# one-batch warm-up (--asrbench-passes 1 --asrbench-warmup-batches 1, CI's mode until
# 2026-12-07) and about 12 minutes for the full default run, which is scripts/bench.sh. Timed
# benchmarks: scripts/bench.sh, or `.venv/bin/python -m pytest benchmarks` with its options.
.venv/bin/python -m pytest "${tier[@]}" --asrbench-report "$reports/latest.json" \
    --asrbench-counters-only "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; failing" >&2
    exit 1
fi
exit "$rc"
