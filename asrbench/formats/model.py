"""The result model: the report and baseline formats as typed classes, in one place.

Every module that reads or writes a report or a baseline file goes through these classes, so a
field cannot drift between a writer and a reader. Loading validates with pydantic and names the
file and the field of the first problem in one line; `json_schemas()` gives the JSON Schemas
published in schemas/ (tests/test_results.py checks the published files equal them), so other
tools can validate asrbench files without asrbench.

One schema version, SCHEMA_VERSION, for both formats. Version 1 is what asrbench has written
since its first release; later fields (timings.compilations, reference, tolerance_policy,
comparison.has_entry) are optional, so every schema-1 file written before them still loads.
A file of another version is refused with what to do about it (MIGRATION).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt,
                      PositiveFloat, PositiveInt, ValidationError, field_validator,
                      model_serializer, model_validator)

from asrbench.errors import AsrbenchError

SCHEMA_VERSION = 1
MIGRATION = ("asrbench {version} reads schema {supported} only: regenerate the report with "
             "`asrbench run` (or `pytest benchmarks`), and record baselines again with "
             "`asrbench baseline update --report <new report>`")
#: names that become file names or keys: no path separators, no leading dot
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
VERDICTS = Literal["improved", "unchanged", "regressed", "new", "missing"]


class _Model(BaseModel):
    """Reports carry more than the gate reads (informational fields): extra keys are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


# -- a run ------------------------------------------------------------------------------------

class RunConfig(_Model):
    """The BenchConfig of a run (all its fields are kept) and its stable id."""

    id: str = Field(pattern=NAME_PATTERN, description="the baseline key and pytest id")
    world_size: int = Field(1, ge=1)


class DeviceInfo(_Model):
    kind: str = ""
    class_: str = Field(alias="class", pattern=NAME_PATTERN,
                        description="baseline file name: cpu, cuda-h100, hpu-gaudi2, ...")
    name: Optional[str] = None
    environment: dict[str, Any] = Field(default_factory=dict)


class GatedMetrics(_Model):
    """The metrics a baseline records and the gate compares."""

    wer: NonNegativeFloat
    wer_normalized: Optional[NonNegativeFloat] = Field(
        description="null where normalization leaves no reference words")
    cer: NonNegativeFloat
    samples_per_second: float = Field(gt=0)

    @field_validator("wer_normalized", mode="before")
    @classmethod
    def _nan_is_null(cls, value: Any) -> Any:
        # JSON has no NaN: an undefined normalized WER is written as null.
        return None if isinstance(value, float) and math.isnan(value) else value


class Metrics(GatedMetrics):
    rtfx: Optional[float] = None
    tokens_per_second: Optional[float] = None
    tokens_per_sample: Optional[float] = None


class ThroughputStats(_Model):
    samples_per_second_per_pass: list[float] = Field(min_length=1)
    samples_per_second_min: Optional[float] = None
    samples_per_second_max: Optional[float] = None
    samples_per_second_rsd: NonNegativeFloat

    @field_validator("samples_per_second_per_pass")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if not all(v > 0 for v in values):
            raise ValueError("every pass needs a positive samples/s")
        return values


class Compilations(_Model):
    """Graph compilations/captures in the warm-up and in each timed pass."""

    counter: Optional[str] = None
    warmup: NonNegativeInt
    passes: list[NonNegativeInt] = Field(min_length=1)


class RankTimings(_Model):
    rank: NonNegativeInt
    utterances: NonNegativeInt
    pass_seconds: list[float]


class Timings(_Model):
    """Timings of a run (informational except compilations, which the gate reads)."""

    compilations: Optional[Compilations] = None
    world_size: Optional[int] = None
    ranks: Optional[list[RankTimings]] = None


class Skip(_Model):
    id: str
    reason: str


class DatasetInfo(_Model):
    name: Optional[str] = None
    utterances: Optional[NonNegativeInt] = None
    audio_seconds: Optional[float] = None
    skipped: list[Skip] = Field(default_factory=list)


class Differing(_Model):
    id: str
    reference_transcript: str
    run_transcript: str


