"""The gate's measured power: false alarms on identical reruns, detections of injected slowdowns.

For each policy, every trial asks "does the gate fail?" on the same workload (the embedded
corpus, a small English slice by default), with a throughput loss injected or not:

  stored, default band      baseline from 1 process; band max(5%, 3x its pass RSD) + Mann-Whitney
  stored, per-class band    baseline from 1 process; the cpu matrix section's 40% floor
  stored, between-process   baseline from --baseline-processes processes; band = the prediction
                            bound from their spread, 5% floor
  A/B                       `asrbench ab` (workers mode by default): base and head interleaved on
                            this machine, adaptive rounds

A trial of a stored policy is one fresh `asrbench run` process compared with the stored
baseline; a trial of A/B is one whole `asrbench ab`. Slowdowns are injected by
benchmarks/slowdown.py (a test-only wrapper that sleeps a fixed share of each model call's own
time), never through asrbench's code paths. Trials of all levels run in a shuffled order, so a
slow spell of the machine does not land on one level only.

Prints one line per trial and the table: false alarms (level 0), detections per level, the
median time to a verdict. Nothing is asserted: the numbers go in docs/performance.md.

    python benchmarks/gate_power.py [--trials 10] [--slowdowns 0.05,0.10,0.20] [--no-ab]
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asrbench.gate import gate_report
from asrbench.report import load_report

HERE = Path(__file__).resolve().parent
SLOWDOWN = str(HERE / "slowdown.py")
STORED = ("stored, default band", "stored, per-class band", "stored, between-process")


def side(level: float) -> list[str]:
    return [sys.executable, SLOWDOWN, f"{level:g}"]


def asrbench(level: float, args: list[str], check: bool = True) -> tuple[int, float, str]:
    started = time.perf_counter()
    done = subprocess.run(side(level) + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    seconds = time.perf_counter() - started
    if check and done.returncode not in (0, 1):
        raise SystemExit(f"asrbench {' '.join(args[:1])} failed ({done.returncode}): "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    return done.returncode, seconds, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="trials per level (default 10)")
    parser.add_argument("--slowdowns", default="0.05,0.10,0.20",
                        help="injected throughput losses (default 0.05,0.10,0.20)")
    parser.add_argument("--baseline-processes", type=int, default=5,
                        help="processes recorded for the between-process baseline (default 5)")
    parser.add_argument("--locale", default="en")
    parser.add_argument("--language", default="english")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--generation-max-length", type=int, default=40)
    parser.add_argument("--passes", type=int, default=3, help="timed passes of a stored trial")
    parser.add_argument("--cpu-floor", type=float, default=0.4,
                        help="the per-class band (default 0.4, as benchmarks/matrix.toml [cpu])")
    parser.add_argument("--ab-mode", default="workers", choices=("workers", "processes"))
    parser.add_argument("--ab-args", default="", help="more `asrbench ab` options, one string")
    parser.add_argument("--no-ab", action="store_true", help="stored policies only")
    parser.add_argument("--no-stored", action="store_true", help="A/B only")
    parser.add_argument("--seed", type=int, default=0, help="order of the trials (default 0)")
    parser.add_argument("--json", type=Path, help="write every trial here")
    args = parser.parse_args(argv)
    levels = [0.0] + [float(v) for v in args.slowdowns.split(",") if v.strip()]
    workload = ["--dataset-config", args.locale, "--language", args.language,
                "--limit", str(args.limit), "--batch-size", str(args.batch_size),
                "--generation-max-length", str(args.generation_max_length), "--no-progress"]
    policies = ([] if args.no_stored else list(STORED)) + ([] if args.no_ab else ["A/B"])
    trials = [(level, number) for level in levels for number in range(args.trials)]
    random.Random(args.seed).shuffle(trials)
    results: dict[str, dict[float, list[tuple[bool, float]]]] = {
        p: {level: [] for level in levels} for p in policies}
    records = []
    with tempfile.TemporaryDirectory(prefix="gate-power-") as tmp:
        work = Path(tmp)
        if not args.no_stored:
            reports = []
            for number in range(max(1, args.baseline_processes)):
                path = work / f"baseline{number}.json"
                asrbench(0.0, ["run", *workload, "--passes", str(args.passes),
                               "--report", str(path)])
                reports.append(str(path))
            for name, extra in ((STORED[0], [reports[0]]),
                                (STORED[1], [reports[0], "--tolerance",
                                             f"samples_per_second_rel={args.cpu_floor}"]),
                                (STORED[2], reports)):
                code, _, _ = asrbench(0.0, ["baseline", "update", "--baseline-dir",
                                            str(work / name.replace(" ", "_").replace(",", "")),
                                            "--report", *extra])
                if code != 0:
                    raise SystemExit(f"recording the baseline of {name!r} failed")
            print(f"baselines recorded from {len(reports)} process(es)", flush=True)
        for index, (level, number) in enumerate(trials, start=1):
            record = {"level": level, "trial": number}
            if not args.no_stored:
                report = work / f"trial{index}.json"
                _, seconds, _ = asrbench(level, ["run", *workload, "--passes", str(args.passes),
                                                 "--report", str(report)])
                rate = json.loads(report.read_text())["runs"][0]["metrics"]["samples_per_second"]
                record["samples_per_second"] = rate
                for name in STORED:  # `asrbench compare`'s gate, in this process
                    failed = gate_report(load_report(report),
                                         work / name.replace(" ", "_").replace(",", "")).failed
                    results[name][level].append((failed, seconds))
                    record[name] = int(failed)
            if not args.no_ab:
                out = work / f"ab{index}.json"
                ab = ["ab", *workload, "--mode", args.ab_mode, "--base-command",
                      shlex.join(side(0.0)), "--head-command", shlex.join(side(level)),
                      "--json", str(out), "--seed", str(index), *args.ab_args.split()]
                code, seconds, _ = asrbench(0.0, ab)
                document = json.loads(out.read_text())
                decision = document["decisions"][0]
                results["A/B"][level].append((code == 1, seconds))
                record.update({"A/B": code, "ab_outcome": decision["outcome"],
                               "ab_ratio": decision["ratio"], "ab_rounds": decision["rounds"],
                               "ab_seconds": seconds})
            records.append(record)
            print(f"trial {index}/{len(trials)} slowdown {level:.0%}: "
                  + ", ".join(f"{k}={v}" for k, v in record.items()
                              if k not in ("level", "trial")), flush=True)
    header = ["policy", "false alarms"] + [f"detects {lvl:.0%}" for lvl in levels[1:]] + [
        "median time to verdict"]
    rows = [header]
    for policy in policies:
        cells = [policy, f"{sum(f for f, _ in results[policy][0.0])}/{len(results[policy][0.0])}"]
        cells += [f"{sum(f for f, _ in results[policy][lvl])}/{len(results[policy][lvl])}"
                  for lvl in levels[1:]]
        times = [s for lvl in levels for _, s in results[policy][lvl]]
        cells.append(f"{statistics.median(times):.0f} s" if times else "-")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print()
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    if args.json:
        args.json.write_text(json.dumps({"trials": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
