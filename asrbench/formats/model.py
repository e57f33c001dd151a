"""The result model: the report and baseline formats as typed classes, in one place.

Every module that reads or writes a report or a baseline file goes through these classes, so a
field cannot drift between a writer and a reader. Loading validates with pydantic and names the
file and the field of the first problem in one line; `json_schemas()` gives the JSON Schemas
published in schemas/ (tests/test_results.py checks the published files equal them), so other
tools can validate asrbench files without asrbench.

One schema version, SCHEMA_VERSION, for both formats. Version 1 is what asrbench has written
since its first release; later fields (timings.compilations, reference, tolerance_policy,
comparison.has_entry, the typed timings fields) are optional, so every schema-1 file written
before them still loads.
A file of another version is refused with what to do about it (MIGRATION).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    SerializerFunctionWrapHandler,
    StrictFloat,
    StrictInt,
    ValidationError,
    computed_field,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonDict, SkipJsonSchema
from pydantic_core import ErrorDetails

from asrbench import __version__
from asrbench.errors import AsrbenchError

#: the largest count (ops, edits, rows, flops, bytes...) a report may hold: 2**53 - 1, the
#: largest integer a float (the gate's arithmetic, the HTML page's JavaScript) holds exactly.
#: A larger one (a corrupt or hostile file) is refused on loading, in one line, before the
#: gate, the store or the HTML could overflow on it.
MAX_COUNT = 2 ** 53 - 1
NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_COUNT)]
PositiveInt = Annotated[int, Field(ge=1, le=MAX_COUNT)]
BoundedInt = Annotated[int, Field(ge=-MAX_COUNT, le=MAX_COUNT)]

SCHEMA_VERSION = 1
MIGRATION = ("asrbench {version} reads schema {supported} only: regenerate the report with "
             "`asrbench run` (or `pytest benchmarks`), and record baselines again with "
             "`asrbench baseline update --report <new report>`")
#: names that become file names or keys: no path separators, no leading dot
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
#: per-utterance edit counts stored: word errors, words, char errors, chars, and the two of
#: normalized words (asrbench.measure.metrics.Edits)
EDIT_FIELDS = 6
#: not-judged: a check that measured nothing to judge (a counters-only run's throughput, a
#: starved run, an emulated device): said, never a pass or a regression (docs/gate.md)
VERDICTS = Literal["improved", "unchanged", "regressed", "new", "missing", "not-judged"]

# -- a run's settings: their defaults (asrbench.config.settings re-exports them) ---------------
PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_MODEL = "bundled:whisper-base"
DEFAULT_GENERATION_MAX_LENGTH = 225  # optimum-habana's Whisper example uses 225
DEFAULT_MAX_DURATION = 30.0  # seconds; clips at or above it are dropped, as optimum-habana does
DEFAULT_BATCH_SIZE = 8
DEFAULT_REFERENCE_UTTERANCES = 16  # first N utterances decoded by the stock fp32 CPU reference
# The embedded corpus lives in the repository, next to the package.
EMBEDDED_CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "commonvoice-mini"


class _Model(BaseModel):
    """Reports carry more than the gate reads (informational fields): extra keys are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


# -- a run ------------------------------------------------------------------------------------

def _no_default(schema: JsonDict) -> None:
    schema.pop("default", None)


def _count(low: int) -> JsonDict:
    # the published schema holds a setting's bounds (RunConfig._check refuses the rest with its
    # own message, so they are not pydantic constraints): a report a schema validator passes
    # is one `load_report` takes
    return {"minimum": low, "maximum": MAX_COUNT}


