"""The counted pass: exact work counts of the timed passes' code path, for the gate.

After the timed passes (never inside them: their clocks must not pay for counting) the engine
decodes again, with the same decoder object, model, cache, autocast and batch shape, one batch
of every distinct batch shape (the first batch, and the partial last batch where its shape
differs), under one dispatch mode that counts every aten op by name and output dtype, attributed
to the encoder call, to decode step k, or to the batch's own bookkeeping, adds up FLOPs with
FlopCounterMode's formulas (its registry; FlopCounterMode itself, with its module tracker, made
the pass several times slower) and the bytes of every storage an op allocates; and under one
torch-function mode that counts Python-level reads of tensors on the host by call site. Step
boundaries come from forward pre-hooks on the model's encoder and decoder modules: decode step k
runs from the k-th decoder call to the next (the projection onto the vocabulary, the suppression
rules, argmax and the end-of-text read of a step belong to it).

The counted pass calls what the timed passes called. Only the graph wrappers a device installed
(asrbench/devices/graphing.py records them when it installs them) are bypassed: a replay runs no
Python and dispatches no op that a mode could see, so those modules run the forward they had
before the device wrapped them, and the record says so (replay_bypassed). Every other
instance-level forward (an accelerate hook, a user's patch) runs as in the timed passes.

A counters-only run on a device that can tell which call would capture a graph (the emulated
Gaudi) does not decode its first batches twice (a warm-up that captures, then the counted pass):
a counted batch the warm-up would have decoded is counted while capturing (CountedBatch.capture,
graphing.capturing_calls): a would-be capture captures (it runs the module's own forward, so
the counter sees its ops) and a would-be replay runs the module's own forward, as above. The
device's graph cache keeps aliases the counter never sees, so lifetimes (bytes) are an eager
decode's, and the decoder's one-time setup that the warm-up would have done (its persistent
buffers and static cache: `decoder_setup()`) is not counted: the counts are the eager counted
pass's, exactly.

Definitions (COUNTER_VERSION; change them only together with the version):
- op key: "<aten op packet> <dtype>", e.g. "aten.mm f32", "aten._to_copy bf16"; dtype of the op's
  first tensor output, else of its first tensor argument, else "-".
- steady decode step: the most common per-step op multiset over the steps after the prompt step
  (ties: the first met); decode_step_total_min/max give the spread of all those steps.
- host sync (dispatch level): aten ops `_local_scalar_dense` (item(), bool(), int() of a tensor),
  `nonzero` and `masked_select` (data-dependent shapes), `equal`; and a copy (`_to_copy`,
  `copy_`) from a non-CPU tensor into a CPU one (never on the CPU or the emulated Gaudi, where
  tensors live on the host). host_syncs_per_token divides by decode steps (one step generates
  the next token of every row).
- host read (Python level, every device): a call of Tensor.tolist, cpu, numpy, item,
  __bool__, __int__, __float__, __index__, __complex__, __array__, or .to(<cpu>) of a non-CPU
  tensor, keyed "Tensor.<method> @ <file>:<function>" of the nearest caller outside torch
  (<file> relative to site-packages or the repository); the line is recorded apart
  (host_read_lines, informational: it moves with any edit above it).
- device sync (Python level, every device): a call of an explicit synchronisation entry point
  (SYNC_CALLS: htcore.mark_step, torch.accelerator/hpu/cuda/cpu.synchronize,
  hthpu.synchronize, the Stream/Event synchronize() of the device modules), keyed
  "<call> @ <file>:<function>" of the nearest caller outside torch, as a host read is: a
  mark_step ends a lazy-mode graph on Gaudi and a synchronize waits for the device, and neither
  dispatches an op a mode could see.
- bytes: an op output whose storage is neither tracked nor an input's is an allocation of its
  storage's nbytes, in the phase it happened; it stays live while any tensor of the pass that
  uses that storage is alive (garbage collection is off during the pass, so this is CPython's
  reference counting: deterministic). peak_live_bytes: the most bytes allocated in the batch
  and alive at once; retained_bytes: alive after the batch's read-back. Tensors that existed
  before the batch (weights, a static cache, the input) are not counted.
- FLOPs: FlopCounterMode's formulas summed over the batch (dummy rows included) / its real rows.
- captures: the calls of a device-wrapped module during which the device's compilation counter
  moved, keyed "<module class>(<input shapes and dtypes>)", over the warm-up and timed passes.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType, FunctionType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import flop_registry, get_shape, shape_wrapper

from asrbench.devices import graphing
from asrbench.devices.graphing import dtype_name
from asrbench.formats.model import COUNTER_VERSION, BatchCounters, Counters

__all__ = ["COUNTER_VERSION", "OpCounter", "ReadCounter", "SyncCounter", "CountedBatch",
           "count_pass", "count_batches", "bypass_replay", "decoder_setup", "op_key",
           "dtype_name"]

#: aten ops (overload packets) that read a device value on the host, on any device
HOST_READS = frozenset({"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select",
                        "aten.equal"})
#: copies that are a device-to-host transfer when their source is not on the CPU
COPIES = frozenset({"aten._to_copy", "aten.copy_", "aten.copy"})
#: Tensor methods that hand a tensor's values to Python (counted at the Python level);
#: __repr__ and __format__: printing, formatting or logging a tensor reads all its values
#: (torch's printing turns the dispatch modes off, so no op below it is seen); __contains__
#: (`x in t`) reads too. (Pickling and torch.save reach no torch function but storage
#: accessors, which read nothing themselves: not counted.)
READ_METHODS = frozenset({"tolist", "cpu", "numpy", "item", "__bool__", "__int__", "__float__",
                          "__index__", "__complex__", "__array__", "__repr__", "__format__",
                          "__contains__"})
#: explicit synchronisation entry points, counted by call site: (module, attribute, name in
#: the key); a module not imported (no habana_frameworks off Gaudi) is left alone. A dotted
#: attribute is a method of a Python class of the module ("Event.synchronize": every
#: event's synchronize()), wrapped only where that class defines it itself; the C++ classes
#: torch.Stream and torch.Event (torch.accelerator.current_stream()) cannot be wrapped.
SYNC_CALLS = (("habana_frameworks.torch.core", "mark_step", "htcore.mark_step"),
              ("habana_frameworks.torch.hpu", "synchronize", "hthpu.synchronize"),
              ("habana_frameworks.torch.hpu", "Stream.synchronize", "hthpu.Stream.synchronize"),
              ("habana_frameworks.torch.hpu", "Event.synchronize", "hthpu.Event.synchronize"),
              ("torch.accelerator", "synchronize", "torch.accelerator.synchronize"),
              ("torch.hpu", "synchronize", "torch.hpu.synchronize"),
              ("torch.cuda", "synchronize", "torch.cuda.synchronize"),
              ("torch.cuda", "Stream.synchronize", "torch.cuda.Stream.synchronize"),
              ("torch.cuda", "Event.synchronize", "torch.cuda.Event.synchronize"),
              ("torch.cpu", "synchronize", "torch.cpu.synchronize"),
              ("torch.cpu", "Event.synchronize", "torch.cpu.Event.synchronize"))
SELECTION = ("the first batch in decoding order (longest clips first) and the first batch of "
             "every other batch shape (the partial last batch)")
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_OWN_FILES = {os.path.abspath(__file__), os.path.abspath(graphing.__file__)}
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def op_key(func: Any, args: tuple, kwargs: dict, out: Any) -> str:
    """"<op packet> <dtype>": the dtype of the first tensor output, else first tensor input."""
    name = str(func.overloadpacket)
    for tree in (out, (args, kwargs)):
        for leaf in tree_flatten(tree)[0]:
            if isinstance(leaf, torch.Tensor):
                return f"{name} {dtype_name(leaf.dtype)}"
    return f"{name} -"


@functools.cache
def _composite(func: Any) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(),
                                                          "CompositeImplicitAutograd")


#: a tensor's device type -> the dispatch key of that backend's own kernels
_BACKEND_KEYS = {"cpu": "CPU", "cuda": "CUDA", "hpu": "HPU", "xpu": "XPU", "mps": "MPS"}


def _own_kernels(func: Any) -> frozenset[str]:
    """The device types whose backend registers its own kernel for `func`: there the
    dispatcher runs that kernel, not the composite one (aten.native_channel_shuffle on the
    CPU; aten.linear on MPS), and the op is counted whole, as it runs."""
    return frozenset(device for device, key in _BACKEND_KEYS.items()
                     if torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), key))


def _device_type(args: tuple, kwargs: dict) -> str | None:
    """The device type of the op's first tensor argument (None: no tensor argument)."""
    found = _tensors_in(kwargs, _tensors_in(args, [])) if kwargs else _tensors_in(args, [])
    return found[0].device.type if found else None


