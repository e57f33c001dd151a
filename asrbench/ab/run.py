"""From the options of `asrbench ab` to its result: the sides' commands, the options both
sides get, the card variable, every number checked before any process starts, then the
rounds (rounds.py), the verdicts and the JSON document. The command line only parses."""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asrbench.ab import rounds
from asrbench.config.options import run_overrides, to_argv
from asrbench.config.settings import BenchConfig
from asrbench.devices import CARD_VARIABLES
from asrbench.errors import AsrbenchError
from asrbench.formats.io import check_writable, write_json_atomic

SIDES = ("base", "head")
#: numeric run options checked here, before any process starts (BenchConfig's own checks)
_CHECKED_FIELDS = ("batch_size", "generation_max_length", "max_duration", "limit",
                   "eos_check_every", "warmup_batches", "reference_utterances")


@dataclass
class AbResult:
    """What an A/B produced: the outcome (sides, settings, rounds, decisions), its verdicts
    and whether the policy fails them (render.text.ab_text and ab_markdown print it)."""

    outcome: rounds.Outcome
    comparisons: list[Any]
    failed: bool

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail, 130 interrupted (as `asrbench compare`, plus the interruption)."""
        if self.outcome.interrupted:
            return 130
        return 1 if self.failed else 0


def shared_argv(values: Any, config_file: Path | None) -> list[str]:
    """The run options both sides get, as arguments: the config file (absolute: a side may run
    in another directory), then every run option set; --passes is the A/B's own setting (the
    passes of each process of a round), so it is not passed on."""
    argv = (["--config", str(Path(config_file).resolve())] if config_file else []) + to_argv(values)
    if "--passes" in argv:
        index = argv.index("--passes")
        del argv[index:index + 2]
    return argv


def check_run_numbers(values: Any) -> None:
    """The shared run options' numbers (--batch-size, --limit ...), refused here as the run
    itself would refuse them, so a bad one fails before any process starts."""
    given = run_overrides(values)
    BenchConfig(**{name: given[name] for name in _CHECKED_FIELDS if name in given})


def card_variable(device: str | None, explicit: str | None) -> str | None:
    """The environment variable that gives a process its card: --cards-variable, else the
    device's (devices.CARD_VARIABLES)."""
    return explicit or CARD_VARIABLES.get(device or "")


def settings_from(values: Any) -> rounds.Settings:
    """The A/B's Settings from the `ab` options (an argparse namespace or alike); every number
    is checked here (rounds.Settings), before any process starts."""
    check_run_numbers(values)
    if getattr(values, "counters_only", None):
        raise AsrbenchError("--counters-only times nothing, and an A/B decides on time: drop "
                            "it (the A/B's accuracy runs count the work already)")
    device = getattr(values, "device", None)
    recipes = getattr(values, "recipe_cache", None)
    if recipes is not None and getattr(values, "no_recipe_cache", False):
        raise AsrbenchError("--recipe-cache and --no-recipe-cache contradict each other: "
                            "give one")
    cards = (tuple(c.strip() for c in values.cards.split(",")) if values.cards is not None
             else None)
    if values.cards_variable and cards is None:  # it was dropped without a word
        raise AsrbenchError(f"--cards-variable {values.cards_variable} names the variable that "
                            "picks each side's card from --cards: give --cards A,B too")
    variable = card_variable(getattr(values, "device", None), values.cards_variable)
    return rounds.Settings(
        shared=shared_argv(values, values.config), threshold=values.threshold,
        alpha=values.alpha, min_rounds=values.min_rounds, max_rounds=values.max_rounds,
        passes=values.passes, rounds_limit=values.rounds_limit, seed=values.seed,
        round_timeout=values.round_timeout, cards=cards,
        cards_variable=variable if cards else None,
        recipe_cache=Path(recipes).resolve() if recipes is not None else None,
        hpu_recipes=(recipes is not None or device in rounds.RECIPE_DEVICES)
        and not getattr(values, "no_recipe_cache", False))


def this_asrbench() -> list[str]:
    """The command prefix of a side that runs this asrbench (neither --X-python nor
    --X-command given)."""
    return rounds.default_command(None, None, "")


def sides_from(values: Any) -> dict[str, rounds.Side]:
    """Each side's command (--X-command, --X-python, else this interpreter), its own run
    options (--X-args, split like a shell) and working directory (--X-cwd)."""
    sides = {}
    for name in SIDES:
        cwd = getattr(values, f"{name}_cwd")
        if cwd is not None and not cwd.is_dir():
            raise AsrbenchError(f"--{name}-cwd {cwd}: not a directory")
        try:
            extra = shlex.split(getattr(values, f"{name}_args"))
        except ValueError as exc:
            raise AsrbenchError(f"--{name}-args: {exc}") from None
        sides[name] = rounds.Side(name, rounds.default_command(getattr(values, f"{name}_python"),
                                                               getattr(values, f"{name}_command"),
                                                               name),
                                  extra, cwd.resolve() if cwd else None)
    return sides


def check_outputs(json_path: Path, markdown: Path | None, keep_reports: Path | None) -> None:
    """Refuse, before any process starts, output paths that cannot be written, naming the
    option they came from."""
    check_writable(json_path, "--json")
    if markdown is not None and markdown.is_dir():
        raise AsrbenchError(f"--markdown {markdown} is a directory: name a file, e.g. "
                            f"{markdown / 'ab.md'}")
    if keep_reports is not None and keep_reports.exists() and not keep_reports.is_dir():
        raise AsrbenchError(f"--keep-reports {keep_reports}: not a directory")


def execute(settings: rounds.Settings, sides: dict[str, rounds.Side], policy: Any,
            json_path: Path, keep_reports: Path | None = None,
            say: Callable[[str], None] = lambda message: None,
            interrupts: tuple[type[BaseException], ...] = (KeyboardInterrupt,)
            ) -> AbResult | None:
    """Run the A/B, judge it with `policy` and write its JSON document to `json_path`;
    None when it was interrupted before both accuracy runs finished (nothing to compare)."""
    if keep_reports is not None:
        keep_reports.mkdir(parents=True, exist_ok=True)
        outcome = rounds.run_ab(settings, sides, keep_reports.resolve(), say, interrupts)
    else:
        with tempfile.TemporaryDirectory(prefix="asrbench-ab-") as tmp:
            outcome = rounds.run_ab(settings, sides, Path(tmp), say, interrupts)
    if len(outcome.reports) < 2:
        return None
    comps = rounds.comparisons(outcome)
    failed = policy.fails(comps)
    write_json_atomic(json_path, rounds.document(outcome, comps, failed))
    return AbResult(outcome, comps, failed)
