"""The counted pass: exact work counts of the timed passes' code path, for the gate.

After the timed passes (never inside them: their clocks must not pay for counting) the engine
decodes one fixed batch again with the same decoder object, model, cache, autocast and batch
shape, under one dispatch mode that counts every aten op by name and output dtype, attributed to
the encoder call, to decode step k, or to the batch's own bookkeeping, and adds up FLOPs with
FlopCounterMode's formulas (its registry; FlopCounterMode itself, with its module tracker, made
the pass several times slower). Step boundaries come from forward pre-hooks on the model's encoder and decoder modules:
decode step k runs from the k-th decoder call to the next (the projection onto the vocabulary,
the suppression rules, argmax and the end-of-text read of a step belong to it).

On a graph device the counted pass runs the wrapped modules eagerly (their replay is bypassed:
a replay runs no Python and dispatches no op that a mode could see); the ops are those the graph
captured. The record says so (replay_bypassed).

Definitions (COUNTER_VERSION; change them only together with the version):
- op key: "<aten op packet> <dtype>", e.g. "aten.mm f32", "aten._to_copy bf16"; dtype of the op's
  first tensor output, else of its first tensor argument, else "-".
- steady decode step: the most common per-step op multiset over the steps after the prompt step
  (ties: the first met); decode_step_total_min/max give the spread of all those steps.
- host sync: an op that hands a device value to the host. Counted on every device: aten ops
  `_local_scalar_dense` (item(), bool(), int() of a tensor), `nonzero` and `masked_select` (data-
  dependent shapes), `equal`; and a copy (`_to_copy`, `copy_`) from a non-CPU tensor into a CPU
  one. On the CPU and the emulated Gaudi tensors already live on the host, so no copy is ever
  counted there (a .cpu() or .tolist() dispatches nothing): the CPU count is the reads an
  accelerator would sync on (item, bool, nonzero), not its copies. host_syncs_per_token divides by
  decode steps (one step generates the next token of every row).
- FLOPs: FlopCounterMode's formulas summed over the batch (dummy rows included) / its real rows.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import time
from typing import Any, Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from asrbench.formats.model import COUNTER_VERSION, Counters

__all__ = ["COUNTER_VERSION", "OpCounter", "count_pass", "bypass_replay", "op_key"]

#: aten ops (overload packets) that read a device value on the host, on any device
HOST_READS = frozenset({"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select",
                        "aten.equal"})
#: copies that are a device-to-host transfer when their source is not on the CPU
COPIES = frozenset({"aten._to_copy", "aten.copy_", "aten.copy"})
SELECTION = "the first batch in decoding order (longest clips first)"
_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16",
           torch.float64: "f64", torch.int64: "i64", torch.int32: "i32", torch.int16: "i16",
           torch.int8: "i8", torch.uint8: "u8", torch.bool: "bool"}


def _dtype_name(dtype: torch.dtype) -> str:
    return _DTYPES.get(dtype, str(dtype).replace("torch.", ""))


def op_key(func: Any, args: tuple, kwargs: dict, out: Any) -> str:
    """"<op packet> <dtype>": the dtype of the first tensor output, else first tensor input."""
    name = str(func.overloadpacket)
    for tree in (out, (args, kwargs)):
        for leaf in tree_flatten(tree)[0]:
            if isinstance(leaf, torch.Tensor):
                return f"{name} {_dtype_name(leaf.dtype)}"
    return f"{name} -"


@functools.lru_cache(maxsize=None)
def _composite(func: Any) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(),
                                                          "CompositeImplicitAutograd")


def _is_host_sync(name: str, func: Any, args: tuple, kwargs: dict, out: Any) -> bool:
    if name in HOST_READS:
        return True
    if name not in COPIES:
        return False
    source = args[1] if name == "aten.copy_" and len(args) > 1 else args[0] if args else None
    target = args[0] if name == "aten.copy_" else out
    return (isinstance(source, torch.Tensor) and isinstance(target, torch.Tensor)
            and source.device.type != "cpu" and target.device.type == "cpu")


class OpCounter(TorchDispatchMode):
    """Counts dispatched aten ops by key, per phase: "encoder", ("step", k) or "other"."""

    def __init__(self) -> None:
        super().__init__()
        self.phase: Any = "other"
        self.steps = 0
        self.encoder_calls = 0
        self.counts: dict[Any, collections.Counter] = collections.defaultdict(collections.Counter)
        self.syncs: collections.Counter = collections.Counter()  # op name -> host syncs
        self.decode_syncs = 0  # host syncs inside decode steps
        self.flops = 0  # FlopCounterMode's formulas (torch.utils.flop_counter.flop_registry)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet not in flop_registry and _composite(func):
            # Under inference_mode a mode meets composite ops (aten.linear) before they are
            # decomposed; count what they decompose into (aten.addmm, aten.mm), as outside it.
            # (FlopCounterMode's rule: an op it has a FLOP formula for is counted whole.)
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if packet in flop_registry:
            self.flops += flop_registry[packet](*args, **kwargs, out_val=out)
        key = op_key(func, args, kwargs, out)
        self.counts[self.phase][key] += 1
        name = key.rsplit(" ", 1)[0]
        if _is_host_sync(name, func, args, kwargs, out):
            self.syncs[name] += 1
            if isinstance(self.phase, tuple):
                self.decode_syncs += 1
        return out

    # module hooks: where a phase starts and ends
    def encoder_starts(self, module: Any, args: Any) -> None:
        self.encoder_calls += 1
        self.phase = "encoder"

    def encoder_ends(self, module: Any, args: Any, output: Any) -> None:
        self.phase = "other"

    def step_starts(self, module: Any, args: Any, kwargs: Any = None) -> None:
        self.phase = ("step", self.steps)
        self.steps += 1

    def step_counts(self) -> list[collections.Counter]:
        """Op counts of each decode step, in order (step 0 is the prompt step)."""
        return [self.counts[("step", k)] for k in range(self.steps)]


@contextlib.contextmanager
def bypass_replay(modules: list[torch.nn.Module]) -> Iterator[bool]:
    """Run graph-wrapped modules eagerly while the block runs: a device's graph wrapper (HPU
    graphs, the emulated ones, torch.compile) replaces `forward` on the instance; the class's
    forward is the module's own code. Yields whether any module was wrapped."""
    wrapped = [m for m in modules if "forward" in vars(m)]
    saved = [vars(m)["forward"] for m in wrapped]
    for module in wrapped:
        own = type(module).forward.__get__(module)

        def eager(*args: Any, _own: Any = own, **kwargs: Any) -> Any:
            kwargs.pop("bypass_hpu_graphs", None)  # a graph wrapper's keyword (optimum-habana)
            return _own(*args, **kwargs)

        module.forward = eager
    try:
        yield bool(wrapped)
    finally:
        for module, forward in zip(wrapped, saved):
            module.forward = forward


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