def _is_host_sync(name: str, func: Any, args: tuple, kwargs: dict, out: Any) -> bool:
    if name in HOST_READS:
        return True
    if name not in COPIES:
        return False
    source = args[1] if name == "aten.copy_" and len(args) > 1 else args[0] if args else None
    target = args[0] if name == "aten.copy_" else out
    return (isinstance(source, torch.Tensor) and isinstance(target, torch.Tensor)
            and source.device.type != "cpu" and target.device.type == "cpu")


def _storage_id(tensor: torch.Tensor) -> int | None:
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):  # tensors without storage
        return None


# The hot path. A counted pass dispatches thousands of ops through OpCounter; what follows does
# per op what op_key, _is_host_sync and the storage tracking above define, with the per-op
# facts looked up once per OpOverload and without pytree for the common argument shapes.
_Tensor = torch.Tensor
#: argument values that are neither a tensor nor hold one (pytree leaves; skipped unflattened)
_PLAIN = frozenset({int, float, bool, complex, str, bytes, type(None), torch.dtype, torch.device,
                    torch.layout, torch.memory_format, torch.SymInt, torch.SymFloat,
                    torch.SymBool})
_NO_KWARGS: dict = {}  # never written: a dict the hot path passes on as **kwargs
_CIA = torch._C.DispatchKey.CompositeImplicitAutograd
#: torch's private entry points the hot path puts the mode back on its stack with around a
#: composite op's C++ kernel (OpOverload._op_dk); where a torch lacks them, OpCounter uses
#: `with self:` instead, slower per op and counting the same (tests/test_counters.py checks both
#: ways agree)
_push_dispatch_mode: Any = getattr(torch._C, "_push_on_torch_dispatch_stack", None)
_pop_dispatch_mode: Any = getattr(torch._C, "_pop_torch_dispatch_stack", None)
_FAST_DECOMPOSE = _push_dispatch_mode is not None and _pop_dispatch_mode is not None


