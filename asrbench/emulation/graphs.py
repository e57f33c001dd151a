"""HPU graphs emulated on CPU: the cache key and replay semantics of habana_frameworks'
`wrap_in_hpu_graph`, with no Python of the wrapped module running on a replay.

What the real thing does (habana_frameworks/torch/hpu/graphs.py, wrapped_hpugraph_forward; the
line numbers are in docs/hpu.md): each call hashes its (args, kwargs). A tensor contributes its
shape and view (stride, offset, dtype); every other object contributes `hash(obj)`, which for an
object without its own __hash__ is its identity; the autocast state is mixed in everywhere. On a
miss the module runs and is captured, and its inputs and outputs are kept. On a hit the new
tensor inputs are copied into the captured input tensors, the captured work is replayed, and the
*captured* output objects are returned. Python control flow, object attributes (a DynamicCache's
growing lists) and anything read on the host during capture are frozen at their captured values.

Here a capture records every aten operation the module dispatches (a TorchDispatchMode) together
with the tensors it read and wrote; a replay re-executes those operations on the recorded tensors
and writes each result into the recorded output, so later operations read it. Views keep aliasing
the recorded storage, in-place operations mutate the recorded tensors, tensors created during the
capture keep their identity. That is the property the tests rely on: a module whose Python would
have decided differently on the second call (a cache that grew) replays the first decision.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from asrbench.errors import AsrbenchError


class EmulatedGraphError(AsrbenchError):
    """The emulator met something a captured HPU graph cannot reproduce."""


@dataclass
class GraphStats:
    """Process-wide counters, read through the emulated `metric_global("graph_compilation")`."""

    captures: int = 0  # graphs captured (what a Gaudi counts as graph compilations here)
    capture_ms: float = 0.0  # wall time spent capturing, in milliseconds
    replays: int = 0  # cache hits replayed
    host_reads_frozen: int = 0  # host reads (item(), bool()) inside captures: frozen on replay


STATS = GraphStats()
_LOCK = threading.Lock()
_CAPTURING = threading.local()


def _autocast_on() -> bool:
    # graphs.py mixes torch.hpu.is_autocast_hpu_enabled() into every hash.
    return torch.is_autocast_enabled("hpu")


def input_hash(obj: Any) -> int:
    """The cache key of one call's (args, kwargs), as the real wrapper forms it."""
    if isinstance(obj, dict):
        return input_hash(tuple(obj.items()))
    if isinstance(obj, (list, tuple)) and not isinstance(obj, torch.Size):
        return hash((tuple(input_hash(item) for item in obj), _autocast_on()))
    if torch.is_tensor(obj):
        view = (tuple(obj.stride()), obj.storage_offset(), obj.dtype)
        return hash((tuple(obj.shape), view, _autocast_on()))
    # Everything else by its own hash: identity for objects that do not define one (a Cache).
    return hash((obj, _autocast_on()))


def copy_inputs(captured: Any, new: Any) -> None:
    """Copy the tensors of a call's inputs into the captured inputs, structure by structure."""
    if type(captured) is not type(new):
        raise EmulatedGraphError(
            f"HPU graph replay: input of type {type(new).__name__} where the capture saw "
            f"{type(captured).__name__}")
    if isinstance(captured, dict):
        for (key, value), (new_key, new_value) in zip(captured.items(), new.items()):
            if key != new_key:
                raise EmulatedGraphError(f"HPU graph replay: keyword {new_key!r} where the "
                                         f"capture saw {key!r}")
            copy_inputs(value, new_value)
    elif isinstance(captured, (list, tuple)) and not isinstance(captured, torch.Size):
        for value, new_value in zip(captured, new):
            copy_inputs(value, new_value)
    elif torch.is_tensor(captured) and captured is not new:
        captured.copy_(new)


def _storages(args: tuple, kwargs: dict) -> set[int]:
    flat, _ = tree_flatten((args, kwargs))
    return {t.untyped_storage().data_ptr() for t in flat if torch.is_tensor(t) and t.numel()}


def _needs_copy_back(output: Any, inputs: set[int]) -> bool:
    """An output that shares storage with an input (a view, an in-place or out= result, or
    contiguous() of a contiguous tensor) is refreshed by re-running the op; any other output is
    a new tensor whose recorded object later ops read, so the fresh value is copied into it."""
    return (torch.is_tensor(output) and output.numel() > 0
            and output.untyped_storage().data_ptr() not in inputs)


@dataclass
class _Op:
    func: torch._ops.OpOverload
    args: tuple
    kwargs: dict
    outputs: list  # flattened outputs as recorded; None where nothing is copied back