class RunConfig(BaseModel):
    """What one evaluation run measures (model x dataset x decoding x precision x batch shape x
    device kind) and its stable id: the one type of a run's settings. The config layer builds it
    (asrbench.config.settings: files, flags, the matrix), the engine runs it, a report stores it
    (`Run.config`) and the pytest door gates a stored one as it is; its TOML, argv and
    reference-request forms are derived from its fields (config/settings.py `config_toml`,
    config/options.py `config_argv`, measure/reference.py `ReferenceRequest.for_config`).

    Built in Python (`RunConfig(batch_size=2)`, `BenchConfig` in asrbench.config is this class):
    every setting is checked (types exactly: `batch_size = 8.0` is refused), a problem is one
    AsrbenchError line, unknown names are refused and the id is derived. Loaded from a file
    (`model_validate`): the same checks as a ValidationError the loaders name the file and field
    with, the stored id is kept (it is the key the run was gated and stored under), names this
    version does not know are kept, and only the settings the file holds are written back (a
    setting a report predates is not claimed: an old report has no `counters`)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, allow_inf_nan=True,
                              populate_by_name=True)

    model: str = Field(DEFAULT_MODEL, description="Hub id, local transformers directory, or "
                                                   "bundled:<name>")
    dataset: str = Field(str(EMBEDDED_CORPUS), description="Hub id, Common Voice directory, or "
                                                          "JSONL manifest (default: the embedded "
                                                          "corpus)",
                         json_schema_extra=_no_default)  # a path of this machine
    dataset_config: str | None = Field(None, description="Hub config / Common Voice locale (hi)")
    split: str = Field("test", description="Hub split / Common Voice <split>.tsv")
    text_column: str = Field("sentence", description="reference text column of Hub datasets")
    language: str | None = Field(None, description="forced decoder language (hindi, hi); null: "
                                                   "detected")
    task: str = Field("transcribe", description="transcribe or translate",
                      json_schema_extra={"enum": ["transcribe", "translate"]})
    precision: str = Field("fp32", description="fp32, bf16 or fp16",
                           json_schema_extra={"enum": list(PRECISIONS)})
    batch_size: int = Field(DEFAULT_BATCH_SIZE, description="static batch shape; the last batch "
                                                           "is padded with dummies",
                            json_schema_extra=_count(1))
    generation_max_length: int = Field(DEFAULT_GENERATION_MAX_LENGTH,
                                       description="decoder length cap, prompt included",
                                       json_schema_extra=_count(8))
    max_duration: Annotated[StrictInt | StrictFloat, AfterValidator(float)] = Field(
        DEFAULT_MAX_DURATION, description="clips of this many seconds or more are dropped",
        json_schema_extra={"exclusiveMinimum": 0})
    graphs: bool = Field(False, description="graph replay over static shapes")
    sdp_on_bf16: bool = Field(False, description="bf16 reductions in math SDPA")
    gaudi_config: str | None = Field(None, description="Gaudi config name or JSON path (HPU)")
    limit: int | None = Field(None, description="only the first N usable utterances",
                              json_schema_extra=_count(1))
    device: str = Field("auto", description="auto, hpu, cuda, cpu or hpu-emulated (not in the "
                                            "id: the baseline file is)")
    world_size: int = Field(1, description="data-parallel ranks; set by the launcher",
                            json_schema_extra=_count(1))
    eos_check_every: int = Field(1, description="static decoder: read 'all rows finished?' every "
                                                "K steps", json_schema_extra=_count(1))
    ignore_eos: bool = Field(False, description="decode to the length cap (optimum-habana's "
                                                "trainer)")
    warmup_batches: int | None = Field(None, description="null: what the device needs",
                                       json_schema_extra=_count(0))
    reference_utterances: int = Field(DEFAULT_REFERENCE_UTTERANCES,
                                      description="transcripts checked against the stock fp32 "
                                                  "CPU reference; 0: off",
                                      json_schema_extra=_count(0))
    counters: bool = Field(True, description="a counted pass after the timed passes")
    counters_only: bool = Field(False, description="no timed pass: the counted pass and one "
                                                   "plain decode (not in the id)")
    id: str = Field("", pattern=NAME_PATTERN, description="the baseline key and pytest id: "
                    "derived from the settings (RunConfig.derived_id) where a file has none")

    def __init__(self, /, **settings: Any) -> None:
        unknown = sorted(set(settings) - SETTING_NAMES)
        if unknown:
            raise AsrbenchError(f"unknown setting(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(SETTING_NAMES))}")
        try:
            super().__init__(**settings)
        except ValidationError as exc:
            raise AsrbenchError(_setting_problem(exc)) from None
        # built from settings: every setting is part of it (and written), the id is derived
        object.__setattr__(self, "__pydantic_fields_set__", set(type(self).model_fields))

    # Loading (model_validate, a Run's config in a file) does not call this __init__: pydantic
    # calls a model's own __init__ on validation unless it is marked so, as its RootModel's is.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        # every count below the largest a report holds (MAX_COUNT, the schemas' maximum): a
        # larger one ran and wrote a report that no schema-checking tool would take
        for name in ("batch_size", "generation_max_length", "limit", "world_size",
                     "eos_check_every", "warmup_batches", "reference_utterances"):
            value = getattr(self, name)
            if isinstance(value, int) and value > MAX_COUNT:
                raise ValueError(f"{name} must be at most {MAX_COUNT}, got {value}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.language is not None and not self.language.strip():
            # "" meant "detect" without a word, and dropped the locale's own language
            raise ValueError("--language must not be empty: leave it out to use the dataset "
                             "config's locale (or detection where there is none)")
        if self.generation_max_length < 8:
            raise ValueError(f"generation max length must be >= 8, got "
                             f"{self.generation_max_length}")
        if not math.isfinite(self.max_duration) or self.max_duration <= 0:
            raise ValueError(f"max duration must be a finite number of seconds > 0, got "
                             f"{self.max_duration}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.world_size < 1:
            raise ValueError(f"world size must be >= 1, got {self.world_size}")
        if self.eos_check_every < 1:
            raise ValueError(f"--eos-check-every must be >= 1, got {self.eos_check_every}")
        if self.warmup_batches is not None and self.warmup_batches < 0:
            raise ValueError(f"--warmup-batches must be >= 0, got {self.warmup_batches}")
        if self.reference_utterances < 0:
            raise ValueError(f"--reference-utterances must be >= 0, got "
                             f"{self.reference_utterances}")
        if self.counters_only and not self.counters:
            raise ValueError("--counters-only runs the counted pass and nothing else: drop "
                             "--no-counters (counters = false)")
        if self.counters_only and self.world_size > 1:
            raise ValueError("--counters-only runs in one process (it times nothing, so ranks "
                             "add nothing): drop --nproc / torchrun")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: choose one of "
                             f"{', '.join(PRECISIONS)}")
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if not self.id:
            object.__setattr__(self, "id", self.derived_id())
            self.__pydantic_fields_set__.add("id")
        return self

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # What a file held is what is written back: no setting it predates is claimed.
        data: dict[str, object] = handler(self)
        unset = set(type(self).model_fields) - self.model_fields_set
        return {k: v for k, v in data.items() if k not in unset}

    def derived_id(self) -> str:
        """The id the settings give: readable, stable (the baseline key and pytest id)."""
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

    def settings(self) -> dict[str, Any]:
        """Every setting by name (the id and names a file held that this version does not
        know left out): what `RunConfig(**settings)` is built from."""
        return {name: getattr(self, name) for name in SETTING_NAMES}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings plus the id, as a report stores them."""
        return self.model_dump(mode="json")

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some settings changed (checked again, the id derived again)."""
        return type(self)(**{**self.settings(), **changes})

    def is_set(self, name: str) -> bool:
        """Whether the setting was given (a file's config holds only what it was written
        with: a report older than a setting does not hold it)."""
        return name in self.model_fields_set


#: the settings of a RunConfig: every field but the id
SETTING_NAMES = frozenset(RunConfig.model_fields) - {"id"}
_WANTED = {"int_type": "int", "string_type": "str", "bool_type": "bool", "float_type": "float"}


def _setting_problem(exc: ValidationError) -> str:
    """A RunConfig built from settings: its first problem as one line."""
    errors = exc.errors()
    first = errors[0]
    name = str(first["loc"][0]) if first.get("loc") else ""
    kinds = [e for e in errors if e.get("loc") and e["loc"][0] == name
             and e.get("type") in _WANTED]
    if name and kinds:
        wanted = " or ".join(dict.fromkeys(_WANTED[str(e["type"])] for e in kinds))
        value = first.get("input")
        return f"setting {name} must be {wanted}, got {type(value).__name__} {value!r}"
    return str(first.get("msg", "invalid setting")).removeprefix("Value error, ")


def _short_name(ref: str) -> str:
    ref = ref.rstrip("/\\")
    if ref.startswith("bundled:"):
        return ref.split(":", 1)[1]
    name = re.split(r"[/\\]", ref)[-1]
    return re.sub(r"\.jsonl$", "", name)


def _slug(text: str) -> str:
    """A part of an id: ASCII letters, digits and dots, other runs of characters as "-". A
    part that would start with a dot or hold nothing (a folder named "日本" or ".cache") starts
    from its first letter or digit, else is "x" and 8 hex digits of its sha256, so every id
    is a valid name and different such names stay apart."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()
    if slug[:1].isalnum() or not text:
        return slug
    kept = slug.lstrip(".-")
    return kept if kept else "x" + hashlib.sha256(text.encode("utf-8", "surrogatepass")
                                                  ).hexdigest()[:8]


class DeviceInfo(_Model):
    kind: str = ""
    class_: str = Field(alias="class", pattern=NAME_PATTERN,
                        description="baseline file name: cpu, cuda-h100, hpu-gaudi2, ...")
    name: str | None = None
    environment: dict[str, Any] = Field(default_factory=dict)


class GatedMetrics(_Model):
    """The metrics a baseline records and the gate compares."""

    wer: NonNegativeFloat
    wer_normalized: NonNegativeFloat | None = Field(
        description="null where normalization leaves no reference words")
    cer: NonNegativeFloat
    samples_per_second: float = Field(gt=0)

    @field_validator("wer_normalized", mode="before")
    @classmethod
    def _nan_is_null(cls, value: Any) -> Any:
        # JSON has no NaN: an undefined normalized WER is written as null.
        return None if isinstance(value, float) and math.isnan(value) else value


