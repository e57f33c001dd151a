"""Emulated habana_frameworks.torch: registers `torch.hpu` as the real bridge does on import."""

import torch

from habana_frameworks.torch import core, hpu  # noqa: F401  (the real package imports both)

if not hasattr(torch, "hpu"):
    torch._register_device_module("hpu", hpu)