class _TensorRef(weakref.ref):
    """A weak reference to a tensor holding a tracked storage, with that storage's id and the
    tensor's (one shared callback reads them: no closure per tensor)."""

    __slots__ = ("sid", "key")
    sid: int
    key: int


def _tensors_in(tree: Any, found: list) -> list:
    """Append the tensors among tree_flatten(tree)'s leaves to `found`, in its order: plain
    tuples, lists and dicts (values in insertion order, as pytree) are walked here, any other
    container through tree_flatten itself."""
    kind = type(tree)
    if kind is tuple or kind is list:
        for item in tree:
            if isinstance(item, _Tensor):
                found.append(item)
            elif type(item) not in _PLAIN:
                _tensors_in(item, found)
    elif kind is dict:
        for item in tree.values():
            if isinstance(item, _Tensor):
                found.append(item)
            elif type(item) not in _PLAIN:
                _tensors_in(item, found)
    elif isinstance(tree, _Tensor):
        found.append(tree)
    elif kind not in _PLAIN:
        found.extend(leaf for leaf in tree_flatten(tree)[0] if isinstance(leaf, _Tensor))
    return found


def _shapes(tree: Any) -> Any:
    """tree_map(get_shape, tree) of torch.utils.flop_counter (every tensor replaced by its
    shape), with plain tuples, lists and dicts rebuilt here and anything else by tree_map."""
    kind = type(tree)
    if kind is tuple:
        return tuple([_shapes(item) for item in tree])
    if kind is list:
        return [_shapes(item) for item in tree]
    if kind is dict:
        return {name: _shapes(item) for name, item in tree.items()}
    if isinstance(tree, _Tensor):
        return tree.shape
    if kind in _PLAIN:
        return tree
    return tree_map(get_shape, tree)


_SHAPE_WRAPPED = shape_wrapper(lambda: None).__code__


def _unwrapped_formula(formula: Any) -> Any:
    """The formula inside flop_registry's shape_wrapper (called with shapes, out_shape=), or
    None where `formula` is not one (a raw formula: called as registered)."""
    code = getattr(formula, "__code__", None)
    if code is not _SHAPE_WRAPPED or "f" not in code.co_freevars:
        return None
    return formula.__closure__[code.co_freevars.index("f")].cell_contents


def _sync_kind(name: str) -> int:
    """0: never a host sync; 1: always (HOST_READS); 2: a copy_ or 3: another copy (COPIES),
    a sync when it copies from a non-CPU tensor into a CPU one."""
    if name in HOST_READS:
        return 1
    if name in COPIES:
        return 2 if name == "aten.copy_" else 3
    return 0


#: id(OpOverload) -> (the op, its name, its FLOP formula or None, that formula unwrapped or
#: None, whether it is decomposed, the device types with a kernel of their own for it (not
#: decomposed there), its _sync_kind, {dtype: op key}); the op is held, so its id stays its own
_FACTS: dict[int, tuple] = {}


def _facts(func: Any) -> tuple:
    packet = func.overloadpacket
    name = str(packet)
    flops = flop_registry.get(packet)
    composite = flops is None and _composite(func)
    facts: tuple = (func, name, flops, _unwrapped_formula(flops), composite,
                    _own_kernels(func) if composite else frozenset(), _sync_kind(name), {})
    _FACTS[id(func)] = facts
    return facts