class Metrics(GatedMetrics):
    # (a run's throughput may be null, a baseline's never: pydantic re-declares the field)
    samples_per_second: float | None = Field(  # type: ignore[assignment]
        None, gt=0, description="null in a counters-only run: no timed pass, no throughput")
    normalizer: str | None = Field(
        None, description="versioned name of the normalizer of wer_normalized (absent: written "
                          "before normalizers were versioned)")
    wer_normalized_whisper: NonNegativeFloat | None = Field(
        None, description="after Whisper's own normalizer (BasicTextNormalizer splits words at "
                          "Unicode marks): for comparison with leaderboards, not gated")
    rtfx: float | None = None

    @field_validator("wer_normalized_whisper", mode="before")
    @classmethod
    def _whisper_nan_is_null(cls, value: Any) -> Any:
        return None if isinstance(value, float) and math.isnan(value) else value
    tokens_per_second: float | None = None
    tokens_per_sample: float | None = None


def rate_spread(rates: Sequence[float]) -> tuple[float, float, float, float]:
    """The median, least, most and relative standard deviation (stdev / mean; 0 for a single
    value) of per-pass samples/s: one formula for a run (measure.metrics.throughput), a merged
    run (formats.merge) and the check that a report's figures are its passes' own."""
    mean = statistics.fmean(rates)
    rsd = statistics.stdev(rates) / mean if len(rates) > 1 else 0.0
    return statistics.median(rates), min(rates), max(rates), rsd


class ThroughputStats(_Model):
    samples_per_second_per_pass: list[float] = Field(min_length=1)
    samples_per_second_min: float | None = None
    samples_per_second_max: float | None = None
    samples_per_second_rsd: NonNegativeFloat

    @classmethod
    def of(cls, rates: Sequence[float]) -> ThroughputStats:
        """The stats of these per-pass samples/s (rate_spread)."""
        _, least, most, rsd = rate_spread(rates)
        return cls(samples_per_second_per_pass=list(rates), samples_per_second_min=least,
                   samples_per_second_max=most, samples_per_second_rsd=rsd)

    @field_validator("samples_per_second_per_pass")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if not all(v > 0 for v in values):
            raise ValueError("every pass needs a positive samples/s")
        return values


class Compilations(_Model):
    """Graph compilations/captures in the warm-up and in each timed pass."""

    counter: str | None = None
    warmup: NonNegativeInt
    passes: list[NonNegativeInt] = Field(min_length=1)


class RankTimings(_Model):
    """One rank's own figures in a data-parallel run."""

    rank: NonNegativeInt
    utterances: NonNegativeInt
    pass_seconds: list[float]
    device: str | None = None  # the rank's device description
    warmup_seconds: float | None = None
    feature_extraction_seconds: float | None = None
    batches_per_pass: BoundedInt | None = None
    batch_latency_p50: float | None = None
    batch_latency_p90: float | None = None
    peak_device_memory_bytes: BoundedInt | None = None


class Contention(_Model):
    """How much of the machine the run got during its timed passes (measure/contention.py):
    its own CPU time against wall time x the threads its compute used, and the machine's load
    and steal where the OS gives them. The gate judges no throughput of a starved run
    (docs/gate.md, "How throughput bands and contention are decided")."""

    cpu_seconds: NonNegativeFloat = Field(
        description="user + system CPU seconds of the process's threads (children excluded)")
    wall_seconds: NonNegativeFloat = Field(description="wall time of the timed passes")
    wait_seconds: NonNegativeFloat | None = Field(
        None, description="seconds the process's threads were runnable but waiting for a CPU "
                          "(Linux schedstat; absent where the kernel does not say)")
    threads: PositiveInt = Field(description="threads the run's compute used")
    threads_of: Literal["torch", "host"] = Field(
        description="torch: torch's intra-op threads of a run computing on the CPU (the share "
                    "is judged); host: the one host thread driving an accelerator (recorded "
                    "only: it waits for the device by design)")
    cpus: PositiveInt | None = Field(None, description="CPUs the process could run on")
    load_average_1m: NonNegativeFloat | None = Field(
        None, description="the machine's 1-minute load average after the timed passes")
    steal_share: NonNegativeFloat | None = Field(
        None, description="share of the machine's CPU time stolen by the hypervisor")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cpu_share(self) -> float | None:
        """The share of its threads' CPU the run got: cpu / (wall x threads); None without
        wall time."""
        if self.wall_seconds <= 0:
            return None
        return self.cpu_seconds / (self.wall_seconds * self.threads)


def most_starved(measured: Iterable[Contention | None]) -> Contention | None:
    """The contention of the part that got the least of the machine (a pass lasts as long as
    its slowest rank; a merged run is as judgeable as its most starved shard), or None."""
    known = [c for c in measured if c is not None]
    return min(known, key=lambda c: c.cpu_share if c.cpu_share is not None
               else float("inf")) if known else None


#: the longest timed pass a report may state (about 30 years): a larger one (a corrupt or
#: hostile file) would overflow the sums a merge of shards makes
MAX_PASS_SECONDS = 1e9


class Timings(_Model):
    """Where one run's time went (informational except compilations, which the gate reads).
    Every field is optional: reports written before a field existed still load."""

    feature_extraction_seconds: float | None = None
    warmup_seconds: float | None = None
    warmup_batches: BoundedInt | None = None
    pass_seconds: list[Annotated[float, Field(gt=0, le=MAX_PASS_SECONDS)]] = Field(
        default_factory=list, description="wall time of each timed pass (device synchronized)")
    pass_seconds_median: float | None = None
    passes: BoundedInt | None = None
    batches_per_pass: BoundedInt | None = None
    harness_overhead: float | None = Field(
        None, description="share of timed wall time outside the model calls")
    decoder: str | None = None
    compilations: Compilations | None = None
    batch_latency_p50: float | None = None
    batch_latency_p90: float | None = None
    detokenize_seconds: float | None = None
    end_to_end_seconds: float | None = None
    peak_device_memory_bytes: BoundedInt | None = None
    peak_host_rss_bytes: BoundedInt | None = None
    world_size: BoundedInt | None = None
    ranks: list[RankTimings] | None = None
    contention: Contention | None = Field(
        None, description="the run's share of its threads' CPU during the timed passes, load, "
                          "steal (absent in older reports: contention unknown)")
    #: every timed batch's seconds, for merging ranks' percentiles; never written to a file
    latencies: SkipJsonSchema[list[float]] = Field(default_factory=list, exclude=True)


class Skip(_Model):
    id: str
    reason: str


class DatasetInfo(_Model):
    name: str | None = None
    utterances: NonNegativeInt | None = None
    audio_seconds: float | None = None
    skipped: list[Skip] = Field(default_factory=list)
    skipped_count: NonNegativeInt | None = None
    normalized_wer_excluded: NonNegativeInt | None = Field(
        None, description="utterances left out of wer_normalized (no words once normalized)")


class Differing(_Model):
    id: str
    reference_transcript: str
    run_transcript: str


def computes_as_reference(device_kind: str, precision: str) -> bool:
    """Whether a run computes as the stock fp32 reference does (fp32 on the CPU): such a run is
    the reference setup, not checked against it (measure.session.reference_agreement, which
    still checks one whose decoder is static) and not required to carry the check
    (gate.compare.reference_expected)."""
    return device_kind == "cpu" and precision == "fp32"


