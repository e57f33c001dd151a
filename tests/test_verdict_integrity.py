"""Verdicts that never lie (issue 28): a catalogue of hostile and edge inputs, each judged by
both doors, `asrbench compare` (the CLI's main, in-process) and the pytest door judging a report
(`--asrbench-from-report`, pytester in-process: no model runs). Both must give the same verdict,
and no path may say "no failure" unless every selected config was judged: anything that stops
the judging is a failing "could not judge: <reason>" with a non-zero exit, in the terminal and
in the Markdown summary (and in the pytest door's report JSON).

Then the wording the issue found wrong: counts as integers, one-sided bands, warnings that are
not "❌", headline numbers that agree with the verdict, hints that carry the options given, and
the pytest door leaving reports/latest.* and the judged report alone. Everything is built from
factories; nothing loads a model.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from factories import (
    BENCH_FILE,
    DOOR_CONFIGS,
    counters_document,
    door_report_document,
    make_entry,
    make_run,
)
from pydantic import ValidationError

from asrbench.cli.main import main
from asrbench.formats.model import Counters, predictions_digest
from asrbench.gate.compare import Comparison, compare_run
from asrbench.gate.counters import counter_verdicts
from asrbench.gate.policy import Policy
from asrbench.render.text import gate_text, markdown_summary

DIGEST_B = "b" * 64


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A scratch project: a clean two-config report, its baseline (recorded with `asrbench
    baseline update`), the benchmark tests and a conftest that loads the plugin."""
    root = tmp_path_factory.mktemp("integrity")
    (root / "report.json").write_text(json.dumps(door_report_document()), encoding="utf-8")
    assert main(["baseline", "update", "--report", str(root / "report.json"),
                 "--baseline-dir", str(root / "recorded")]) == 0
    shutil.copy(BENCH_FILE, root / "test_bench.py")
    (root / "conftest.py").write_text('pytest_plugins = ["asrbench.plugin"]\n')
    return root


# -- the catalogue: (what is done to the report, to the baseline document, the folder) -------

def _entry(document: dict, index: int = 0) -> dict:
    return document["entries"][DOOR_CONFIGS[index].id]


def _other_model(report: dict, baseline: dict) -> None:
    report["runs"][0]["model"]["weights_sha256"] = DIGEST_B


def _other_normalizer(report: dict, baseline: dict) -> None:
    _entry(baseline)["normalizer"] = "asrbench-basic-marks/0"


def _counters_removed(report: dict, baseline: dict) -> None:
    del report["runs"][0]["counters"]  # its settings still say counters on


def _future_counters(report: dict, baseline: dict) -> None:
    report["runs"][0]["counters"]["version"] = 99


def _old_baseline_counters(report: dict, baseline: dict) -> None:
    _entry(baseline)["counters"]["version"] = 1  # recorded by an older asrbench


def _bool_count(report: dict, baseline: dict) -> None:
    report["runs"][0]["counters"]["encoder_calls"] = True


def _broken_baseline(report: dict, baseline: dict) -> None:
    _entry(baseline)["metrics"]["wer"] = "low"


def _interrupted(report: dict, baseline: dict) -> None:
    report["interrupted"] = True


def _stated_samples(report: dict, baseline: dict) -> None:
    # the headline kept from another run: its passes say 2.0 samples/s (it passed the gate)
    report["runs"][0]["metrics"]["samples_per_second"] = 20.0


def _inflated_spread(report: dict, baseline: dict) -> None:
    # a spread of 500% makes the band of an entry from several processes swallow any drop
    report["runs"][0]["throughput"]["samples_per_second_rsd"] = 5.0


def _baseline_spread(report: dict, baseline: dict) -> None:
    _entry(baseline)["noise"]["samples_per_second_rsd"] = 1e300  # a band of 3e300


def _baseline_negative_passes(report: dict, baseline: dict) -> None:
    _entry(baseline)["noise"]["samples_per_second_per_pass"] = [-1.0, -1.0, -1.0]


