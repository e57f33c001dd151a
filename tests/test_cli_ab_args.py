"""`asrbench ab`'s arguments: every number and output path is checked before any process
starts (one line, exit 2), and a side's options may start with dashes. No process starts here:
the rounds are replaced by a stand-in that records what it was given."""

from __future__ import annotations

import pytest

from asrbench.ab import rounds
from asrbench.cli.ab import join_verbatim
from asrbench.cli.main import main, parse
from asrbench.errors import AsrbenchError


@pytest.fixture
def started(monkeypatch):
    """What reached the rounds (settings, sides), instead of running them; no process can
    start (run_together is the only place that starts one)."""
    seen = {}

    def no_process(*args, **kwargs):
        raise AssertionError("a process was started")

    def run_ab(settings, sides, *rest):
        seen["settings"], seen["sides"] = settings, sides
        raise AsrbenchError("stand-in: the rounds would start here")

    monkeypatch.setattr(rounds, "run_together", no_process)
    monkeypatch.setattr(rounds, "run_ab", run_ab)
    return seen


@pytest.mark.parametrize("argv, message", [
    (["--round-timeout", "0"], "--round-timeout must be a number of seconds > 0, got 0"),
    (["--round-timeout", "-5"], "--round-timeout must be a number of seconds > 0, got -5"),
    (["--round-timeout", "nan"], "--round-timeout must be a number of seconds > 0, got nan"),
    (["--threshold", "0"], "--threshold must be between 0 and 1, got 0"),
    (["--threshold", "1"], "--threshold must be between 0 and 1, got 1"),
    (["--alpha", "1.5"], "--alpha must be between 0 and 1, got 1.5"),
    (["--min-rounds", "1"], "--min-rounds must be >= 2"),
    (["--min-rounds", "6", "--max-rounds", "5"], "--max-rounds (5) must be >= --min-rounds (6)"),
    (["--rounds-limit", "0"], "--rounds-limit must be >= 1, got 0"),
    (["--passes", "0"], "--passes must be >= 1, got 0"),
    (["--batch-size", "0"], "batch size must be >= 1, got 0"),
    (["--limit", "-1"], "--limit must be >= 1, got -1"),
    # given but empty (an unset CI variable): refused, not taken for "not given" (it ran this
    # interpreter's asrbench on that side, comparing it with itself)
    (["--head-command", ""], "--head-command is empty"),
    (["--base-command", ""], "--base-command is empty"),
    (["--head-python", ""], "--head-python is empty"),
    # a side's own options are checked as its run would check them (the base side ran its
    # accuracy run before the head's failed on it)
    (["--head-args", "--batch-size 0"],
     "head's run options (the shared ones, then --head-args): batch size must be >= 1, got 0"),
    # set by the A/B for every process: one given here was overridden without a word
    (["--head-args", "--passes 5"], "head's run options (the shared ones, then --head-args): "
                                    "--passes 5 is set by the A/B for every process"),
    (["--base-args", "--report x.json"], "--report x.json is set by the A/B for every process"),
    # counts the A/B's document cannot hold: refused after the whole A/B had run
    (["--seed", "99999999999999999999999"], "--seed must be at most 9007199254740991"),
    (["--cards-variable", "FOO"], "--cards-variable FOO names the variable"),
])
def test_a_bad_number_is_one_line_before_any_process(argv, message, started, capsys, tmp_path):
    code = main(["ab", "--json", str(tmp_path / "ab.json"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("asrbench: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and not started


def test_json_naming_a_directory_is_a_problem_with_json(started, capsys, tmp_path):
    assert main(["ab", "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--json {tmp_path} is a directory" in err and "--report" not in err
    assert not started


def test_markdown_naming_a_directory_and_keep_reports_naming_a_file(started, capsys, tmp_path):
    assert main(["ab", "--json", str(tmp_path / "ab.json"), "--markdown", str(tmp_path)]) == 2
    assert f"--markdown {tmp_path} is a directory" in capsys.readouterr().err
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert main(["ab", "--json", str(tmp_path / "ab.json"), "--keep-reports", str(afile)]) == 2
    assert f"--keep-reports {afile}: not a directory" in capsys.readouterr().err
    assert not started


@pytest.mark.parametrize("argv", [
    ["--head-args", "--graphs", "--base-args", "--batch-size 1"],
    ["--head-args=--graphs", "--base-args=--batch-size 1"],
])
def test_side_options_may_start_with_dashes(argv, started, tmp_path):
    assert main(["ab", "--dataset-config", "en", *argv, "--json", str(tmp_path / "ab.json")]) == 2
    assert started["sides"]["head"].args == ["--graphs"]
    assert started["sides"]["base"].args == ["--batch-size", "1"]
    # the run options given to `ab` go to both sides, --passes stays the A/B's own
    assert started["settings"].shared == ["--dataset-config", "en"]


def test_only_the_ab_command_joins_its_verbatim_options():
    assert join_verbatim(["ab", "--head-command", "--x", "--limit", "2"]) == [
        "ab", "--head-command=--x", "--limit", "2"]
    assert join_verbatim(["run", "--head-args", "--x"]) == ["run", "--head-args", "--x"]
    assert parse(["ab", "--base-command", "-m asrbench"]).base_command == "-m asrbench"


def test_passes_is_not_passed_on_to_the_sides(started, tmp_path):
    assert main(["ab", "--passes", "3", "--limit", "4", "--json", str(tmp_path / "ab.json")]) == 2
    assert started["settings"].shared == ["--limit", "4"]
    assert started["settings"].round_passes == 3
