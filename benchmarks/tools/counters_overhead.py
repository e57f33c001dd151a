"""What the counted pass costs on a default-like run (issue 22, item 7; target: at most 10% of
the run's wall time).

Runs `asrbench run` on the embedded corpus's English clips (bundled:whisper-base, CPU, batch 8,
`--limit 8 --passes 3`) in fresh processes, once with the counted pass (the default) and once
with `--no-counters`, alternating per round, and prints side by side each process's wall time,
the ratio of the two, and the counted pass's own `counters.seconds` from the report.

    .venv/bin/python benchmarks/tools/counters_overhead.py [--rounds 1] [--limit 8] [--passes 3]

Research tool, not a test: wall times depend on the machine and its load; docs/performance.md
records runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_once(counters: bool, limit: int, passes: int, device: str, workdir: Path
             ) -> tuple[float, float | None]:
    """(wall seconds of one fresh `asrbench run` process, its counted pass's seconds or None)."""
    report = workdir / f"report-{'counted' if counters else 'plain'}-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", "asrbench", "run", "--device", device,
               "--dataset-config", "en", "--language", "english", "--limit", str(limit),
               "--passes", str(passes), "--report", str(report), "--no-progress",
               "--counters" if counters else "--no-counters"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"counters_overhead: {' '.join(command[2:])} failed:\n{proc.stderr[-2000:]}")
    (run,) = json.loads(report.read_text())["runs"]
    counted = (run.get("counters") or {}).get("seconds")
    return wall, counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs (default 1)")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    counted_walls, plain_walls, pass_seconds = [], [], []
    with tempfile.TemporaryDirectory(prefix="asrbench-overhead-") as tmp:
        for number in range(args.rounds):
            # Alternate which side goes first, so a drift in the machine's load hits both.
            order = (True, False) if number % 2 == 0 else (False, True)
            for counters in order:
                wall, seconds = run_once(counters, args.limit, args.passes, args.device,
                                         Path(tmp))
                (counted_walls if counters else plain_walls).append(wall)
                if counters and seconds is not None:
                    pass_seconds.append(seconds)
                print(f"round {number + 1}: {'counters   ' if counters else 'no-counters'} "
                      f"{wall:8.1f} s wall" + (f" (counted pass {seconds:.1f} s)"
                                               if counters and seconds is not None else ""),
                      flush=True)
    counted, plain = statistics.median(counted_walls), statistics.median(plain_walls)
    print(f"\nmedian wall time: with counters {counted:.1f} s, --no-counters {plain:.1f} s, "
          f"ratio {counted / plain:.3f} ({(counted / plain - 1) * 100:+.1f}%)")
    if pass_seconds:
        share = statistics.median(pass_seconds) / counted
        print("counted pass (report counters.seconds): median "
              f"{statistics.median(pass_seconds):.1f} s"
              f" = {share:.1%} of the counted run's wall time (target: at most 10%)")


if __name__ == "__main__":
    main()