#: name -> (mutation, what the reason must say, whether the whole input is refused: the
#: pytest door then stops as a usage error before any test)
CATALOGUE: dict[str, tuple[Callable[[dict, dict], None], str, bool]] = {
    "other-model": (_other_model, "is not the baseline's", False),
    "other-normalizer": (_other_normalizer, "asrbench-basic-marks/0", False),
    "counters-removed": (_counters_removed, "say it was counted", False),
    "future-counters-version": (_future_counters, "version 99", False),
    "old-baseline-counters": (_old_baseline_counters, "entry's counters are version 1", False),
    "broken-baseline": (_broken_baseline, "metrics.wer: expected a number", False),
    "bool-count": (_bool_count, "encoder_calls", True),
    "interrupted-report": (_interrupted, "interrupted", True),
    "stated-samples": (_stated_samples, "metrics.samples_per_second 20, where its 3 timed "
                       "pass(es) give 2: the report's samples/s disagrees with its passes", False),
    "inflated-spread": (_inflated_spread, "throughput.samples_per_second_rsd 5, where its 3 "
                        "timed pass(es) give 0.01", False),
    "baseline-spread": (_baseline_spread, "noise.samples_per_second_rsd", False),
    "baseline-negative-passes": (_baseline_negative_passes,
                                 "noise.samples_per_second_per_pass", False),
}


#: catalogue cases whose baseline file as a whole is refused on loading
UNREADABLE_BASELINE = frozenset({"broken-baseline", "baseline-spread",
                                 "baseline-negative-passes"})


def _case(scratch: Path, name: str) -> tuple[Path, Path]:
    """The report and baseline folder of one catalogue case (written once per module)."""
    directory = scratch / name
    if not directory.exists():
        report = door_report_document()
        baseline = json.loads((scratch / "recorded" / "cpu.json").read_text())
        if name in CATALOGUE:
            CATALOGUE[name][0](report, baseline)
        (directory / "baselines").mkdir(parents=True)
        (directory / "report.json").write_text(json.dumps(report))
        (directory / "baselines" / "cpu.json").write_text(json.dumps(baseline))
    return directory / "report.json", directory / "baselines"


def compare_door(report: Path, baselines: Path, capsys, *flags: str) -> tuple[int, str, str]:
    """`asrbench compare`: exit status, terminal output (both streams), Markdown summary."""
    markdown = report.parent / "compare.md"
    capsys.readouterr()
    code = main(["compare", "--report", str(report), "--baseline-dir", str(baselines),
                 "--markdown", str(markdown), *flags])
    captured = capsys.readouterr()
    return code, captured.out + captured.err, markdown.read_text(encoding="utf-8")