class OpCounter(TorchDispatchMode):
    """Counts dispatched aten ops by key, per phase: "encoder", ("step", k) or "other"; and
    the bytes of the storages ops allocate, per phase, with the peak of those alive."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[Any, collections.Counter] = collections.defaultdict(collections.Counter)
        self._phase: Any = "other"
        self._phase_counts: collections.Counter = self.counts["other"]
        self.paused = False  # decoder_setup(): nothing is counted, no phase moves
        self.steps = 0
        self.encoder_calls = 0
        self.syncs: collections.Counter = collections.Counter()  # op name -> host syncs
        self.decode_syncs = 0  # host syncs inside decode steps
        self.flops = 0  # FlopCounterMode's formulas (torch.utils.flop_counter.flop_registry)
        self.allocated: collections.Counter = collections.Counter()  # phase -> bytes
        self.live = 0  # bytes of tracked storages alive now
        self.peak = 0
        self._storages: dict[int, list[int]] = {}  # storage id -> [nbytes, live tensors]
        # id of each tensor holding a tracked storage -> its weak reference (a _TensorRef,
        # whose callback releases the storage)
        self._tensors: dict[int, weakref.ref] = {}
        self._released = self._release  # one bound callback for every weak reference

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # No wrapper disabling dynamo around __torch_dispatch__ (its eval-frame calls, per
        # op): nothing compiled runs in the counted pass (device graph wrappers are bypassed).
        return False

    @property
    def phase(self) -> Any:
        """"encoder", ("step", k) or "other": what the ops dispatched now are attributed to."""
        return self._phase

    @phase.setter
    def phase(self, value: Any) -> None:
        self._phase = value
        self._phase_counts = self.counts[value]  # looked up once per phase, not once per op

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        facts = _FACTS.get(id(func)) or _facts(func)
        _, name, flops, formula, composite, own_kernels, sync, keys = facts
        if kwargs is None:
            kwargs = _NO_KWARGS
        if self.paused:
            return func(*args, **kwargs)
        if composite and not (own_kernels and _device_type(args, kwargs) in own_kernels):
            # Under inference_mode a mode meets composite ops (aten.linear) before they are
            # decomposed; count what they decompose into (aten.addmm, aten.mm), as the
            # dispatcher runs them. (FlopCounterMode's rule: an op it has a FLOP formula for is
            # counted whole; so is an op the tensors' backend has its own kernel for.)
            # The decomposition is the op's C++ CompositeImplicitAutograd kernel, the one the
            # timed passes run: never a Python decomposition registered beside it
            # (func.decompose() prefers those, and torch._decomp's differ: its aten.dropout
            # clones its input in eval mode, where the C++ kernel returns the input itself, so
            # counting through it counted a copy and its bytes that no timed pass makes).
            # `with self` without its Python bookkeeping: the mode flags it sets are already
            # set by the `with` that holds this mode for the whole pass.
            if _FAST_DECOMPOSE:
                _push_dispatch_mode(self)
                try:
                    out = func._op_dk(_CIA, *args, **kwargs)
                finally:
                    _pop_dispatch_mode(None)
            else:  # a torch without the stack's private entry points: `with self`
                with self:
                    out = func._op_dk(_CIA, *args, **kwargs)
            return out
        out = func(*args, **kwargs)
        if formula is not None:  # flops(*args, **kwargs, out_val=out) without its tree_map
            self.flops += formula(*_shapes(args), out_shape=_shapes(out), **_shapes(kwargs))
        elif flops is not None:
            self.flops += flops(*args, **kwargs, out_val=out)
        # op key: the dtype of the first tensor output, else of the first tensor argument
        dtype: torch.dtype | None
        if isinstance(out, _Tensor):
            outs = None
            dtype = out.dtype
        else:
            outs = _tensors_in(out, [])
            if outs:
                dtype = outs[0].dtype
            else:
                inputs = _tensors_in(kwargs, _tensors_in(args, [])) if kwargs else \
                    _tensors_in(args, [])
                dtype = inputs[0].dtype if inputs else None
        key = keys.get(dtype)
        if key is None:
            key = keys[dtype] = f"{name} {dtype_name(dtype)}" if dtype is not None else \
                f"{name} -"
        self._phase_counts[key] += 1
        if sync and (sync == 1 or self._copy_to_host(sync, args, out)):
            self.syncs[name] += 1
            if isinstance(self._phase, tuple):
                self.decode_syncs += 1
        if outs is None:
            if id(out) not in self._tensors:
                self._track_one(out, args, kwargs)
        elif outs:
            self._track(outs, args, kwargs)
        return out

    @staticmethod
    def _copy_to_host(sync: int, args: tuple, out: Any) -> bool:
        """_is_host_sync of a copy (sync 2: aten.copy_, 3: another copy)."""
        source = args[1] if sync == 2 and len(args) > 1 else args[0] if args else None
        target = args[0] if sync == 2 else out
        return (isinstance(source, _Tensor) and isinstance(target, _Tensor)
                and source.device.type != "cpu" and target.device.type == "cpu")

    def _track_one(self, tensor: torch.Tensor, args: tuple, kwargs: dict) -> None:
        """_track of an op whose output is one tensor, not yet tracked."""
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensors without storage
            return
        sid = storage._cdata
        entry = self._storages.get(sid)
        if entry is None:
            for t in _tensors_in(kwargs, _tensors_in(args, [])) if kwargs else \
                    _tensors_in(args, []):
                if _storage_id(t) == sid:
                    return  # a view of, or a write into, a tensor from before the batch
            nbytes = storage.nbytes()
            entry = self._storages[sid] = [nbytes, 0]
            self.allocated[self._phase] += nbytes
            self.live += nbytes
            if self.live > self.peak:
                self.peak = self.live
        entry[1] += 1
        key = id(tensor)
        ref = self._tensors[key] = _TensorRef(tensor, self._released)
        ref.sid = sid
        ref.key = key

    def _track(self, outs: list, args: tuple, kwargs: dict) -> None:
        """Account the storages of the op's tensor outputs: a storage neither tracked nor an
        input's is a new allocation; each tensor holding a tracked storage keeps it live."""
        inputs: set[int | None] | None = None
        for tensor in outs:
            if id(tensor) in self._tensors:
                continue
            sid = _storage_id(tensor)
            if sid is None:
                continue
            entry = self._storages.get(sid)
            if entry is None:
                if inputs is None:
                    inputs = {_storage_id(t) for t in _tensors_in(kwargs, _tensors_in(args, []))}
                if sid in inputs:
                    continue  # a view of, or a write into, a tensor from before the batch
                nbytes = tensor.untyped_storage().nbytes()
                entry = self._storages[sid] = [nbytes, 0]
                self.allocated[self._phase] += nbytes
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            entry[1] += 1
            key = id(tensor)
            ref = self._tensors[key] = _TensorRef(tensor, self._released)
            ref.sid = sid
            ref.key = key

    def _release(self, ref: _TensorRef) -> None:
        """A tracked tensor died: one tensor fewer keeps its storage live."""
        self._tensors.pop(ref.key, None)
        entry = self._storages.get(ref.sid)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._storages[ref.sid]
            self.live -= entry[0]

    # module hooks: where a phase starts and ends
    def encoder_starts(self, module: Any, args: Any) -> None:
        if self.paused:
            return
        self.encoder_calls += 1
        self.phase = "encoder"

    def encoder_ends(self, module: Any, args: Any, output: Any) -> None:
        if not self.paused:
            self.phase = "other"

    def step_starts(self, module: Any, args: Any, kwargs: Any = None) -> None:
        if self.paused:
            return
        self.phase = ("step", self.steps)
        self.steps += 1

    def step_counts(self) -> list[collections.Counter]:
        """Op counts of each decode step, in order (step 0 is the prompt step)."""
        return [self.counts[("step", k)] for k in range(self.steps)]


