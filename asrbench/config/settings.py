"""BenchConfig: what one evaluation run measures, and its stable id (the baseline key)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

from asrbench.errors import AsrbenchError

# the settings' defaults, re-exported (`X as X`: an explicit re-export)
from asrbench.formats.model import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from asrbench.formats.model import DEFAULT_GENERATION_MAX_LENGTH as DEFAULT_GENERATION_MAX_LENGTH
from asrbench.formats.model import DEFAULT_MAX_DURATION as DEFAULT_MAX_DURATION
from asrbench.formats.model import DEFAULT_MODEL as DEFAULT_MODEL
from asrbench.formats.model import DEFAULT_REFERENCE_UTTERANCES as DEFAULT_REFERENCE_UTTERANCES
from asrbench.formats.model import EMBEDDED_CORPUS as EMBEDDED_CORPUS
from asrbench.formats.model import PRECISIONS as PRECISIONS
from asrbench.formats.model import SETTING_NAMES as SETTING_NAMES
from asrbench.formats.model import RunConfig as RunConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (Gaudi images)
    import tomli as tomllib

# The device backends by name (asrbench.devices.BACKENDS maps each to its class); plain data
# here so that option tables and help texts never import a backend (torch).
DEVICE_KINDS = ("hpu", "cuda", "cpu", "hpu-emulated")
DEVICE_CHOICES = ("auto", *DEVICE_KINDS)
DEFAULT_PASSES = 3
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
        raise AsrbenchError(f"unknown precision {precision!r}: choose one of "
                            f"{', '.join(PRECISIONS)}")
    return precision


#: What one evaluation run measures, and its stable id (the baseline key): the one run-config
#: type, asrbench.formats.model.RunConfig (a report stores it as it is); this layer builds it
#: from files, flags and the matrix.
BenchConfig = RunConfig
FIELD_NAMES = SETTING_NAMES


def _coerce(values: dict[str, Any], where: str, top: bool = True) -> dict[str, Any]:
    # passes, runs and shard_count are the file's own (top level): in a [[runs]] table they
    # were dropped without a word
    unknown = sorted(set(values) - FIELD_NAMES
                     - ({"passes", "runs", "shard_count"} if top else set()))
    if unknown:
        raise AsrbenchError(f"{where}: unknown setting(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(FIELD_NAMES | {'passes'}))}")
    return {k: v for k, v in values.items() if k in FIELD_NAMES}


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed file is a user error naming it
    (one line: a directory, a device or FIFO, bytes that are not UTF-8, nesting too deep)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise AsrbenchError(f"{what} {path} is not a regular file")
        with open(path, "rb") as fh:
            document: dict[str, Any] = tomllib.load(fh)
            return document
    except FileNotFoundError:
        raise AsrbenchError(f"{what} {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise AsrbenchError(f"{what} {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise AsrbenchError(f"{what} {path} is not valid TOML: not UTF-8 text") from None
    except RecursionError:
        raise AsrbenchError(f"{what} {path} is not valid TOML: nested too deeply") from None
    except OSError as exc:  # no permission, a name too long
        raise AsrbenchError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None


def load_config_file(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], int | None]:
    """Read a TOML config: top-level settings, optional [[runs]] tables, optional passes.

    Returns (shared settings, per-run overrides, passes).
    """
    path = Path(path)
    return _config_document(read_toml(path, "config file"), path)


def _config_document(data: dict[str, Any], path: str | Path
                     ) -> tuple[dict[str, Any], list[dict[str, Any]], int | None]:
    runs = data.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise AsrbenchError(f"{path}: 'runs' must be an array of tables ([[runs]])")
    passes = data.get("passes")
    # (a TOML true is a Python int: it was taken as 1 pass)
    if passes is not None and (isinstance(passes, bool) or not isinstance(passes, int)
                               or passes < 1):
        raise AsrbenchError(f"{path}: passes must be a positive integer, got {passes!r}")
    shared = _coerce(data, str(path))
    return shared, [_coerce(r, f"{path} [[runs]] #{i + 1}", top=False)
                    for i, r in enumerate(runs)], passes


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
    for number, entry in enumerate(entries, start=1):
        try:
            configs.append(BenchConfig(**_with_language(entry)))
        except AsrbenchError as exc:
            if not runs or _shared_fails_alike(shared, exc):
                raise
            # which [[runs]] table: a file of ten said only "--limit must be >= 1"
            raise AsrbenchError(f"[[runs]] table {number} of {len(runs)}: {exc}") from None
    return configs


def _with_language(entry: dict[str, Any]) -> dict[str, Any]:
    """The settings with the language their Common Voice locale gives where none is set (a
    locale, "hi", is also a Whisper language code)."""
    if entry.get("language") is None and entry.get("dataset_config"):
        return {**entry, "language": entry["dataset_config"]}
    return entry


def _shared_fails_alike(shared: dict[str, Any], error: AsrbenchError) -> bool:
    """Whether the settings outside every [[runs]] table (the file's top level and the flags)
    fail on their own with the same error: then no table is to blame for it."""
    try:
        BenchConfig(**_with_language(shared))
    except AsrbenchError as exc:
        return str(exc) == str(error)
    return False


# -- the TOML form of one config (what a launcher hands its ranks: `asrbench run --config`) -----

def config_toml(config: RunConfig, passes: int) -> str:
    """One config as an `asrbench run --config` file that builds it again (config_from_toml):
    every setting, in field order, but those that are None (TOML has no null, and None is the
    default of every setting that can be None)."""
    lines = [f"passes = {passes}"]
    for name, value in config.settings().items():
        if value is not None:
            lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def config_from_toml(text: str, where: str = "<config TOML>") -> tuple[RunConfig, int | None]:
    """The config and passes of config_toml's text, read the way `asrbench run --config` reads
    a file (the same settings checks)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AsrbenchError(f"{where} is not valid TOML: {exc}") from None
    shared, runs, passes = _config_document(data, where)
    configs = build_configs(shared, runs)
    if len(configs) != 1:
        raise AsrbenchError(f"{where}: expected one config, got {len(configs)}")
    return configs[0], passes


def _toml_value(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # finite (checked by RunConfig): a TOML integer or float
    # a TOML basic string: quote, backslash and control characters escaped, the rest as it is
    # (not json.dumps: its \uXXXX surrogate pairs for characters beyond U+FFFF are not TOML)
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'
