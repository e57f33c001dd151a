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
    """Wrap asrbench.measure.models.load so every model it returns is slowed by `slowdown`."""
    import asrbench.measure.models
    import asrbench.measure.session

    if not 0 <= slowdown < 1:
        raise SystemExit(f"slowdown must be in [0, 1), got {slowdown}")
    factor = slowdown / (1.0 - slowdown)
    original = asrbench.measure.models.load

    def before(module: Any, args: Any) -> None:
        module._slowdown_started = time.perf_counter()

    def after(module: Any, args: Any, output: Any) -> None:
        elapsed = time.perf_counter() - module._slowdown_started
        if factor:
            time.sleep(factor * elapsed)

    def load(reference: str) -> Any:
        loaded = original(reference)
        model = loaded.model
        inner = getattr(model, "model", model)
        targets = [getattr(inner, "encoder", None), getattr(inner, "decoder", None),
                   model.get_output_embeddings()]
        for module in targets:
            if module is not None:
                module.register_forward_pre_hook(before)
                module.register_forward_hook(after)
        return loaded

    asrbench.measure.models.load = load
    asrbench.measure.session.load = load  # the name the Session calls


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    install(float(argv[0]))
    from asrbench.cli.main import main as asrbench

    return asrbench(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