def pytest_door(pytester: pytest.Pytester, scratch: Path, report: Path, baselines: Path,
                *flags: str) -> tuple[int, str, str, dict | None]:
    """The pytest door judging `report`, in-process: exit status, terminal output, Markdown
    summary ("" when none was written) and its report JSON (None when none was written)."""
    shutil.copy(scratch / "test_bench.py", pytester.path / "test_bench.py")
    shutil.copy(scratch / "conftest.py", pytester.path / "conftest.py")
    out = pytester.path / "gate.json"
    result = pytester.runpytest_inprocess(
        "test_bench.py", "-p", "no:cacheprovider", "-q", "--rootdir", str(pytester.path),
        "--asrbench-from-report", str(report), "--asrbench-baseline-dir", str(baselines),
        "--asrbench-report", str(out), *flags)
    text = "\n".join(result.outlines + result.errlines)
    markdown = out.with_suffix(".md")
    return (int(result.ret), text,
            markdown.read_text(encoding="utf-8") if markdown.exists() else "",
            json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_both_doors_say_could_not_judge_and_fail(scratch, pytester, capsys, name):
    _, reason, whole_input = CATALOGUE[name]
    report, baselines = _case(scratch, name)
    code, out, markdown = compare_door(report, baselines, capsys)
    assert code == 2, out
    assert "could not judge" in out and reason in out, out
    assert "could not judge" in markdown and "no failure" not in markdown, markdown
    assert "result: ok" not in out

    code, out, markdown, document = pytest_door(pytester, scratch, report, baselines)
    assert code != 0, out
    assert reason in out, out
    assert "no failure" not in markdown
    if whole_input:  # refused before any test: a usage error, one line, no traceback
        assert code == pytest.ExitCode.USAGE_ERROR and "Traceback" not in out, out
        assert "could not judge" in markdown, markdown
        return
    assert "could not judge" in out and "could not judge" in markdown, out
    # the report JSON says it too, for the config that could not be judged
    by_id = {r["config"]["id"]: r["comparison"] for r in document["runs"]}
    assert reason in by_id[DOOR_CONFIGS[0].id]["not_judged"]
    if name in UNREADABLE_BASELINE:  # the whole file is refused: neither config is judged
        assert reason in by_id[DOOR_CONFIGS[1].id]["not_judged"]
    else:
        assert by_id[DOOR_CONFIGS[1].id]["not_judged"] is None  # the other config was judged


def test_a_clean_report_passes_in_both_doors(scratch, pytester, capsys):
    report, baselines = _case(scratch, "clean")
    code, out, markdown = compare_door(report, baselines, capsys)
    assert code == 0 and "result: ok" in out, out
    assert "**✅ no failure** across 2 config(s)." in markdown
    code, out, markdown, document = pytest_door(pytester, scratch, report, baselines)
    assert code == 0, out
    assert "**✅ no failure** across 2 config(s)." in markdown
    assert [r["comparison"]["not_judged"] for r in document["runs"]] == [None, None]


def test_a_missing_baseline_folder_is_bad_input_naming_it_in_both_doors(scratch, pytester,
                                                                        capsys):
    report, _ = _case(scratch, "clean")
    missing = scratch / "no-such-folder"
    # --allow-missing-baselines must not turn a mistyped folder into "every entry is new"
    code, out, markdown = compare_door(report, missing, capsys, "--allow-missing-baselines")
    assert code == 2, out
    assert f"baseline folder {missing} does not exist" in out
    assert f"--baseline-dir {missing}" in out  # the hint writes where the user pointed
    assert "missing: no baseline entry" not in out and "no failure" not in markdown
    code, out, markdown, _ = pytest_door(pytester, scratch, report, missing,
                                         "--asrbench-allow-missing-baselines")
    assert code != 0 and f"baseline folder {missing} does not exist" in out, out
    assert "could not judge" in markdown and "no failure" not in markdown


def test_a_config_the_session_stopped_before_is_not_counted_as_passed(scratch, pytester):
    """-x stops the session at the first failure: the config whose tests never ran is "could
    not judge", not left out of a summary that counts only what was judged."""
    report, _ = _case(scratch, "clean")
    baseline = json.loads((scratch / "recorded" / "cpu.json").read_text())
    _entry(baseline)["metrics"]["wer"] += 0.05  # the first config fails test_wer
    folder = pytester.path / "stopped"
    folder.mkdir()
    (folder / "cpu.json").write_text(json.dumps(baseline))
    code, out, markdown, _ = pytest_door(pytester, scratch, report, folder, "-x")
    assert code == 1, out
    assert f"could not judge {DOOR_CONFIGS[1].id}: its tests did not run" in out, out
    assert "**❌ 2 config(s) fail** across 2 config(s); could not judge 1." in markdown


def test_judging_a_report_writes_over_neither_latest_nor_the_judged_report(scratch, pytester):
    report, baselines = _case(scratch, "clean")
    judged = pytester.path / "judged.json"
    shutil.copy(report, judged)
    before = judged.read_bytes()
    latest = pytester.path / "reports" / "latest.json"
    latest.parent.mkdir()
    latest.write_text('{"written by": "bench"}')
    (pytester.path / "reports" / "latest.md").write_text("bench summary")
    shutil.copy(scratch / "test_bench.py", pytester.path / "test_bench.py")
    shutil.copy(scratch / "conftest.py", pytester.path / "conftest.py")
    result = pytester.runpytest_inprocess(
        "test_bench.py", "-p", "no:cacheprovider", "-q", "--rootdir", str(pytester.path),
        "--asrbench-from-report", str(judged), "--asrbench-baseline-dir", str(baselines))
    assert result.ret == 0, result.outlines
    assert judged.read_bytes() == before  # provenance kept: argv, created, no comparison
    assert latest.read_text() == '{"written by": "bench"}'
    assert (pytester.path / "reports" / "latest.md").read_text() == "bench summary"
    assert "nothing written over it" in "\n".join(result.outlines)
    # naming the judged report as the session's report is refused, before anything runs
    result = pytester.runpytest_inprocess(
        "test_bench.py", "-p", "no:cacheprovider", "-q", "--rootdir", str(pytester.path),
        "--asrbench-from-report", str(judged), "--asrbench-baseline-dir", str(baselines),
        "--asrbench-report", str(judged))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert judged.read_bytes() == before


def test_a_usage_error_of_the_pytest_door_is_one_line_not_a_traceback(pytester, scratch):
    shutil.copy(scratch / "test_bench.py", pytester.path / "test_bench.py")
    shutil.copy(scratch / "conftest.py", pytester.path / "conftest.py")
    result = pytester.runpytest_inprocess("test_bench.py", "-p", "no:cacheprovider",
                                          "--asrbench-nproc", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = "\n".join(result.outlines + result.errlines)
    assert "--asrbench-nproc must be >= 1, got 0" in text
    assert "pluggy/_" not in text and "_pytest/python.py" not in text, text
    assert "Traceback" not in text and "ERROR collecting" not in text, text


# -- property: random mixes of clean and hostile configs --------------------------------------

#: the per-config cases (the others refuse the whole input)
PER_CONFIG = [name for name, (_, _, whole) in CATALOGUE.items()
              if whole is False and name != "broken-baseline"]


def _mutate(report: dict, baseline: dict, index: int, name: str) -> None:
    """Apply a per-config catalogue case to config `index` instead of the first."""
    runs, entries = report["runs"], baseline["entries"]
    first = DOOR_CONFIGS[0].id
    report["runs"] = [runs[index]]
    baseline["entries"] = {first: entries[DOOR_CONFIGS[index].id]}
    runs[index]["config"]["id"] = first  # the mutations address config 0
    CATALOGUE[name][0](report, baseline)
    runs[index]["config"]["id"] = DOOR_CONFIGS[index].id
    entries[DOOR_CONFIGS[index].id] = baseline["entries"][first]
    report["runs"], baseline["entries"] = runs, entries


def test_random_mixes_no_failure_only_when_every_config_was_judged(scratch, tmp_path, capsys):
    """Seeded random mixes: each config clean or hostile. "No failure" (exit 0) exactly when
    every config is clean, and every hostile config is named as could not judge."""
    rng = random.Random(28)
    clean_report = door_report_document()
    clean_baseline = json.loads((scratch / "recorded" / "cpu.json").read_text())
    seen = set()
    for trial in range(12):
        choice = tuple(rng.choice([None, *PER_CONFIG]) for _ in DOOR_CONFIGS)
        seen.add(choice)
        report, baseline = copy.deepcopy(clean_report), copy.deepcopy(clean_baseline)
        for index, name in enumerate(choice):
            if name is not None:
                _mutate(report, baseline, index, name)
        folder = tmp_path / f"t{trial}"
        (folder / "b").mkdir(parents=True)
        (folder / "r.json").write_text(json.dumps(report))
        (folder / "b" / "cpu.json").write_text(json.dumps(baseline))
        code, out, markdown = compare_door(folder / "r.json", folder / "b", capsys)
        hostile = [DOOR_CONFIGS[i].id for i, name in enumerate(choice) if name is not None]
        assert code == (2 if hostile else 0), (choice, out)
        assert ("no failure" in markdown) == (not hostile), (choice, markdown)
        assert markdown.count("could not judge**") == len(hostile), (choice, markdown)
        for config_id in hostile:
            assert f"### {config_id}\n\n❌ **could not judge**" in markdown
    assert len(seen) > 4  # the mixes were varied


# -- counters that cannot be compared, refused in one line -------------------------------------

def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("asrbench: error: ") and "\n" not in err, err
    return err


def test_baseline_update_refuses_counters_it_cannot_record(scratch, tmp_path, capsys):
    for name, reason in (("future-counters-version", "version 99"),
                         ("counters-removed", "say it was counted"),
                         ("bool-count", "encoder_calls")):
        report, _ = _case(scratch, name)
        target = tmp_path / name
        capsys.readouterr()
        assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                     str(target)]) == 2, name
        assert reason in _one_line_error(capsys)
        assert not (target / "cpu.json").exists()