#: where installed packages live: pip's site-packages, Debian's (and Habana images')
#: dist-packages
_PACKAGE_DIRS = tuple(os.sep + name + os.sep for name in ("site-packages", "dist-packages"))


def _site(code: Any) -> str:
    """"<file>:<qualified function>" of a code object, the file relative to site-packages /
    dist-packages or the repository (else its name alone): the same on every machine and
    Python."""
    path = os.path.abspath(code.co_filename)
    for marker in _PACKAGE_DIRS:
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        if path.startswith(_REPO_ROOT):
            path = path[len(_REPO_ROOT):]
        else:
            path = os.path.basename(path)
    name = getattr(code, "co_qualname", None) or _qualname_in_module(code)
    return f"{path.replace(os.sep, '/')}:{name}"


@functools.cache
def _qualname_in_module(code: Any) -> str:
    """The qualified name of a function defined at the top of its module or in a class there
    (through decorators' __wrapped__), found by walking the module that holds its file; else
    its own name. Python 3.11+ keeps the qualified name on the code object (co_qualname);
    Python 3.10, which Gaudi images ship, does not, and a host read's key must be the same on
    both so that a baseline recorded on one holds on the other. Nothing is read from frames
    (their locals would keep the decode's tensors alive). Once per code object."""
    filename, own = os.path.abspath(code.co_filename), str(code.co_name)
    for module in list(sys.modules.values()):
        if os.path.abspath(str(getattr(module, "__file__", None) or "")) != filename:
            continue
        stack: list[tuple[str, Any, int]] = [("", module, 0)]
        seen: set[int] = set()
        while stack:
            prefix, namespace, depth = stack.pop()
            for value in list(vars(namespace).values()):
                function = getattr(value, "__func__", value)  # classmethod, staticmethod
                for _ in range(8):  # decorators (torch.no_grad...): functools.wraps' __wrapped__
                    if getattr(function, "__code__", None) is code:
                        return f"{prefix}{own}"
                    function = getattr(function, "__wrapped__", None)
                    if function is None:
                        break
                if (isinstance(value, type) and depth < 4 and id(value) not in seen
                        and getattr(value, "__module__", None) == module.__name__):
                    seen.add(id(value))
                    stack.append((f"{value.__qualname__}.", value, depth + 1))
    return own


class ReadCounter(TorchFunctionMode):
    """Counts Python-level reads of tensors on the host (READ_METHODS, and .to(<cpu>) of a
    non-CPU tensor) by the caller's file and function, and the phase of an OpCounter."""

    def __init__(self, ops: OpCounter) -> None:
        super().__init__()
        self.ops = ops
        self.reads: collections.Counter = collections.Counter()
        self.lines: collections.Counter = collections.Counter()
        self.decode_reads = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.ops.paused:
            return func(*args, **kwargs) if kwargs else func(*args)
        name = getattr(func, "__name__", "")
        if name in READ_METHODS or name == "to" and self._to_host(args, kwargs or {}):
            self._count(name)
        if kwargs:
            return func(*args, **kwargs)
        return func(*args)

    @staticmethod
    def _to_host(args: tuple, kwargs: dict) -> bool:
        if not args or not isinstance(args[0], torch.Tensor) or args[0].device.type == "cpu":
            return False
        for value in (*args[1:], kwargs.get("device")):
            if isinstance(value, torch.Tensor):
                value = value.device
            if isinstance(value, (str, torch.device)):
                return torch.device(value).type == "cpu"
        return False

    def _count(self, method: str) -> None:
        site, line = _caller(sys._getframe(2))
        key = f"Tensor.{method} @ {site}"
        self.reads[key] += 1
        self.lines[f"{key.split(':', 1)[0]}:{line}"] += 1
        if isinstance(self.ops.phase, tuple):
            self.decode_reads += 1


def _caller(frame: FrameType | None) -> tuple[str, int]:
    """The site (_site) and line of the nearest frame from `frame` outward that is neither
    torch's nor a counting mode's own __torch_function__."""
    while frame is not None and (frame.f_code.co_filename.startswith(_TORCH_DIR) or
                                 os.path.abspath(frame.f_code.co_filename) in _OWN_FILES
                                 and frame.f_code.co_name == "__torch_function__"):
        frame = frame.f_back
    if frame is None:
        return "?", 0
    return _site(frame.f_code), frame.f_lineno


