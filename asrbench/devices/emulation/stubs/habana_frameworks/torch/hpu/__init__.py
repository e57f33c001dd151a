"""Emulated habana_frameworks.torch.hpu: device queries, memory, dynamic-shape switch, streams,
autocast queries and HPU graphs (graphs.py semantics, asrbench/devices/emulation/graphs.py)."""

from __future__ import annotations

import contextlib
import resource
from typing import Any

import torch

from asrbench.devices.emulation import state
from asrbench.devices.emulation.graphs import wrap_in_hpu_graph, wrap_in_hpu_graph_func  # noqa: F401
from habana_frameworks.torch.hpu import metrics  # noqa: F401


def is_available() -> bool:
    return True


def is_initialized() -> bool:
    return True


def init() -> None:
    """Nothing to initialise on a CPU."""


def device_count() -> int:
    return 1


def current_device() -> int:
    return 0


def set_device(device: Any) -> None:
    """One emulated card."""


def get_device_name(device: Any = None) -> str:
    return state.DEVICE_NAME


def synchronize() -> None:
    state.COUNTS["synchronize"] += 1


def is_autocast_hpu_enabled() -> bool:
    return torch.is_autocast_enabled("hpu")


def get_autocast_hpu_dtype() -> torch.dtype:
    return torch.get_autocast_dtype("hpu")


def enable_dynamic_shape() -> None:
    state.DYNAMIC_SHAPES["enabled"] = True


def disable_dynamic_shape() -> None:
    state.DYNAMIC_SHAPES["enabled"] = False


def get_dynamic_shape_status() -> bool:
    return state.DYNAMIC_SHAPES["enabled"]


def is_bf16_supported() -> bool:
    return True


# -- memory: host RSS stands in for device memory (no separate device here) ------------------

def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_allocated(device: Any = None) -> int:
    return _rss_bytes()


def max_memory_allocated(device: Any = None) -> int:
    return _rss_bytes()


def reset_peak_memory_stats(device: Any = None) -> None:
    """Host peak RSS cannot be reset; the emulator reports it as is."""


def memory_stats(device: Any = None) -> dict[str, int]:
    rss = _rss_bytes()
    return {"InUse": rss, "MaxInUse": rss, "Limit": 0}


# -- streams: one in-order CPU stream ----------------------------------------------------------

class Stream:
    """A stream object; CPU work is in order."""

    def synchronize(self) -> None:
        synchronize()


_DEFAULT_STREAM = Stream()


def default_stream(device: Any = None) -> Stream:
    return _DEFAULT_STREAM


def current_stream(device: Any = None) -> Stream:
    return _DEFAULT_STREAM


@contextlib.contextmanager
def stream(s: Stream | None):
    yield s
