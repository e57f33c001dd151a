"""BenchConfig: what one evaluation run measures, and its stable id (the baseline key)."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asrbench.errors import AsrbenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (Gaudi images)
    import tomli as tomllib

PRECISIONS = ("fp32", "bf16", "fp16")
# The device backends by name (asrbench.devices.BACKENDS maps each to its class); plain data
# here so that option tables and help texts never import a backend (torch).
DEVICE_KINDS = ("hpu", "cuda", "cpu", "hpu-emulated")
DEVICE_CHOICES = ("auto", *DEVICE_KINDS)
DEFAULT_MODEL = "bundled:whisper-base"
DEFAULT_GENERATION_MAX_LENGTH = 225  # optimum-habana's Whisper example uses 225
DEFAULT_MAX_DURATION = 30.0  # seconds; clips at or above it are dropped, as optimum-habana does
DEFAULT_BATCH_SIZE = 8
DEFAULT_PASSES = 3
DEFAULT_REFERENCE_UTTERANCES = 16  # first N utterances decoded by the stock fp32 CPU reference
# The embedded corpus lives in the repository, next to the package.
EMBEDDED_CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "commonvoice-mini"
#: Set to "1" by `asrbench ab` in the environment of its timing-round processes: such a run
#: skips its counted pass (the A/B's accuracy runs count, and compare the counts exactly). A
#: variable, not --no-counters, so a side running an older asrbench without that flag works.
AB_ROUND_VARIABLE = "ASRBENCH_AB_ROUND"
# (dataset config, language) pairs of the embedded default run.
EMBEDDED_RUNS = (("hi", "hindi"), ("en", "english"))
# Where both doors write the report and read the baselines unless told otherwise (relative to
# the working directory); every default path is imported from here, never re-typed.
from asrbench.formats.io import DEFAULT_BASELINE_DIR as DEFAULT_BASELINE_DIR  # noqa: E402
from asrbench.formats.io import DEFAULT_REPORT as DEFAULT_REPORT  # noqa: E402

DEFAULT_MATRIX = Path("benchmarks") / "matrix.toml"


def check_precision(precision: str) -> str:
    """Validate a precision name; raise a user error naming the choices."""
    if precision not in PRECISIONS:
        raise AsrbenchError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class BenchConfig:
    """One evaluation: model x dataset x decoding x precision x batch shape x device kind."""

    model: str = DEFAULT_MODEL  # hub id, local transformers directory, or bundled:<name>
    dataset: str = str(EMBEDDED_CORPUS)  # hub id, Common Voice directory, or JSONL manifest
    dataset_config: str | None = None  # hub config / Common Voice locale (e.g. "hi")
    split: str = "test"  # hub split / Common Voice <split>.tsv
    text_column: str = "sentence"  # reference text column for hub datasets
    language: str | None = None  # forced decoder language ("hindi", "hi"); None = detect
    task: str = "transcribe"  # or "translate"
    precision: str = "fp32"  # fp32 | bf16 | fp16
    batch_size: int = DEFAULT_BATCH_SIZE  # static batch shape; last batch padded with dummies
    generation_max_length: int = DEFAULT_GENERATION_MAX_LENGTH  # total decoder length cap
    max_duration: float = DEFAULT_MAX_DURATION  # drop clips of this many seconds or more
    graphs: bool = False  # HPU graphs (device must support them)
    sdp_on_bf16: bool = False  # allow bf16 reductions in math SDPA (optimum-habana flag)
    gaudi_config: str | None = None  # Gaudi config name or JSON path (HPU only)
    limit: int | None = None  # evaluate only the first N usable utterances
    device: str = "auto"  # auto | hpu | cuda | cpu | hpu-emulated (not in the id: the file is)
    world_size: int = 1  # data-parallel ranks (torchrun / gaudi_spawn.py); set by the launcher
    eos_check_every: int = 1  # static decoder: read "all rows finished?" every K steps
    ignore_eos: bool = False  # decode to the length cap as optimum-habana's trainer does
    warmup_batches: int | None = None  # None: what the device needs (1, or a full pass)
    reference_utterances: int = DEFAULT_REFERENCE_UTTERANCES  # agreement check; 0 = off
    counters: bool = True  # a counted pass after the timed passes (asrbench.measure.counters)
    counters_only: bool = False  # no timed pass: the counted pass and one plain decode (not in the id)

    def __post_init__(self) -> None:
        self._check_types()
        if self.batch_size < 1:
            raise AsrbenchError(f"batch size must be >= 1, got {self.batch_size}")
        if self.generation_max_length < 8:
            raise AsrbenchError(f"generation max length must be >= 8, got {self.generation_max_length}")
        if not math.isfinite(self.max_duration) or self.max_duration <= 0:
            raise AsrbenchError(f"max duration must be a finite number of seconds > 0, got "
                                f"{self.max_duration}")
        if self.limit is not None and self.limit < 1:
            raise AsrbenchError(f"--limit must be >= 1, got {self.limit}")
        if self.world_size < 1:
            raise AsrbenchError(f"world size must be >= 1, got {self.world_size}")
        if self.eos_check_every < 1:
            raise AsrbenchError(f"--eos-check-every must be >= 1, got {self.eos_check_every}")
        if self.warmup_batches is not None and self.warmup_batches < 0:
            raise AsrbenchError(f"--warmup-batches must be >= 0, got {self.warmup_batches}")
        if self.reference_utterances < 0:
            raise AsrbenchError(f"--reference-utterances must be >= 0, got "
                                f"{self.reference_utterances}")
        if self.counters_only and not self.counters:
            raise AsrbenchError("--counters-only runs the counted pass and nothing else: drop "
                                "--no-counters (counters = false)")
        if self.counters_only and self.world_size > 1:
            raise AsrbenchError("--counters-only runs in one process (it times nothing, so "
                                "ranks add nothing): drop --nproc / torchrun")
        check_precision(self.precision)
        if self.task not in ("transcribe", "translate"):
            raise AsrbenchError(f"task must be 'transcribe' or 'translate', got {self.task!r}")

    def _check_types(self) -> None:
        """Every setting of the type it must have (a TOML `batch_size = 8.0` or a string where
        a number belongs is refused here, before any model loads)."""
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            kinds = _FIELD_TYPES.get(spec.name)
            if kinds is None or value is None and type(None) in kinds:
                continue
            ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
            if not ok:
                wanted = " or ".join(k.__name__ for k in kinds if k is not type(None))
                raise AsrbenchError(f"setting {spec.name} must be {wanted}, got "
                                    f"{type(value).__name__} {value!r}")

    @property
    def id(self) -> str:
        """Stable, readable id: the baseline key and the pytest parameter id."""
        parts = [_short_name(self.model), _short_name(self.dataset)]
        if self.dataset_config:
            parts.append(self.dataset_config)
        parts += [self.split, self.language or "auto", self.task, self.precision,
                  f"bs{self.batch_size}"]
        if self.graphs:
            parts.append("graphs")
        if self.generation_max_length != DEFAULT_GENERATION_MAX_LENGTH:
            parts.append(f"ml{self.generation_max_length}")
        if self.max_duration != DEFAULT_MAX_DURATION:
            parts.append(f"md{self.max_duration:g}")
        if self.limit is not None:
            parts.append(f"n{self.limit}")
        if self.text_column != "sentence":
            parts.append(f"col-{self.text_column}")
        if self.world_size > 1:
            # Throughput of N ranks is a different number: its own baseline entry.
            parts.append(f"ws{self.world_size}")
        # Same transcripts, different throughput: their own baseline entries.
        if self.ignore_eos:
            parts.append("ignoreeos")
        if self.eos_check_every != 1:
            parts.append(f"eos{self.eos_check_every}")
        return "-".join(_slug(p) for p in parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus the id."""
        return {**dataclasses.asdict(self), "id": self.id}

    def replace(self, **changes: Any) -> BenchConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


