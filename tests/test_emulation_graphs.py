"""The HPU-graph emulator (asrbench/devices/emulation/graphs.py) on small modules, in this process.

The emulator is trusted only as far as these tests show it can fail the way a real HPU graph
does: a replay runs none of the module's Python, keys non-tensor arguments by identity,
returns the captured output objects, and copies new inputs into the captured ones. An emulator
that merely called the module again would pass the "same result" checks and fail the
"Python is frozen" ones.
"""

from __future__ import annotations

import pytest
import torch

from asrbench.devices.emulation.graphs import (
    STATS,
    EmulatedGraphError,
    input_hash,
    wrap_in_hpu_graph,
)


class Affine(torch.nn.Module):
    """y = x @ w + b, with a Python-side call counter."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), requires_grad=False)
        self.b = torch.nn.Parameter(torch.tensor([0.5, -0.5]), requires_grad=False)
        self.python_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.python_calls += 1
        return x @ self.w + self.b


def test_replay_computes_with_new_inputs_without_running_python():
    module = wrap_in_hpu_graph(Affine())
    with torch.inference_mode():
        first = module(torch.tensor([[1.0, 0.0]]))
        expected_first = [[1.5, 1.5]]  # [1, 0] @ w + b
        assert first.tolist() == expected_first
        second = module(torch.tensor([[0.0, 1.0]]))
    assert second.tolist() == [[3.5, 3.5]]  # [0, 1] @ w + b, worked by hand
    assert module.python_calls == 1  # the replay ran no Python of the module
    assert second is first  # the captured output object comes back, refreshed
    assert len(module._asrbench_graph_cache) == 1


def test_a_new_shape_is_a_new_capture_and_the_old_graph_still_replays():
    module = wrap_in_hpu_graph(Affine())
    with torch.inference_mode():
        module(torch.ones(1, 2))
        two = module(torch.ones(2, 2))
        again = module(torch.tensor([[2.0, 0.0]]))
    assert two.shape == (2, 2) and module.python_calls == 2
    assert again.tolist() == [[2.5, 3.5]]  # [2, 0] @ w + b
    assert len(module._asrbench_graph_cache) == 2


def test_captured_inputs_are_overwritten_by_a_replay_as_on_a_gaudi():
    """graphs.py copies a hit's tensors into the tensors of the capturing call."""
    module = wrap_in_hpu_graph(Affine())
    with torch.inference_mode():
        original = torch.tensor([[1.0, 0.0]])
        module(original)
        module(torch.tensor([[7.0, 7.0]]))
    assert original.tolist() == [[7.0, 7.0]]


class GrowingState:
    """Stands in for a transformers DynamicCache: grows in Python, no __hash__ of its own."""

    def __init__(self) -> None:
        self.items: list[torch.Tensor] = []


class UsesState(torch.nn.Module):
    def forward(self, x: torch.Tensor, state: GrowingState) -> torch.Tensor:
        state.items.append(x.clone())
        return torch.stack(state.items).sum(dim=0)


def test_an_object_argument_is_keyed_by_identity_and_its_growth_is_never_seen():
    """The DynamicCache failure mode: same object, same shapes -> the first step replays."""
    module = wrap_in_hpu_graph(UsesState())
    state = GrowingState()
    with torch.inference_mode():
        module(torch.tensor([1.0]), state)  # capture: sum of [1]
        replayed = module(torch.tensor([10.0]), state)
    # Eagerly this would be 1 + 10 = 11; the replay re-ran "sum of the captured list", whose
    # only element is the captured input tensor, now holding 10.
    assert replayed.tolist() == [10.0]
    assert len(state.items) == 1  # the Python append never ran again
    with torch.inference_mode():
        other = GrowingState()
        fresh = module(torch.tensor([5.0]), other)  # another object: another capture
    assert fresh.tolist() == [5.0] and len(module._asrbench_graph_cache) == 2


