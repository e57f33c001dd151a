"""The gate's measured power: false alarms on identical reruns, detections of injected slowdowns.

Each trial runs one whole `asrbench ab` of base (this code) against head (this code with a
throughput loss injected, with an extra matmul per decoder layer, or unchanged) on a small
English slice of the embedded corpus, keeping every process's report. Five policies judge each
trial:

  stored, default band      head's first process against a baseline recorded from 1 process:
                            band max(5%, 3x its pass RSD) and a Mann-Whitney test on passes
  stored, per-class band    the same against the cpu matrix section's 40% floor
  stored, between-process   the same against a baseline recorded from --baseline-processes
                            processes: band = the prediction bound from their spread, 5% floor
  A/B                       the `asrbench ab` verdict: fresh processes per round, interleaved,
                            adaptive (looks at rounds 4, 6, 9, 14, 20), at --threshold 10%
  counters                  the exact work counters (docs/counters.md) of head's accuracy run
                            against base's: the A/B's own counter verdicts; flagged when one
                            regressed. Time to verdict: head's accuracy process, one run

A stored-baseline trial is one fresh process (the head's first round), exactly what a PR job
on a stored baseline runs. Slowdowns are injected by tests/slowdown.py, a test-only wrapper
that sleeps a fixed share of each model call's own time, never through asrbench's code paths.
Trials of all levels run in a shuffled order, so a slow spell of the machine does not land on
one level only.

A sleep changes no count, by design: the counters policy detects none of the slowdowns, which
is what only timing can catch (kernel speed, clocks, contention). --structural N adds N trials
whose head runs tests/inject_matmul.py instead (one extra matmul per decoder layer, transcripts
unchanged, a fraction of a percent more FLOPs): the structural regression the counters catch
exactly and timing hardly sees. There the A/B fails through its exact counter check, so the
table adds the row "A/B, throughput alone" (its samples/s verdict regressed) beside it.

Prints one line per trial and the table: false alarms (level 0), detections per level, the
median time to a verdict. Nothing is asserted: the numbers go in docs/performance.md.

    python benchmarks/tools/gate_power.py [--trials 10] [--trials-other 2]
                                          [--slowdowns 0.05,0.10,0.20] [--structural 0]

The defaults are the measured run in docs/performance.md: about two hours on a quiet 2-core
CPU (a trial is 2-8 minutes). Run nothing else meanwhile: load from other work on the same
cores is exactly the noise being measured, and ruins the comparison of runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asrbench.ab.decision import OUTCOMES
from asrbench.formats.io import load_report
from asrbench.gate.counters import COUNTER_METRICS
from asrbench.gate.outcome import gate_report

ROOT = Path(__file__).resolve().parents[2]
SLOWDOWN = str(ROOT / "tests" / "slowdown.py")
INJECT_MATMUL = str(ROOT / "tests" / "inject_matmul.py")
STORED = ("stored, default band", "stored, per-class band", "stored, between-process")
COUNTERS = "counters"
THROUGHPUT_ALONE = "A/B, throughput alone"
#: the level of the structural trials (--structural): head runs tests/inject_matmul.py
MATMUL = "matmul"

Level = float | str


def side(level: Level) -> list[str]:
    if level == MATMUL:
        # no sleep hooks: the base side's zero-sleep hooks dispatch no op and cost microseconds
        return [sys.executable, INJECT_MATMUL]
    return [sys.executable, SLOWDOWN, f"{level:g}"]


def label(level: Level) -> str:
    """A level as the table names it: "10%", or "matmul" for the structural trials."""
    return level if isinstance(level, str) else f"{level:.0%}"


def described(level: Level) -> str:
    return "extra matmul" if level == MATMUL else f"slowdown {level:.0%}"


def _order(level: Level) -> tuple:
    """Slowdowns first, in order, then the structural level."""
    return (1, 0.0, level) if isinstance(level, str) else (0, level, "")


def counter_check(document: dict, kept: Path) -> dict:
    """The counters policy on one trial: the A/B's counter verdicts (head's accuracy run against
    base's, compared exactly) and how long head's accuracy process took. `asrbench ab` runs the
    two accuracy processes one after the other and records no wall time of them, so the time is
    from base's accuracy report written to head's: head's process start, imports, model load,
    warm-up, timed pass and counted pass (a few milliseconds of base's exit included)."""
    verdicts = [v for comparison in document["comparisons"] for v in comparison["verdicts"]
                if v["metric"] in COUNTER_METRICS]
    head = kept / "accuracy-head.json"
    counted = [run.counters.seconds for run in load_report(head).runs
               if run.counters is not None and run.counters.seconds is not None]
    return {COUNTERS: int(any(v["verdict"] == "regressed" for v in verdicts)),
            "counters_seconds": head.stat().st_mtime
            - (kept / "accuracy-base.json").stat().st_mtime,
            "counted_pass_seconds": sum(counted) if counted else None,
            "counters_changed": "; ".join(v["note"] for v in verdicts
                                          if v["verdict"] in ("regressed", "improved"))}


def throughput_alone(document: dict) -> int:
    """1 when the A/B's samples/s verdict (its timing rounds, nothing else) regressed."""
    return int(any(v["metric"] == "samples_per_second" and v["verdict"] == "regressed"
                   for comparison in document["comparisons"] for v in comparison["verdicts"]))


def asrbench(level: Level, args: list[str], check: bool = True) -> tuple[int, float, str]:
    started = time.perf_counter()
    done = subprocess.run(side(level) + args, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if check and done.returncode not in (0, 1):
        raise SystemExit(f"asrbench {' '.join(args[:1])} failed ({done.returncode}): "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    return done.returncode, seconds, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10,
                        help="trials with no slowdown and with the --key-slowdown (default 10)")
    parser.add_argument("--trials-other", type=int, default=2,
                        help="trials of the other slowdowns (default 2)")
    parser.add_argument("--slowdowns", default="0.05,0.10,0.20",
                        help="injected throughput losses (default 0.05,0.10,0.20)")
    parser.add_argument("--structural", type=int, default=0, metavar="N",
                        help="trials whose head does one extra matmul per decoder layer "
                             "(tests/inject_matmul.py: transcripts unchanged), the column "
                             "'detects matmul' (default 0)")
    parser.add_argument("--key-slowdown", type=float, default=0.10,
                        help="the slowdown the A/B target is about (default 0.10)")
    parser.add_argument("--baseline-processes", type=int, default=5,
                        help="processes recorded for the between-process baseline (default 5)")
    parser.add_argument("--model", default="bundled:whisper-base",
                        help="the model every process runs (default bundled:whisper-base; the "
                             "test of this script runs a tiny random Whisper folder)")
    parser.add_argument("--locale", default="en")
    parser.add_argument("--language", default="english")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--generation-max-length", type=int, default=40)
    parser.add_argument("--passes", type=int, default=1,
                        help="timed passes of each process (default 1: the noise is between "
                             "processes, more passes of one process do not reduce it)")
    parser.add_argument("--threshold", type=float, default=0.10,
                        help="the A/B's --threshold (default 0.10, the size of slowdown the target "
                             "is about; asrbench ab's own default is 0.05)")
    parser.add_argument("--cpu-floor", type=float, default=0.4,
                        help="the per-class band (default 0.4, as benchmarks/matrix.toml [cpu])")
    parser.add_argument("--ab-args", default="", help="more `asrbench ab` options, one string")
    parser.add_argument("--seed", type=int, default=0, help="order of the trials (default 0)")
    parser.add_argument("--json", type=Path, help="write every trial here")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep every process's report here (default: a temporary directory)")
    parser.add_argument("--rejudge", type=Path, metavar="DIR",
                        help="run nothing: judge the stored-baseline policies again on the "
                             "reports a --keep run left in DIR, with baselines recorded from the "
                             "base side's first processes of its first trials (unmodified code, "
                             "same machine, same hour) instead of the processes recorded before")
    args = parser.parse_args(argv)
    if args.rejudge:
        return rejudge(args.rejudge, args.baseline_processes, args.cpu_floor)
    others = [float(v) for v in args.slowdowns.split(",") if v.strip()]
    levels: list[Level] = [0.0] + others + ([MATMUL] if args.structural > 0 else [])
    workload = ["--model", args.model, "--dataset-config", args.locale,
                "--language", args.language, "--limit", str(args.limit),
                "--batch-size", str(args.batch_size),
                "--generation-max-length", str(args.generation_max_length), "--no-progress"]
    policies = list(STORED) + ["A/B"] + ([THROUGHPUT_ALONE] if MATMUL in levels else []) + [
        COUNTERS]
    trials = [(level, number) for level in levels
              for number in range(args.structural if level == MATMUL
                                  else args.trials if level in (0.0, args.key_slowdown)
                                  else args.trials_other)]
    random.Random(args.seed).shuffle(trials)
    results: dict[str, dict[Level, list[tuple[bool, float]]]] = {
        p: {level: [] for level in levels} for p in policies}
    records = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gate-power-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        reports = []
        for number in range(max(1, args.baseline_processes)):
            path = work / f"baseline{number}.json"
            asrbench(0.0, ["run", *workload, "--passes", str(args.passes), "--report", str(path)])
            reports.append(str(path))
        for name, extra in ((STORED[0], [reports[0]]),
                            (STORED[1], [reports[0], "--tolerance",
                                         f"samples_per_second_rel={args.cpu_floor}"]),
                            (STORED[2], reports)):
            code, _, _ = asrbench(0.0, ["baseline", "update", "--baseline-dir",
                                        str(work / _slug(name)), "--report", *extra])
            if code != 0:
                raise SystemExit(f"recording the baseline of {name!r} failed")
        print(f"baselines recorded from {len(reports)} process(es)", flush=True)
        for index, (level, number) in enumerate(trials, start=1):
            record: dict = {"level": level, "trial": number, "index": index}
            out, kept = work / f"ab{index}.json", work / f"ab{index}"
            ab = ["ab", *workload, "--passes", str(args.passes), "--base-command",
                  shlex.join(side(0.0)), "--head-command", shlex.join(side(level)),
                  "--json", str(out), "--keep-reports", str(kept), "--seed", str(index),
                  "--threshold", str(args.threshold), *shlex.split(args.ab_args)]
            code, seconds, _ = asrbench(0.0, ab)
            document = json.loads(out.read_text())
            decision = document["decisions"][0]
            results["A/B"][level].append((code == 1, seconds))
            counters = counter_check(document, kept)
            results[COUNTERS][level].append((bool(counters[COUNTERS]),
                                             counters["counters_seconds"]))
            alone = throughput_alone(document)
            if THROUGHPUT_ALONE in results:
                results[THROUGHPUT_ALONE][level].append((bool(alone), seconds))
            # the stored-baseline policies judge the head's first process, as a PR job would
            first = kept / "round1-head.json"
            one_process = document["rounds"][0]["seconds"] / 2
            for name in STORED:
                failed = gate_report(load_report(first), work / _slug(name)).failed
                results[name][level].append((failed, one_process))
                record[name] = int(failed)
            record.update({"samples_per_second": load_report(first).runs[0].metrics
                           .samples_per_second, "A/B": code,
                           "ab_outcome": decision["outcome"], "ab_ratio": decision["ratio"],
                           "ab_ci": [decision["ci_low"], decision["ci_high"]],
                           "ab_rounds": decision["rounds"], "ab_seconds": seconds,
                           "ab_throughput": alone, **counters})
            records.append(record)
            print(f"trial {index}/{len(trials)} {described(level)}: "
                  + ", ".join(f"{k}={v}" for k, v in record.items()
                              if k not in ("level", "trial")), flush=True)
        document = json.dumps({"trials": records}, indent=1)
        (work / "trials.json").write_text(document)
    header = ["policy", "false alarms"] + [f"detects {label(lvl)}" for lvl in levels[1:]] + [
        "median time to verdict"]
    rows = [header]
    for policy in policies:
        cells = [policy, f"{sum(f for f, _ in results[policy][0.0])}/{len(results[policy][0.0])}"]
        cells += [f"{sum(f for f, _ in results[policy][lvl])}/{len(results[policy][lvl])}"
                  for lvl in levels[1:]]
        times = [s for lvl in levels for _, s in results[policy][lvl]]
        cells.append(f"{statistics.median(times):.0f} s" if times else "-")
        rows.append(cells)
    outcomes = {lvl: [r for r in records if r["level"] == lvl] for lvl in levels}
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"\n{len(trials)} trials in {time.perf_counter() - started:.0f} s; workload: "
          f"{' '.join(workload)} --passes {args.passes}; stored baselines: time to verdict is one "
          "process (recording the baseline not counted); counters: time to verdict is head's "
          "accuracy process, one run with its counted pass")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    for lvl, done in outcomes.items():
        counts = {o: sum(r["ab_outcome"] == o for r in done) for o in OUTCOMES}
        rounds = sorted(r["ab_rounds"] for r in done)
        print(f"A/B at {described(lvl)}: " + ", ".join(f"{o} {n}" for o, n in counts.items())
              + (f"; rounds {rounds[0]}-{rounds[-1]} (median {statistics.median(rounds):g})"
                 if rounds else ""))
    for lvl, done in outcomes.items():
        changed = sorted({r["counters_changed"] for r in done if r["counters_changed"]})
        print(f"counters at {described(lvl)}: {sum(r[COUNTERS] for r in done)}/{len(done)} "
              "flagged" + (f"; changed: {' | '.join(changed)}" if changed else ""))
    print("counters: a sleep-injected slowdown changes no count, by design, so the counters "
          "detect none of them: that is what only timing can catch (kernel speed, clocks, "
          "contention)" + ("; the extra matmul per decoder layer is what counters catch and "
                           "timing hardly sees (the A/B fails it through its exact counter check: "
                           f"'{THROUGHPUT_ALONE}' is its timing's verdict)"
                           if MATMUL in levels else
                           "; --structural N adds trials with an extra matmul per decoder layer, "
                           "what counters catch"))
    if args.json:
        args.json.write_text(document)
    return 0


def _table(results: dict[str, dict[Level, list[bool]]]) -> None:
    levels = sorted(next(iter(results.values())), key=_order)
    print("| policy | false alarms | " + " | ".join(f"detects {label(lvl)}" for lvl in levels[1:])
          + " |")
    for policy, per_level in results.items():
        print(f"| {policy} | " + " | ".join(f"{sum(per_level[lvl])}/{len(per_level[lvl])}"
                                            for lvl in levels) + " |")


def rejudge(directory: Path, processes: int, cpu_floor: float) -> int:
    """The stored-baseline policies judged again on a kept run (see --rejudge)."""
    records = json.loads((directory / "trials.json").read_text())["trials"]
    for position, record in enumerate(records, start=1):
        record.setdefault("index", position)  # trials are recorded in the order they ran
    order = sorted(range(len(records)), key=lambda i: records[i]["index"])
    sources = [directory / f"ab{records[i]['index']}" / "round1-base.json"
               for i in order[:processes]]
    import asrbench.cli.main

    # The recorded baselines live in a temporary folder removed afterwards; what `baseline
    # update` prints (that folder's paths) is shown only when recording fails, so that judging
    # the same kept files twice prints the same text.
    results: dict[str, dict[Level, list[bool]]] = {name: {} for name in STORED}
    with tempfile.TemporaryDirectory(prefix="gate-power-rejudge-") as temporary:
        work = Path(temporary)
        for name, extra in ((STORED[0], [str(sources[0])]),
                            (STORED[1], [str(sources[0]), "--tolerance",
                                         f"samples_per_second_rel={cpu_floor}"]),
                            (STORED[2], [str(p) for p in sources])):
            said = io.StringIO()
            with contextlib.redirect_stdout(said):
                code = asrbench.cli.main.main(["baseline", "update", "--baseline-dir",
                                               str(work / _slug(name)), "--report", *extra])
            if code != 0:
                print(said.getvalue(), end="")
                raise SystemExit(f"recording the baseline of {name!r} failed")
        for record in records:
            head = directory / f"ab{record['index']}" / "round1-head.json"
            for name in STORED:
                failed = gate_report(load_report(head), work / _slug(name)).failed
                results[name].setdefault(record["level"], []).append(failed)
    print(f"\nstored baselines from the base side's first process of trials "
          f"{', '.join(str(records[i]['index']) for i in order[:processes])}:")
    _table(results)
    return 0


def _slug(name: str) -> str:
    return name.replace(" ", "_").replace(",", "").replace("/", "")


if __name__ == "__main__":
    sys.exit(main())