class ReferenceAgreement(_Model):
    """Agreement with stock transformers generate() in fp32 on CPU, or why it is unknown."""

    reference: str = ""
    requested: Optional[int] = None
    error: Optional[str] = None
    utterances: Optional[NonNegativeInt] = None
    identical: Optional[NonNegativeInt] = None
    share: Optional[float] = Field(None, ge=0, le=1)
    wer: Optional[NonNegativeFloat] = None
    differing: list[Differing] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> "ReferenceAgreement":
        if self.error is None:
            if None in (self.utterances, self.identical, self.share, self.wer):
                raise ValueError("needs utterances, identical, share and wer (or an error)")
            if self.identical > self.utterances:
                raise ValueError("more identical transcripts than utterances")
        return self


class UtteranceResult(_Model):
    id: str
    prediction: str
    reference: Optional[str] = None
    tokens: Optional[int] = None
    audio_seconds: Optional[float] = None


class VerdictRecord(_Model):
    config_id: str
    metric: str
    verdict: VERDICTS
    value: Optional[float] = None
    baseline: Optional[float] = None
    delta: Optional[float] = None
    allowed: Optional[float] = None
    note: str = ""


class ComparisonRecord(_Model):
    config_id: str
    regressed: bool
    has_entry: bool = True
    verdicts: list[VerdictRecord] = Field(default_factory=list)
    transcripts_changed: list[dict[str, Any]] = Field(default_factory=list)


class Tolerance(_Strict):
    """Per-entry (or per-matrix-section) overrides of the default tolerances."""

    wer_abs: Optional[NonNegativeFloat] = None
    cer_abs: Optional[NonNegativeFloat] = None
    samples_per_second_rel: Optional[NonNegativeFloat] = None
    noise_factor: Optional[NonNegativeFloat] = None
    reference_share_min: Optional[NonNegativeFloat] = None
    reference_wer_max: Optional[NonNegativeFloat] = None

    def given(self) -> dict[str, float]:
        """Only the overrides that are set."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @model_serializer(mode="plain")
    def _set_only(self) -> dict[str, float]:
        # Files list the overrides only; an absent name falls back to the default.
        return self.given()


class Run(_Model):
    """One evaluated config, as a report stores it."""

    config: RunConfig
    device: DeviceInfo
    metrics: Metrics
    throughput: ThroughputStats
    timings: Timings = Field(default_factory=Timings)
    dataset: DatasetInfo = Field(default_factory=DatasetInfo)
    passes_identical: Optional[bool] = None
    reference: Optional[ReferenceAgreement] = None
    utterances: list[UtteranceResult]
    comparison: Optional[ComparisonRecord] = None
    tolerance_policy: Optional[Tolerance] = Field(
        None, description="the matrix section's tolerance the pytest door ran with")

    @model_validator(mode="after")
    def _ranks(self) -> "Run":
        size = self.config.world_size
        if size > 1 and (self.timings.ranks is None or len(self.timings.ranks) != size):
            raise ValueError(f"a {size}-rank run needs timings.ranks with {size} entries")
        return self


class Environment(_Model):
    """Where the numbers came from (what baselines record is typed; the rest is kept)."""

    packages: dict[str, Optional[str]] = Field(default_factory=dict)
    device: dict[str, Any] = Field(default_factory=dict)
    git: dict[str, Any] = Field(default_factory=dict)


class Report(_Model):
    """A whole report: where it came from, and its runs."""

    schema_: Literal[1] = Field(alias="schema")
    environment: Environment
    runs: list[Run]
    interrupted: bool = Field(False, description="stopped by a signal: only finished runs")

    @model_validator(mode="after")
    def _has_runs(self) -> "Report":
        if not self.runs and not self.interrupted:
            raise ValueError("the report holds no runs")
        return self


def predictions_digest(predictions: dict[str, str]) -> str:
    """sha256 over (id, prediction) pairs in id order: equal digests mean equal transcripts."""
    canonical = json.dumps(sorted(predictions.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- baselines --------------------------------------------------------------------------------

class Noise(_Model):
    """The throughput noise recorded with a baseline: within one process (its passes) and,
    when the entry was recorded from several independent processes, between them."""

    samples_per_second_rsd: NonNegativeFloat = Field(
        0.0, description="relative standard deviation of the passes within a process (the "
                         "largest over the processes recorded)")
    passes: Optional[NonNegativeInt] = None
    samples_per_second_per_pass: list[float] = Field(default_factory=list)
    samples_per_second_per_process: list[PositiveFloat] = Field(
        default_factory=list, description="each recorded process's median samples/s (two or "
                                          "more: the band comes from their spread)")


class BaselineEntry(_Model):
    """One config's recorded numbers, noise, transcripts and provenance."""

    metrics: GatedMetrics
    tolerance: Tolerance = Field(default_factory=Tolerance)
    noise: Noise = Field(default_factory=Noise)
    predictions: dict[str, str] = Field(default_factory=dict)
    predictions_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    environment: dict[str, Any] = Field(default_factory=dict)
    commit: Optional[str] = None
    updated: Optional[str] = None

    @model_validator(mode="after")
    def _digest(self) -> "BaselineEntry":
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
        import re

        bad = [k for k in entries if not re.match(NAME_PATTERN, k)]
        if bad:
            raise ValueError(f"config id {bad[0]!r} is not a valid name")
        return entries


