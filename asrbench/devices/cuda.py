"""CUDA backend: one NVIDIA GPU per process, autocast for bf16/fp16."""

from __future__ import annotations

import os
import re
from typing import Any, ContextManager

import torch

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

    def __init__(self, local_rank: int | None = None, **_: Any) -> None:
        if local_rank is None:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self._device = torch.device("cuda", local_rank)
        torch.cuda.set_device(self._device)

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

    def prepare(self, model: torch.nn.Module, precision: str, graphs: bool) -> torch.nn.Module:
        """On the GPU; with graphs, the CUDA analogue of HPU graphs: a static KV cache and
        torch.compile(mode="reduce-overhead"), which captures the decoder step in a CUDA graph.
        The engine then decodes with generate() (fixed shapes), not the shrinking-batch decoder."""
        model = super().prepare(model, precision, graphs)
        if graphs:
            model.generation_config.cache_implementation = "static"
            model.forward = torch.compile(model.forward, mode="reduce-overhead")
        return model

    def synchronize(self) -> None:
        torch.cuda.synchronize(self._device)

    def reset_peak_memory(self) -> None:
        torch.cuda.reset_peak_memory_stats(self._device)

    def peak_memory_bytes(self) -> int | None:
        return int(torch.cuda.max_memory_allocated(self._device))
