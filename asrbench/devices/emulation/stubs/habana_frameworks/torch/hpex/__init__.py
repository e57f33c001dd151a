"""Emulated habana_frameworks.torch.hpex: no fused Gaudi kernels are emulated."""
