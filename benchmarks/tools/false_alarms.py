"""Count false alarms of the gate: record a baseline, rerun the same config N times, compare.

Nothing changes between the runs, so every `asrbench compare` that exits non-zero is a false
alarm. Prints each rerun's verdicts, the throughput RSD of every run, and the count.

    python benchmarks/tools/false_alarms.py [--reruns 5] [--limit 16] [--language english]
                                            [-- run args]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from asrbench.cli.main import main as asrbench


def _run(report: Path, args: argparse.Namespace) -> dict:
    code = asrbench(["run", "--dataset-config", args.locale, "--language", args.language,
                     "--limit", str(args.limit), "--passes", str(args.passes),
                     "--device", args.device,
                     "--report", str(report), "--no-progress", *args.extra])
    if code != 0:
        raise SystemExit(f"asrbench run failed with exit code {code}")
    document = json.loads(report.read_text())
    if len(document["runs"]) != 1:
        raise SystemExit(f"expected one run, got {len(document['runs'])}")
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reruns", type=int, default=5,
                        help="identical reruns to compare (default 5)")
    parser.add_argument("--limit", type=int, default=16, help="utterances per run (default 16)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per run (default 3)")
    parser.add_argument("--locale", default="en", help="embedded corpus locale (default en)")
    parser.add_argument("--language", default="english", help="forced language (default english)")
    parser.add_argument("--device", default="cpu", help="device (default cpu)")
    parser.add_argument("--cpu-tolerance", type=float, default=0.4,
                        help="throughput tolerance of the cpu policy (default 0.4, as "
                             "benchmarks/matrix.toml)")
    parser.add_argument("extra", nargs="*", help="more `asrbench run` arguments, after --")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        policies = {"default 5% + 3x noise": [],
                    f"cpu policy {args.cpu_tolerance:.0%}": ["--tolerance",
                                                             f"samples_per_second_rel={args.cpu_tolerance}"]}
        first = _run(tmp_path / "baseline.json", args)
        for number, extra in enumerate(policies.values()):
            if asrbench(["baseline", "update", "--report", str(tmp_path / "baseline.json"),
                         "--baseline-dir", str(tmp_path / f"baselines{number}"), *extra]) != 0:
                raise SystemExit("baseline update failed")
        rsds = [first["runs"][0]["throughput"]["samples_per_second_rsd"]]
        rates = [first["runs"][0]["metrics"]["samples_per_second"]]
        alarms = dict.fromkeys(policies, 0)
        for number in range(1, args.reruns + 1):
            report = tmp_path / f"rerun{number}.json"
            document = _run(report, args)
            rsds.append(document["runs"][0]["throughput"]["samples_per_second_rsd"])
            rates.append(document["runs"][0]["metrics"]["samples_per_second"])
            for index, policy in enumerate(policies):
                code = asrbench(["compare", "--report", str(report),
                                 "--baseline-dir", str(tmp_path / f"baselines{index}")])
                alarms[policy] += code != 0
                print(f"rerun {number}, {policy}: compare exit {code}", flush=True)
    for policy, count in alarms.items():
        print(f"false alarms ({policy}): {count} of {args.reruns} identical reruns")
    print("samples/s per run (median of passes): " + ", ".join(f"{r:.3f}" for r in rates))
    print("within-run RSD per run: " + ", ".join(f"{r:.2%}" for r in rsds))
    rsd = statistics.stdev(rates) / statistics.fmean(rates)
    print(f"between-run RSD of the medians: {rsd:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
