"""The benchmark matrix (benchmarks/matrix.toml): one section per device class, expanded into
BenchConfigs. Read here for both doors: the pytest plugin runs the section of its device, and
`asrbench run --matrix FILE` runs the same section from the command line.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asrbench.config.settings import (
    DEVICE_KINDS,
    EMBEDDED_CORPUS,
    BenchConfig,
    build_configs,
    read_toml,
)
from asrbench.errors import AsrbenchError
from asrbench.formats.model import Tolerance
from asrbench.gate.baselines import check_tolerance

#: keys whose lists expand to a cross product (one config per combination)
PRODUCT_KEYS = ("models", "datasets", "precisions", "batch_sizes", "graphs")
#: the settings a section's product gives every config, and the section key that gives them
PRODUCT_SETTINGS = {"model": "models", "precision": "precisions", "batch_size": "batch_sizes",
                    "graphs": "graphs", "device": "--device"}
#: keys copied onto every config of a section
SECTION_SETTINGS = ("sdp_on_bf16", "gaudi_config", "generation_max_length", "max_duration", "limit",
                    "eos_check_every", "ignore_eos", "warmup_batches", "reference_utterances")
MATRIX_KEYS = {*PRODUCT_KEYS, *SECTION_SETTINGS, "passes", "tolerance"}


@dataclass(frozen=True)
class Section:
    """One expanded matrix section."""

    name: str  # the section it came from ("cpu", "cuda", "hpu-emulated", ...)
    configs: list[BenchConfig]
    passes: int | None  # timed passes, if the section sets them
    tolerance: Tolerance | None  # written into the entries --update-baselines creates


def expand_section(section: dict[str, Any], device: str, where: str, name: str = "") -> Section:
    """Configs of one section's table (validated: unknown keys are a user error)."""
    unknown = set(section) - MATRIX_KEYS
    if unknown:
        raise AsrbenchError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    table = section.get("tolerance")
    tolerance = None if table is None else check_tolerance(table, f"{where} tolerance")
    passes = section.get("passes")
    if passes is not None and (isinstance(passes, bool) or not isinstance(passes, int)
                               or passes < 1):
        raise AsrbenchError(f"{where}: passes must be a positive integer, got {passes!r}")
    for key in PRODUCT_KEYS:
        if key in section and (not isinstance(section[key], list) or not section[key]):
            raise AsrbenchError(f"{where}: {key} must be a non-empty list, got "
                                f"{section[key]!r}")
    configs = []
    for model, data, precision, batch, graphs in itertools.product(
            section.get("models", ["bundled:whisper-base"]),
            section.get("datasets", [{"dataset": "embedded"}]),
            section.get("precisions", ["fp32"]), section.get("batch_sizes", [8]),
            section.get("graphs", [False])):
        if not isinstance(data, dict):
            raise AsrbenchError(f"{where}: datasets must be tables, got {data!r}")
        # what the section's product sets cannot be set per dataset: it was overwritten
        # without a word (a row's batch_size 2 ran at the section's 8)
        taken = sorted(set(data) & set(PRODUCT_SETTINGS))
        if taken:
            raise AsrbenchError(f"{where}: a datasets row cannot set {', '.join(taken)}: the "
                                "section sets them for every row ("
                                + ", ".join(PRODUCT_SETTINGS[k] for k in taken) + ")")
        entry = dict(data)
        if entry.get("dataset") == "embedded":
            entry["dataset"] = str(EMBEDDED_CORPUS)
        for key in SECTION_SETTINGS:
            if key in section:
                entry.setdefault(key, section[key])
        try:
            configs += build_configs({**entry, "model": model, "precision": precision,
                                      "batch_size": batch, "graphs": graphs, "device": device},
                                     [])
        except AsrbenchError as exc:  # the section and its row named: it said neither
            raise AsrbenchError(f"{where}: {exc}") from None
    return Section(name, configs, passes, tolerance)


#: what a section may be named: a device kind, or a class of one (cuda-h100, hpu-gaudi2)
SECTION_NAMES = "cpu, cuda, hpu, hpu-emulated, or a class: cuda-<gpu>, hpu-<generation>"
#: the classes devices name themselves (devices/cuda.py gpu_class_slug: lower-case letters and
#: digits; devices/hpu.py generation_from_device_name: gaudi, gaudi<N> or unknown)
_DEVICE_CLASS = re.compile(r"cuda-[a-z0-9]+|hpu-(?:gaudi\d*|unknown)")


def _names_a_device(name: str) -> bool:
    """Whether a section could ever be selected: a device kind or a class a device names
    itself. [cdua] (or [hpu-guadi2], [cuda-H100]) was taken as a section no machine runs."""
    return name in DEVICE_KINDS or _DEVICE_CLASS.fullmatch(name) is not None


def load_section(path: str | Path, device_class: str, kind: str, device: str) -> Section:
    """The section for a device class, falling back to its kind ("cuda" for cuda-h100)."""
    path = Path(path)
    matrix = read_toml(path, "matrix file (--matrix)")
    # every section is checked, not only this machine's: a bad key or value in [cuda] or [hpu]
    # showed only on that hardware, after the pull request that made it had passed here
    for name, table in matrix.items():
        if not isinstance(table, dict):
            raise AsrbenchError(f"{path} [{name}]: expected a table")
        if not _names_a_device(name):
            raise AsrbenchError(f"{path} [{name}]: a section is named by the device it runs on "
                                f"({SECTION_NAMES}); no device selects [{name}]")
        if name not in (device_class, kind):
            expand_section(table, "auto", f"{path} [{name}]", name)
    for name in (device_class, kind):
        if name in matrix:
            return expand_section(matrix[name], device, f"{path} [{name}]", name)
    wanted = (f"device class {device_class!r}" if kind == device_class
              else f"device class {device_class!r} or {kind!r}")
    raise AsrbenchError(f"{path} has no section for {wanted} (sections: {', '.join(matrix)})")
