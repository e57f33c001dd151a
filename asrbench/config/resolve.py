"""Which configs to run: one rule for every front door (`asrbench run`, `asrbench peers`,
`asrbench ab`'s checks, the pytest plugin), so the same options always select the same runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asrbench.config.matrix import load_section
from asrbench.config.options import checked_passes
from asrbench.config.settings import DEFAULT_PASSES, BenchConfig, build_configs, load_config_file
from asrbench.errors import AsrbenchError
from asrbench.formats.model import Tolerance


@dataclass(frozen=True)
class Selection:
    """The configs to run, how many timed passes each, and the limits the source set."""

    configs: list[BenchConfig]
    passes: int  # timed passes per config
    tolerance: Tolerance | None = None  # the matrix section's tolerance policy, if any
    source: str = "defaults"  # "defaults", the config file, or "<matrix> [<section>]"


def resolve(flags: Mapping[str, Any], passes: int | None = None, *,
            config_file: str | Path | None = None, matrix: str | Path | None = None,
            device: Callable[[], tuple[str, str]] | None = None,
            defaults: Mapping[str, Any] | None = None) -> Selection:
    """The configs the options select. Precedence, highest first:

    1. explicit flags: `flags` (BenchConfig fields a user set, see options.run_overrides) and
       `passes`; a flag sets its field in every config;
    2. the config file (top-level settings, its [[runs]] tables, `passes`) or the matrix
       section of the device's class (`device()` returns (device class, kind); the section's
       product of models, datasets, ... , its `passes` and `tolerance`); not both;
    3. `defaults` (a command's own, e.g. `peers` runs English only), then BenchConfig's
       defaults: the embedded corpus, one run per locale, and DEFAULT_PASSES.

    One coupling: a dataset given as a flag without --dataset-config or --language drops the
    locale the file, matrix or defaults chose (it belonged to their dataset); configs that
    then coincide run once. Invalid settings raise AsrbenchError before anything loads.
    """
    if config_file is not None and matrix is not None:
        raise AsrbenchError("--matrix and --config both say what to run: give one of them")
    passes = checked_passes(passes)
    flags = dict(flags)
    new_dataset = "dataset" in flags and not {"dataset_config", "language"} & set(flags)
    if matrix is not None:
        return _from_matrix(matrix, flags, passes, device, new_dataset)
    shared: dict[str, Any] = dict(defaults or {})
    runs: list[dict[str, Any]] = []
    file_passes = None
    if config_file is not None:
        from_file, runs, file_passes = load_config_file(config_file)
        shared.update(from_file)
    for name, value in flags.items():
        shared[name] = value
        for run in runs:
            run.pop(name, None)  # a flag overrides every run of the file
    if new_dataset:
        shared.pop("dataset_config", None)
    try:
        configs = _unique(build_configs(shared, runs))
    except AsrbenchError as exc:
        if config_file is None:
            raise
        # the file named: `limit = 0` said only "--limit must be >= 1", a flag never given
        raise AsrbenchError(f"{config_file} (with the flags given): {exc}") from None
    if file_passes is not None and passes is None and "counters_only" not in flags and any(
            c.counters_only for c in configs):
        raise untimed(f"{config_file}: counters_only = true with passes = {file_passes}")
    return Selection(configs, passes or file_passes or DEFAULT_PASSES,
                     source=str(config_file) if config_file is not None else "defaults")


def _from_matrix(matrix: str | Path, flags: dict[str, Any], passes: int | None,
                 device: Callable[[], tuple[str, str]] | None, new_dataset: bool) -> Selection:
    if device is None:
        raise AsrbenchError("a matrix section is chosen by the device's class: no device given")
    device_class, kind = device()
    section = load_section(matrix, device_class, kind, flags.get("device", "auto"))
    changes = {**flags, **({"dataset_config": None} if new_dataset else {})}
    rows = section.configs
    wanted = flags.get("dataset_config")
    if wanted is not None and "language" not in flags:
        # --dataset-config alone: a row of another locale brought that locale's language
        # (`hi` with `hindi`); where the section has a row of the asked locale for the same
        # dataset, only such rows run (the CLI's defaults do the same), not `en` audio forced
        # to Hindi
        have = {c.dataset for c in rows if c.dataset_config == wanted}
        rows = [c for c in rows if c.dataset_config == wanted or c.dataset not in have]
    configs = [config.replace(**changes) for config in rows]
    if section.passes is not None and passes is None and "counters_only" not in flags and any(
            c.counters_only for c in configs):  # as for a config file: the passes were dropped
        raise untimed(f"{matrix} [{section.name}]: counters_only = true with passes = "
                      f"{section.passes}")
    return Selection(_unique(configs), passes or section.passes or DEFAULT_PASSES,
                     section.tolerance, f"{matrix} [{section.name}]")


def untimed(clash: str) -> AsrbenchError:
    """The one refusal of timed passes asked for beside a counters-only pre-screen, wherever
    the two meet (flags, a config file, a matrix section, a file and a flag)."""
    return AsrbenchError(f"{clash}: the pre-screen times no pass; drop one of them")


def _unique(configs: list[BenchConfig]) -> list[BenchConfig]:
    """Each config once, in order (flags can make two rows of a file or matrix the same)."""
    seen: set[str] = set()
    out = []
    for config in configs:
        if config.id not in seen:
            seen.add(config.id)
            out.append(config)
    return out
