"""Test-only: run asrbench with every model call slowed down by a fixed share of its own time.

    python tests/slowdown.py SLOWDOWN [asrbench arguments...]

SLOWDOWN is the throughput loss to inject (0.10: samples/s about 10% lower). Each call of the
model's encoder, decoder and output projection is timed and followed by a sleep of
SLOWDOWN / (1 - SLOWDOWN) times its own duration, so the injected cost scales with the real
work (a slower machine or a longer clip is slowed in proportion). The hooks are installed on
the loaded model from outside; no asrbench code path knows about them. SLOWDOWN 0 installs the
same hooks without sleeping, so a baseline side pays the same hook overhead.
benchmarks/tools/gate_power.py uses this as the side command of `asrbench ab` and for the runs it
compares with stored baselines.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def install(slowdown: float) -> None:
    """Slow every model asrbench loads by `slowdown` (tests/patched_models.py)."""
    from patched_models import on_every_load

    if not 0 <= slowdown < 1:
        raise SystemExit(f"slowdown must be in [0, 1), got {slowdown}")
    factor = slowdown / (1.0 - slowdown)

    def before(module: Any, args: Any) -> None:
        module._slowdown_started = time.perf_counter()

    def after(module: Any, args: Any, output: Any) -> None:
        elapsed = time.perf_counter() - module._slowdown_started
        if factor:
            time.sleep(factor * elapsed)

    def slow(model: Any) -> None:
        inner = getattr(model, "model", model)
        targets = [getattr(inner, "encoder", None), getattr(inner, "decoder", None),
                   model.get_output_embeddings()]
        for module in targets:
            if module is not None:
                module.register_forward_pre_hook(before)
                module.register_forward_hook(after)

    on_every_load(slow)


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    install(float(argv[0]))
    from patched_models import run_asrbench

    return run_asrbench(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
