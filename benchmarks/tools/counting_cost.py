"""What counting costs over one plain decode of the same batches (issue 29: goal at most +10%).

In one process, on one batch of the embedded corpus's English clips (bundled:whisper-base by
default), alternating round by round:

- plain: the batch decoded as a timed pass decodes it (Evaluator._pass: the run's decoder,
  graphs replayed where the device has them);
- plain-nogc: the same with Python's garbage collector off, as the counted pass runs (a
  collection in a process holding torch and transformers takes 1-2 s: the difference between
  plain and plain-nogc is that, not counting);
- eager: the same decode with the device's graph wrappers bypassed as the counted pass bypasses
  them, gc off, no counting (differs from plain-nogc only with graphs);
- counted: the counted pass over the same batch (count_batches: every op, FLOP, byte and host
  read counted).

Prints per round each one's wall seconds and this process's CPU seconds (less sensitive to
other processes on a shared machine than wall time), then the medians and the ratios
counted/plain and counted/eager, with the load average before and after.

    .venv/bin/python benchmarks/tools/counting_cost.py [--device cpu] [--rounds 3]
        [--limit 4] [--batch-size 4] [--model bundled:whisper-base] [--graphs]

Research tool, not a test (docs/performance.md records runs with the machine's load).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="default: asrbench's default model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--generation-max-length", type=int, default=48)
    parser.add_argument("--graphs", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)

    from asrbench.config.settings import BenchConfig
    from asrbench.devices import graphing
    from asrbench.measure.counters import CountedBatch, count_batches
    from asrbench.measure.engine import Evaluator
    from asrbench.measure.session import Session

    fields = dict(device=args.device, dataset_config="en", language="english",
                  limit=args.limit, batch_size=args.batch_size, graphs=args.graphs,
                  generation_max_length=args.generation_max_length, reference_utterances=0)
    if args.model:
        fields["model"] = args.model
    config = BenchConfig(**fields)
    session = Session(progress=False)
    prepared = session.model(config)
    split = session.split(config)
    evaluator = Evaluator(prepared, config)
    batches = evaluator.featurize([u.audio for u in split.utterances])
    features, real = batches.features[0], batches.real[0]
    mask = batches.mask(0)

    def plain() -> None:
        evaluator._pass([(features, mask, real)], "plain")

    def plain_nogc() -> None:
        enabled = gc.isenabled()
        gc.disable()
        try:
            plain()
        finally:
            if enabled:
                gc.enable()

    def eager() -> None:  # what the counted pass decodes, gc off as there: uncounted
        with graphing.eager():
            plain_nogc()

    def counted() -> None:
        count_batches(prepared, evaluator.decoder,
                      [CountedBatch(features, real, 0, evaluator.generate_kwargs())],
                      prepared.device)

    plain()  # warm-up: graph capture, allocator, first-call costs
    kinds = {"plain": plain, "plain-nogc": plain_nogc, "eager": eager, "counted": counted}
    if not args.graphs:
        del kinds["eager"]  # no wrapper to bypass: eager is plain
    wall: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    for number in range(args.rounds):
        order = list(kinds) if number % 2 == 0 else list(reversed(kinds))
        line = []
        for kind in order:
            w0, c0 = time.perf_counter(), time.process_time()
            kinds[kind]()
            wall[kind].append(time.perf_counter() - w0)
            cpu[kind].append(time.process_time() - c0)
            line.append(f"{kind} {wall[kind][-1]:.2f} s wall / {cpu[kind][-1]:.2f} s CPU")
        print(f"round {number + 1}: " + "; ".join(line), flush=True)
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in kinds}
    print(f"{args.device} ({config.model}, batch of {real} clips, "
          f"graphs {'on' if args.graphs else 'off'}), medians: " +
          "; ".join(f"{k} {w:.2f} s wall / {c:.2f} s CPU" for k, (w, c) in med.items()))
    for base in [k for k in kinds if k != "counted"]:
        print(f"counted over {base}: wall {med['counted'][0] / med[base][0] - 1:+.1%}, "
              f"CPU {med['counted'][1] / med[base][1] - 1:+.1%} (goal <= +10%)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
