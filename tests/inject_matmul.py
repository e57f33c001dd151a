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
    """Wrap asrbench.measure.models.load so every model it returns does the extra matmul."""
    import torch

    import asrbench.measure.models
    import asrbench.measure.session

    original = asrbench.measure.models.load

    def load(reference: str) -> Any:
        loaded = original(reference)
        model = loaded.model
        layers = model.get_decoder().layers
        parameter = next(model.parameters())
        weight = torch.ones(model.config.d_model, EXTRA_COLUMNS, dtype=parameter.dtype,
                            device=parameter.device)

        def extra_matmul(module: Any, args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            torch.mm(hidden.reshape(-1, hidden.shape[-1]), weight.to(hidden.dtype))

        for layer in layers:
            layer.register_forward_hook(extra_matmul)
        return loaded

    asrbench.measure.models.load = load
    asrbench.measure.session.load = load  # the name the Session calls


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    install()
    from asrbench.cli.main import main as asrbench

    return asrbench(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
