"""The CUDA backend's graph mode (torch.compile reduce-overhead on fixed-shape modules; a
static KV cache for generate()).

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

    def forward(self, x):
        return self.linear(x)


def _cpu_stand_in() -> CUDADevice:
    device = CUDADevice.__new__(CUDADevice)  # __init__ would select a GPU
    device._device = torch.device("cpu")
    return device


def test_graph_compiles_the_module_forward_with_reduce_overhead(monkeypatch):
    compiled = []

    def fake_compile(fn, mode=None):
        compiled.append((fn, mode))
        return lambda *a, **k: ("compiled", fn(*a, **k))

    monkeypatch.setattr(torch, "compile", fake_compile)
    device = _cpu_stand_in()
    device._compiled = False
    assert device.compile_count() is None  # nothing compiled yet: nothing to count
    module = _Model()
    original = module.forward
    assert device.graph(module) is module
    assert compiled == [(original, "reduce-overhead")]
    assert module(torch.ones(1, 2))[0] == "compiled"
    assert isinstance(device.compile_count(), int) and device.compile_counter()
    # generate() under graphs must decode with a static cache, never a growing one
    assert device.generate_kwargs(graphs=True) == {"cache_implementation": "static"}
    assert device.generate_kwargs(graphs=False) == {}


def test_prepare_compiles_nothing(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled in prepare()"))
    model = _cpu_stand_in().prepare(_Model(), "fp32")
    assert model.generation_config.cache_implementation is None
    assert not model.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_device_runs_a_forward_pass():
    device = CUDADevice()
    model = device.prepare(torch.nn.Linear(4, 4), "fp32")
    with torch.inference_mode(), device.autocast("bf16"):
        out = model(torch.ones(2, 4, device=device.torch_device))
    device.synchronize()
    assert out.dtype == torch.bfloat16 and out.shape == (2, 4)
