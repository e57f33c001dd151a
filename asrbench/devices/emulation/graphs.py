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

Here a capture records every aten operation the module dispatches (a TorchDispatchMode). Tensors
from outside the graph (its inputs, parameters, a static KV cache) are recorded by reference;
tensors produced inside it become numbered slots. A replay re-executes the operations in order on
the same outside tensors, so in-place updates of a cache happen again, and then writes the final
value of every produced tensor that outlived the capture (the returned outputs, or a tensor a
Python object kept, like a DynamicCache's concatenated keys) into that very tensor object, as a
real replay writes into its captured buffers. Python control flow never runs again: a module
whose Python would decide differently on the second call (a cache that grew) replays the first
decision. That is the property the tests rely on.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from asrbench.devices import graphing
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
    capture_log: list = field(default_factory=list)  # graphing.Capture per capturing call


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
    elif torch.is_tensor(captured) and captured is not new and not _same_view(captured, new):
        captured.copy_(new)


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two tensor objects over the same memory, shape and view (a graph's alias of its input
    and the input itself): copying one into the other would change nothing."""
    return (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
            and a.dtype == b.dtype and a.device == b.device)


class _Slot:
    """Marks a tensor produced inside the graph: replays keep its fresh value in slot `index`."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


@dataclass
class _Op:
    func: torch._ops.OpOverload
    leaves: list  # flattened (args, kwargs); _Slot where a tensor came from an earlier op
    spec: Any  # pytree spec to rebuild (args, kwargs) from the leaves
    slots: list  # (leaf position, slot index) pairs, precomputed for the replay
    outputs: list  # per flattened output: the slot it fills, or None (external, non-tensor)
    shapes: list  # per flattened output: its shape at capture (None for a non-tensor)
    frees: list = field(default_factory=list)  # slots whose last reader this op is


class _Recorder(TorchDispatchMode):
    """Records each dispatched aten op. Tensors it did not produce (graph inputs, parameters,
    a static cache) are kept by reference, as a graph reads them; tensors produced inside the
    graph become numbered slots, so the capture holds no intermediate alive (a replay needs
    memory like one eager call, not one buffer per intermediate)."""

    # Host reads: Python decides on their value during the capture, never again on replay.
    HOST_READS = {"aten::_local_scalar_dense", "aten::is_nonzero", "aten::equal"}

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[_Op] = []
        # slot -> its tensor, weakly: the capture keeps no intermediate alive longer than the
        # module's own code does (a counter that counts the capturing call sees an eager call's
        # lifetimes). A dead slot's id may be reused by a new tensor: the identity check below
        # then fails (a dead reference is None), so the new tensor is never taken for the slot.
        self.produced: list[weakref.ref] = []
        self._slot_of: dict[int, int] = {}  # id(tensor) -> slot

    def _slot(self, value: Any) -> int | None:
        index = self._slot_of.get(id(value))
        return index if index is not None and self.produced[index]() is value else None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._schema.name in self.HOST_READS:
            STATS.host_reads_frozen += 1
            return out
        flat_out, _ = tree_flatten(out)
        if not any(torch.is_tensor(t) for t in flat_out):
            return out
        leaves, spec = tree_flatten((args, kwargs))
        slots = []
        for position, leaf in enumerate(leaves):
            index = self._slot(leaf) if torch.is_tensor(leaf) else None
            if index is not None:
                leaves[position] = _Slot(index)
                slots.append((position, index))
        externals = {id(leaf) for leaf in leaves if torch.is_tensor(leaf)}
        outputs: list[int | None] = []
        for value in flat_out:
            if not torch.is_tensor(value) or id(value) in externals:
                outputs.append(None)  # in place on a tensor from outside: the op writes into it
                continue
            index = self._slot(value)
            if index is None:  # a new tensor (an in-place op on a slot returns that slot)
                index = len(self.produced)
                self.produced.append(weakref.ref(value))
                self._slot_of[id(value)] = index
            outputs.append(index)
        shapes = [tuple(v.shape) if torch.is_tensor(v) else None for v in flat_out]
        self.ops.append(_Op(func, leaves, spec, slots, outputs, shapes))
        return out

    def finish(self) -> tuple[list[_Op], dict[int, torch.Tensor]]:
        """The ops, with each slot freed after its last reader, and the produced tensors that
        outlive the capture (the returned outputs, tensors a Python object kept): those are
        the objects a real replay writes into, so the emulator refreshes them too."""
        last_read: dict[int, int] = {}
        for number, op in enumerate(self.ops):
            for _, index in op.slots:
                last_read[index] = number
        refs = self.produced
        self.produced = []
        self._slot_of.clear()
        escaped = {index: t for index, ref in enumerate(refs) if (t := ref()) is not None}
        for index, number in last_read.items():
            if index not in escaped:
                self.ops[number].frees.append(index)
        return self.ops, escaped


@dataclass
class CapturedGraph:
    """One captured call: its recorded ops, its input and output objects."""

    ops: list[_Op]
    escaped: dict[int, torch.Tensor]  # slot -> tensor still referenced outside the graph
    inputs: Any  # the (args, kwargs) of the capturing call
    outputs: Any  # the object the capturing call returned; every replay returns it again
    slots: int = 0
    replays: int = field(default=0)

    def detached(self) -> CapturedGraph:
        """The same graph holding aliases of its tensors (same storage, shape and view) made
        with no dispatch mode active, in place of the tensor objects the capturing call made or
        got: a counter that watched the capturing call sees those objects die when the module's
        own code lets them go, as in an eager call, and never sees the aliases (a replay writes
        and reads the same memory through them)."""
        made: dict[int, torch.Tensor] = {}

        def alias(value: Any) -> Any:
            if not torch.is_tensor(value):
                return value
            copy = made.get(id(value))
            if copy is None:
                copy = made[id(value)] = value.detach()
            return copy

        with _disable_current_modes():
            ops = [_Op(op.func, [alias(leaf) for leaf in op.leaves], op.spec, op.slots,
                       op.outputs, op.shapes, op.frees) for op in self.ops]
            return CapturedGraph(ops, {index: alias(t) for index, t in self.escaped.items()},
                                 tree_map(alias, self.inputs), tree_map(alias, self.outputs),
                                 self.slots, self.replays)

    def replay(self) -> None:
        """Re-execute the recorded ops (autocast was already applied when they were recorded),
        then write the values of tensors that outlived the capture into those tensors."""
        env: list[Any] = [None] * self.slots
        with torch.autocast("cpu", enabled=False), torch.autocast("hpu", enabled=False):
            for op in self.ops:
                leaves = list(op.leaves)
                for position, index in op.slots:
                    leaves[position] = env[index]
                args, kwargs = tree_unflatten(leaves, op.spec)
                fresh, _ = tree_flatten(op.func(*args, **kwargs))
                for index, shape, value in zip(op.outputs, op.shapes, fresh):
                    if shape is not None and tuple(value.shape) != shape:
                        # A real graph replays the captured shapes; eager re-execution would
                        # silently compute the right answer, so the emulator refuses instead.
                        raise EmulatedGraphError(
                            f"HPU graph replay: {op.func} produced shape {tuple(value.shape)} "
                            f"where the capture produced {shape} (a data-dependent shape inside "
                            "a graph; a real HPU graph would replay the captured one)")
                    if index is not None:
                        env[index] = value
                for index in op.frees:
                    env[index] = None
            for index, recorded in self.escaped.items():
                value = env[index]
                if value is not recorded:
                    recorded.copy_(value)
        self.replays += 1


def would_capture(cache: dict[int, CapturedGraph], args: tuple, kwargs: dict,
                  max_graphs: int | None) -> bool:
    """Whether graphed_forward would capture on this call (a miss with room in the cache),
    without calling anything: what graphing.capturing_calls() asks the device."""
    kwargs = dict(kwargs)
    kwargs.pop("warmup_mode", None)
    if kwargs.pop("bypass_hpu_graphs", False):
        return False
    if input_hash((args, kwargs)) in cache:
        return False
    return max_graphs is None or len(cache) != max_graphs


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
        slots = len(recorder.produced)
        ops, escaped = recorder.finish()
        graph = CapturedGraph(ops, escaped, inputs, outputs, slots)
        if graphing.capturing():  # a counted call: the cache keeps what no counter sees
            graph = graph.detached()
        cache[key] = graph
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

    # Recorded as device-installed: the counted pass runs `original` instead (and only here).
    graphing.install(module, original, forward, lambda: STATS.captures, STATS.capture_log,
                     would_capture=lambda args, kwargs: would_capture(cache, args, kwargs,
                                                                      max_graphs))
    # (torch types a Module's attributes as tensors and modules; these are plain objects)
    module.clear_cache = cache.clear  # type: ignore[assignment]
    module.clear_inputs = lambda: None  # type: ignore[assignment]
    module._asrbench_graph_cache = cache  # type: ignore[assignment]  # tests count its graphs
    return module


def wrap_in_hpu_graph_func(func: Callable[..., Any], asynchronous: bool = False,
                           disable_tensor_cache: bool = False, dry_run: bool = False,
                           max_graphs: int | None = None) -> Callable[..., Any]:
    """The function form of wrap_in_hpu_graph."""
    cache: dict[int, CapturedGraph] = {}

    def forward(*args: Any, **kwargs: Any) -> Any:
        return graphed_forward(cache, func, args, kwargs, max_graphs)

    return forward