def count_pass(prepared: Any, decoder: Any, batch: torch.Tensor, device: Any, *,
               real: int | None = None, generate_kwargs: dict[str, Any] | None = None,
               count_tokens: Callable[[list[int]], int] | None = None,
               utterances: list[str] | None = None, compilations: int | None = None,
               selection: str = SELECTION, rows_out: list | None = None) -> Counters:
    """Decode `batch` (features, as the timed passes feed them) once more, counting: the same
    decoder object (None: the model's generate() with `generate_kwargs`), autocast, device and
    batch shape as the timed passes, graph replay bypassed. `real`: the batch's real rows (the
    rest are dummy rows), `count_tokens`: tokens generated in one returned row, `compilations`:
    the run's graph compilations/captures (the device's counter), recorded as they are;
    `rows_out`: a list that gets the decoded rows (token ids of the real rows), for a
    counters-only run whose transcripts come from this pass."""
    real = batch.shape[0] if real is None else real
    model = (prepared.graphed_model() if decoder is None and prepared.graphs
             else prepared.model)
    counter = OpCounter()
    hooks = [model.get_encoder().register_forward_pre_hook(counter.encoder_starts),
             model.get_encoder().register_forward_hook(counter.encoder_ends),
             model.get_decoder().register_forward_pre_hook(counter.step_starts)]
    device.synchronize()
    device.reset_peak_memory()
    start = time.perf_counter()
    try:
        with bypass_replay(_graph_candidates(model, decoder)) as bypassed:
            with counter:
                with torch.inference_mode(), device.autocast(prepared.precision):
                    features = batch.to(device.torch_device)
                    where = features.device.type
                    if decoder is not None:
                        out = decoder(features)
                    else:
                        out = model.generate(features, **(generate_kwargs or {}))
                        out = out if torch.is_tensor(out) else out.sequences
                counter.phase = "other"
                rows = out.cpu().tolist()[:real]
    finally:
        for hook in hooks:
            hook.remove()
    device.synchronize()
    seconds = time.perf_counter() - start
    steps = counter.step_counts()
    steady, steady_steps = _steady(steps[1:])
    totals = [sum(s.values()) for s in steps[1:]]
    decode_total: collections.Counter = collections.Counter()
    for step in steps:
        decode_total.update(step)
    host_syncs = sum(counter.syncs.values())
    tokens = sum(count_tokens(r) for r in rows) if count_tokens else 0
    if rows_out is not None:
        rows_out.extend(rows)
    return Counters(
        version=COUNTER_VERSION, selection=selection, utterances=list(utterances or []),
        rows=int(batch.shape[0]), real_rows=real, replay_bypassed=bypassed,
        encoder_calls=counter.encoder_calls, encoder_ops=dict(counter.counts["encoder"]),
        prompt_step_ops=dict(steps[0]) if steps else {}, decode_step_ops=steady,
        decode_steps=len(steps), steady_steps=steady_steps,
        decode_step_total_min=min(totals) if totals else None,
        decode_step_total_max=max(totals) if totals else None,
        decode_ops_total=dict(decode_total), other_ops=dict(counter.counts["other"]),
        flops=int(counter.flops), flops_per_utterance=counter.flops / max(real, 1),
        host_syncs=host_syncs, host_sync_ops=dict(counter.syncs),
        host_syncs_per_token=counter.decode_syncs / len(steps) if steps else 0.0,
        host_sync_definition=host_sync_definition(where),
        tokens=tokens, compilations=compilations,
        peak_device_memory_bytes=device.peak_memory_bytes(), seconds=seconds)


def host_sync_definition(device_type: str) -> str:
    """What the host-sync count counts where the tensors live, in words (for the record)."""
    reads = "item()/bool() reads (_local_scalar_dense), nonzero, masked_select, equal"
    if device_type == "cpu":
        return (f"{reads}: the reads an accelerator would sync on; tensors live on the host "
                "here, so device-to-host copies (.cpu(), .tolist()) are never counted")
    return f"{reads}, and copies from the device into CPU tensors (.cpu(), .tolist(), .numpy())"
