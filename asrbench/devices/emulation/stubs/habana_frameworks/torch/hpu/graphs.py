"""Emulated habana_frameworks.torch.hpu.graphs (see asrbench/devices/emulation/graphs.py)."""

from asrbench.devices.emulation.graphs import copy_inputs as copy_to
from asrbench.devices.emulation.graphs import input_hash, wrap_in_hpu_graph, wrap_in_hpu_graph_func

# Re-exported: this module stands in for the real package's.
__all__ = ["copy_to", "input_hash", "wrap_in_hpu_graph", "wrap_in_hpu_graph_func"]
