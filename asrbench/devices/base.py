"""The small interface every device backend implements; the engine only talks to this."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, ContextManager

import torch



class Device(ABC):
    """One accelerator kind (cpu, cuda, hpu): provisioning, precision, sync and memory."""

    #: short backend name, also what `--device` takes
    kind: str = ""
    #: torch.distributed backend used for data-parallel runs on this device kind
    distributed_backend: str = "gloo"
    #: whether prepare(graphs=True) does something (HPU graphs); elsewhere it is refused
    supports_graphs: bool = False
    #: whether a batch may change shape between decoder steps (finished rows dropped); HPU
    #: graphs and lazy-mode recipes are shape-specialized, so there it stays static
    dynamic_shapes: bool = True

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

    def prepare(self, model: torch.nn.Module, precision: str, graphs: bool) -> torch.nn.Module:
        """Move the model to the device, set its precision and wrap it for graph replay."""
        model.eval()
        return model.to(self.torch_device)

    def autocast(self, precision: str) -> ContextManager[Any]:
        """Context that runs the forward passes at `precision` (a no-op for fp32)."""
        return contextlib.nullcontext()

    def generate_kwargs(self, graphs: bool) -> dict[str, Any]:
        """Extra keyword arguments this backend's generate() needs (static shapes, ...)."""
        return {}

    def setup_distributed(self) -> None:
        """Make `distributed_backend` usable in this process, before the process group starts."""

    def synchronize(self) -> None:
        """Wait for queued device work, so a clock read after it is honest."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window."""

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory since the last reset, or None where it is not measurable."""
        return None

