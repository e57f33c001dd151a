"""The emulated Gaudi (`--device hpu-emulated`): asrbench's real HPU backend, optimum-habana's
real code and HPU-graph replay semantics, on the CPU (asrbench/devices/emulation).

A correctness tool, never a speed claim: its device class is `hpu-emulated` (own baselines,
never compared with hardware), its description says "emulated", and its timings measure the
emulator, not a Gaudi.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from typing import Any

import torch

from asrbench.devices import emulation
from asrbench.devices.cpu import cpu_model_name, host_cpu_environment
from asrbench.devices.hpu import HPUDevice


class EmulatedHPUDevice(HPUDevice):
    """HPUDevice on stub habana_frameworks modules; "hpu" tensors live on the CPU."""

    kind = "hpu-emulated"
    distributed_backend = "gloo"  # no HCCL off a Gaudi
    # the emulator's wrapper says whether a call would capture (graphs.would_capture)
    capture_while_counting = True

    def __init__(self, **options: Any) -> None:
        emulation.activate()  # before HPUDevice imports habana_frameworks and optimum-habana
        super().__init__(**options)

    @classmethod
    def is_available(cls) -> bool:
        return emulation.optimum_habana_installed() and not emulation.real_habana_installed()

    @classmethod
    def unavailable_reason(cls) -> str:
        if emulation.real_habana_installed():
            return ("--device hpu-emulated is refused where a real habana_frameworks is "
                    "installed: use --device hpu")
        return (f"--device hpu-emulated runs optimum-habana's code on the CPU and needs "
                f"optimum-habana=={emulation.OPTIMUM_HABANA_VERSION}: pip install -e '.[dev]' "
                "(scripts/setup.sh does it)")

    def setup_distributed(self) -> None:
        """gloo needs nothing set up (there is no HCCL here)."""

    def device_class(self) -> str:
        return "hpu-emulated"

    def description(self) -> str:
        return (f"emulated Intel {self.generation().replace('gaudi', 'Gaudi')} HPU on "
                f"{cpu_model_name()} ({torch.get_num_threads()} threads): correctness only, "
                "not a speed measurement")

    def environment(self) -> dict[str, Any]:
        return {**super().environment(), "emulated": True, **host_cpu_environment()}

    def autocast(self, precision: str) -> ContextManager[Any]:
        """HPU autocast as the real backend enters it (optimum-habana and the graph key read its
        state), plus CPU autocast so the CPU kernels compute in bf16 (CPU numerics, not
        Gaudi's). Both are entered when the returned context is."""
        hpu = super().autocast(precision)  # validates the precision now, as HPUDevice does

        @contextlib.contextmanager
        def both() -> Iterator[None]:
            with hpu, torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                yield

        return both()

    def reset_peak_memory(self) -> None:
        """Nothing to reset: there is no device allocator here."""

    def peak_memory_bytes(self) -> int | None:
        """None: the emulated device has no allocator of its own ("hpu" tensors are CPU
        tensors), and the stub's max_memory_allocated() is the process's peak RSS, which the
        report already carries as peak_host_rss_bytes. The counted pass's exact byte counts
        (counters) are this device's memory numbers."""
        return None
