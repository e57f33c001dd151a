"""Mutable state of the emulated Gaudi, shared by the stub modules and asrbench."""

from __future__ import annotations

from collections import Counter

#: what habana_frameworks.torch.hpu.get_device_name() answers
DEVICE_NAME = "GAUDI2 (emulated on CPU)"
#: synDeviceType member returned by utils.experimental._get_device_type()
DEVICE_TYPE = "synDeviceGaudi2"
#: habana_frameworks.torch.hpu.{enable,disable}_dynamic_shape() toggle this
DYNAMIC_SHAPES = {"enabled": True}
#: calls a test may want to see: mark_step, synchronize
COUNTS: Counter = Counter()
