"""Options declared once, registered with both front doors: argparse (`asrbench run`,
`asrbench compare`) and pytest (the plugin), with the same names, help, types and choices.

On the command line they are `--device`, `--precision`, ... In pytest every option is
`--asrbench-<name>` (pytest options share one namespace with every other plugin and conftest,
and names such as `--device` are common); `add_short_aliases()` registers the plain names too,
for a repository that wants them: this repository's conftest.py does, so the README's
`pytest benchmarks --device hpu` keeps working.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asrbench.config.settings import (
    DEFAULT_BASELINE_DIR,
    DEFAULT_MATRIX,
    DEFAULT_PASSES,
    DEFAULT_REFERENCE_UTTERANCES,
    DEFAULT_REPORT,
    DEVICE_CHOICES,
    PRECISIONS,
)
from asrbench.errors import AsrbenchError
from asrbench.formats.model import RunConfig
from asrbench.gate.policy import THROUGHPUT_MODES, TRANSCRIPT_MODES, Policy

PYTEST_PREFIX = "asrbench-"


@dataclass(frozen=True)
class Option:
    """One setting: how it is spelled, typed and explained, and the BenchConfig field it sets."""

    name: str  # flag without dashes: "batch-size"
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    kind: str = "value"  # "value", "flag" (store_true) or "switch" (--x / --no-x)
    metavar: str | None = None
    field: str | None = None  # the BenchConfig field it overrides, if any
    pytest_default: Any = None  # pytest has no config file: its default where it differs

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def argv(self, value: object) -> list[str]:
        """The command-line arguments that set this option to value ([] for None, or a flag
        not given)."""
        if value is None or (self.kind == "flag" and not value):
            return []
        if self.kind == "switch":
            return [f"--{self.name}" if value else f"--no-{self.name}"]
        if self.kind == "flag":
            return [f"--{self.name}"]
        text = str(value)
        # "--dataset=-x": a value that starts with a dash is not read as an option
        return [f"--{self.name}={text}"] if text.startswith("-") else [f"--{self.name}", text]

    def _kwargs(self, default: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"help": self.help, "default": default}
        if self.kind == "flag":
            kwargs["action"] = "store_true"
            # a flag that sets a BenchConfig field stays None when not given, so a config
            # file's or matrix's value is not overridden by an absent flag
            kwargs["default"] = default if self.field else bool(default)
        elif self.kind == "switch":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            if self.type is not None:
                kwargs["type"] = self.type
            if self.choices is not None:
                kwargs["choices"] = self.choices
            if self.metavar is not None:
                kwargs["metavar"] = self.metavar
        return kwargs

    def add_to_argparse(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(f"--{self.name}", dest=self.dest, **self._kwargs(None))

    def add_to_pytest(self, group: Any, alias: bool = False) -> None:
        """`--asrbench-<name>`, or (alias) the plain `--<name>` writing the same destination."""
        flag = f"--{self.name}" if alias else f"--{PYTEST_PREFIX}{self.name}"
        kwargs = self._kwargs(self.pytest_default)
        if alias:
            kwargs["help"] = f"same as --{PYTEST_PREFIX}{self.name}"
        group.addoption(flag, dest=f"asrbench_{self.dest}", **kwargs)


# -- the settings of a run (both doors; BenchConfig fields) -----------------------------------

RUN_OPTIONS = (
    Option("device", "hpu, cuda, cpu, or auto (hpu > cuda > cpu; default auto); hpu-emulated runs "
                     "optimum-habana's real code on the CPU with HPU graphs emulated (a "
                     "correctness check, never a speed measurement)",
           choices=DEVICE_CHOICES, field="device", pytest_default="auto"),
    Option("model", "Hub id (openai/whisper-small), local transformers directory, or "
                    "bundled:whisper-base (default)", field="model"),
    Option("dataset", "Common Voice release directory (DIR with <locale>/test.tsv, or "
                      "DIR/<locale>), a JSONL manifest, or a Hub dataset id (default: the "
                      "embedded corpus, hi and en)", field="dataset"),
    Option("dataset-config", "Hub config or Common Voice locale (e.g. hi)", field="dataset_config"),
    Option("split", "split name (default test)", field="split"),
    Option("text-column", "reference text column for Hub datasets (default sentence)",
           field="text_column"),
    Option("language", "forced decoder language, e.g. hindi or hi (default: the dataset "
                       "config's locale; else detected)", field="language"),
    Option("task", "default transcribe", choices=("transcribe", "translate"), field="task"),
    Option("batch-size", "batch size (default 8)", type=int, field="batch_size"),
    Option("precision", "fp32 (default), bf16 or fp16", choices=PRECISIONS, field="precision"),
    Option("generation-max-length", "decoder length cap, prompt included (default 225)",
           type=int, field="generation_max_length"),
    Option("max-duration", "drop clips of this many seconds or more (default 30)", type=float,
           field="max_duration"),
    Option("graphs", "graph replay over static shapes (a static KV cache, a fixed batch): HPU "
                     "graphs on HPU, torch.compile(mode='reduce-overhead') (CUDA graphs) on CUDA. "
                     "Refused on CPU. Default off unless the config file or matrix turns them on",
           kind="switch", field="graphs"),
    Option("sdp-on-bf16", "allow bf16 reductions in math SDPA, like optimum-habana's "
                          "--sdp_on_bf16", kind="switch", field="sdp_on_bf16"),
    Option("gaudi-config", "Gaudi config name (Habana/whisper) or JSON file (HPU)",
           field="gaudi_config"),
    Option("eos-check-every", "static decoder: read 'have all rows ended?' from the device every "
                              "K steps instead of every step (transcripts unchanged; default 1)",
           type=int, metavar="K", field="eos_check_every"),
    Option("ignore-eos", "static decoder: decode every batch to the length cap, as "
                         "optimum-habana's trainer does by default (ignore_eos=True), so "
                         "samples/s lines up with its eval_samples_per_second; transcripts are "
                         "still cut at the first end-of-text", kind="switch", field="ignore_eos"),
    Option("warmup-batches", "batches to warm up on before timing (default: 1 where shapes are "
                             "static, which captures every graph; a full pass where they vary)",
           type=int, metavar="N", field="warmup_batches"),
    Option("reference-utterances", "check the first N transcripts against stock transformers "
                                   f"generate() in fp32 on CPU (default "
                                   f"{DEFAULT_REFERENCE_UTTERANCES}, 0 = off; CPU fp32 runs are "
                                   "the reference setup and skip it)",
           type=int, metavar="N", field="reference_utterances"),
    Option("limit", "evaluate only the first N usable utterances", type=int, metavar="N",
           field="limit"),
    Option("counters", "a counted pass after the timed passes: aten ops per encoder call and per "
                       "decode step, FLOPs, host syncs per token, graph compilations, compared "
                       "exactly with the baseline's (default on; --no-counters skips it)",
           kind="switch", field="counters"),
    Option("counters-only", "the one-minute pre-screen: no timed pass; a device with graphs "
                            "keeps the warm-up that captures them; transcripts come from the "
                            "counted pass and one plain decode; the gate judges counters, "
                            "transcripts and error rates and says throughput was not measured "
                            "(not with --passes)",
           kind="flag", field="counters_only"),
    Option("passes", f"timed passes after the warm-up (default: the config file or matrix, "
                     f"else {DEFAULT_PASSES})", type=int, metavar="N"),
)

# -- scheduler shards (`asrbench run` only: a shard is a part of a split, which the pytest door
# cannot gate; gate the merged report with `pytest benchmarks --asrbench-from-report`) ---------

SHARD_OPTIONS = (
    Option("shard", "decode only shard I of N of each split (0-based, e.g. 0/4); auto: from the "
                    "scheduler (a Slurm array's SLURM_ARRAY_TASK_ID/MIN/COUNT, a Kubernetes "
                    "Indexed Job's JOB_COMPLETION_INDEX); `asrbench merge` pools the shards' "
                    "reports into the unsharded run's", metavar="I/N|auto"),
    Option("shard-count", "shards in all, for --shard auto under a Kubernetes Indexed Job (its "
                          "completions; default: the config file's shard_count)", type=int,
           metavar="N"),
)

# -- what fails the gate (both doors; asrbench.gate.policy.Policy) --------------------------------

POLICY_OPTIONS = (
    Option("transcripts", "changed transcripts fail the gate (default) or only warn",
           choices=TRANSCRIPT_MODES, pytest_default="fail"),
    Option("throughput", "a samples/s regression against the stored baseline fails the gate "
                         "(default) or only warns: for a shared runner whose load no stored "
                         "number can know (the work counters still gate exactly)",
           choices=THROUGHPUT_MODES, pytest_default="fail"),
    Option("allow-improvements", "an error rate better than the baseline beyond tolerance, or "
                                 "a work counter below the baseline's, passes (by default it "
                                 "fails: the baseline is out of date)",
           kind="flag"),
    Option("allow-missing-baselines", "a config without a baseline entry is reported as new, "
                                      "not a failure", kind="flag"),
    Option("wer-significance", "a WER/CER move beyond its tolerance fails only when the 95%% "
                               "paired-bootstrap interval of the change excludes 0 (otherwise "
                               "it warns); off: the tolerance alone decides", kind="flag"),
)

RUN_FIELDS = {o.dest: o.field for o in RUN_OPTIONS if o.field}


def run_overrides(values: object, prefix: str = "") -> dict[str, Any]:
    """BenchConfig fields the user set on either door (None: not given)."""
    out = {}
    for dest, field_name in RUN_FIELDS.items():
        value = getattr(values, prefix + dest, None)
        if value is not None:
            out[field_name] = value
    return out


def to_argv(values: object) -> list[str]:
    """The run options set in an argparse namespace, as command-line arguments again (what
    `asrbench ab` passes on to both sides' processes)."""
    return [arg for option in RUN_OPTIONS
            for arg in option.argv(getattr(values, option.dest, None))]


#: settings with no run option: the launcher sets them (torchrun's ranks, --nproc)
LAUNCHER_SETTINGS = frozenset({"world_size"})


def config_argv(config: RunConfig) -> list[str]:
    """The argv form of one config: `asrbench run` options that build it again (every setting
    but LAUNCHER_SETTINGS, each option once; None settings, their default, left out)."""
    values = config.settings()
    return [arg for option in RUN_OPTIONS if option.field
            for arg in option.argv(values[option.field])]


def checked_passes(value: int | None) -> int | None:
    """--passes as given (None: not given); 0 or less is a user error on both doors."""
    if value is not None and value < 1:
        raise AsrbenchError(f"--passes must be >= 1, got {value}")
    return value


def policy_from(values: object, prefix: str = "") -> Policy:
    """The Policy the options say (argparse namespace, or pytest's with prefix 'asrbench_')."""
    transcripts = getattr(values, prefix + "transcripts", None) or "fail"
    return Policy(allow_improvements=bool(getattr(values, prefix + "allow_improvements", False)),
                  transcripts=transcripts,
                  allow_missing=bool(getattr(values, prefix + "allow_missing_baselines", False)),
                  wer_significance=bool(getattr(values, prefix + "wer_significance", False)),
                  throughput=getattr(values, prefix + "throughput", None) or "fail")


def add_short_aliases(parser: Any) -> None:
    """Register the plain names (--device, --precision, ...) as pytest aliases of the
    --asrbench-* options, skipping any name another plugin or conftest already took."""
    group = parser.getgroup("asrbench")
    taken = {name for opt in _all_options(parser) for name in opt.names()}
    for option in (*RUN_OPTIONS, *POLICY_OPTIONS, *PLUGIN_OPTIONS):
        names = {f"--{option.name}"} | ({f"--no-{option.name}"} if option.kind == "switch"
                                        else set())
        if not names & taken:
            option.add_to_pytest(group, alias=True)


def _all_options(parser: Any) -> list[Any]:
    options = list(parser._anonymous.options)
    for group in parser._groups:
        options += group.options
    return options


# -- the pytest door's own options -----------------------------------------------------------

PLUGIN_OPTIONS = (
    Option("matrix", f"matrix of configs per device class (default {DEFAULT_MATRIX})",
           pytest_default=str(DEFAULT_MATRIX)),
    Option("baseline-dir", f"baseline files (default {DEFAULT_BASELINE_DIR}/)",
           pytest_default=str(DEFAULT_BASELINE_DIR)),
    Option("report", f"JSON report of this session (default {DEFAULT_REPORT})",
           pytest_default=str(DEFAULT_REPORT)),
    Option("update-baselines", "rewrite the baseline entries of the configs run in this session",
           kind="flag"),
    Option("nproc", "data-parallel processes per config: N > 1 runs each config with torchrun "
                    "--nproc-per-node N (one device each) and gates its report", type=int,
           pytest_default=1),
    Option("history", "add this session's report to the results store at URL (a SQLite file "
                      "or a postgresql:// URL; see `asrbench history`), e.g. in the main "
                      "branch's CI", metavar="URL"),
    Option("from-report", "gate the runs of an existing report (e.g. one `asrbench run` wrote) "
                          "instead of evaluating: the tests judge exactly what `asrbench "
                          "compare` would", metavar="PATH"),
)