class ReferenceAgreement(_Model):
    """Agreement with stock transformers generate() in fp32 on CPU, or why it is unknown (the
    one agreement type: asrbench.measure.reference.agreement makes it, a report stores it)."""

    reference: str = ""
    requested: BoundedInt | None = None
    error: str | None = None
    utterances: NonNegativeInt | None = None
    identical: NonNegativeInt | None = None
    share: float | None = Field(None, ge=0, le=1)
    wer: NonNegativeFloat | None = None
    differing: list[Differing] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> ReferenceAgreement:
        if self.error is None:
            if (self.utterances is None or self.identical is None or self.share is None
                    or self.wer is None):
                raise ValueError("needs utterances, identical, share and wer (or an error)")
            if self.identical > self.utterances:
                raise ValueError("more identical transcripts than utterances")
            if self.utterances and not math.isclose(self.share, self.identical / self.utterances,
                                                    rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(f"share {self.share:g} is not identical / utterances "
                                 f"({self.identical}/{self.utterances})")
        return self


class UtteranceResult(_Model):
    id: str
    prediction: str
    reference: str | None = None
    tokens: BoundedInt | None = None
    audio_seconds: float | None = None
    edits: list[NonNegativeInt] | None = Field(
        None, min_length=EDIT_FIELDS, max_length=EDIT_FIELDS,
        description="[word errors, reference words, char errors, reference chars, normalized "
                    "word errors, normalized reference words]")
    speaker: str | None = Field(
        None, min_length=1, max_length=64,
        description="pseudonymous speaker id (sha256 of the dataset's speaker field, e.g. "
                    "Common Voice client_id, first 16 hex digits): the bootstrap resamples "
                    "speakers; absent where the data has none")


class Verdict(_Model):
    """The outcome for one metric of one config."""

    config_id: str
    metric: str
    verdict: VERDICTS
    value: float | None = None
    baseline: float | None = None
    delta: float | None = Field(None, description="value - baseline")
    allowed: float | None = Field(
        None, description="allowed move in the bad direction (absolute, in metric units)")
    note: str = ""  # e.g. significance in words

    @property
    def relative(self) -> float | None:
        """delta / baseline; None without both."""
        if self.delta is None or not self.baseline:
            return None
        return self.delta / self.baseline


class TranscriptChange(_Model):
    """An utterance whose prediction differs from the baseline's."""

    id: str
    baseline: str | None = None  # None: the baseline has no such utterance
    current: str | None = None  # None: the run has no such utterance
    diff: str = ""  # word-level: [-removed-] {+added+}


class ErrorRateChange(_Model):
    """How one error rate moved over the utterances both sides scored (paired bootstrap)."""

    metric: str
    delta: float = Field(description="run - baseline, corpus level over the shared utterances")
    low: float | None = Field(None, description="lower end of the confidence interval of "
                                                   "delta; None: no interval (too few units)")
    high: float | None = None
    better: NonNegativeInt = Field(description="utterances with fewer errors than the baseline")
    worse: NonNegativeInt
    unchanged: NonNegativeInt

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (never without an interval)."""
        if self.low is None or self.high is None:
            return False
        return self.low > 0 or self.high < 0


class AccuracyChange(_Model):
    """The error-rate changes of a run whose transcripts differ from its baseline's."""

    utterances: NonNegativeInt = Field(description="scored on both sides (edit counts known)")
    method: Literal["utterances", "speakers"] = Field(
        "utterances", description="what the bootstrap resampled: speakers (blockwise, every "
                                  "utterance of a drawn speaker) or utterances")
    units: NonNegativeInt | None = Field(
        None, description="how many units (speakers or utterances) were resampled")
    min_units: PositiveInt | None = Field(
        None, description="the fewest units an interval is given from; below it, no interval")
    note: str = Field("", description="why the method or the missing interval, in words")
    confidence: float = Field(gt=0, lt=1)
    resamples: PositiveInt
    seed: BoundedInt
    changes: list[ErrorRateChange] = Field(default_factory=list)

    def change(self, metric: str) -> ErrorRateChange | None:
        """The change of one metric, or None."""
        return next((c for c in self.changes if c.metric == metric), None)


class Comparison(_Model):
    """Everything compared for one config: its verdicts and its changed transcripts."""

    config_id: str
    has_entry: bool = True  # False: the run has no baseline entry (its verdicts are "new")
    verdicts: list[Verdict] = Field(default_factory=list)
    transcripts: list[TranscriptChange] = Field(default_factory=list,
                                                alias="transcripts_changed")
    accuracy: AccuracyChange | None = Field(
        None, description="intervals of the error-rate changes, when transcripts changed")
    not_judged: str | None = Field(
        None, description="why this config could not be judged (a refused or unreadable "
                          "baseline, a set-up error, ...): a failing verdict, never a pass")

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        # `regressed` is written for readers of the file; it is always recomputed.
        if isinstance(data, dict) and "regressed" in data:
            data = {k: v for k, v in data.items() if k != "regressed"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def regressed(self) -> bool:
        """Any verdict regressed."""
        return any(v.verdict == "regressed" for v in self.verdicts)

    def verdict(self, metric: str) -> Verdict:
        """The verdict on one metric."""
        return next(v for v in self.verdicts if v.metric == metric)


#: the names of the tolerances (the fields of Tolerance)
ToleranceName = Literal["wer_abs", "cer_abs", "samples_per_second_rel", "noise_factor",
                        "reference_share_min", "reference_wer_max", "cpu_share_min"]


class Tolerance(_Strict):
    """How far a run may move before the gate calls it a regression: the one tolerance type.
    The defaults (gate.baselines.DEFAULT_TOLERANCE) set every tolerance; a matrix section's
    policy, `baseline update --tolerance`, a baseline entry's and a report run's
    (`tolerance_policy`) set some; `over()` lays them on top of each other, and the gate reads
    the result with `limit()`. Files list only the tolerances that are set."""

    wer_abs: NonNegativeFloat | None = None
    cer_abs: NonNegativeFloat | None = None
    samples_per_second_rel: NonNegativeFloat | None = None
    noise_factor: NonNegativeFloat | None = None
    reference_share_min: NonNegativeFloat | None = Field(None, le=1)
    reference_wer_max: NonNegativeFloat | None = None
    cpu_share_min: NonNegativeFloat | None = Field(
        None, le=1, description="a CPU run that got less of its threads' CPU while timed is not "
                                "judged on throughput (0: always judged)")

    def given(self) -> dict[str, float]:
        """Only the tolerances that are set."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def over(self, *layers: Tolerance | None) -> Tolerance:
        """These tolerances with each layer's set ones on top, in order (the last wins)."""
        merged = self.given()
        for layer in layers:
            if layer is not None:
                merged.update(layer.given())
        return Tolerance.model_validate(merged)

    def limit(self, name: ToleranceName) -> float:
        """One tolerance of a resolved set (DEFAULT_TOLERANCE.over(...) sets every one)."""
        value: float | None = getattr(self, name)
        if value is None:
            raise KeyError(f"tolerance {name} is not set (resolve it over the defaults)")
        return value

    @model_serializer(mode="plain")
    def _set_only(self) -> dict[str, float]:
        # Files list the overrides only; an absent name falls back to the default.
        return self.given()


#: version of the counter definitions (asrbench/measure/counters.py: what an op key, a decode
#: step, a host sync and a FLOP count mean); a baseline counted under another version is never
#: compared with this one: it is re-recorded. 2: the counted pass runs the timed passes' own
#: callables (only device-installed graph wrappers bypassed), one batch per distinct batch shape,
#: Python-level host reads by call site, exact bytes allocated and live, captures named.
#: 3: a composite op met under inference_mode is decomposed by its C++ kernel, the one the
#: timed passes run (version 2 went through torch._decomp's Python decompositions where torch
#: registers one, and counted e.g. a copy and its bytes for every eval-mode dropout), and
#: explicit synchronisation calls (mark_step, synchronize) are counted by call site.
COUNTER_VERSION = 3
#: a count: an integer >= 0, strictly (a JSON `true` or `12.0` is not a count)
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
OpCounts = dict[str, Count]  # "<aten op> <dtype>" -> count, e.g. "aten.mm f32": 12


class BatchCounters(_Model):
    """Exact work counts of one counted batch (asrbench.measure.counters)."""

    batch: Count = Field(0, description="the batch's index in decoding order")
    utterances: list[str] = Field(default_factory=list, description="ids of the counted ones")
    rows: Count = Field(description="batch rows decoded, dummy rows included")
    real_rows: Count
    encoder_calls: Count
    encoder_ops: OpCounts = Field(default_factory=dict, description="over the encoder calls")
    prompt_step_ops: OpCounts = Field(default_factory=dict, description="the first decoder step")
    decode_step_ops: OpCounts = Field(
        default_factory=dict, description="one steady decode step: the most common per-step "
                                          "multiset of the steps after the prompt step")
    decode_steps: Count = Field(description="decoder calls, the prompt step included")
    steady_steps: Count = Field(description="steps whose ops were decode_step_ops")
    decode_step_total_min: Count | None = None  # ops in a step after the prompt's
    decode_step_total_max: Count | None = None
    decode_ops_total: OpCounts = Field(default_factory=dict, description="all decode steps")
    other_ops: OpCounts = Field(
        default_factory=dict, description="the batch's ops outside the encoder and the decode "
                                          "steps (input copy, set-up, read-back)")
    flops: Count = Field(description="FlopCounterMode formulas, summed over the batch")
    flops_per_utterance: NonNegativeFloat = Field(description="flops / real rows")
    host_syncs: Count = Field(description="host reads of device values in the batch")
    host_sync_ops: OpCounts = Field(default_factory=dict)
    host_syncs_per_token: NonNegativeFloat = Field(
        description="host syncs inside decode steps / decode steps (a step generates the next "
                    "token of every row)")
    host_reads: OpCounts = Field(
        default_factory=dict, description="Python-level reads of tensors on the host "
                                          "(tolist, cpu, numpy, item, bool, ...), by "
                                          "'Tensor.<method> @ <file>:<function>' of the caller")
    host_reads_per_token: NonNegativeFloat = Field(
        0.0, description="host_reads inside decode steps / decode steps")
    host_read_lines: OpCounts = Field(
        default_factory=dict, description="informational: the same reads by <file>:<line>")
    device_syncs: OpCounts = Field(
        default_factory=dict, description="calls of explicit synchronisation entry points "
                                          "(htcore.mark_step, torch.hpu/cuda/cpu.synchronize, "
                                          "hthpu.synchronize), by '<call> @ <file>:<function>' "
                                          "of the caller")
    tokens: Count = Field(description="tokens generated for the counted utterances")
    encoder_bytes: Count = Field(
        0, description="bytes of the storages the encoder call(s) allocated")
    prompt_step_bytes: Count = Field(0, description="allocated in the prompt step")
    decode_step_bytes: Count = Field(
        0, description="allocated in the first steady decode step")
    decode_bytes_total: Count = Field(0, description="allocated in all decode steps")
    peak_live_bytes: Count = Field(
        0, description="peak bytes of storages allocated in the batch and still alive")
    retained_bytes: Count = Field(
        0, description="of those, still alive when the batch's read-back ended")


class Counters(BatchCounters):
    """Exact work counts of a run's counted pass (asrbench.measure.counters): the timed passes'
    code path (decoder, cache, autocast, batch shape) over a stated set of utterances, apart from
    the timed passes. The same code on the same inputs gives the same counts on any machine.
    Its own batch fields are the first batch's; `batches` the first batch of every other
    distinct batch shape (the partial last batch)."""

    version: Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)] = Field(
        description="COUNTER_VERSION of the definitions")
    selection: str = Field(description="which utterances were counted, in words")
    replay_bypassed: bool = Field(description="graph-wrapped modules ran eagerly for counting")
    batches: list[BatchCounters] = Field(
        default_factory=list, description="the first batch of each further distinct batch "
                                          "shape (rows, real rows, input shapes), in order")
    batches_in_pass: Count | None = Field(None, description="batches per pass")
    host_sync_definition: str = ""
    compilations: Count | None = Field(
        None, description="graph compilations/captures of the run (warm-up and timed passes; "
                          "the device's counter); None where nothing is counted")
    captures: OpCounts = Field(
        default_factory=dict, description="the calls that compiled/captured graphs, by "
                                          "'<module class>(<input shapes>)': compilations")
    peak_device_memory_bytes: NonNegativeInt | None = Field(
        None, description="informational, never gated: the device allocator's peak during the "
                          "counted pass (CUDA max_memory_allocated, HPU MaxInUse); None on the "
                          "CPU and the emulated Gaudi (no device allocator)")
    seconds: NonNegativeFloat | None = Field(None, description="wall time of the counted "
                                                                  "pass (informational)")
    first_calls: bool | None = Field(
        None, description="a counters-only run's counted batches were the code's first calls "
                          "(no warm-up before them, or counted while capturing their graphs): "
                          "work done once on a first call is in these counts; null: a timed "
                          "run's, counted after its warm-up and timed passes")