def test_counters_only_refuses_the_report_of_another_model(scratch, tmp_path, capsys):
    report, baselines = _case(scratch, "other-model")
    target = tmp_path / "b"
    shutil.copytree(baselines, target)
    before = (target / "cpu.json").read_text()
    capsys.readouterr()
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir", str(target),
                 "--counters-only", "--only", DOOR_CONFIGS[0].id]) == 2
    assert "is not the baseline's" in _one_line_error(capsys)
    assert (target / "cpu.json").read_text() == before


def test_a_boolean_is_not_a_count():
    """True is refused where a count belongs (pydantic's strict int), naming the field."""
    for changes, loc in (({"encoder_calls": True}, ("encoder_calls",)),
                         ({"decode_step_ops": {"aten.mm f32": True}},
                          ("decode_step_ops", "aten.mm f32"))):
        with pytest.raises(ValidationError) as refused:
            Counters.model_validate(counters_document(**changes))
        assert [(e["loc"], e["type"], e["input"]) for e in refused.value.errors()] == [
            (loc, "int_type", True)]
    assert Counters.model_validate(counters_document()).encoder_calls == 1


# -- wording: summaries, numbers, headlines ------------------------------------------------------

def _counted(step_ops: dict[str, int]) -> Counters:
    return Counters.model_validate(counters_document(decode_step_ops=step_ops))