_NONE = type(None)
#: the types each BenchConfig field accepts (checked by BenchConfig._check_types)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "dataset": (str,), "dataset_config": (str, _NONE), "split": (str,),
    "text_column": (str,), "language": (str, _NONE), "task": (str,), "precision": (str,),
    "batch_size": (int,), "generation_max_length": (int,), "max_duration": (int, float),
    "graphs": (bool,), "sdp_on_bf16": (bool,), "gaudi_config": (str, _NONE),
    "limit": (int, _NONE), "device": (str,), "world_size": (int,), "eos_check_every": (int,),
    "ignore_eos": (bool,), "warmup_batches": (int, _NONE), "reference_utterances": (int,),
    "counters": (bool,), "counters_only": (bool,),
}


def _short_name(ref: str) -> str:
    ref = ref.rstrip("/\\")
    if ref.startswith("bundled:"):
        return ref.split(":", 1)[1]
    name = re.split(r"[/\\]", ref)[-1]
    return re.sub(r"\.jsonl$", "", name)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


FIELD_NAMES = {f.name for f in dataclasses.fields(BenchConfig)}


def _coerce(values: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(values) - FIELD_NAMES - {"passes", "runs", "shard_count"})
    if unknown:
        raise AsrbenchError(f"{where}: unknown setting(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(FIELD_NAMES | {'passes'}))}")
    return {k: v for k, v in values.items() if k in FIELD_NAMES}


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a user error naming it."""
    try:
        with open(path, "rb") as fh:
            document: dict[str, Any] = tomllib.load(fh)
            return document
    except FileNotFoundError:
        raise AsrbenchError(f"{what} {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise AsrbenchError(f"{what} {path} is not valid TOML: {exc}") from None


def load_config_file(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], int | None]:
    """Read a TOML config: top-level settings, optional [[runs]] tables, optional passes.

    Returns (shared settings, per-run overrides, passes).
    """
    path = Path(path)
    data = read_toml(path, "config file")
    runs = data.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise AsrbenchError(f"{path}: 'runs' must be an array of tables ([[runs]])")
    passes = data.get("passes")
    if passes is not None and (not isinstance(passes, int) or passes < 1):
        raise AsrbenchError(f"{path}: passes must be a positive integer")
    shared = _coerce(data, str(path))
    return shared, [_coerce(r, f"{path} [[runs]] #{i + 1}") for i, r in enumerate(runs)], passes


def build_configs(shared: dict[str, Any], runs: list[dict[str, Any]]) -> list[BenchConfig]:
    """Expand shared settings and per-run overrides into BenchConfigs.

    With no dataset given, the embedded default applies: one run per embedded locale
    (Hindi, then English) on the repository's Common Voice-layout corpus.
    """
    if runs:
        entries = [{**shared, **r} for r in runs]
    elif "dataset" not in shared:
        # The embedded corpus: every locale, or only the one --dataset-config names.
        wanted = shared.get("dataset_config")
        entries = [{**shared, "dataset_config": cfg, "language": shared.get("language", lang)}
                   for cfg, lang in EMBEDDED_RUNS if wanted in (None, cfg)]
        if not entries:
            raise AsrbenchError(f"the embedded corpus has no locale {wanted!r}: choose one of "
                                + ", ".join(cfg for cfg, _ in EMBEDDED_RUNS))
    else:
        entries = [dict(shared)]
    configs = []
    for entry in entries:
        if entry.get("language") is None and entry.get("dataset_config"):
            # A Common Voice locale ("hi") is also a Whisper language code.
            entry["language"] = entry["dataset_config"]
        try:
            configs.append(BenchConfig(**entry))
        except TypeError as exc:
            raise AsrbenchError(f"invalid configuration: {exc}") from None
    return configs
