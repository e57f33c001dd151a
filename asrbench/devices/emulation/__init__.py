"""An emulated Gaudi: optimum-habana's real Python code running on the CPU.

`activate()` makes stub `habana_frameworks` modules importable (stubs/), maps the "hpu" device
onto the CPU for every torch call, and imports optimum-habana the way it expects to be imported
on a Gaudi machine (its package init reads the SynapseAI version from the installed
`habana-torch-plugin` distribution with `pip list`; the stubs directory carries one, labelled
"+emulated"). After it, asrbench's real HPU backend, `adapt_transformers_to_gaudi()`, the Gaudi
Whisper classes and the Gaudi generate() all run here, and HPU graphs capture and replay with
the semantics of habana_frameworks' graphs.py (graphs.py in this package).

It is a correctness tool: it catches graph-replay and static-shape bugs before Gaudi time is
spent. It is never a speed claim (there is no graph compiler, no bridge, no Gaudi numerics);
reports of such runs carry the device class `hpu-emulated`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from asrbench.errors import AsrbenchError, first_line

STUBS = Path(__file__).resolve().parent / "stubs"
#: optimum-habana release whose code the emulator runs (and the tests pin findings against)
OPTIMUM_HABANA_VERSION = "1.21.2"

_active: dict[str, Any] = {}


def real_habana_installed() -> bool:
    """True when a real habana_frameworks (not these stubs) is importable."""
    spec = importlib.util.find_spec("habana_frameworks")
    if spec is None or spec.origin is None:
        return False
    return not Path(spec.origin).resolve().is_relative_to(STUBS)


def optimum_habana_installed() -> bool:
    """optimum-habana's package is present (not imported: its init needs the emulator)."""
    return importlib.util.find_spec("optimum.habana") is not None if \
        importlib.util.find_spec("optimum") is not None else False


def is_active() -> bool:
    return bool(_active)


def _is_hpu(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "hpu"
    return isinstance(device, str) and (device == "hpu" or device.startswith("hpu:"))


def _to_cpu(value: Any) -> Any:
    return torch.device("cpu") if _is_hpu(value) else value


class HPUOnCPU(TorchFunctionMode):
    """Every torch call that names the "hpu" device gets the CPU instead.

    optimum-habana and asrbench's HPU backend move models and tensors to "hpu" and create some
    tensors there (torch.arange(..., device="hpu")); on this CPU-only torch build that device
    has no kernels. Only device arguments change; everything else runs as written.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(_is_hpu(a) for a in args):
            args = tuple(_to_cpu(a) for a in args)
        if "device" in kwargs and _is_hpu(kwargs["device"]):
            kwargs = {**kwargs, "device": torch.device("cpu")}
        return func(*args, **kwargs)


#: the distribution whose version optimum-habana reads as the SynapseAI version
PLUGIN_DISTRIBUTION = "habana-torch-plugin"


def write_pip(directory: Path) -> Path:
    """A `pip` for optimum-habana's package init, in `directory`: `pip list` prints the stubs'
    habana-torch-plugin line, the one line optimum-habana greps for (its version, as the real
    `pip list` shows it with the stubs on PYTHONPATH), without starting pip, which imports its
    own code and reads every installed distribution (about 0.3 s of each emulated process on a
    2-core machine); any other command runs this interpreter's pip."""
    (plugin,) = importlib.metadata.distributions(name=PLUGIN_DISTRIBUTION, path=[str(STUBS)])
    line = shlex.quote(f"{PLUGIN_DISTRIBUTION} {plugin.version}")
    pip = directory / "pip"
    pip.write_text("#!/bin/sh\n"
                   "# asrbench's emulated Gaudi (asrbench/devices/emulation): write_pip\n"
                   f'if [ "$*" = list ]; then echo {line}; exit 0; fi\n'
                   f'exec {shlex.quote(sys.executable)} -m pip "$@"\n', encoding="utf-8")
    pip.chmod(0o755)
    return pip


def _import_optimum_habana() -> None:
    """Import optimum.habana with the environment its package init expects.

    optimum/habana/__init__.py runs `pip list | grep habana-torch-plugin` in a shell: `pip` must
    answer for this interpreter with the stubs' distribution, so PATH starts with a folder that
    holds write_pip's `pip` (then this interpreter's folder) and PYTHONPATH with the stubs, for
    that import only; both are restored afterwards (child processes inherit neither).
    """
    saved = {name: os.environ.get(name) for name in ("PATH", "PYTHONPATH")}
    shim = tempfile.TemporaryDirectory(prefix="asrbench-emulated-pip-")
    try:
        write_pip(Path(shim.name))
        os.environ["PATH"] = os.pathsep.join(
            [shim.name, os.path.dirname(sys.executable), saved["PATH"] or os.defpath])
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(STUBS), saved["PYTHONPATH"]) if p)
        # optimum-habana prints a line per model file whose fused Gaudi kernel is missing (the
        # stubs have none); those models are not the ones benchmarked, so the lines are dropped.
        with contextlib.redirect_stdout(io.StringIO()):
            import optimum.habana  # noqa: PLC0415  Gaudi only (optimum-habana, habana_frameworks)
            import optimum.habana.transformers.modeling_utils  # noqa: F401, PLC0415  Gaudi only (optimum-habana, habana_frameworks)
    except Exception as exc:  # noqa: BLE001 - any failure has the same remedy
        raise AsrbenchError(
            f"the emulated Gaudi could not import optimum-habana ({type(exc).__name__}: "
            f"{first_line(exc)}); install optimum-habana=={OPTIMUM_HABANA_VERSION} "
            "(pip install -e '.[dev]' does)") from exc
    finally:
        shim.cleanup()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def activate() -> None:
    """Turn this process into an emulated Gaudi host (idempotent; cannot be undone)."""
    if _active:
        return
    if real_habana_installed():
        raise AsrbenchError("a real habana_frameworks is installed here: use --device hpu, not "
                            "the emulated Gaudi")
    if not optimum_habana_installed():
        raise AsrbenchError(
            f"the emulated Gaudi runs optimum-habana's code, which is not installed: pip install "
            f"optimum-habana=={OPTIMUM_HABANA_VERSION} -c constraints.txt (or pip install -e "
            "'.[dev]')")
    if "habana_frameworks" not in sys.modules:
        # At the end of sys.path: a real torchvision, when installed, wins over the placeholder.
        sys.path.append(str(STUBS))
    os.environ.setdefault("PT_HPU_LAZY_MODE", "1")
    import habana_frameworks.torch  # noqa: F401, PLC0415 registers torch.hpu (before "hpu" is remapped)  Gaudi only (optimum-habana, habana_frameworks)

    mode = HPUOnCPU()
    mode.__enter__()  # for the rest of the process: the emulated process has no real "hpu"
    try:
        _import_optimum_habana()
    except BaseException:
        mode.__exit__(None, None, None)
        raise
    _active["mode"] = mode