def test_counts_print_as_integers_and_exact_bands_as_exact():
    same = counter_verdicts("cfg", _counted({"aten.mm f32": 386}), _counted({"aten.mm f32": 380}))
    text = gate_text([Comparison(config_id="cfg", verdicts=same)], Policy(), None)
    assert "counters.decode_step_ops: 380 -> 386 (+6, allowed exact)" in text, text
    assert ".0000" not in text.split("counters.decode_step_ops")[1].split("\n")[0]


def test_a_mixed_change_headline_names_what_regressed():
    """One op up by 2, another down by 4: the total fell, but the verdict is a regression
    (an op more): the headline counts the ops that went up, the note keeps the total."""
    verdicts = counter_verdicts("cfg", _counted({"aten.mm f32": 49, "aten.add f32": 456}),
                                _counted({"aten.mm f32": 47, "aten.add f32": 460}))
    step = next(v for v in verdicts if v.metric == "counters.decode_step_ops")
    assert step.verdict == "regressed"
    assert (step.baseline, step.value, step.delta) == (47.0, 49.0, 2.0)
    assert "all ops 507 -> 505" in step.note


def test_throughput_band_is_one_sided_and_a_warned_regression_is_not_a_red_cross():
    run = make_run("cfg", rates=(1.0, 1.0, 1.0))
    base = make_run("cfg", rates=(10.0, 10.1, 9.9))
    comparison = compare_run(run, make_entry(base))
    policy = Policy(throughput="warn")
    markdown = markdown_summary([comparison], policy)
    assert "**✅ no failure** across 1 config(s)." in markdown
    assert "❌" not in markdown and "⚠️ regressed (warns)" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| samples_per_second"))
    # a one-process entry's band is at least 60% (issue 28): 6 of 10 samples/s, a drop allowed
    assert "±" not in row and "| -6 |" in row, row
    text = gate_text([comparison], policy, None)
    assert "allowed -6)" in text and "result: ok" in text


