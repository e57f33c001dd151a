"""Settings refused before any model work, in one line (2026-12-08 fault-finding): values that
were silently ignored, overridden or clamped, or that crashed only after the work was done."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from asrbench.config.resolve import resolve
from asrbench.errors import AsrbenchError


def _file(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _cpu() -> tuple[str, str]:
    return "cpu", "cpu"


@pytest.mark.parametrize("text, message", [
    # accepted, then written into a report no schema-checking tool takes
    ("batch_size = 99999999999999999999\n", "batch_size must be at most 9007199254740991"),
    # a TOML true was 1 pass
    ("passes = true\n", "passes must be a positive integer, got True"),
    # dropped without a word from a [[runs]] table
    ('[[runs]]\npasses = 7\n', r"\[\[runs\]\] #1: unknown setting\(s\) passes"),
    ('[[runs]]\nshard_count = 2\n', r"\[\[runs\]\] #1: unknown setting\(s\) shard_count"),
    # "" meant "detect" and dropped the locale's language
    ('language = ""\n', "--language must not be empty"),
])
def test_a_config_file_value_that_was_taken_wrongly_is_refused(tmp_path, text, message):
    with pytest.raises(AsrbenchError, match=message) as info:
        resolve({}, None, config_file=_file(tmp_path, text))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, flags, message", [
    # a row's batch_size 2, model, precision or device were overwritten by the section's
    ('[cpu]\ndatasets = [{dataset = "embedded", dataset_config = "en", batch_size = 2, '
     'model = "foo"}]\n', {}, "a datasets row cannot set batch_size, model"),
    # the section's passes were dropped for a counters-only row (a config file refuses it)
    ('[cpu]\npasses = 3\ndatasets = [{dataset = "embedded", dataset_config = "en", '
     'counters_only = true}]\n', {}, "counters_only = true with passes = 3"),
    # the class was named twice
    ('[cuda]\nbatch_sizes = [8]\n', {},
     r"has no section for device class 'cpu' \(sections: cuda\)"),
    # a misspelled section with valid content was a section no machine selects, without a word
    ('[cpu]\nbatch_sizes = [8]\n[cdua]\nbatch_sizes = [8]\n', {},
     r"m.toml \[cdua\]: a section is named by the device it runs on \(cpu, cuda, hpu, "
     r"hpu-emulated, or a class: cuda-<gpu>, hpu-<generation>\); no device selects \[cdua\]"),
    ('[cpu]\n[gpu]\nbatch_sizes = [8]\n', {}, r"no device selects \[gpu\]"),
    ('[cpu]\n[cuda-]\nbatch_sizes = [8]\n', {}, r"no device selects \[cuda-\]"),
    ('[cpu]\n[hpu-guadi2]\n', {}, r"no device selects \[hpu-guadi2\]"),
    ('[cpu]\n[cuda-H100]\n', {}, r"no device selects \[cuda-H100\]"),
])
def test_a_matrix_that_was_taken_wrongly_is_refused(tmp_path, text, flags, message):
    with pytest.raises(AsrbenchError, match=message):
        resolve(flags, None, matrix=_file(tmp_path, text, "m.toml"), device=_cpu)


def test_a_share_tolerance_above_one_is_refused():
    """cpu_share_min 5 made every run "not judged: machine busy"; reference_share_min 2 an
    agreement no run reaches. Both are shares: at most 1, on the command line, in a matrix and
    in a baseline file."""
    from pydantic import ValidationError

    from asrbench.formats.model import Tolerance
    from asrbench.gate.baselines import check_tolerance

    for name in ("cpu_share_min", "reference_share_min"):
        with pytest.raises(AsrbenchError, match=f"tolerance {name} is a share: at most 1"):
            check_tolerance({name: 5}, "--tolerance")
        with pytest.raises(ValidationError):
            Tolerance.model_validate({name: 1.5})
        assert check_tolerance({name: 1}, "--tolerance").limit(name) == 1


@pytest.mark.parametrize("timeout", [math.nan, math.inf, 1e300, 0.0, -1.0])
def test_a_distributed_timeout_that_no_timedelta_holds_is_refused(timeout, monkeypatch):
    """--dist-timeout nan was taken (NaN passes every comparison), and inf or 1e300 would end
    torch.distributed's init at every rank in a traceback; $ASRBENCH_DIST_TIMEOUT the same."""
    from asrbench.measure.distributed import TIMEOUT_ENV, World

    with pytest.raises(AsrbenchError, match="distributed timeout must be a number of seconds"):
        World(None, timeout)
    monkeypatch.setenv(TIMEOUT_ENV, str(timeout))
    with pytest.raises(AsrbenchError, match="distributed timeout must be a number of seconds"):
        World(None)
    monkeypatch.setenv(TIMEOUT_ENV, "600")
    assert World(None).timeout_s == 600.0


