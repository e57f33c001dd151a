"""Emulated habana_frameworks.torch.core: lazy-mode step marks (counted; CPU work is eager)."""

from asrbench.devices.emulation import state


def mark_step(device_str: str = "", sync: bool = False) -> None:
    """Lazy mode flushes the accumulated graph here; on CPU everything already ran."""
    state.COUNTS["mark_step"] += 1


def iter_mark_step(iterable):
    """Mark a step after every item, as the real helper does."""
    for item in iterable:
        yield item
        mark_step()