class _Recorder(TorchDispatchMode):
    """Records each dispatched aten op with the tensor objects it read and produced."""

    # Host reads: Python decides on their value during the capture, never again on replay.
    HOST_READS = {"aten::_local_scalar_dense", "aten::is_nonzero", "aten::equal"}

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[_Op] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._schema.name in self.HOST_READS:
            STATS.host_reads_frozen += 1
            return out
        flat, _ = tree_flatten(out)
        if any(torch.is_tensor(t) for t in flat):
            inputs = _storages(args, kwargs)
            outputs = [t if _needs_copy_back(t, inputs) else None for t in flat]
            self.ops.append(_Op(func, args, kwargs, outputs))
        return out


@dataclass
class CapturedGraph:
    """One captured call: its recorded ops, its input and output objects."""

    ops: list[_Op]
    inputs: Any  # the (args, kwargs) of the capturing call
    outputs: Any  # the object the capturing call returned; every replay returns it again
    replays: int = field(default=0)

    def replay(self) -> None:
        """Re-execute the recorded ops on the recorded tensors (autocast already applied)."""
        with torch.autocast("cpu", enabled=False), torch.autocast("hpu", enabled=False):
            for op in self.ops:
                result = op.func(*op.args, **op.kwargs)
                fresh, _ = tree_flatten(result)
                for recorded, value in zip(op.outputs, fresh):
                    if recorded is None or recorded is value:
                        continue
                    if recorded.shape != value.shape:
                        raise EmulatedGraphError(
                            f"HPU graph replay: {op.func} produced shape {tuple(value.shape)} where "
                            f"the capture produced {tuple(recorded.shape)} (a data-dependent shape "
                            "inside a graph; a real HPU graph would replay the captured one)")
                    recorded.copy_(value)
        self.replays += 1


def graphed_forward(cache: dict[int, CapturedGraph], forward: Callable[..., Any], args: tuple,
                    kwargs: dict, max_graphs: int | None) -> Any:
    """One call of a wrapped forward: capture on a miss, replay on a hit (graphs.py semantics)."""
    warmup_mode = kwargs.pop("warmup_mode", False)
    if kwargs.pop("bypass_hpu_graphs", False):
        return forward(*args, **kwargs)
    inputs = (args, kwargs)
    key = input_hash(inputs)
    kwargs.pop("cache_tensors_list", None)
    cached = cache.get(key)
    if cached is None:
        if max_graphs is not None and len(cache) == max_graphs:
            return forward(*args, **kwargs)
        if getattr(_CAPTURING, "active", False):
            raise EmulatedGraphError("HPU graph capture inside another capture is not emulated")
        recorder = _Recorder()
        start = time.perf_counter()
        _CAPTURING.active = True
        try:
            with recorder:
                outputs = forward(*args, **kwargs)
        finally:
            _CAPTURING.active = False
        with _LOCK:
            STATS.captures += 1
            STATS.capture_ms += (time.perf_counter() - start) * 1000
        cache[key] = CapturedGraph(recorder.ops, inputs, outputs)
        return outputs
    if warmup_mode:
        return cached.outputs
    copy_inputs(cached.inputs, inputs)
    cached.replay()
    with _LOCK:
        STATS.replays += 1
    return cached.outputs


def wrap_in_hpu_graph(module: torch.nn.Module, asynchronous: bool = False,
                      disable_tensor_cache: bool = False, dry_run: bool = False,
                      max_graphs: int | None = None) -> torch.nn.Module:
    """Replace `module.forward` in place with the emulated capture/replay wrapper (the real
    signature; asynchronous, disable_tensor_cache and dry_run change nothing on a CPU)."""
    cache: dict[int, CapturedGraph] = {}
    original = module.forward

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> Any:
        return graphed_forward(cache, original, args, kwargs, max_graphs)

    module.forward = forward
    module.clear_cache = cache.clear
    module.clear_inputs = lambda: None
    module._asrbench_graph_cache = cache  # tests read how many graphs a module holds
    return module


def wrap_in_hpu_graph_func(func: Callable[..., Any], asynchronous: bool = False,
                           disable_tensor_cache: bool = False, dry_run: bool = False,
                           max_graphs: int | None = None) -> Callable[..., Any]:
    """The function form of wrap_in_hpu_graph."""
    cache: dict[int, CapturedGraph] = {}

    def forward(*args: Any, **kwargs: Any) -> Any:
        return graphed_forward(cache, func, args, kwargs, max_graphs)

    return forward


@contextlib.contextmanager
def no_graphs_counted():
    """For tests: the capture counters as they stand, restored afterwards."""
    saved = GraphStats(**vars(STATS))
    try:
        yield STATS
    finally:
        for name, value in vars(saved).items():
            setattr(STATS, name, value)