def test_ab_counts_the_document_cannot_hold_are_refused_before_any_process():
    """--seed, --rounds-limit or --max-rounds above 2**53 - 1 ran the whole A/B, then failed
    writing its JSON document with a validation traceback."""
    from asrbench.ab.rounds import Settings

    for fields, option in (({"seed": 10 ** 30}, "--seed"),
                           ({"rounds_limit": 10 ** 20}, "--rounds-limit"),
                           ({"max_rounds": 10 ** 20}, "--max-rounds")):
        with pytest.raises(AsrbenchError, match=f"{option} must be at most 9007199254740991"):
            Settings(shared=[], **fields)
    assert Settings(shared=[], seed=-5).seed == -5  # a negative seed is a seed


def test_ab_cards_variable_without_cards_is_refused(capsys):
    """--cards-variable FOO without --cards was dropped without a word (the A/B started)."""
    from asrbench.cli.main import main

    assert main(["ab", "--device", "cpu", "--cards-variable", "FOO", "--base-python",
                 "/bin/false"]) == 2
    assert "--cards-variable FOO names the variable" in capsys.readouterr().err


def test_every_matrix_section_is_checked_and_errors_name_their_file(tmp_path):
    """A bad key or value in [cuda] showed only on a CUDA machine (the pull request passed on
    the CPU runners); a setting error of a config file or a matrix section named neither
    (`limit = 0` said "--limit must be >= 1", a flag never given)."""
    good = '[cpu]\nbatch_sizes = [8]\n'
    for other, message in (('[cuda]\nbatch_sizes = [0]\n', r"\[cuda\]: batch size must be >= 1"),
                           ('[hpu-gaudi3]\nbogus_key = 1\n',
                            r"\[hpu-gaudi3\]: unknown key\(s\) bogus_key")):
        with pytest.raises(AsrbenchError, match=message):
            resolve({}, None, matrix=_file(tmp_path, good + other, "m.toml"), device=_cpu)
    assert resolve({}, None, matrix=_file(tmp_path, good + '[cuda]\nbatch_sizes = [16]\n'
                                          '[cuda-h100]\n[hpu-gaudi2]\n[hpu-gaudi]\n'
                                          '[cuda-rtx4090]\n', "m.toml"),
                   device=_cpu).configs
    with pytest.raises(AsrbenchError, match=r"m.toml \[cpu\]: batch size must be >= 1, got 0"):
        resolve({}, None, matrix=_file(tmp_path, "[cpu]\nbatch_sizes = [0]\n", "m.toml"),
                device=_cpu)
    config = _file(tmp_path, "limit = 0\n")
    with pytest.raises(AsrbenchError, match=r"c.toml \(with the flags given\): --limit must be "
                                            r">= 1, got 0"):
        resolve({}, None, config_file=config)


def test_the_real_matrix_checks_in_every_section():
    """benchmarks/matrix.toml's every section passes the check, from every device class."""
    root = Path(__file__).resolve().parent.parent
    for device in (("cpu", "cpu"), ("hpu-emulated", "cpu"), ("cuda-h100", "cuda"),
                   ("hpu-gaudi2", "hpu")):
        assert resolve({}, None, matrix=root / "benchmarks" / "matrix.toml",
                       device=lambda d=device: d).configs


def test_a_config_file_error_names_its_runs_table(tmp_path):
    """A setting error inside one [[runs]] table of a config file named the file only; with
    several tables the user had to guess which one."""
    config = _file(tmp_path, 'dataset = "embedded"\n[[runs]]\ndataset_config = "en"\n'
                             '[[runs]]\ndataset_config = "hi"\nlimit = 0\n')
    with pytest.raises(AsrbenchError, match=r"c.toml \(with the flags given\): \[\[runs\]\] "
                                            r"table 2 of 2: --limit must be >= 1, got 0"):
        resolve({}, None, config_file=config)
    # a value outside the tables (the file's top level, or a flag) is no table's fault
    top = _file(tmp_path, 'dataset = "embedded"\nlimit = 0\n[[runs]]\ndataset_config = "en"\n'
                          '[[runs]]\ndataset_config = "hi"\n', "top.toml")
    plain = _file(tmp_path, 'dataset = "embedded"\n[[runs]]\ndataset_config = "en"\n',
                  "plain.toml")
    for config_file, flags in ((top, {}), (plain, {"limit": 0})):
        with pytest.raises(AsrbenchError) as info:
            resolve(flags, None, config_file=config_file)
        assert "--limit must be >= 1, got 0" in str(info.value)
        assert "[[runs]]" not in str(info.value), str(info.value)