#: the SyncCounter counting now (the wrappers of every one count into the last)
_SYNC_COUNTING: list[SyncCounter] = []


class SyncCounter:
    """Counts calls of the explicit synchronisation entry points (SYNC_CALLS) by call site
    while installed (`with counter:`): each one imported is replaced, for the block only, by a
    wrapper that counts and calls it. Code that looks the function up when it calls it
    (`htcore.mark_step()`, `torch.cuda.synchronize()`, a device's `self._htcore.mark_step()`)
    is counted; a reference taken before the first block (`from ... import mark_step`) is not,
    one taken during a block (a module first imported there) is counted in every block after
    it too (the wrappers count into the counter counting now)."""

    def __init__(self, ops: OpCounter) -> None:
        self.ops = ops
        self.calls: collections.Counter = collections.Counter()
        # (module, attribute, the original, the wrapper installed over it)
        self._installed: list[tuple[Any, str, Any, Any]] = []
        self._thread = 0
        self._inside = False  # in a wrapped entry point (of the counting thread)

    def __enter__(self) -> SyncCounter:
        self._thread = threading.get_ident()  # calls from other threads are not the pass's
        done: set[tuple[int, str]] = set()
        _SYNC_COUNTING.append(self)
        try:
            for module_name, path, name in SYNC_CALLS:
                owner = sys.modules.get(module_name)
                if owner is None and module_name.startswith("torch."):
                    owner = getattr(torch, module_name.split(".", 1)[1], None)
                class_name, _, attribute = path.rpartition(".")
                if class_name:  # a method: a plain function the class itself defines
                    owner = getattr(owner, class_name, None)
                    original = vars(owner).get(attribute) if isinstance(owner, type) else None
                    original = original if isinstance(original, FunctionType) else None
                else:
                    original = getattr(owner, attribute, None) if owner is not None else None
                if not callable(original) or (id(owner), attribute) in done:
                    continue  # not imported here, or the same module under another name
                wrapper = self._counting(original, name)
                try:
                    setattr(owner, attribute, wrapper)
                except (AttributeError, TypeError):  # an immutable (C++) class: not wrapped
                    continue
                done.add((id(owner), attribute))
                self._installed.append((owner, attribute, original, wrapper))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self in _SYNC_COUNTING:
            _SYNC_COUNTING.remove(self)
        while self._installed:
            module, attribute, original, wrapper = self._installed.pop()
            if getattr(module, attribute, None) is wrapper:  # else someone set it since: theirs
                setattr(module, attribute, original)

    @staticmethod
    def _counting(original: Callable[..., Any], name: str) -> Callable[..., Any]:
        # The wrapper counts into whichever SyncCounter is counting now, not the one that
        # made it: code imported during a counted batch that took a reference to it
        # (`from torch.cpu import synchronize`) keeps it, and its calls count the same in every
        # later batch and pass (into none outside them), not in the first batch only.
        @functools.wraps(original)
        def counted(*args: Any, **kwargs: Any) -> Any:
            active = _SYNC_COUNTING[-1] if _SYNC_COUNTING else None
            if active is None or active._inside or threading.get_ident() != active._thread:
                return original(*args, **kwargs)
            if not active.ops.paused:
                active.calls[f"{name} @ {_caller(sys._getframe(1))[0]}"] += 1
            # one call, one count: an entry point that calls another (a stream's
            # synchronize() calling the module's) is counted where the caller called it
            active._inside = True
            try:
                return original(*args, **kwargs)
            finally:
                active._inside = False
        return counted


@contextlib.contextmanager
def bypass_replay(modules: list[torch.nn.Module]) -> Iterator[bool]:
    """Run the modules a device graph-wrapped eagerly while the block runs: their wrappers
    (asrbench.devices.graphing.install) call the forward they had before the device wrapped
    them. Any other instance-level forward (an accelerate hook, a user's patch) runs as it is.
    Yields whether any of `modules` was device-wrapped."""
    with graphing.eager():
        yield any(graphing.is_wrapped(m) for m in modules)


#: the counters of the batch being counted (decoder_setup pauses them)
_COUNTING: list[OpCounter] = []


@contextlib.contextmanager
def decoder_setup() -> Iterator[None]:
    """A decoder's one-time setup (its persistent input buffer, its static cache and the eager
    step that allocates it, the graph wrapping of its step) runs here. After a warm-up it ran
    there, before the counted pass; in a batch counted while capturing (CountedBatch.capture)
    it runs in the counted batch, where the warm-up would have run it, so the counters of that
    batch pause: no op, byte, read or phase of it is counted, as in the eager counted pass after
    a warm-up. The same holds for any counted batch that meets the setup: a counters-only CPU
    run of the static decoder (--eos-check-every, --ignore-eos) has no warm-up, and counting
    the setup there (an extra eager prompt step, the static cache's allocation and its 82 MB
    kept alive, cache_utils' host reads) made its counts differ from a timed run's, so a
    pre-screen against a baseline a timed run recorded failed on work no batch does."""
    paused = [(counter, counter.paused) for counter in _COUNTING]
    for counter, _ in paused:
        counter.paused = True
    try:
        yield
    finally:
        for counter, before in paused:
            counter.paused = before


