"""The CUDA backend's graph mode (static KV cache + torch.compile reduce-overhead).

The contract is checked without a GPU; the numbers measured on a lent H100 are in
docs/performance.md. A real-GPU smoke test runs only where CUDA is present.
"""

from types import SimpleNamespace

import pytest
import torch

from asrbench.devices.cuda import CUDADevice


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.generation_config = SimpleNamespace(cache_implementation=None)


def _cpu_stand_in() -> CUDADevice:
    device = CUDADevice.__new__(CUDADevice)  # __init__ would select a GPU
    device._device = torch.device("cpu")
    return device


def test_graphs_mean_static_cache_and_reduce_overhead_compile(monkeypatch):
    compiled = []

    def fake_compile(fn, mode=None):
        compiled.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = _cpu_stand_in().prepare(_Model(), "bf16", graphs=True)
    assert model.generation_config.cache_implementation == "static"
    assert compiled == ["reduce-overhead"]
    assert not model.training


def test_without_graphs_nothing_is_compiled(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled without --graphs"))
    model = _cpu_stand_in().prepare(_Model(), "fp32", graphs=False)
    assert model.generation_config.cache_implementation is None
    assert CUDADevice.supports_graphs and CUDADevice.dynamic_shapes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_device_runs_a_forward_pass():
    device = CUDADevice()
    model = device.prepare(torch.nn.Linear(4, 4), "fp32", graphs=False)
    with torch.inference_mode(), device.autocast("bf16"):
        out = model(torch.ones(2, 4, device=device.torch_device))
    device.synchronize()
    assert out.dtype == torch.bfloat16 and out.shape == (2, 4)
