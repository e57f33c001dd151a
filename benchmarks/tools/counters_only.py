"""What `--counters-only` saves (issue 29, item 1; goals: at most 0.5x of a 1-pass run's wall
time to a verdict, and the counting itself at most 10% over one plain decode of the same batch).

For each device asked (cpu, hpu-emulated), runs in fresh processes, alternating which goes
first round by round:

- a 1-pass run: `asrbench run --passes 1` then `asrbench compare` of its report;
- a counters-only run: `asrbench run --counters-only` then `asrbench compare`;

and prints side by side each one's wall time from process start to the compare's verdict and
their ratio, and each run's time split into its decodes (warm-up, timed pass, counted pass:
the report's timings) and the rest (start-up, imports, model load, features, the reference
check, the report and the compare process), which both modes pay. The workload is one batch
(`--limit` clips, no more than the batch size), so the 1-pass run's timed pass is one plain
decode of exactly the batch its counted pass counts: their ratio (the report's
counters.seconds / timings.pass_seconds[0]) is the counting's own overhead.

    .venv/bin/python benchmarks/tools/counters_only.py [--devices cpu hpu-emulated]
        [--rounds 2] [--limit 4]

Research tool, not a test: wall times depend on the machine and its load; docs/performance.md
records runs with the machine's state.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: per device: the workload (one batch of English clips), as `asrbench run` options
WORKLOADS = {
    "cpu": ["--device", "cpu", "--batch-size", "8"],
    # the [hpu-emulated] matrix section's shape: HPU graphs, static batch, 48-token cap
    "hpu-emulated": ["--device", "hpu-emulated", "--graphs", "--batch-size", "4",
                     "--generation-max-length", "48"],
}


def to_verdict(mode: list[str], workload: list[str], workdir: Path, baselines: Path
               ) -> tuple[float, dict]:
    """Wall seconds from starting `asrbench run <mode>` to the end of `asrbench compare` of
    its report (two fresh processes, as a CI job runs them), and the report's run."""
    report = workdir / f"report-{time.monotonic_ns()}.json"
    run = [sys.executable, "-m", "asrbench", "run", *workload, *mode, "--report", str(report),
           "--no-progress"]
    compare = [sys.executable, "-m", "asrbench", "compare", "--report", str(report),
               "--baseline-dir", str(baselines), "--allow-missing-baselines"]
    start = time.perf_counter()
    for command in (run, compare):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode not in (0, 1):
            sys.exit(f"counters_only: {' '.join(command[2:])} failed:\n{done.stderr[-2000:]}")
    wall = time.perf_counter() - start
    (result,) = json.loads(report.read_text())["runs"]
    return wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "hpu-emulated"],
                        choices=sorted(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs per device")
    parser.add_argument("--limit", type=int, default=4,
                        help="clips (default 4: one batch; more make several batches, and then "
                             "a counters-only run's plain decode of the batches it does not "
                             "count falls in 'the rest')")
    parser.add_argument("--dataset-config", default="en", help="the corpus locale (default en)")
    parser.add_argument("--language", default="english", help="Whisper's language (english)")
    args = parser.parse_args()
    modes = {"1-pass": ["--passes", "1"], "counters-only": ["--counters-only"]}
    with tempfile.TemporaryDirectory(prefix="asrbench-counters-only-") as tmp:
        (Path(tmp) / "none").mkdir()  # an empty baseline folder: compare judges what it can
        for device in args.devices:
            workload = [*WORKLOADS[device], "--dataset-config", args.dataset_config,
                        "--language", args.language, "--limit", str(args.limit)]
            walls: dict[str, list[float]] = {name: [] for name in modes}
            rests: dict[str, list[float]] = {name: [] for name in modes}
            overheads: list[float] = []
            for number in range(args.rounds):
                order = list(modes) if number % 2 == 0 else list(reversed(modes))
                for name in order:
                    wall, run = to_verdict(modes[name], workload, Path(tmp), Path(tmp) / "none")
                    walls[name].append(wall)
                    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
                    line = (f"{device} round {number + 1}: {name:<13} {wall:7.1f} s to the "
                            f"verdict [load {load}]")
                    timed = run["timings"]["pass_seconds"]
                    counted = (run.get("counters") or {}).get("seconds")
                    decoding = (run["timings"]["warmup_seconds"] or 0) + sum(timed) + (
                        counted or 0)
                    rests[name].append(wall - decoding)
                    line += (f" = decoding {decoding:.1f} s (warm-up "
                             f"{run['timings']['warmup_seconds'] or 0:.1f}, timed "
                             f"{sum(timed):.1f}, counted {counted or 0:.1f}) + the rest "
                             f"{wall - decoding:.1f} s")
                    if timed and counted and run["timings"]["batches_per_pass"] == 1:
                        overheads.append(counted / timed[0] - 1)
                        line += (f" (counted pass {counted:.2f} s vs the timed pass's plain "
                                 f"decode of the same batch {timed[0]:.2f} s: "
                                 f"{overheads[-1]:+.1%})")
                    print(line, flush=True)
            one = statistics.median(walls["1-pass"])
            only = statistics.median(walls["counters-only"])
            print(f"{device}: median to the verdict: 1-pass {one:.1f} s, counters-only "
                  f"{only:.1f} s, ratio {only / one:.2f} (goal <= 0.5)")
            # What neither mode can leave out: start-up, imports, model load, features, the
            # reference check, report writing and the compare process ("the rest" above).
            print(f"{device}: median of the rest (all but the decodes): 1-pass "
                  f"{statistics.median(rests['1-pass']):.1f} s, counters-only "
                  f"{statistics.median(rests['counters-only']):.1f} s")
            if overheads:
                print(f"{device}: counting over one plain decode of the same batch: median "
                      f"{statistics.median(overheads):+.1%} (goal <= +10%)")


if __name__ == "__main__":
    main()
