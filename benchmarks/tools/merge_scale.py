"""Wall time and peak memory of `asrbench merge` over many shard reports of one large split.

Writes N synthetic shard reports (`asrbench run --shard I/N` reports: one config, the split's
utterances cut by asrbench's own shard function, each with its edit counts, positions, every
timed batch's latency over 3 passes and equal counters) of a U-utterance split into a temp
directory, then runs `asrbench merge` on them through the console entry point in a fresh
Python process (imports, reading, validation, pooling and the atomic write included, as a user
runs it), and prints its wall time and peak resident memory (the child's ru_maxrss). Nothing is
asserted: the figures go in docs/performance.md.

    python benchmarks/tools/merge_scale.py [--utterances 30000] [--shards 10 100] [--repeat 3]

Memory depends on the split's size (the merged report holds every utterance), not on the number
of shards: compare the figures of 10 and 100 shards of one split.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asrbench.formats.io import write_report
from asrbench.formats.model import SCHEMA_VERSION, Report
from asrbench.measure.distributed import ShardSpec, shard_members, split_fingerprint

BATCH = 8
PASSES = 3


def _counters() -> dict:
    ops = {f"aten.op{i} f32": i + 1 for i in range(40)}
    return {"version": 1, "selection": "the first batch in decoding order (longest clips first)",
            "utterances": [f"clip-{i:06d}" for i in range(BATCH)], "rows": BATCH,
            "real_rows": BATCH, "replay_bypassed": False, "encoder_calls": 1, "encoder_ops": ops,
            "prompt_step_ops": ops, "decode_step_ops": ops, "decode_steps": 40,
            "steady_steps": 39, "decode_ops_total": ops, "other_ops": ops, "flops": 10 ** 12,
            "flops_per_utterance": 1.25e11, "host_syncs": 40, "host_syncs_per_token": 1.0,
            "tokens": 300, "seconds": 1.0}


def shard_reports(utterances: int, shards: int, directory: Path, seed: int = 0) -> list[Path]:
    """Write the shard reports of a synthetic split; returns their paths."""
    rng = random.Random(seed)
    ids = [f"clip-{i:06d}" for i in range(utterances)]
    fingerprint = split_fingerprint(ids)
    positions = {u: i for i, u in enumerate(ids)}
    paths = []
    for index in range(shards):
        members = sorted(shard_members(ids, ShardSpec(index, shards)), key=positions.get)
        batches = -(-len(members) // BATCH)
        seconds = [batches * 0.05 * (1 + rng.gauss(0, 0.02)) for _ in range(PASSES)]
        rows = []
        for u in members:
            words = rng.randint(4, 20)
            errors = rng.randint(0, 3)
            rows.append({"id": u, "reference": "a reference sentence of some words " * 2,
                         "prediction": "a predicted sentence of some words " * 2,
                         "tokens": rng.randint(8, 40), "audio_seconds": rng.uniform(2, 10),
                         "edits": [errors, words, errors * 4, words * 5, errors, words]})
        run = {
            "config": {"id": "whisper-synthetic-big-split", "batch_size": BATCH},
            "device": {"kind": "cuda", "class": "cuda-h100"},
            "metrics": {"wer": 0.1, "wer_normalized": 0.08, "cer": 0.05,
                        "samples_per_second": len(members) / statistics.median(seconds)},
            "throughput": {"samples_per_second_per_pass": [len(members) / s for s in seconds],
                           "samples_per_second_rsd": 0.02},
            "timings": {"pass_seconds": seconds, "harness_overhead": 0.05,
                        "batches_per_pass": batches, "warmup_seconds": 1.0,
                        "feature_extraction_seconds": 2.0, "detokenize_seconds": 0.1},
            "dataset": {"name": "synthetic", "utterances": len(members),
                        "normalized_wer_excluded": 0},
            "passes_identical": True, "utterances": rows, "counters": _counters(),
            "shard": {"index": index, "count": shards, "source": f"--shard {index}/{shards}",
                      "split_fingerprint": fingerprint, "split_utterances": utterances,
                      "positions": [positions[u] for u in members],
                      "latencies": [0.05 * (1 + rng.gauss(0, 0.05)) ** 2
                                    for _ in range(batches * PASSES)],
                      "whisper_edits": [sum(r["edits"][0] for r in rows),
                                        sum(r["edits"][1] for r in rows)]},
        }
        report = Report.model_validate({
            "schema": SCHEMA_VERSION, "runs": [run],
            "environment": {"packages": {"asrbench": "bench"}, "git": {"commit": "0" * 40},
                            "hostname": f"node-{index:03d}"}})
        path = directory / f"shard-{index:03d}.json"
        write_report(path, report)
        paths.append(path)
    return paths


#: the console entry point, reporting its own peak RSS on stderr at the end
_CHILD = ("import resource, sys\n"
          "from asrbench.cli.main import main\n"
          "code = main(sys.argv[1:])\n"
          "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
          "print('USAGE', usage.ru_maxrss, usage.ru_utime + usage.ru_stime, file=sys.stderr)\n"
          "sys.exit(code)\n")


def time_merge(paths: list[Path], out: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MiB) of one `asrbench merge` in a fresh
    process (CPU seconds: user + system, what the wall time is on an idle core)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, "merge", *map(str, paths),
                           "--report", str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    peak, cpu = proc.stderr.split("USAGE")[-1].split()[:2]
    return seconds, float(cpu), int(peak) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=30000)
    parser.add_argument("--shards", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for shards in args.shards:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            paths = shard_reports(args.utterances, shards, directory)
            size = sum(p.stat().st_size for p in paths) / 2 ** 20
            times, cpus, peaks = [], [], []
            for _ in range(args.repeat):
                seconds, cpu, peak = time_merge(paths, directory / "merged.json")
                times.append(seconds)
                cpus.append(cpu)
                peaks.append(peak)
            print(f"{shards} shards of a {args.utterances}-utterance split ({size:.1f} MiB of "
                  f"reports): asrbench merge {statistics.median(times):.2f} s median of "
                  f"{args.repeat} (min {min(times):.2f}, max {max(times):.2f}), CPU "
                  f"{statistics.median(cpus):.2f} s, peak RSS {max(peaks):.0f} MiB")


if __name__ == "__main__":
    main()
