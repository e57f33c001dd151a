"""Test-only: run `asrbench` with every model it loads changed from outside (tests/slowdown.py,
tests/inject_matmul.py). No asrbench code path knows about these changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def on_every_load(change: Callable[[Any], None]) -> None:
    """Call `change(model)` on every model asrbench.measure.models.load returns, under both
    names the code calls it by."""
    import asrbench.measure.models
    import asrbench.measure.session

    original = asrbench.measure.models.load

    def load(reference: str) -> Any:
        loaded = original(reference)
        change(loaded.model)
        return loaded

    asrbench.measure.models.load = load
    asrbench.measure.session.load = load  # the name the Session calls


def run_asrbench(argv: list[str]) -> int:
    """`asrbench <argv>` in this process, after the changes were installed."""
    from asrbench.cli.main import main

    return main(argv)
