"""Emulated habana_frameworks.torch.hpu.metrics: `metric_global("graph_compilation")` counts
emulated HPU graph captures, the only compilation this emulator has."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from asrbench.devices.emulation.graphs import STATS


class MetricNotFound(Exception):
    """No metric with that name (the real exception's name)."""


class GraphCompilationMetric:
    """[("TotalNumber", n), ("TotalTime", ms), ("AvgTime", ms)], as the real metric reports."""

    def __init__(self) -> None:
        self._base_number = 0
        self._base_time = 0.0

    def name(self) -> str:
        return "graph_compilation"

    def stats(self) -> Sequence[tuple[str, float]]:
        number = STATS.captures - self._base_number
        total = STATS.capture_ms - self._base_time
        return [("TotalNumber", number), ("TotalTime", int(total)),
                ("AvgTime", total / number if number else 0)]

    def reset(self) -> None:
        self._base_number = STATS.captures
        self._base_time = STATS.capture_ms


_GLOBAL = {"graph_compilation": GraphCompilationMetric()}


def metric_global(name: str):
    """The process-wide metric of that name, or None (as the real manager returns)."""
    return _GLOBAL.get(name)


@contextlib.contextmanager
def metric_localcontext(name: str):
    """A metric counting only inside the block."""
    if name not in _GLOBAL:
        raise MetricNotFound(f"Metric with given name ({name}) doesn't exist.")
    metric = GraphCompilationMetric()
    metric.reset()
    yield metric
