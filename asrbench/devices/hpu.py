"""Intel Gaudi (HPU) backend, following optimum-habana 1.21's own Whisper inference path.

Nothing from habana_frameworks or optimum.habana is imported at module level: both exist only
in the Habana PyTorch image, and `import optimum.habana` fails elsewhere (its package init runs
`pip list | grep habana-torch-plugin`). They are imported inside methods, once the HPU device
has been selected. docs/hpu.md lists the optimum-habana source each step comes from.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import weakref
from contextlib import AbstractContextManager as ContextManager
from typing import Any

import torch

from asrbench.config.settings import check_precision
from asrbench.devices import graphing
from asrbench.devices.base import Device
from asrbench.errors import AsrbenchError, first_line

#: Gaudi generations optimum-habana tells apart (optimum/habana/utils/misc.py get_device_name),
#: paired with the habana_frameworks synDeviceType member that identifies each.
GAUDI_GENERATIONS = (
    ("gaudi", "synDeviceGaudi"),
    ("gaudi2", "synDeviceGaudi2"),
    ("gaudi3", "synDeviceGaudi3"),
)
#: Environment variable read by habana_frameworks when it loads its PyTorch bridge.
LAZY_MODE_VAR = "PT_HPU_LAZY_MODE"
#: Set by GaudiConfig.declare_autocast_bf16_fp32_ops(); read when habana_frameworks loads.
AUTOCAST_OPS_VAR = "PT_HPU_AUTOCAST_LOWER_PRECISION_OPS_LIST"


def generation_from_device_name(name: str) -> str:
    """Gaudi generation from habana_frameworks' device name: 'GAUDI2' -> 'gaudi2'."""
    match = re.search(r"gaudi\s*(\d*)", name.lower())
    if not match:
        return "unknown"
    number = match.group(1)
    return "gaudi" if number in ("", "1") else f"gaudi{number}"


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _driver_version() -> str | None:
    """Driver version from `hl-smi`, as optimum-habana's get_driver_version() reads it."""
    if shutil.which("hl-smi") is None:
        return None
    try:
        out = subprocess.run(["hl-smi"], capture_output=True, text=True, timeout=20,
                             env={**os.environ, "ENABLE_CONSOLE": "true"}, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Driver Version:\s*([0-9][0-9A-Za-z.\-]*)", out)
    return match.group(1) if match else None


def _contains_dynamic_cache(value: Any, depth: int = 0) -> bool:
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache  # noqa: PLC0415  transformers: off the light paths

    if isinstance(value, DynamicCache):
        return True
    if isinstance(value, EncoderDecoderCache):
        return (isinstance(value.self_attention_cache, DynamicCache)
                or isinstance(value.cross_attention_cache, DynamicCache))
    if depth < 2 and isinstance(value, (list, tuple)):
        return any(_contains_dynamic_cache(v, depth + 1) for v in value)
    if depth < 2 and isinstance(value, dict):
        return any(_contains_dynamic_cache(v, depth + 1) for v in value.values())
    return False


def refuse_growing_cache(args: tuple, kwargs: dict) -> None:
    """Raise before an HPU graph is captured or replayed over a growing KV cache.

    habana_frameworks' graph cache keys a non-tensor argument by hash(), i.e. by identity for a
    transformers Cache; a DynamicCache keeps its identity while it grows in Python, so every
    decode step after the first replays the first step's graph over the first step's cache:
    truncated transcripts, no error, and fast (docs/hpu.md, finding 1).
    """
    if any(_contains_dynamic_cache(v) for v in (*args, *kwargs.values())):
        raise AsrbenchError(
            "HPU graphs over a growing (dynamic) KV cache would replay the first decode step at "
            "every step: decode with a static cache (asrbench's static decoder, or generate("
            "cache_implementation='static')) or run without --graphs")


class HPUDevice(Device):
    """One Gaudi card per process, in lazy mode, with optional HPU graphs and bf16 autocast.

    Construct it before the model is loaded: adapt_transformers_to_gaudi() swaps the Whisper
    classes inside transformers, and a model instantiated earlier keeps the stock classes.
    Options: gaudi_config (a gaudi_config.json path
    or a Hub name such as Habana/whisper), sdp_on_bf16, static_shapes (decoder static shapes
    in generate(), off by default: see generate_kwargs).
    """

    kind = "hpu"
    distributed_backend = "hccl"
    supports_graphs = True
    dynamic_shapes = False

    OPTIONS = ("gaudi_config", "sdp_on_bf16", "static_shapes")

    def __init__(self, gaudi_config: str | None = None, sdp_on_bf16: bool = False,
                 static_shapes: bool = False) -> None:
        # The HCCL runtime gives each process the card whose module id equals its local rank
        # (Habana "Gaudi-to-process assignment"); inside a process that card is just "hpu".
        self._device = torch.device("hpu")
        self._generation: str | None = None
        self._wrapped: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
        #: decoder-side static shapes in generate() (see generate_kwargs for why it is off)
        self.static_shapes = bool(static_shapes)

        # habana_frameworks.torch picks its bridge library (lazy vs eager/compile) from this
        # variable when it is first imported, and exports wrap_in_hpu_graph only in lazy mode;
        # optimum-habana's Whisper commands all run with PT_HPU_LAZY_MODE=1. Current Gaudi
        # releases default to eager mode (Habana's "PyTorch Gaudi Theory of Operations"), so
        # it must be set before the import below.
        os.environ.setdefault(LAZY_MODE_VAR, "1")
        if os.environ[LAZY_MODE_VAR] == "0":
            raise AsrbenchError(
                f"{LAZY_MODE_VAR}=0 (eager mode) is set, but asrbench runs Gaudi in lazy mode as "
                f"optimum-habana's Whisper example does: unset it or export {LAZY_MODE_VAR}=1")

        # Before habana_frameworks.torch.core is imported: GaudiConfig may declare autocast op
        # lists through environment variables that the bridge reads when it loads.
        self.gaudi_config = self._load_gaudi_config(gaudi_config) if gaudi_config else None
        self.gaudi_config_ref = gaudi_config

        # GaudiTrainingArguments.__post_init__ (optimum/habana/transformers/training_args.py).
        self.sdp_on_bf16 = bool(sdp_on_bf16)
        if self.sdp_on_bf16:
            torch._C._set_math_sdp_allow_fp16_bf16_reduction(True)

        try:
            import habana_frameworks.torch.core as htcore  # noqa: PLC0415  Gaudi only (optimum-habana, habana_frameworks); registers torch.hpu, mark_step
            import habana_frameworks.torch.hpu as hthpu  # noqa: PLC0415  Gaudi only (optimum-habana, habana_frameworks)
        except ImportError as exc:
            raise AsrbenchError(self.unavailable_reason()) from exc
        self._htcore = htcore
        self._hthpu = hthpu

        # GaudiTrainingArguments._setup_devices calls it "before model instantiation".
        # Importing this submodule runs optimum/habana/__init__.py too (a Python package's
        # parent is always imported first): fine in the Habana image, fatal elsewhere.
        try:
            from optimum.habana.transformers.modeling_utils import adapt_transformers_to_gaudi  # noqa: PLC0415  Gaudi only (optimum-habana, habana_frameworks)
        except Exception as exc:  # noqa: BLE001 - any import failure has the same fix
            raise AsrbenchError(
                f"could not import optimum-habana ({type(exc).__name__}: {first_line(exc)}); "
                "install asrbench[hpu] inside the Habana PyTorch image") from exc
        adapt_transformers_to_gaudi()

        # GaudiTrainer.__init__ in lazy mode (trainer.py:313-316): dynamic shapes follow the
        # Gaudi config's use_dynamic_shapes, which is False by default and in Habana/whisper.
        if (self.gaudi_config is not None
                and getattr(self.gaudi_config, "use_dynamic_shapes", False)):
            hthpu.enable_dynamic_shape()
        else:
            hthpu.disable_dynamic_shape()

    def setup_distributed(self) -> None:
        # Importing this module registers the "hccl" backend with torch.distributed (Habana's
        # "Setting Up Distributed Training"); RANK/WORLD_SIZE/LOCAL_RANK must be set before it.
        import habana_frameworks.torch.distributed.hccl  # noqa: F401, PLC0415  Gaudi only (optimum-habana, habana_frameworks)

    # -- availability -------------------------------------------------------------------

    @classmethod
    def is_available(cls) -> bool:
        emulation = sys.modules.get("asrbench.devices.emulation")
        if emulation is not None and emulation.is_active():
            return False  # the stubs of an emulated Gaudi are not a Gaudi
        if importlib.util.find_spec("habana_frameworks") is None:
            return False
        # The import below loads the bridge, so lazy mode must be chosen first (see __init__).
        os.environ.setdefault(LAZY_MODE_VAR, "1")
        try:
            import habana_frameworks.torch.hpu as hthpu  # noqa: PLC0415  Gaudi only (optimum-habana, habana_frameworks)

            return bool(hthpu.is_available())
        except Exception:  # noqa: BLE001 - a broken install simply means "not available"
            return False

    @classmethod
    def unavailable_reason(cls) -> str:
        return ("--device hpu was requested but no Gaudi HPU (habana_frameworks) was found here: "
                "use --device cpu, --device cuda or --device hpu-emulated (the Gaudi code path "
                "emulated on the CPU), or install asrbench[hpu] inside the Habana PyTorch "
                "image on a Gaudi machine")

    # -- identity -------------------------------------------------------------------------

    @property
    def torch_device(self) -> torch.device:
        return self._device

    def generation(self) -> str:
        """'gaudi', 'gaudi2' or 'gaudi3', detected the way optimum-habana's get_device_name()
        does."""
        if self._generation is None:
            self._generation = self._detect_generation()
        return self._generation

    def _detect_generation(self) -> str:
        try:
            import habana_frameworks.torch.utils.experimental as htexp  # noqa: PLC0415  Gaudi only (optimum-habana, habana_frameworks)

            device_type = htexp._get_device_type()
            for generation, member in GAUDI_GENERATIONS:
                if device_type == getattr(htexp.synDeviceType, member, object()):
                    return generation
        except Exception:  # noqa: BLE001 - fall back to the device name string
            pass
        return generation_from_device_name(self._device_name())

    def _device_name(self) -> str:
        try:
            return str(self._hthpu.get_device_name())
        except Exception:  # noqa: BLE001
            return ""

    def device_class(self) -> str:
        return f"hpu-{self.generation()}"

    def description(self) -> str:
        label = self.generation().replace("gaudi", "Gaudi")
        name = self._device_name()
        return f"Intel {label} HPU ({name})" if name else f"Intel {label} HPU"

    def environment(self) -> dict[str, Any]:
        return {
            "hpu": self._device_name() or None,
            "device_class": self.device_class(),
            # optimum-habana reads the SynapseAI version from this distribution (utils/misc.py
            # get_habana_frameworks_version, via `pip list`).
            "habana_frameworks": _distribution_version("habana-torch-plugin"),
            "optimum_habana": _distribution_version("optimum-habana"),
            "driver": _driver_version(),
            "lazy_mode": os.environ.get(LAZY_MODE_VAR),
            "gaudi_config": self.gaudi_config_ref,
            "sdp_on_bf16": self.sdp_on_bf16,
            "static_shapes": self.static_shapes,
            # the on-disk recipe cache (`asrbench ab` gives each side its own), or None
            "recipe_cache": os.environ.get("PT_HPU_RECIPE_CACHE_CONFIG"),
        }

    # -- running ------------------------------------------------------------------------

    def prepare(self, model: torch.nn.Module, precision: str) -> torch.nn.Module:
        self._autocast_dtype(precision)  # refuse a bad precision before touching the device
        self._check_adapted(model)
        model.eval()
        model = model.to(self.torch_device)
        # GaudiTrainer._move_model_to_device: moving to HPU unties tied weights (Whisper's
        # output projection and token embedding), so tie them again.
        tie_weights = getattr(model, "tie_weights", None)
        if callable(tie_weights):
            tie_weights()
        return model

    def graph(self, module: torch.nn.Module) -> torch.nn.Module:
        """wrap_in_hpu_graph(module), as GaudiTrainer.evaluation_loop wraps a model for
        inference, behind a guard that refuses a growing cache as an argument (see
        refuse_growing_cache). Edits module.forward in place and returns the same module."""
        if module in self._wrapped:
            return module
        original = module.forward  # what the counted pass runs (graphing.eager)
        module = self._hthpu.wrap_in_hpu_graph(module)
        graphed = module.forward

        # functools.wraps as wrap_in_hpu_graph does: generate() filters the keywords it passes
        # by inspect.signature(model.forward), which follows __wrapped__ to the original.
        @functools.wraps(graphed)
        def forward(*args: Any, **kwargs: Any) -> Any:
            refuse_growing_cache(args, kwargs)
            return graphed(*args, **kwargs)

        # Recorded as device-installed (the counted pass bypasses this wrapper and no other),
        # with each capturing call's module and input shapes.
        graphing.install(module, original, forward, self.compile_count, self.graph_captures)
        self._wrapped.add(module)
        return module

    def compile_count(self) -> int | None:
        # habana_frameworks' global "graph_compilation" metric: every graph compilation of the
        # bridge (lazy-mode recipes and HPU graph captures), read by tag (the list may carry a
        # "recipe" entry too when PT_HPU_METRICS_GC_DETAILS is set).
        from habana_frameworks.torch.hpu.metrics import metric_global  # noqa: PLC0415  Gaudi only (optimum-habana, habana_frameworks)

        metric = metric_global("graph_compilation")
        if metric is None:
            return None
        return int(dict(metric.stats()).get("TotalNumber", 0))

    def compile_counter(self) -> str | None:
        return "habana_frameworks metric graph_compilation (TotalNumber)"

    def autocast(self, precision: str) -> ContextManager[Any]:
        dtype = self._autocast_dtype(precision)
        if dtype is None:
            return super().autocast(precision)
        # GaudiSeq2SeqTrainer.prediction_step wraps generate() in this context.
        return torch.autocast(device_type="hpu", dtype=dtype)

    def generate_kwargs(self, graphs: bool) -> dict[str, Any]:
        # The keywords GaudiSeq2SeqTrainer.prediction_step passes to GaudiGenerationMixin.generate
        # (optimum/habana/transformers/generation/utils.py), with two deliberate differences.
        # ignore_eos: the trainer's default is True, and when it is missing
        # GaudiGenerationMixin._prepare_generation_config sets it to the value of lazy_mode (for
        # Whisper, whose generate() forwards lazy_mode in **kwargs) and stores it on
        # model.generation_config, so every batch would decode to max length.
        # static_shapes: generate() turns it on for Whisper (MODELS_OPTIMIZED_WITH_STATIC_SHAPES),
        # but running optimum-habana 1.21.2's generation code with transformers 4.55 (on CPU,
        # fake habana_frameworks) decodes Whisper wrongly with it: the stock
        # prepare_inputs_for_generation feeds the last slot of the padded decoder buffer (a pad
        # token) at every step. Off, the transcripts equal stock transformers'. docs/hpu.md.
        kwargs: dict[str, Any] = {"lazy_mode": True, "hpu_graphs": bool(graphs),
                                  "ignore_eos": False, "static_shapes": self.static_shapes}
        if graphs and not self.static_shapes:
            # HPU graphs need a KV cache updated in place at fixed shapes; a DynamicCache grows
            # in Python, which a replay never runs (refuse_growing_cache).
            kwargs["cache_implementation"] = "static"
        return kwargs

    def mark_step(self) -> None:
        # optimum-habana's generation loop marks a step at every token in lazy mode
        # (generation/utils.py, _sample); without it the bookkeeping ops of every token pile
        # up into one lazy graph that grows with the decode.
        self._htcore.mark_step()

    def synchronize(self) -> None:
        # In lazy mode queued ops are only launched at a mark_step; synchronize() then waits
        # for the device (Habana's mark_step reference: mark_step alone does not wait).
        self._htcore.mark_step()
        self._hthpu.synchronize()

    def reset_peak_memory(self) -> None:
        self._hthpu.reset_peak_memory_stats()

    def peak_memory_bytes(self) -> int | None:
        return int(self._hthpu.max_memory_allocated())

    # -- helpers ------------------------------------------------------------------------

    def _autocast_dtype(self, precision: str) -> torch.dtype | None:
        check_precision(precision)
        if precision == "fp16":
            raise AsrbenchError("precision fp16 is not supported on HPU: use bf16 (what "
                                "optimum-habana's Whisper example runs) or fp32")
        if precision == "fp32":
            if (self.gaudi_config is not None
                    and getattr(self.gaudi_config, "use_torch_autocast", False)):
                raise AsrbenchError(
                    f"Gaudi config {self.gaudi_config_ref!r} turns on bf16 autocast "
                    "(use_torch_autocast) but precision is fp32: use precision bf16 or drop the "
                    "Gaudi config")
            return None
        return torch.bfloat16

    def _check_adapted(self, model: torch.nn.Module) -> None:
        """Refuse a Whisper model built from the stock classes (loaded before this device)."""
        config = getattr(model, "config", None)
        if getattr(config, "model_type", None) == "whisper" and \
                not type(model).__module__.startswith("optimum.habana"):
            raise AsrbenchError(
                f"{type(model).__name__} was instantiated before the HPU device adapted "
                "transformers to Gaudi: create the device (get_device('hpu')) before loading "
                "the model")

    def _load_gaudi_config(self, ref: str) -> Any:
        """GaudiConfig.from_pretrained on a gaudi_config.json path, a folder or a Hub name."""
        try:
            from optimum.habana.transformers.gaudi_configuration import GaudiConfig  # noqa: PLC0415  Gaudi only (optimum-habana, habana_frameworks)
        except Exception as exc:  # noqa: BLE001
            raise AsrbenchError(
                f"could not import optimum-habana to read Gaudi config {ref!r} "
                f"({type(exc).__name__}: {first_line(exc)}); install asrbench[hpu] inside the "
                "Habana PyTorch image") from exc
        try:
            config = GaudiConfig.from_pretrained(ref)
        except (OSError, ValueError) as exc:
            raise AsrbenchError(
                f"could not load Gaudi config {ref!r} ({first_line(exc)}): pass a "
                "gaudi_config.json path or a Hub name such as Habana/whisper") from exc
        # GaudiTrainer.__init__ declares the op lists only when the user has not set them.
        has_lists = config.autocast_bf16_ops is not None and config.autocast_fp32_ops is not None
        if has_lists and AUTOCAST_OPS_VAR not in os.environ:
            if "habana_frameworks.torch.core" in sys.modules:
                raise AsrbenchError(
                    f"Gaudi config {ref!r} lists autocast ops, but habana_frameworks was loaded "
                    "before they could be declared: export "
                    f"{AUTOCAST_OPS_VAR} and PT_HPU_AUTOCAST_FP32_OPS_LIST yourself, or use a "
                    "Gaudi config without autocast_bf16_ops/autocast_fp32_ops")
            config.declare_autocast_bf16_fp32_ops()
        return config

