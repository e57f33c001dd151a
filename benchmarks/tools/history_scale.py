"""Wall time of `asrbench history changes` and `asrbench html --history` at 1,000 and 10,000
stored reports.

Builds each store in a temp directory: the schema through the store API, then the reports
(small synthetic ones, one run of one config each: the longest series a store of that size can
hold) inserted in one transaction, as `history add` would store them (same columns, the whole
report JSON, its digest). The samples/s series has planted steps (-5% at 30%, +4% at 70% of the
runs) in 1% noise, the WER one step at 50%. Then times the two commands through the CLI's own
entry point (asrbench.cli.main.main), each in a fresh Python process (imports included, as a
user runs it). Nothing is asserted: the numbers go in docs/performance.md.

    python benchmarks/tools/history_scale.py [--reports 1000 10000] [--configs 1] [--profile]

`--profile` also prints the top of a cProfile of each command (cumulative time) to stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asrbench.formats.model import SCHEMA_VERSION, Report, dump
from asrbench.history.store import open_store, report_digest, stored_document


def _report(number: int, configs: int, rng: random.Random, total: int) -> Report:
    """One small report: `configs` runs, levels following the planted steps."""
    level = 10.0 * (0.95 if number >= 0.3 * total else 1.0) * (1.04 if number >= 0.7 * total
                                                                else 1.0)
    wer = 0.20 if number < 0.5 * total else 0.21
    runs = []
    for c in range(configs):
        rates = [level * (1.0 + rng.gauss(0.0, 0.01)) for _ in range(3)]
        median = sorted(rates)[1]
        runs.append({
            "config": {"id": f"whisper-synthetic-{c}"},
            "device": {"kind": "cpu", "class": "cpu"},
            "metrics": {"wer": wer, "wer_normalized": wer - 0.05, "cer": 0.1,
                        "samples_per_second": median},
            "throughput": {"samples_per_second_per_pass": rates,
                           "samples_per_second_min": min(rates),
                           "samples_per_second_max": max(rates),
                           "samples_per_second_rsd": 0.01},
            "utterances": [{"id": "a", "reference": "hello world", "prediction": "hello world"}],
        })
    commit = f"{number + 1:040x}"
    return Report.model_validate({
        "schema": SCHEMA_VERSION,
        "environment": {"packages": {}, "created": f"2026-01-01T00:00:{number % 60:02d}",
                        "git": {"commit": commit, "branch": "main", "dirty": False},
                        "device": {"class": "cpu"}},
        "runs": runs})


def build_store(path: Path, reports: int, configs: int, seed: int = 0) -> Report:
    """A store of `reports` synthetic reports at path; returns the last report."""
    from asrbench.history.store import _run_row

    rng = random.Random(seed)
    report_rows, run_rows = [], []
    last = None
    for number in range(reports):
        last = _report(number, configs, rng, reports)
        document = stored_document(last)
        commit = document["environment"]["git"]["commit"]
        report_rows.append((number + 1, report_digest(document), commit, commit, 0, "main",
                            "cpu", document["environment"]["created"],
                            "2026-01-01T00:00:00+00:00", "synthetic", "history_scale.py",
                            json.dumps(document, sort_keys=True)))
        run_rows += [(number + 1, position) + _run_row(run)
                     for position, run in enumerate(last.runs)]
    with open_store(path, create=True) as store, store.transaction():
        store.conn.executemany(
            "INSERT INTO reports (id, sha256, commit_sha, report_commit, dirty, branch, "
            "device_class, created, added, asrbench_version, source, report_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", report_rows)
        store.conn.executemany(
            "INSERT INTO runs (report_id, position, config_id, device_class, wer, "
            "wer_normalized, cer, samples_per_second, rsd, passes, utterances, "
            "compilations_timed, samples_per_pass, pass_seconds) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", run_rows)
    assert last is not None
    return last


_CHILD = """
import cProfile, pstats, sys
from asrbench.cli.main import main
argv, profile = sys.argv[2:], sys.argv[1] == "1"
if not profile:
    sys.exit(main(argv))
profiler = cProfile.Profile()
code = profiler.runcall(main, argv)
pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
sys.exit(code)
"""


def timed(argv: list[str], profile: bool) -> tuple[float, float, str]:
    """Wall and CPU (user + system) seconds of one CLI command (asrbench.cli.main.main in a
    fresh Python, imports included, as a user runs it) and its last output line; the profile
    goes to stderr. CPU seconds say what the wall time would be on an idle core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, "1" if profile else "0", *argv],
                          stdout=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"asrbench {' '.join(argv)} exited {done.returncode}")
    lines = done.stdout.strip().splitlines()
    return seconds, cpu, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--configs", type=int, default=1, help="runs (configs) per report")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each")
    args = parser.parse_args(argv)
    print(f"{'reports':>8} {'build s':>8} {'changes s (cpu)':>16} {'html s (cpu)':>14}  "
          "changes found")
    for count in args.reports:
        with tempfile.TemporaryDirectory(prefix="asrbench-history-scale-") as tmp:
            start = time.perf_counter()
            store = Path(tmp) / "history.sqlite"
            last = build_store(store, count, args.configs)
            report = Path(tmp) / "report.json"
            report.write_text(json.dumps(dump(last)), encoding="utf-8")
            (Path(tmp) / "baselines").mkdir()
            built = time.perf_counter() - start
            changes, changes_cpu, summary = timed(["history", "changes", "--history",
                                                   str(store)], args.profile)
            page, page_cpu, _ = timed(["html", "--report", str(report), "--history",
                                       str(store), "--baseline-dir",
                                       str(Path(tmp) / "baselines"),
                                       "--out", str(Path(tmp) / "report.html")], args.profile)
        print(f"{count:>8} {built:>8.1f} {changes:>8.2f} ({changes_cpu:5.2f}) "
              f"{page:>6.2f} ({page_cpu:5.2f})  {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