def test_a_not_counted_run_prints_no_empty_numbers():
    run = make_run("cfg")
    comparison = compare_run(run, make_entry(run)).model_copy()
    comparison.verdicts += counter_verdicts("cfg", None, _counted({"aten.mm f32": 1}))
    text = gate_text([comparison], Policy(), None)
    line = next(line for line in text.splitlines() if " counters:" in line)
    assert line.startswith("SKIPPED") and "- -> -" not in line, line


def test_summaries_count_only_the_configs_that_were_run(scratch, capsys, tmp_path):
    """Four baseline entries, two runs that both fail: "2 of 2", not "2 of 4"."""
    report = door_report_document()
    baseline = json.loads((scratch / "recorded" / "cpu.json").read_text())
    for index in range(2):
        _entry(baseline, index)["predictions"]["u2"] = "on a mat"
        _entry(baseline, index)["predictions_sha256"] = predictions_digest(
            _entry(baseline, index)["predictions"])
        baseline["entries"][f"not-run-{index}"] = copy.deepcopy(_entry(baseline, index))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cpu.json").write_text(json.dumps(baseline))
    (tmp_path / "r.json").write_text(json.dumps(report))
    code, out, markdown = compare_door(tmp_path / "r.json", tmp_path / "b", capsys)
    assert code == 1, out
    assert "**❌ 2 config(s) fail** across 2 config(s)." in markdown
    assert "2 baseline entries with no run in this report (not a failure)" in markdown


def test_a_problem_with_the_whole_input_renders_as_could_not_judge():
    from asrbench.gate.outcome import GateOutcome

    outcome = GateOutcome([], Policy(), problems=["report r.json not found"])
    assert outcome.failed and outcome.exit_code == 2
    from asrbench.render.text import outcome_markdown, outcome_text

    assert "**❌ could not judge**: report r.json not found" in outcome_markdown(outcome)
    assert outcome_text(outcome).endswith("result: FAIL (could not judge the input)")


def test_refusal_hints_carry_the_report_and_baseline_folder_given(scratch, pytester, capsys):
    """The normalizer refusal suggests re-recording the entry: the command it prints names the
    report judged and the folder read, so following it cannot write into baselines/."""
    report, baselines = _case(scratch, "other-normalizer")
    command = f"asrbench baseline update --report {report} --baseline-dir {baselines} --only"
    code, out, markdown = compare_door(report, baselines, capsys)
    assert code == 2 and command in out, out
    assert "&lt;this report&gt;" not in markdown and "<this report>" not in out
    code, out, _, _ = pytest_door(pytester, scratch, report, baselines)
    assert code == 1 and command in out, out


def test_a_config_skipped_before_its_verdict_fails_the_session(scratch, pytester):
    """A project's conftest skips one config's tests in set-up: pytest alone would exit 0 and
    the summary would say "no failure across 1 config(s)"; the gate says it could not judge
    that config and the session's exit status is non-zero."""
    report, baselines = _case(scratch, "clean")
    (pytester.path / "conftest.py").write_text(
        'pytest_plugins = ["asrbench.plugin"]\n'
        "import pytest\n"
        "def pytest_runtest_setup(item):\n"
        f"    if {DOOR_CONFIGS[1].id!r} in item.name:\n"
        "        pytest.skip('not on this machine')\n")
    shutil.copy(scratch / "test_bench.py", pytester.path / "test_bench.py")
    out = pytester.path / "gate.json"
    result = pytester.runpytest_inprocess(
        "test_bench.py", "-p", "no:cacheprovider", "-q", "--rootdir", str(pytester.path),
        "--asrbench-from-report", str(report), "--asrbench-baseline-dir", str(baselines),
        "--asrbench-report", str(out))
    text = "\n".join(result.outlines)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert (f"could not judge {DOOR_CONFIGS[1].id}: its tests were skipped before a verdict: "
            "not on this machine") in text
    markdown = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "**❌ 1 config(s) fail** across 2 config(s); could not judge 1." in markdown