class ModelIdentity(_Model):
    """Which model a run measured: a short name alone (whisper-base) says too little, since
    openai/whisper-base, bundled:whisper-base and a local directory all share it."""

    reference: str = Field(description="the model reference the user gave")
    source: str = Field(description="the resolved local directory or Hub id")
    revision: str | None = Field(
        None, description="a Hub model's resolved commit (its cache snapshot); None otherwise")
    weights_sha256: str | None = Field(
        None, pattern=SHA256_PATTERN,
        description="sha256 over the weight files the model loads (model.safetensors, else "
                    "the shards model.safetensors.index.json lists) in name order; None where "
                    "they could not be read")


class ShardInfo(_Model):
    """Which scheduler shard of the split a run decoded (`asrbench run --shard I/N`), and what
    `asrbench merge` needs to pool the shards exactly."""

    index: NonNegativeInt = Field(description="0-based shard number")
    count: PositiveInt = Field(description="shards the split was cut into")
    source: str = Field("", description="where index and count came from, in words")
    split_fingerprint: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 over the whole split's usable ids in id order (equal in every shard)")
    split_utterances: NonNegativeInt = Field(description="usable rows of the whole split")
    positions: list[NonNegativeInt] = Field(
        default_factory=list, description="each utterance's row number in the split (as "
                                          "utterances): the merge restores the split's order")
    skipped_positions: list[int] = Field(
        default_factory=list, description="row number of each dataset.skipped entry")
    latencies: list[NonNegativeFloat] = Field(
        default_factory=list, description="every timed batch's seconds (pooled by the merge)")
    whisper_edits: list[NonNegativeInt] | None = Field(
        None, min_length=2, max_length=2,
        description="[word errors, words] after Whisper's own normalizer (wer_normalized_whisper "
                    "of the merged run)")

    @model_validator(mode="after")
    def _inside(self) -> ShardInfo:
        if self.index >= self.count:
            raise ValueError(f"shard index {self.index} is not below the count {self.count}")
        return self


