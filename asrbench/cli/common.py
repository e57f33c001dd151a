"""What several commands share: their common options (declared here once), signal handling
and the Markdown summary's publication. No heavy imports: every --help stays fast."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from asrbench.config.options import POLICY_OPTIONS, RUN_OPTIONS, SHARD_OPTIONS
from asrbench.config.settings import DEFAULT_BASELINE_DIR, DEFAULT_REPORT
from asrbench.errors import AsrbenchError
from asrbench.formats.io import same_file
from asrbench.render.text import terminal_safe

# -- options shared by several commands -------------------------------------------------------

def add_report(p: argparse.ArgumentParser, what: str = "report to read",
               many: bool = False) -> None:
    """--report PATH (default reports/latest.json); `many`: one or more reports."""
    if many:
        p.add_argument("--report", type=Path, nargs="+", default=[DEFAULT_REPORT],
                       metavar="REPORT", help=f"{what} (default {DEFAULT_REPORT})")
    else:
        p.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                       help=f"{what} (default {DEFAULT_REPORT})")


def add_baseline_dir(p: argparse.ArgumentParser,
                     what: str = "directory of <device class>.json files") -> None:
    """--baseline-dir DIR (default baselines)."""
    p.add_argument("--baseline-dir", type=Path, default=DEFAULT_BASELINE_DIR,
                   help=f"{what} (default {DEFAULT_BASELINE_DIR})")


def add_markdown(p: argparse.ArgumentParser, what: str = "the Markdown summary",
                 step_summary: bool = True) -> None:
    """--markdown PATH (the gating commands also append it to $GITHUB_STEP_SUMMARY)."""
    p.add_argument("--markdown", type=Path, metavar="PATH", help=f"write {what} here" + (
        " (it is also appended to $GITHUB_STEP_SUMMARY when that is set)" if step_summary else ""))


def add_json(p: argparse.ArgumentParser, what: str, default: Path | None = None) -> None:
    """--json PATH: a JSON copy of what the command printed."""
    p.add_argument("--json", type=Path, default=default, metavar="PATH",
                   help=f"write {what} as JSON here" + (f" (default {default})" if default else ""))


def add_no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress output")


def add_history(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--history", metavar="URL",
                   help=help or "the store: a file path (SQLite) or a postgresql:// URL (default "
                                "$ASRBENCH_HISTORY, else history.sqlite)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The settings of a run, from the option table the pytest plugin registers too."""
    for option in RUN_OPTIONS:
        option.add_to_argparse(p)


def add_shard_options(p: argparse.ArgumentParser) -> None:
    """--shard I/N|auto and --shard-count N (`asrbench run` only)."""
    for option in SHARD_OPTIONS:
        option.add_to_argparse(p)


def add_policy(p: argparse.ArgumentParser) -> None:
    """The failure policy's options (the pytest plugin registers the same ones)."""
    for option in POLICY_OPTIONS:
        option.add_to_argparse(p)


# -- signals ----------------------------------------------------------------------------------

