"""CPU backend: fp32 by default, bf16/fp16 through torch.autocast (AMX on recent Xeons)."""

from __future__ import annotations

import platform
from contextlib import AbstractContextManager as ContextManager
from typing import Any

import torch

from asrbench.devices.base import Device
from asrbench.formats.environment import CPU_BF16, CPU_ID, cpu_bf16_arithmetic, cpu_identity


def cpu_model_name() -> str:
    """The CPU model string from /proc/cpuinfo, or platform.processor() elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_cpu_environment() -> dict[str, Any]:
    """What a device computing on the host CPU records of it: the CPU, torch's threads, and
    how the CPU rounds bf16 (its instruction-set key and its make): reduced-precision
    transcripts are gated exactly only against a baseline recorded with the same
    (gate/compare.py)."""
    return {"cpu": cpu_model_name(), "torch_threads": torch.get_num_threads(),
            CPU_BF16: cpu_bf16_arithmetic(), CPU_ID: cpu_identity()}


class CPUDevice(Device):
    """Runs on the host CPU with torch's intra-op thread pool."""

    kind = "cpu"
    distributed_backend = "gloo"

    def __init__(self) -> None:
        self._device = torch.device("cpu")

    @classmethod
    def is_available(cls) -> bool:
        return True

    @property
    def torch_device(self) -> torch.device:
        return self._device

    def device_class(self) -> str:
        return "cpu"

    def description(self) -> str:
        return f"{cpu_model_name()} ({torch.get_num_threads()} threads)"

    def environment(self) -> dict[str, Any]:
        return host_cpu_environment()

    def autocast(self, precision: str) -> ContextManager[Any]:
        if precision == "fp32":
            return super().autocast(precision)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast("cpu", dtype=dtype)
