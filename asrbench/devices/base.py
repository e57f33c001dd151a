"""The small interface every device backend implements; the engine only talks to this."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager as ContextManager
from typing import Any

import torch

from asrbench.errors import AsrbenchError


class Device(ABC):
    """One accelerator kind (cpu, cuda, hpu): provisioning, precision, sync and memory."""

    #: short backend name, also what `--device` takes
    kind: str = ""
    #: the keyword options this backend's constructor takes (get_device refuses any other that
    #: is set, rather than dropping it silently)
    OPTIONS: tuple[str, ...] = ()
    #: torch.distributed backend used for data-parallel runs on this device kind
    distributed_backend: str = "gloo"
    #: whether prepare(graphs=True) does something (HPU graphs); elsewhere it is refused
    supports_graphs: bool = False
    #: whether a batch may change shape between decoder steps (finished rows dropped); HPU
    #: graphs and lazy-mode recipes are shape-specialized, so there it stays static
    dynamic_shapes: bool = True
    #: whether its graph wrapper can tell, before a call, whether the call would capture
    #: (graphing.install(would_capture=...)): then a counters-only run counts its first batches
    #: while capturing (graphing.capturing_calls), one decode instead of a warm-up and an eager
    #: counted pass. The real HPU cannot: habana_frameworks' wrap_in_hpu_graph keeps its graph
    #: cache in a closure; CUDA graphs under torch.compile neither.
    capture_while_counting: bool = False

    @classmethod
    @abstractmethod
    def is_available(cls) -> bool:
        """True when this backend can run here (hardware and software present)."""

    @classmethod
    def unavailable_reason(cls) -> str:
        """One line saying why `--device <kind>` cannot run here and what to do."""
        return f"--device {cls.kind} was requested but no {cls.kind} device is available here"

    @property
    @abstractmethod
    def torch_device(self) -> torch.device:
        """The torch.device tensors are moved to."""

    @abstractmethod
    def device_class(self) -> str:
        """Name of the baseline file for this hardware: cpu, cuda-h100, hpu-gaudi2, ..."""

    @abstractmethod
    def description(self) -> str:
        """Human-readable hardware name for reports (CPU model, GPU model, Gaudi generation)."""

    def environment(self) -> dict[str, Any]:
        """Driver and runtime versions that belong in a report's environment block."""
        return {}

    def prepare(self, model: torch.nn.Module, precision: str) -> torch.nn.Module:
        """Move the model to the device in eval mode (weights stay fp32; precision is autocast);
        graph wrapping is separate (graph()), on the modules the decoder actually runs."""
        model.eval()
        return model.to(self.torch_device)

    def autocast(self, precision: str) -> ContextManager[Any]:
        """Context that runs the forward passes at `precision` (a no-op for fp32)."""
        return contextlib.nullcontext()

    def generate_kwargs(self, graphs: bool) -> dict[str, Any]:
        """Extra keyword arguments this backend's generate() needs (static shapes, ...)."""
        return {}

    def graph(self, module: torch.nn.Module) -> torch.nn.Module:
        """Wrap a module for graph capture and replay (its forward, in place); the engine hands
        it only modules whose arguments are tensors of fixed shapes."""
        raise AsrbenchError(f"graph replay (--graphs) is not supported on {self.kind}")

    @property
    def graph_captures(self) -> list[Any]:
        """Each call of a graph-wrapped module that compiled/captured graphs, in order
        (graphing.Capture: which module, which input shapes), over this device's life."""
        return self.__dict__.setdefault("_graph_captures", [])

    def compile_count(self) -> int | None:
        """Graph compilations/captures so far in this process (a running total), or None where
        this backend compiles nothing or cannot count; the engine reports the difference over
        the warm-up and over each timed pass."""
        return None

    def compile_counter(self) -> str | None:
        """What compile_count() counts, in words, for the report."""
        return None

    def warmup_batches(self, static_shapes: bool) -> int | None:
        """Batches the warm-up needs before timing: with static shapes one batch meets every
        shape and captures every graph; None (a full pass) where shapes vary, so every shape
        the timed passes meet was met once (on CPU, a one-batch warm-up left the first timed
        pass of the shrinking-batch decoder ~5% slower than the others: docs/performance.md)."""
        return 1 if static_shapes else None

    def setup_distributed(self) -> None:
        """Make `distributed_backend` usable in this process, before the process group starts."""

    def mark_step(self) -> None:
        """End one decode step's queued work in lazy mode (Gaudi); nothing elsewhere."""

    def synchronize(self) -> None:
        """Wait for queued device work, so a clock read after it is honest."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window."""

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory since the last reset, or None where it is not measurable."""
        return None