def _graph_candidates(model: Any, decoder: Any) -> list[torch.nn.Module]:
    """Every module a device may have wrapped: the model's, and the decoder's own (the static
    decoder's encode and step modules are not children of the model)."""
    seen: dict[int, torch.nn.Module] = {id(m): m for m in model.modules()}
    for value in vars(decoder).values() if decoder is not None else ():
        if isinstance(value, torch.nn.Module):
            for module in value.modules():
                seen.setdefault(id(module), module)
    return list(seen.values())


def _steady(steps: list[collections.Counter]) -> tuple[dict[str, int], int]:
    """The most common per-step multiset (first met on a tie) and how many steps had it."""
    if not steps:
        return {}, 0
    frozen = [tuple(sorted(s.items())) for s in steps]
    tally = collections.Counter(frozen)
    best = max(tally.values())
    mode = next(f for f in frozen if tally[f] == best)
    return dict(mode), best


@dataclass
class CountedBatch:
    """One batch to count: its features (as the timed passes feed them) and how to decode."""

    features: torch.Tensor
    real: int | None = None  # real rows (the rest are dummy rows); None: all
    index: int = 0  # the batch's index in decoding order
    generate_kwargs: dict[str, Any] = field(default_factory=dict)  # generate() only
    utterances: list[str] = field(default_factory=list)
    # counted while capturing the graphs the warm-up would have (graphing.capturing_calls):
    # a counters-only run's first batches on a device that can tell which call would capture
    capture: bool = False


def shape_key(features: Any, mask: Any, real: int) -> tuple:
    """What makes two batches the same batch shape for counting: the input's and the
    attention mask's shapes and dtypes, and the real rows (the static decoder fills the last
    batch with dummy rows: same shape, fewer real rows)."""
    def describe(tensor: Any) -> Any:
        return None if tensor is None else (tuple(tensor.shape), str(tensor.dtype))
    return describe(features), describe(mask), real


def select_batches(keys: list[tuple]) -> list[int]:
    """The index of the first batch of each distinct shape key, in decoding order: every
    distinct batch shape of the pass is counted once, the partial last batch included."""
    seen: dict[tuple, int] = {}
    for index, key in enumerate(keys):
        seen.setdefault(key, index)
    return sorted(seen.values())


def _count_batch(model: Any, decoder: Any, batch: CountedBatch, device: Any, precision: str,
                 count_tokens: Callable[[list[int]], int] | None,
                 rows_out: dict[int, list] | None = None) -> tuple[dict[str, Any], str]:
    """Decode one batch under the counters; its BatchCounters fields and the device type
    (`rows_out`: gets the real rows' token ids under the batch's index)."""
    features_in = batch.features
    real = features_in.shape[0] if batch.real is None else batch.real
    counter = OpCounter()
    reads = ReadCounter(counter)
    syncs = SyncCounter(counter)
    hooks = [model.get_encoder().register_forward_pre_hook(counter.encoder_starts),
             model.get_encoder().register_forward_hook(counter.encoder_ends),
             model.get_decoder().register_forward_pre_hook(counter.step_starts)]
    _COUNTING.append(counter)
    try:
        with syncs, reads, counter:
            with torch.inference_mode(), device.autocast(precision):
                features = features_in.to(device.torch_device)
                where = features.device.type
                if decoder is not None:
                    out = decoder(features)
                else:
                    out = model.generate(features, **batch.generate_kwargs)
                    out = out if torch.is_tensor(out) else out.sequences
            counter.phase = "other"
            # the timed passes' read-back (engine._pass): the whole output, rows on the host
            rows = out.cpu().tolist()[:real]
            del out, features
    finally:
        _COUNTING.remove(counter)
        for hook in hooks:
            hook.remove()
    steps = counter.step_counts()
    steady, steady_steps = _steady(steps[1:])
    totals = [sum(s.values()) for s in steps[1:]]
    decode_total: collections.Counter = collections.Counter()
    for step in steps:
        decode_total.update(step)
    steady_index = next((k for k, s in enumerate(steps) if k and dict(s) == steady), None)
    allocated = counter.allocated
    tokens = sum(count_tokens(r) for r in rows) if count_tokens else 0
    if rows_out is not None:
        rows_out[batch.index] = rows
    fields = dict(
        batch=batch.index, utterances=list(batch.utterances), rows=int(features_in.shape[0]),
        real_rows=real, encoder_calls=counter.encoder_calls,
        encoder_ops=dict(counter.counts["encoder"]),
        prompt_step_ops=dict(steps[0]) if steps else {}, decode_step_ops=steady,
        decode_steps=len(steps), steady_steps=steady_steps,
        decode_step_total_min=min(totals) if totals else None,
        decode_step_total_max=max(totals) if totals else None,
        decode_ops_total=dict(decode_total), other_ops=dict(counter.counts["other"]),
        flops=int(counter.flops), flops_per_utterance=counter.flops / max(real, 1),
        host_syncs=sum(counter.syncs.values()), host_sync_ops=dict(counter.syncs),
        host_syncs_per_token=counter.decode_syncs / len(steps) if steps else 0.0,
        host_reads=dict(reads.reads), host_read_lines=dict(reads.lines),
        host_reads_per_token=reads.decode_reads / len(steps) if steps else 0.0,
        device_syncs=dict(syncs.calls),
        tokens=tokens, encoder_bytes=allocated["encoder"],
        prompt_step_bytes=allocated[("step", 0)] if steps else 0,
        decode_step_bytes=allocated[("step", steady_index)] if steady_index else 0,
        decode_bytes_total=sum(allocated[("step", k)] for k in range(len(steps))),
        peak_live_bytes=counter.peak, retained_bytes=counter.live)
    return fields, where