class MergeInfo(_Model):
    """How `asrbench merge` made a run from shard runs."""

    shards: PositiveInt
    split_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    throughput: str = Field(description="how samples/s was pooled, in words")
    counters: str = Field(description="whether the counters were merged, and why not")
    hosts: list[str] = Field(default_factory=list, description="each shard's host, in order")


class Run(_Model):
    """One evaluated config, as a report stores it."""

    config: RunConfig
    device: DeviceInfo
    metrics: Metrics
    throughput: ThroughputStats | None = Field(
        None, description="null in a counters-only run (config.counters_only): nothing timed")
    timings: Timings = Field(default_factory=Timings)
    dataset: DatasetInfo = Field(default_factory=DatasetInfo)
    passes_identical: bool | None = None
    reference: ReferenceAgreement | None = None
    utterances: list[UtteranceResult]
    comparison: Comparison | None = None
    tolerance_policy: Tolerance | None = Field(
        None, description="the matrix section's tolerance the pytest door ran with")
    counters: Counters | None = Field(
        None, description="exact work counts of the counted pass (absent: counting was off)")
    model: ModelIdentity | None = Field(
        None, description="the measured model's identity (absent in older reports)")
    shard: ShardInfo | None = Field(
        None, description="one scheduler shard of the split (`asrbench run --shard`): a part, "
                          "never gated alone; `asrbench merge` pools the shards")
    merged: MergeInfo | None = Field(
        None, description="made by `asrbench merge` from this many shard runs")

    @property
    def counters_only(self) -> bool:
        """A counters-only run (`--counters-only`): nothing was timed, no throughput."""
        return self.config.counters_only

    @model_validator(mode="after")
    def _throughput_iff_timed(self) -> Run:
        # A timed run has a throughput; a counters-only run has none and claims none.
        timed = not self.counters_only
        if timed and (self.throughput is None or self.metrics.samples_per_second is None):
            raise ValueError("a timed run needs throughput and metrics.samples_per_second "
                             "(only a counters-only run has none)")
        if not timed and (self.throughput is not None
                          or self.metrics.samples_per_second is not None):
            raise ValueError("a counters-only run timed nothing: it has no throughput")
        return self

    def throughput_problem(self) -> str | None:
        """Why a timed run's stated samples/s is not what its passes give (the median of the
        passes' samples/s, their least, most and relative spread: measure.metrics.throughput,
        formats.merge), or None. The gate judges the stated median against the baseline and
        the spread widens its band: a figure that is not its passes' is refused there."""
        stats, stated = self.throughput, self.metrics.samples_per_second
        if stats is None or stated is None:
            return None
        rates = stats.samples_per_second_per_pass
        median, least, most, rsd = rate_spread(rates)
        given = {"metrics.samples_per_second": (stated, median),
                 "throughput.samples_per_second_min": (stats.samples_per_second_min, least),
                 "throughput.samples_per_second_max": (stats.samples_per_second_max, most),
                 "throughput.samples_per_second_rsd": (stats.samples_per_second_rsd, rsd)}
        for name, (value, computed) in given.items():
            if value is not None and not math.isclose(value, computed, rel_tol=1e-9,
                                                      abs_tol=1e-12):
                return (f"{name} {value:.6g}, where its {len(rates)} timed pass(es) give "
                        f"{computed:.6g}")
        return None

    def ranks_problem(self) -> str | None:
        """Why a merged data-parallel run is incomplete, or None. Checked by Report: a rank's
        own run (before the merge) has no ranks yet."""
        size = self.config.world_size
        if size > 1 and (self.timings.ranks is None or len(self.timings.ranks) != size):
            return f"a {size}-rank run needs timings.ranks with {size} entries"
        return None


class Environment(_Model):
    """Where the numbers came from (what baselines record is typed; the rest is kept)."""

    packages: dict[str, str | None] = Field(default_factory=dict)
    device: dict[str, Any] = Field(default_factory=dict)
    git: dict[str, Any] = Field(default_factory=dict)

    @field_validator("device")
    @classmethod
    def _device_class(cls, device: dict[str, Any]) -> dict[str, Any]:
        # the class names a baseline file and files the report in a history: a plain name,
        # as every run's device.class is
        name = device.get("class")
        if name is not None and not (isinstance(name, str) and re.match(NAME_PATTERN, name)):
            raise ValueError(f"device.class {name!r} is not a plain name (letters, digits, "
                             "'.', '_', '+', '-')")
        return device

    @field_validator("git")
    @classmethod
    def _git(cls, git: dict[str, Any]) -> dict[str, Any]:
        # read by the history, the HTML and the exports as text and a flag
        for key in ("commit", "branch"):
            if git.get(key) is not None and not isinstance(git[key], str):
                raise ValueError(f"git.{key} must be text, got {git[key]!r}")
        if git.get("dirty") is not None and not isinstance(git["dirty"], bool):
            raise ValueError(f"git.dirty must be true or false, got {git['dirty']!r}")
        return git


class Report(_Model):
    """A whole report: where it came from, and its runs."""

    schema_: Literal[1] = Field(alias="schema")
    environment: Environment
    runs: list[Run]
    interrupted: bool = Field(False, description="stopped by a signal: only finished runs")

    @model_validator(mode="after")
    def _has_runs(self) -> Report:
        if not self.runs and not self.interrupted:
            raise ValueError("the report holds no runs")
        for number, run in enumerate(self.runs):
            problem = run.ranks_problem()
            if problem:
                raise ValueError(f"runs[{number}].timings.ranks: {problem}")
        return self


def build_report(runs: Iterable[Run], environment: dict[str, Any],
                 interrupted: bool = False) -> Report:
    """The whole report of some runs (`interrupted`: stopped by a signal; the runs it
    finished are kept, and the gate refuses such a report)."""
    return Report.model_validate({"schema": SCHEMA_VERSION, "environment": environment,
                                  "runs": list(runs), "interrupted": interrupted})


