"""CUDA backend: one NVIDIA GPU per process, autocast for bf16/fp16."""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager as ContextManager
from typing import Any

import torch

from asrbench.devices import graphing
from asrbench.devices.base import Device

# Words in GPU names that say nothing about the chip ("NVIDIA GeForce RTX 4090" -> rtx4090).
_VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro"}


def gpu_class_slug(name: str) -> str:
    """Short, stable chip name for a baseline file: 'NVIDIA H100 80GB HBM3' -> 'h100'."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w not in _VENDOR_WORDS]
    if not words:
        return "unknown"
    if words[0] == "rtx" and len(words) > 1:
        return "rtx" + words[1]
    return words[0]


class CUDADevice(Device):
    """One CUDA GPU, picked by LOCAL_RANK in data-parallel runs."""

    kind = "cuda"
    distributed_backend = "nccl"
    supports_graphs = True

    OPTIONS = ("local_rank",)

    def __init__(self, local_rank: int | None = None) -> None:
        if local_rank is None:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self._device = torch.device("cuda", local_rank)
        torch.cuda.set_device(self._device)
        self._compiled = False

    @classmethod
    def is_available(cls) -> bool:
        return torch.cuda.is_available()

    @property
    def torch_device(self) -> torch.device:
        return self._device

    def device_class(self) -> str:
        return "cuda-" + gpu_class_slug(torch.cuda.get_device_name(self._device))

    def description(self) -> str:
        return torch.cuda.get_device_name(self._device)

    def environment(self) -> dict[str, Any]:
        return {"gpu": self.description(), "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version()}

    def autocast(self, precision: str) -> ContextManager[Any]:
        if precision == "fp32":
            return super().autocast(precision)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def graph(self, module: torch.nn.Module) -> torch.nn.Module:
        """The CUDA analogue of HPU graphs: torch.compile(mode="reduce-overhead") captures the
        module in CUDA graphs. The engine hands over fixed-shape modules only (the static
        decoder's encoder and step, or a whole model decoding with a static KV cache)."""
        original = module.forward  # what the counted pass runs (graphing.eager)
        compiled = torch.compile(original, mode="reduce-overhead")
        self._compiled = True
        return graphing.install(module, original, compiled, self.compile_count,
                                self.graph_captures)

    def generate_kwargs(self, graphs: bool) -> dict[str, Any]:
        # A graph over a growing DynamicCache would replay stale shapes: a static cache.
        return {"cache_implementation": "static"} if graphs else {}

    def compile_count(self) -> int | None:
        if not self._compiled:
            return None
        from torch._dynamo.utils import counters  # noqa: PLC0415  dynamo: slow to import, compiled runs only

        return int(counters["stats"]["unique_graphs"])

    def compile_counter(self) -> str | None:
        return "torch._dynamo unique graphs compiled" if self._compiled else None

    def synchronize(self) -> None:
        torch.cuda.synchronize(self._device)

    def reset_peak_memory(self) -> None:
        torch.cuda.reset_peak_memory_stats(self._device)

    def peak_memory_bytes(self) -> int | None:
        return int(torch.cuda.max_memory_allocated(self._device))
