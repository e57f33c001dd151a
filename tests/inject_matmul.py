"""Test-only: run asrbench with one extra matmul per decoder layer, transcripts unchanged.

    python tests/inject_matmul.py [asrbench arguments...]

A forward hook on every decoder layer of the loaded model multiplies the layer's output hidden
states (rows x d_model) by a fixed d_model x 4 matrix and drops the result: one more `aten.mm`
per layer in the prompt step and in every decode step, a fraction of a percent more FLOPs, and
the same tokens. It is the structural regression of issue 22 that no timing sees and the work
counters must catch (docs/counters.md). The hooks are installed on the loaded model from
outside, as tests/slowdown.py installs its sleeps; no asrbench code path knows about them.
tests/test_counters_gate_e2e.py runs this against a baseline recorded from the clean code.
"""

from __future__ import annotations

import sys
from typing import Any

#: columns of the dropped product (any small number: the op count, not its size, is the point)
EXTRA_COLUMNS = 4


def install() -> None:
    """One extra matmul per decoder layer in every model asrbench loads
    (tests/patched_models.py)."""
    import torch
    from patched_models import on_every_load

    def add_matmul(model: Any) -> None:
        parameter = next(model.parameters())
        weight = torch.ones(model.config.d_model, EXTRA_COLUMNS, dtype=parameter.dtype,
                            device=parameter.device)

        def extra_matmul(module: Any, args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            torch.mm(hidden.reshape(-1, hidden.shape[-1]), weight.to(hidden.dtype))

        for layer in model.get_decoder().layers:
            layer.register_forward_hook(extra_matmul)

    on_every_load(add_matmul)


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    install()
    from patched_models import run_asrbench

    return run_asrbench(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