class Interrupted(BaseException):
    """SIGINT or SIGTERM during a run (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signal_name: str, code: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.code = code


def on_signals(hangup: bool = False) -> dict[Any, Any]:
    """SIGINT and SIGTERM (and SIGHUP: a closed terminal or ssh session, with `hangup`)
    raise Interrupted in the main thread; returns the old handlers."""
    def handler(number: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(number).name, 128 + number)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hangup else ()):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (an embedding caller): leave signals alone
            pass
    return previous


def restore_signals(previous: dict[Any, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


# -- start-up ---------------------------------------------------------------------------------

#: transformers' module that imports scikit-learn when its flag says it is installed
CANDIDATE_GENERATOR = "transformers.generation.candidate_generator"


def leave_out_scikit_learn() -> bool:
    """Keep transformers from importing scikit-learn in this process (about 1 s of a
    counters-only run's 10 on a quiet 2-core machine); whether it did. Only asrbench's own
    command processes call it (`asrbench run`, `asrbench peers`), never the pytest plugin,
    which runs inside users' sessions.

    Why: transformers.generation.candidate_generator imports sklearn.metrics.roc_curve (and
    with it scipy.stats and pandas) whenever scikit-learn is installed, and it is wherever
    optimum-habana is (sentence-transformers brings it). Its one user is assisted generation's
    assistant_confidence_threshold, which asrbench never uses: asrbench's decoders and its
    generate() calls pass no assistant model. transformers decides with a private flag,
    transformers.utils.import_utils._sklearn_available, read when that module is first
    imported: so this runs before anything imports transformers.generation, and does nothing
    where the flag does not exist (transformers 5 may drop it) or where that module is already
    loaded. tests/test_light_imports.py checks that a run loads no sklearn."""
    import transformers.utils.import_utils as import_utils  # noqa: PLC0415  transformers: only the commands that measure load it

    if (getattr(import_utils, "_sklearn_available", None) is not True
            or CANDIDATE_GENERATOR in sys.modules):
        return False
    import_utils._sklearn_available = False
    return True


#: transformers' module that imports scipy.optimize when its flag says scipy is installed
OBJECT_DETECTION_LOSS = "transformers.loss.loss_for_object_detection"
#: model types whose transformers code (4.55: model, feature extractor, processor, tokenizer)
#: never asks whether scipy is installed; of the speech seq2seq models only Pop2Piano does
SCIPY_FREE_MODEL_TYPES = frozenset({"whisper"})


def leave_out_scipy(models: Iterable[str]) -> bool:
    """Keep transformers from importing scipy.optimize (about 0.3 s of every `asrbench run`
    on a quiet 2-core machine) where every model of the run is known to do without it; whether
    it did. Only asrbench's own command processes call it, after the run's configs are known
    and before any model code loads.

    Why: transformers' modeling_utils imports its object-detection losses, which import
    scipy.optimize whenever scipy is installed (scipy comes with torch's and asrbench's
    dependencies). No speech model asrbench drives trains or computes those losses. transformers
    decides with a private flag, transformers.utils.import_utils._scipy_available, which is
    also what Pop2Piano's feature extractor checks: so the flag is set only where every model's
    config.json names a type in SCIPY_FREE_MODEL_TYPES (a Hub model not in the local cache, or
    a folder whose type cannot be read, keeps scipy), where the flag exists, and where the
    losses are not loaded yet. tests/test_light_imports.py checks that a run loads no scipy."""
    from asrbench.measure.models import stated_model_type  # noqa: PLC0415  measure: the commands that measure

    if not all(stated_model_type(model) in SCIPY_FREE_MODEL_TYPES for model in models):
        return False
    import transformers.utils.import_utils as import_utils  # noqa: PLC0415  transformers: only the commands that measure load it

    if (getattr(import_utils, "_scipy_available", None) is not True
            or OBJECT_DETECTION_LOSS in sys.modules):
        return False
    import_utils._scipy_available = False
    return True


def refuse_writing_over(output: str | Path | None, option: str, *inputs: str | Path | None,
                        what: str = "the report it reads") -> None:
    """A one-line error where `output` (the file `option` names) is one of the `inputs` (the
    same file by another name or a link included): writing it would destroy what is read.
    A link loop or a name too long compare as their own paths, never as a traceback."""
    if output is None:
        return
    for given in inputs:
        if given is not None and same_file(output, given):
            raise AsrbenchError(f"{option} {output} is {what}: name another file")


# -- output -----------------------------------------------------------------------------------

from asrbench.render.text import publish_markdown  # noqa: E402,F401 (used as common.publish_markdown)


def say(*parts: object) -> None:
    """Print to standard output what may carry data (ids, transcripts, commits, paths): control
    characters and escape sequences are shown escaped, never sent to the terminal or CI log."""
    print(terminal_safe(" ".join(str(p) for p in parts)))


def say_json(document: object) -> None:
    """Print a JSON document readable and terminal-safe: non-ASCII text stays as it is, while
    control, bidi and line-separator characters become JSON \\u escapes (still valid JSON)."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    print(re.sub("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]",
                 lambda m: f"\\u{ord(m.group()):04x}", text))
