"""The graph wrappers a device installs, recorded where they are installed.

A device's graph wrapper (HPU graphs, the emulated ones, torch.compile for CUDA graphs) replaces
a module's `forward` on the instance. `install()` puts one more thin layer on top that

- registers the module as device-wrapped (`is_wrapped`), so the counted pass knows which
  replays it bypassed, and bypasses only those: an instance-level forward the device did not
  install (an accelerate hook, a user's patch) runs as it did in the timed passes;
- runs the forward the module had before the device wrapped it while `eager()` is entered (the
  counted pass: a replay runs no Python and dispatches no op a counter could see);
- while `capturing_calls()` is entered (a counters-only run's counted batches that the warm-up would
  have decoded), captures where the device's wrapper would capture (a would-be cache miss: the
  capture runs the module's own forward, so a counter sees its ops) and runs the module's own
  forward where it would replay. Only a device that can tell which call would capture
  (`install(would_capture=...)`: the emulated Gaudi) can be run so; the others keep the
  warm-up and the eager counted pass;
- records each call during which the device's compilation counter moved: which module, which
  input shapes (`Capture`), so a recapture verdict can name them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_flatten

_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16",
           torch.float64: "f64", torch.int64: "i64", torch.int32: "i32", torch.int16: "i16",
           torch.int8: "i8", torch.uint8: "u8", torch.bool: "bool"}
_WRAPPED: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
# module -> whether a call with these (args, kwargs) would capture (the device's own answer)
_PREDICTORS: weakref.WeakKeyDictionary[torch.nn.Module, Callable[[tuple, dict], bool]] = \
    weakref.WeakKeyDictionary()
_STATE = threading.local()


@dataclass(frozen=True)
class Capture:
    """One call of a wrapped module during which graphs were compiled/captured."""

    module: str  # the module's class name
    inputs: str  # its tensor inputs' shapes and dtypes, e.g. "8x80x3000 f32"
    count: int  # compilations the call added

    def key(self) -> str:
        return f"{self.module}({self.inputs})"


def dtype_name(dtype: torch.dtype) -> str:
    """A dtype's short name in counter keys: f32, bf16, i64, ..."""
    return _DTYPES.get(dtype, str(dtype).replace("torch.", ""))


def describe_inputs(args: tuple, kwargs: dict) -> str:
    """The tensor inputs of a call, in order: "8x4 i64, 4 i64" (non-tensors left out)."""
    parts = []
    for leaf in tree_flatten((args, kwargs))[0]:
        if isinstance(leaf, torch.Tensor):
            shape = "x".join(str(s) for s in leaf.shape) or "scalar"
            parts.append(f"{shape} {dtype_name(leaf.dtype)}")
    return ", ".join(parts)


def _mode() -> str | None:
    return getattr(_STATE, "mode", None)


def bypassing() -> bool:
    """True while the counted pass runs device-wrapped modules eagerly."""
    return _mode() == "eager"


def capturing() -> bool:
    """True while a counted batch captures what the warm-up would have (see `capturing_calls`)."""
    return _mode() == "capture"


@contextlib.contextmanager
def _entered(mode: str | None) -> Iterator[None]:
    before = _mode()
    _STATE.mode = mode
    try:
        yield
    finally:
        _STATE.mode = before


def eager() -> contextlib.AbstractContextManager[None]:
    """Device-installed graph wrappers call the module's own forward while the block runs."""
    return _entered("eager")


def capturing_calls() -> contextlib.AbstractContextManager[None]:
    """While the block runs, a device-installed graph wrapper captures where it would capture
    (the device says so: `predicts`) and calls the module's own forward where it would replay:
    one decode both captures the graphs a warm-up would have and shows every op to a counter.
    The device keeps what it caches out of the counter's sight (the emulator: aliases of the
    captured tensors made with no dispatch mode active), so lifetimes are an eager decode's."""
    return _entered("capture")


def predicts(module: Any) -> bool:
    """Whether the device that wrapped `module` can tell which call would capture."""
    try:
        return module in _PREDICTORS
    except TypeError:
        return False


def is_wrapped(module: Any) -> bool:
    """Whether a device installed a graph wrapper on this module."""
    try:
        return module in _WRAPPED
    except TypeError:
        return False


def install(module: torch.nn.Module, original: Callable[..., Any], graphed: Callable[..., Any],
            count: Callable[[], int | None] | None = None,
            log: list[Capture] | None = None,
            would_capture: Callable[[tuple, dict], bool] | None = None) -> torch.nn.Module:
    """Set `module.forward` to `graphed` behind the bypass switch (`original`: the forward the
    module had before the device wrapped it) and register the module. `count`/`log`: the
    device's compilation counter and the list each capturing call is appended to.
    `would_capture`: the device's answer to "would a call with these (args, kwargs) capture?"
    (kept for the module; a wrapper installed on top of the device's own asks the same)."""
    if would_capture is not None:
        _PREDICTORS[module] = would_capture

    @functools.wraps(graphed)
    def forward(*args: Any, **kwargs: Any) -> Any:
        mode = _mode()
        if mode == "capture":
            predict = _PREDICTORS.get(module)
            if predict is None:
                raise RuntimeError(f"{type(module).__name__}: its device cannot tell which call "
                                   "would capture a graph; count it eagerly after a warm-up")
            mode = None if predict(args, kwargs) else "eager"
        if mode == "eager":
            kwargs.pop("bypass_hpu_graphs", None)  # a graph wrapper's keyword (optimum-habana)
            return original(*args, **kwargs)
        if log is None or count is None:
            return graphed(*args, **kwargs)
        before = count()
        out = graphed(*args, **kwargs)
        after = count()
        if before is not None and after is not None and after > before:
            log.append(Capture(type(module).__name__, describe_inputs(args, kwargs),
                               after - before))
        return out

    module.forward = forward
    _WRAPPED.add(module)
    return module