# -- A/B -------------------------------------------------------------------------------------

class AbDecision(_Model):
    outcome: Literal["DIFFERENT", "SAME", "UNKNOWN"]
    rounds: NonNegativeInt
    ratio: Optional[PositiveFloat] = Field(None, description="head/base, exp(mean log-ratio)")
    ci_low: Optional[PositiveFloat] = None
    ci_high: Optional[PositiveFloat] = None
    confidence: float = Field(gt=0, lt=1)
    p_value: Optional[float] = Field(None, ge=0, le=1)
    ratio_of_medians: Optional[PositiveFloat] = None
    threshold: float = Field(gt=0, lt=1)


class AbRound(_Model):
    number: PositiveInt
    order: list[Literal["base", "head"]]
    seconds: NonNegativeFloat
    samples_per_second: dict[Literal["base", "head"], list[PositiveFloat]]
    cards: Optional[dict[Literal["base", "head"], str]] = None  # --cards: each side's card


class AbSide(_Model):
    command: list[str] = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    cwd: Optional[str] = None
    report: Optional[Report] = Field(None, description="the side's accuracy run (whole split)")


class AbReport(_Model):
    """What `asrbench ab` writes: both sides, every round, the decisions and the verdicts."""

    schema_: Literal[1] = Field(alias="schema")
    kind: Literal["ab"]
    interrupted: bool = False
    failed: bool
    environment: Environment
    settings: dict[str, Any]
    sides: dict[Literal["base", "head"], AbSide]
    pairs: list[dict[Literal["base", "head"], str]] = Field(default_factory=list)
    rounds: list[AbRound] = Field(default_factory=list)
    decisions: list[AbDecision] = Field(default_factory=list)
    comparisons: list[ComparisonRecord] = Field(default_factory=list)


# -- loading, errors, schemas -------------------------------------------------------------------

#: fields whose children are keys of a mapping, shown as ['key'] in error locations
_MAPPINGS = {"entries", "predictions"}
_MESSAGES = {
    "float_type": "expected a number", "float_parsing": "expected a number",
    "int_type": "expected an integer", "int_parsing": "expected an integer",
    "string_type": "expected a string", "bool_type": "expected true or false",
    "list_type": "expected a list", "dict_type": "expected an object",
    "model_type": "expected an object", "model_attributes_type": "expected an object",
    "missing": "missing", "extra_forbidden": "unknown field",
    "literal_error": "unexpected value", "string_pattern_mismatch": "not a valid name",
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


def _problem(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    loc = error.get("loc") or ()
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "predictions_sha256":
        return "expected a sha256 hex digest"
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
    if isinstance(document, dict) and "schema" in document and document["schema"] != SCHEMA_VERSION:
        from asrbench import __version__

        raise AsrbenchError(f"invalid {what} {path}: schema {document['schema']!r} is not "
                            f"supported; " + MIGRATION.format(version=__version__,
                                                              supported=SCHEMA_VERSION))


def _parse(model: type[BaseModel], document: Any, what: str, path: Any) -> Any:
    _check_version(document, what, path)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_error(exc, what, path) from None


def parse_report(document: Any, path: Any = "<report>") -> Report:
    """A report document, validated (AsrbenchError naming the file and the field)."""
    return _parse(Report, document, "report", path)


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
                               ("ab.schema.json", AbReport, "asrbench A/B result")):
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                  "$id": f"https://asrbench.invalid/schemas/{name}", **schema, "title": title}
        out[name] = schema
    return out