def predictions_digest(predictions: dict[str, str]) -> str:
    """sha256 over (id, prediction) pairs in id order: equal digests mean equal transcripts."""
    canonical = json.dumps(sorted(predictions.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- baselines --------------------------------------------------------------------------------

#: the largest relative spread of passes a baseline may record: the gate's band grows with
#: it (3x the spread by default), and above it a drop of any size would pass
MAX_RECORDED_RSD = 1.0


class Noise(_Model):
    """The throughput noise recorded with a baseline: within one process (its passes) and,
    when the entry was recorded from several independent processes, between them."""

    samples_per_second_rsd: NonNegativeFloat = Field(
        0.0, le=MAX_RECORDED_RSD,
        description="relative standard deviation of the passes within a process (the "
                    "largest over the processes recorded); at most 1 (100%)")
    passes: NonNegativeInt | None = None
    samples_per_second_per_pass: list[PositiveFloat] = Field(default_factory=list)
    samples_per_second_per_process: list[PositiveFloat] = Field(
        default_factory=list, description="each recorded process's median samples/s (two or "
                                          "more: the band comes from their spread)")


class BaselineEntry(_Model):
    """One config's recorded numbers, noise, transcripts and provenance."""

    metrics: GatedMetrics
    tolerance: Tolerance = Field(default_factory=Tolerance)
    noise: Noise = Field(default_factory=Noise)
    predictions: dict[str, str] = Field(default_factory=dict)
    predictions_sha256: str = Field(pattern=SHA256_PATTERN)
    normalizer: str | None = Field(
        None, description="versioned name of the normalizer of metrics.wer_normalized")
    edits: dict[str, Annotated[list[NonNegativeInt], Field(min_length=EDIT_FIELDS,
                                                           max_length=EDIT_FIELDS)]] = Field(
        default_factory=dict, description="utterance id -> its edit counts, as in a report's "
                                          "utterances (for intervals of error-rate changes)")
    environment: dict[str, Any] = Field(default_factory=dict)
    commit: str | None = None
    updated: str | None = None

    counters: Counters | None = Field(
        None, description="the run's counted pass, compared exactly (gate/counters.py)")
    model: ModelIdentity | None = Field(
        None, description="the recorded model's identity; a run of a model with other weights "
                          "is refused (absent in older baselines: not checked)")

    @model_validator(mode="after")
    def _digest(self) -> BaselineEntry:
        if self.predictions and predictions_digest(self.predictions) != self.predictions_sha256:
            raise ValueError("predictions_sha256 does not match the stored predictions")
        return self


class BaselineFile(_Model):
    schema_: Literal[1] = Field(alias="schema")
    device_class: str = Field(pattern=NAME_PATTERN)
    entries: dict[str, BaselineEntry]

    @field_validator("entries")
    @classmethod
    def _names(cls, entries: dict[str, BaselineEntry]) -> dict[str, BaselineEntry]:
        bad = [k for k in entries if not re.match(NAME_PATTERN, k)]
        if bad:
            raise ValueError(f"config id {bad[0]!r} is not a valid name")
        return entries


# -- A/B -------------------------------------------------------------------------------------

class AbDecision(_Model):
    """The A/B verdict on throughput after some rounds (asrbench.ab.decision.decide)."""

    outcome: Literal["DIFFERENT", "SAME", "UNKNOWN"]
    rounds: NonNegativeInt
    ratio: PositiveFloat | None = Field(None, description="head/base, exp(mean log-ratio); "
                                                             "null below 2 rounds")
    ci_low: PositiveFloat | None = None
    ci_high: PositiveFloat | None = None
    confidence: float = Field(gt=0, lt=1, description="of the interval: 1 - alpha / looks")
    p_value: float | None = Field(None, ge=0, le=1, description="two-sided one-sample "
                                     "t-test of the log-ratios against 0")
    ratio_of_medians: PositiveFloat | None = Field(
        None, description="median(head) / median(base), for reading")
    threshold: float = Field(gt=0, lt=1)

    @property
    def slower(self) -> bool:
        """Head is slower than base (by the paired estimate)."""
        return self.ratio is not None and self.ratio < 1.0

    def describe(self) -> str:
        """One line: outcome, effect and interval, rounds."""
        if self.ratio is None:
            return f"{self.outcome} after {self.rounds} round(s): too few rounds for an interval"
        change = self.ratio - 1.0
        text = (f"{self.outcome} after {self.rounds} rounds: head/base {self.ratio:.3f} "
                f"({change:+.1%}), {self.confidence:.1%} CI {self.ci_low:.3f}-{self.ci_high:.3f}, "
                f"p={self.p_value:.3g}, threshold {self.threshold:.0%}")
        if self.outcome == "SAME" and self.ci_high is not None and self.ci_low is not None \
                and (self.ci_high < 1.0 or self.ci_low > 1.0):
            text += " (a significant change, but proven smaller than the threshold)"
        return text


#: the two sides of an A/B
SideName = Literal["base", "head"]


class AbSettings(_Model):
    """How an A/B ran and decided, as its document records it (asrbench.ab.rounds.Settings
    .record() makes it)."""

    shared: list[str] = Field(description="run options both sides got, before their own")
    threshold: float = Field(gt=0, lt=1, description="the smallest relative change that matters")
    alpha: float = Field(gt=0, lt=1, description="overall chance of calling identical sides "
                                                 "DIFFERENT")
    alpha_per_look: float | None = Field(
        None, gt=0, lt=1, description="alpha / (looks x config pairs): each decision's level")
    looks: list[PositiveInt] = Field(default_factory=list, description="the rounds decided at")
    min_rounds: PositiveInt
    max_rounds: PositiveInt
    passes: PositiveInt | None = Field(None, description="timed passes per side per round")
    rounds_limit: PositiveInt | None = Field(
        None, description="the rounds decode the first N utterances (null: all)")
    seed: BoundedInt | None = Field(None, description="of the sides' order in each round")
    cards: list[str] | None = Field(None, description="--cards: the two cards dealt each round")
    cards_variable: str | None = Field(None, description="the variable that picks a card")


class AbRound(_Model):
    """One round: the order the sides ran in, and each side's samples/s per config pair."""

    number: PositiveInt
    order: list[SideName]
    seconds: NonNegativeFloat
    samples_per_second: dict[SideName, list[PositiveFloat]]
    cards: dict[SideName, str] | None = None  # --cards: each side's card


class AbSide(_Model):
    command: list[str] = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    cwd: str | None = None
    report: Report | None = Field(None, description="the side's accuracy run (whole split)")


class AbReport(_Model):
    """What `asrbench ab` writes: both sides, every round, the decisions and the verdicts."""

    schema_: Literal[1] = Field(alias="schema")
    kind: Literal["ab"]
    interrupted: bool = False
    failed: bool
    environment: Environment
    settings: AbSettings
    sides: dict[Literal["base", "head"], AbSide]
    pairs: list[dict[Literal["base", "head"], str]] = Field(default_factory=list)
    rounds: list[AbRound] = Field(default_factory=list)
    decisions: list[AbDecision] = Field(default_factory=list)
    comparisons: list[Comparison] = Field(default_factory=list)


# -- asrbench peers -----------------------------------------------------------------------------

class PeerDetail(_Model):
    """How a peer ran, where it says more than its name (e.g. CTranslate2's compute type)."""

    compute_type: str | None = None
    weights: str | None = None
    note: str | None = None

    @model_serializer(mode="wrap")
    def _given(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


#: the figures of a peer that ran (a skipped one has none)
PEER_MEASURED = ("samples_per_second", "rtfx", "wer", "transcripts_equal_to_asrbench",
                 "asrbench_speedup")


class PeerRow(_Model):
    """One peer of `asrbench peers`: its figures over the same clips as asrbench, or why it was
    skipped."""

    name: str = Field(min_length=1)
    skipped: str | None = Field(None, description="why the peer could not run here")
    samples_per_second: PositiveFloat | None = Field(None, description="clips / median round")
    rtfx: PositiveFloat | None = Field(None, description="audio seconds / median round")
    wer: NonNegativeFloat | None = None
    wer_normalized: NonNegativeFloat | None = Field(
        None, description="null where normalization leaves no reference words")
    transcripts_equal_to_asrbench: bool | None = None
    transcripts_differing: list[str] = Field(
        default_factory=list, description="ids whose transcript differs from asrbench's")
    round_seconds: list[NonNegativeFloat] = Field(default_factory=list)
    round_rsd: NonNegativeFloat | None = Field(None, description="null with one round")
    asrbench_speedup: PositiveFloat | None = Field(
        None, description="asrbench's samples/s / this peer's")
    detail: PeerDetail | None = None

    @field_validator("wer_normalized", mode="before")
    @classmethod
    def _nan_is_null(cls, value: object) -> object:
        return None if isinstance(value, float) and math.isnan(value) else value

    @model_validator(mode="after")
    def _skipped_or_measured(self) -> PeerRow:
        missing = [name for name in PEER_MEASURED if getattr(self, name) is None]
        if self.skipped is None and missing:
            raise ValueError(f"a peer that ran needs {', '.join(missing)}")
        if self.skipped is not None and len(missing) < len(PEER_MEASURED):
            raise ValueError("a skipped peer has no figures")
        return self

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        if self.skipped is not None:  # a skipped peer: its name and why
            return {"name": data["name"], "skipped": data["skipped"]}
        data.pop("skipped")
        if self.detail is None:
            data.pop("detail")
        return data


class PeersDocument(_Model):
    """What `asrbench peers --json` writes (benchmarks/peers/): the machine, the shared settings
    and one row per peer."""

    schema_: Literal[1] = Field(alias="schema")
    machine: Environment = Field(description="where it ran (formats.environment)")
    precision: str
    model: str
    dataset: str = Field(description="the split's name")
    language: str | None = None
    utterances: PositiveInt
    audio_seconds: NonNegativeFloat
    batch_size: PositiveInt
    generation_max_length: PositiveInt
    rounds: PositiveInt = Field(description="timed rounds per peer (the median is reported)")
    peers: list[PeerRow] = Field(min_length=1)

    @model_validator(mode="after")
    def _asrbench_ran(self) -> PeersDocument:
        if not any(p.name == "asrbench" and p.skipped is None for p in self.peers):
            raise ValueError("the asrbench row (every speed-up is against it) is missing")
        return self


# -- loading, errors, schemas -------------------------------------------------------------------

#: fields whose children are keys of a mapping, shown as ['key'] in error locations
_MAPPINGS = {"entries", "predictions", "edits"}
_MESSAGES = {
    "float_type": "expected a number", "float_parsing": "expected a number",
    "int_type": "expected an integer", "int_parsing": "expected an integer",
    "string_type": "expected a string", "bool_type": "expected true or false",
    "list_type": "expected a list", "dict_type": "expected an object",
    "model_type": "expected an object", "model_attributes_type": "expected an object",
    "missing": "missing", "extra_forbidden": "unknown field",
    "literal_error": "unexpected value", "string_pattern_mismatch": "not a valid name",
    "finite_number": "must be a finite number",
}


def _where(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    previous = None
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif previous in _MAPPINGS:
            parts.append(f"[{item!r}]")
        else:
            parts.append(("." if parts else "") + str(item))
        previous = item
    return "".join(parts).replace("schema_", "schema").replace("class_", "class")


def _problem(error: ErrorDetails) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    loc = error.get("loc") or ()
    if kind == "string_pattern_mismatch" and (
            (loc and str(loc[-1]).endswith("sha256")) or ctx.get("pattern") == SHA256_PATTERN):
        return "expected a sha256 hex digest (64 characters 0-9 a-f)"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") not in (None, NAME_PATTERN):
        return f"does not match {ctx.get('pattern')}"
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
              "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}
    if kind in bounds:
        sign, key = bounds[kind]
        return f"must be {sign} {ctx.get(key)}"
    if kind == "too_short":
        return "must not be empty"
    if kind in _MESSAGES:
        message = _MESSAGES[kind]
        if kind in ("float_type", "int_type", "string_type", "list_type", "dict_type"):
            message += f", got {type(error.get('input')).__name__}"
        return message
    text = str(error.get("msg", "invalid"))
    return text.removeprefix("Value error, ")


def validation_error(exc: ValidationError, what: str, path: Any) -> AsrbenchError:
    """The first problem of a pydantic error as one line naming the file and the field."""
    first = exc.errors()[0]
    where = _where(tuple(first.get("loc", ())))
    return AsrbenchError(f"invalid {what} {path}: {where or '(top level)'}: {_problem(first)}")


def _check_version(document: Any, what: str, path: Any) -> None:
    if isinstance(document, dict) and "schema" in document and type(document["schema"]) is not int:
        # true == 1 and 1.0 == 1 in Python (and pydantic's Literal[1] takes both): the
        # version is an integer, exactly.
        raise AsrbenchError(f"invalid {what} {path}: schema: expected the integer "
                            f"{SCHEMA_VERSION}, got {json.dumps(document['schema'])[:40]}")
    if isinstance(document, dict) and "schema" in document and document["schema"] != SCHEMA_VERSION:
        raise AsrbenchError(f"invalid {what} {path}: schema {document['schema']!r} is not "
                            f"supported; " + MIGRATION.format(version=__version__,
                                                              supported=SCHEMA_VERSION))


_M = TypeVar("_M", bound=BaseModel)


def _parse(model: type[_M], document: Any, what: str, path: Any) -> _M:
    _check_version(document, what, path)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_error(exc, what, path) from None


def parse_report(document: Any, path: Any = "<report>") -> Report:
    """A report document, validated (AsrbenchError naming the file and the field)."""
    return _parse(Report, document, "report", path)


def parse_peers(document: object, path: object = "<peers document>") -> PeersDocument:
    """An `asrbench peers` document, validated (AsrbenchError naming the file and the field)."""
    return _parse(PeersDocument, document, "peers document", path)


def parse_baselines(document: Any, path: Any = "<baseline file>") -> BaselineFile:
    """A baseline document, validated (AsrbenchError naming the file and the field)."""
    return _parse(BaselineFile, document, "baseline file", path)


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of a model, with the field names the files use."""
    return model.model_dump(mode="json", by_alias=True)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas published in schemas/: file name -> schema."""
    out = {}
    for name, model, title in (("report.schema.json", Report, "asrbench report"),
                               ("baseline.schema.json", BaselineFile, "asrbench baseline file"),
                               ("ab.schema.json", AbReport, "asrbench A/B result"),
                               ("peers.schema.json", PeersDocument, "asrbench peers result")):
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                  "$id": f"https://asrbench.invalid/schemas/{name}", **schema, "title": title}
        out[name] = schema
    return out
