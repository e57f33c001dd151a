"""Emulated habana_frameworks.torch.hpu.graphs (see asrbench/devices/emulation/graphs.py)."""

from asrbench.devices.emulation.graphs import (  # noqa: F401
    copy_inputs as copy_to,
    input_hash,
    wrap_in_hpu_graph,
    wrap_in_hpu_graph_func,
)
