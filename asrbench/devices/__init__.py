"""Device backends behind one interface; `get_device("auto")` picks hpu > cuda > cpu.

Backends are imported lazily so that importing asrbench never needs habana_frameworks, and
the interface (base.py, which imports torch) only when a device is asked for: the option
tables, help texts and the pytest plugin import this package without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from asrbench.config.settings import DEVICE_CHOICES, PRECISIONS
from asrbench.errors import AsrbenchError

if TYPE_CHECKING:  # pragma: no cover
    from asrbench.devices.base import Device

BACKENDS = {
    "hpu": ("asrbench.devices.hpu", "HPUDevice"),
    "cuda": ("asrbench.devices.cuda", "CUDADevice"),
    "cpu": ("asrbench.devices.cpu", "CPUDevice"),
    # optimum-habana's real code on the CPU with HPU-graph replay emulated: correctness only
    "hpu-emulated": ("asrbench.devices.hpu_emulated", "EmulatedHPUDevice"),
}
#: what "auto" tries, in order (never the emulator: it must be asked for by name)
AUTO_ORDER = ("hpu", "cuda", "cpu")
#: the environment variable that limits a process to one card, per device kind (`asrbench ab
#: --cards`); a plain table, so reading it imports no backend
CARD_VARIABLES = {"hpu": "HABANA_VISIBLE_MODULES", "cuda": "CUDA_VISIBLE_DEVICES"}


def __getattr__(name: str) -> Any:
    # `from asrbench.devices import Device` keeps working; base.py (torch) loads on first use
    if name == "Device":
        from asrbench.devices.base import Device  # noqa: PLC0415  loads torch (devices.base)

        return Device
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def backend_class(kind: str) -> type[Device]:
    """The Device subclass for a backend name."""
    if kind not in BACKENDS:
        raise AsrbenchError(f"unknown device {kind!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    module, name = BACKENDS[kind]
    return getattr(importlib.import_module(module), name)


def resolve_kind(kind: str) -> str:
    """Turn 'auto' into the first available backend; check an explicit one is available."""
    if kind == "auto":
        for candidate in AUTO_ORDER:
            if backend_class(candidate).is_available():
                return candidate
        return "cpu"
    cls = backend_class(kind)
    if not cls.is_available():
        raise AsrbenchError(cls.unavailable_reason())
    return kind


def get_device(kind: str = "auto", **options: Any) -> Device:
    """Provision a device backend by name ('auto', 'hpu', 'cuda', 'cpu', 'hpu-emulated').

    Options left at their defaults (None, False) are dropped; one that is set but not an option
    of the chosen backend is a user error (--gaudi-config on a CPU, say), never ignored."""
    resolved = resolve_kind(kind)
    cls = backend_class(resolved)
    given = {name: value for name, value in options.items() if value not in (None, False)}
    unknown = sorted(set(given) - set(cls.OPTIONS))
    if unknown:
        flags = ", ".join("--" + name.replace("_", "-") for name in unknown)
        raise AsrbenchError(f"{flags} {'does' if len(unknown) == 1 else 'do'} not apply to the "
                            f"{resolved} device (options there: "
                            f"{', '.join(cls.OPTIONS) or 'none'})")
    return cls(**given)


__all__ = ["BACKENDS", "CARD_VARIABLES", "DEVICE_CHOICES", "PRECISIONS", "Device", "get_device",
           "resolve_kind", "backend_class"]
