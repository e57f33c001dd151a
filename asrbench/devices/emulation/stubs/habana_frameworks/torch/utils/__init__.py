"""Emulated habana_frameworks.torch.utils."""