def count_batches(prepared: Any, decoder: Any, batches: list[CountedBatch], device: Any, *,
                  count_tokens: Callable[[list[int]], int] | None = None,
                  compilations: int | None = None, captures: list[Any] | None = None,
                  selection: str = SELECTION, batches_in_pass: int | None = None,
                  rows_out: dict[int, list] | None = None) -> Counters:
    """Decode each of `batches` once more, counting: the same decoder object (None: the
    model's generate() with each batch's `generate_kwargs`), autocast, device and batch shape
    as the timed passes, device-installed graph wrappers bypassed (and nothing else; a batch
    with `capture` set captures where the device would, graphing.capturing_calls).
    `count_tokens`: tokens generated in one returned row; `compilations`: the run's graph
    compilations/captures (the device's counter), `captures`: its capturing calls
    (graphing.Capture), recorded as they are; `rows_out`: gets each batch's decoded rows
    (token ids of the real rows) under its index, for a counters-only run whose transcripts
    come from this pass. The first batch's counts are the record's own fields; the others go
    to `batches`."""
    if not batches:
        raise ValueError("no batch to count")
    model = (prepared.graphed_model() if decoder is None and prepared.graphs
             else prepared.model)
    device.synchronize()
    device.reset_peak_memory()
    collecting = gc.isenabled()
    # No collection during the pass: lifetimes are reference counts, the same on every run.
    # (No gc.collect() before it either: only tensors made in the pass are tracked, so garbage
    # from before cannot move a count, and a full collection of a process holding torch,
    # transformers and optimum-habana cost 1.7-2 s, more than a tiny model's whole pass.)
    gc.disable()
    start = time.perf_counter()
    counted = []
    try:
        with bypass_replay(_graph_candidates(model, decoder)) as bypassed:
            for batch in batches:
                with (graphing.capturing_calls() if batch.capture
                      else contextlib.nullcontext()):
                    counted.append(_count_batch(model, decoder, batch, device,
                                                prepared.precision, count_tokens, rows_out))
        # (a decoder that wraps its step on its first batch wrapped it during the pass)
        bypassed = bypassed or any(graphing.is_wrapped(m)
                                   for m in _graph_candidates(model, decoder))
    finally:
        if collecting:
            gc.enable()
    device.synchronize()
    seconds = time.perf_counter() - start
    (first, where), others = counted[0], [BatchCounters(**f) for f, _ in counted[1:]]
    tally: collections.Counter = collections.Counter()
    for capture in captures or ():
        tally[capture.key()] += capture.count
    return Counters(
        **first, version=COUNTER_VERSION, selection=selection, replay_bypassed=bypassed,
        batches=others, batches_in_pass=batches_in_pass,
        host_sync_definition=host_sync_definition(where), compilations=compilations,
        captures=dict(tally), peak_device_memory_bytes=device.peak_memory_bytes(),
        seconds=seconds)


def count_pass(prepared: Any, decoder: Any, batch: torch.Tensor, device: Any, *,
               real: int | None = None, generate_kwargs: dict[str, Any] | None = None,
               count_tokens: Callable[[list[int]], int] | None = None,
               utterances: list[str] | None = None, compilations: int | None = None,
               captures: list[Any] | None = None,
               selection: str = "the first batch in decoding order",
               rows_out: list | None = None) -> Counters:
    """count_batches of one batch (`batch`: its features; `real`: its real rows; `rows_out`:
    a list that gets the decoded rows)."""
    decoded: dict[int, list] = {}
    counters = count_batches(prepared, decoder,
                             [CountedBatch(batch, real, 0, dict(generate_kwargs or {}),
                                           list(utterances or []))],
                             device, count_tokens=count_tokens, compilations=compilations,
                             captures=captures, selection=selection, rows_out=decoded)
    if rows_out is not None:
        rows_out.extend(decoded[0])
    return counters


def host_sync_definition(device_type: str) -> str:
    """What the host-sync count counts where the tensors live, in words (for the record)."""
    reads = "item()/bool() reads (_local_scalar_dense), nonzero, masked_select, equal"
    python = ("; host_reads counts Python-level reads (tolist, cpu, numpy, item, bool, ...) "
              "by call site on every device")
    if device_type == "cpu":
        return (f"{reads}: the reads an accelerator would sync on; tensors live on the host "
                "here, so device-to-host copies are never counted at the dispatch level"
                + python)
    return (f"{reads}, and copies from the device into CPU tensors (.cpu(), .tolist(), "
            ".numpy())" + python)