class StaticBuffer(torch.nn.Module):
    """Stands in for a static KV cache: a fixed buffer updated in place at a position."""

    def __init__(self) -> None:
        super().__init__()
        self.cache = torch.zeros(4)

    def forward(self, value: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        self.cache.index_copy_(0, position, value)
        return self.cache.cumsum(0)


def test_in_place_updates_of_a_static_buffer_replay_correctly():
    module = wrap_in_hpu_graph(StaticBuffer())
    with torch.inference_mode():
        for step, value in enumerate([1.0, 2.0, 4.0]):
            out = module(torch.tensor([value]), torch.tensor([step]))
    assert module.cache.tolist() == [1.0, 2.0, 4.0, 0.0]
    assert out.tolist() == [1.0, 3.0, 7.0, 7.0]
    assert len(module._asrbench_graph_cache) == 1


class TransposeContiguous(torch.nn.Module):
    """contiguous() of a transposed view allocates: the replay must refresh that copy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).contiguous() * 2


def test_a_fresh_tensor_from_a_possibly_aliasing_op_is_refreshed_on_replay():
    module = wrap_in_hpu_graph(TransposeContiguous())
    with torch.inference_mode():
        module(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        out = module(torch.tensor([[5.0, 6.0], [7.0, 8.0]]))
    assert out.tolist() == [[10.0, 14.0], [12.0, 16.0]]


class DataDependent(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(x)


def test_a_data_dependent_shape_inside_a_graph_is_an_error_on_replay():
    module = wrap_in_hpu_graph(DataDependent())
    with torch.inference_mode():
        module(torch.tensor([1.0, 0.0, 1.0]))
        with pytest.raises(EmulatedGraphError, match="data-dependent shape"):
            module(torch.tensor([1.0, 1.0, 1.0]))


class HostDecision(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1 if bool(x.sum() > 0) else x - 1


def test_a_host_read_during_capture_freezes_the_python_branch():
    before = STATS.host_reads_frozen
    module = wrap_in_hpu_graph(HostDecision())
    with torch.inference_mode():
        module(torch.tensor([1.0]))
        frozen = module(torch.tensor([-5.0]))  # eagerly: -6; the captured branch adds 1
    assert frozen.tolist() == [-4.0]
    assert STATS.host_reads_frozen == before + 1


def test_keys_follow_shape_view_dtype_autocast_and_identity():
    x = torch.zeros(2, 3)
    assert input_hash(((x,), {})) == input_hash(((torch.ones(2, 3),), {}))
    assert input_hash(((x,), {})) != input_hash(((torch.zeros(3, 2),), {}))
    assert input_hash(((x,), {})) != input_hash(((x.t().contiguous().t(),), {}))  # stride
    assert input_hash(((x,), {})) != input_hash(((x.double(),), {}))
    with torch.autocast("hpu", dtype=torch.bfloat16):
        under_autocast = input_hash(((x,), {}))
    assert under_autocast != input_hash(((x,), {}))
    a, b = GrowingState(), GrowingState()
    assert input_hash(((), {"s": a})) == input_hash(((), {"s": a}))
    assert input_hash(((), {"s": a})) != input_hash(((), {"s": b}))


def test_bypass_and_max_graphs_call_the_module_eagerly():
    module = wrap_in_hpu_graph(Affine(), max_graphs=1)
    with torch.inference_mode():
        module(torch.ones(1, 2))
        module(torch.ones(3, 2))  # the cache is full: runs eagerly, not captured
        module(torch.ones(1, 2), bypass_hpu_graphs=True)
    assert module.python_calls == 3 and len(module._asrbench_graph_cache) == 1


def test_capture_counter_counts_captures_only():
    before = STATS.captures
    module = wrap_in_hpu_graph(Affine())
    with torch.inference_mode():
        for _ in range(3):
            module(torch.ones(1, 2))
    assert STATS.captures == before + 1


class MaskedSum(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[x > 0].sum()


def test_a_data_dependent_shape_in_the_middle_of_a_graph_is_refused_too():
    """Eager re-execution would return the right sum; a real graph replays the captured mask
    size, so the emulator must not pass it silently."""
    module = wrap_in_hpu_graph(MaskedSum())
    with torch.inference_mode():
        assert module(torch.tensor([1.0, 2.0, -1.0, -1.0])).item() == 3.0
        with pytest.raises(EmulatedGraphError, match="data-dependent shape"):
            module(torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_an_emulated_process_never_takes_its_stubs_for_a_gaudi_nor_runs_other_devices(monkeypatch):
    """Once the emulator is active (faked here: activating it would patch this process), the
    real HPU backend reports no Gaudi and a session refuses other devices."""
    import asrbench.devices.emulation as emulation
    from asrbench.config.settings import BenchConfig
    from asrbench.devices.hpu import HPUDevice
    from asrbench.errors import AsrbenchError
    from asrbench.measure.session import Session

    monkeypatch.setattr(emulation, "is_active", lambda: True)
    assert HPUDevice.is_available() is False
    with pytest.raises(AsrbenchError, match="separate asrbench run"):
        Session(progress=False).device(BenchConfig(device="cpu"))


def test_optimum_habana_reads_the_stubs_plugin_version_from_the_emulators_pip(tmp_path):
    """optimum-habana's package init runs `pip list | grep habana-torch-plugin`: in an emulated
    process (a child: activating patches the process) the `pip` it finds is write_pip's, not
    this interpreter's (which would import pip and read every distribution), and answers the
    stubs' distribution line as `pip list` shows it. Any other pip command is pip's."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from asrbench.devices.emulation import STUBS, write_pip

    code = ("import json, shutil, subprocess, sys\n"
            "calls = []\n"
            "real = subprocess.run\n"
            "def run(*args, **kwargs):\n"
            "    done = real(*args, **kwargs)\n"
            "    if args and args[0] == 'pip list | grep habana-torch-plugin':\n"
            "        calls.append([shutil.which('pip'), done.stdout])\n"
            "    return done\n"
            "subprocess.run = run\n"
            "from asrbench.devices import emulation\n"
            "emulation.activate()\n"
            "print(json.dumps(calls))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ((pip, out),) = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(pip).parent != Path(sys.executable).parent
    assert Path(pip).name == "pip" and not Path(pip).exists()  # removed after the import
    real = subprocess.run([sys.executable, "-m", "pip", "list"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(STUBS)}, timeout=300).stdout
    (line,) = [row for row in real.splitlines() if "habana-torch-plugin" in row]
    assert out.split() == line.split() == ["habana-torch-plugin", "1.24.0+emulated"]
    shim = write_pip(tmp_path)
    version = subprocess.run([str(shim), "--version"], capture_output=True, text=True,
                             timeout=300)
    assert version.returncode == 0 and version.stdout.startswith("pip "), version.stderr
    assert shutil.which("pip", path=str(tmp_path)) == str(shim)
