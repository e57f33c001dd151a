"""One flow behind both doors (issue 30): `asrbench run`/`compare`/`baseline update` and the
pytest door do the same things the same way: the report path checked before anything runs and a
report that cannot be written saved elsewhere (saying where), baselines refreshed through the
one refusal of interrupted reports, each run judged from a report held to its own tolerance
policy. The pytest door judges reports here (`--asrbench-from-report`, pytester in-process,
runs built by factories): nothing loads a model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from factories import BENCH_FILE, DOOR_CONFIGS, counters_document, door_report_document

from asrbench.cli.main import main


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path: Path) -> dict[str, Path]:
    """A clean two-config report, its baselines (recorded by `asrbench baseline update`), and
    the benchmark tests with a conftest that loads the plugin, in pytester's directory."""
    report = tmp_path / "report.json"
    report.write_text(json.dumps(door_report_document()), encoding="utf-8")
    assert main(["baseline", "update", "--report", str(report),
                 "--baseline-dir", str(tmp_path / "recorded")]) == 0
    shutil.copy(BENCH_FILE, pytester.path / "test_bench.py")
    (pytester.path / "conftest.py").write_text('pytest_plugins = ["asrbench.plugin"]\n')
    return {"report": report, "baselines": tmp_path / "recorded"}


def pytest_door(pytester: pytest.Pytester, report: Path, baselines: Path,
                *flags: str, **options: bool) -> tuple[pytest.RunResult, str]:
    """The pytest door judging `report` in this process: its result and terminal text."""
    result = pytester.runpytest_inprocess(
        "test_bench.py", "-p", "no:cacheprovider", "-q", "--rootdir", str(pytester.path),
        "--asrbench-from-report", str(report), "--asrbench-baseline-dir", str(baselines),
        *flags, **options)
    return result, "\n".join(result.outlines + result.errlines)


def test_each_run_of_a_judged_report_keeps_its_own_tolerance_policy(project, pytester,
                                                                    tmp_path, capsys):
    """Two runs with their own matrix tolerance (wer_abs 0.5 and 0.001) and a baseline whose
    WER both are 0.05 above: the first passes, the second fails test_wer, in both doors, and
    the pytest door's report keeps each run's policy (the plugin used to overwrite one shared
    tolerance with each run it read, so the last run's held both)."""
    document = json.loads(project["report"].read_text())
    document["runs"][0]["tolerance_policy"] = {"wer_abs": 0.5}
    document["runs"][1]["tolerance_policy"] = {"wer_abs": 0.001}
    report = tmp_path / "tolerances.json"
    report.write_text(json.dumps(document))
    folder = _worse_wer_baselines(project, tmp_path)

    capsys.readouterr()
    assert main(["compare", "--report", str(report), "--baseline-dir", str(folder)]) == 1
    text = capsys.readouterr().out
    assert f"REGRESSED  {DOOR_CONFIGS[1].id} wer" in text
    assert f"REGRESSED  {DOOR_CONFIGS[0].id}" not in text

    out = pytester.path / "gate.json"
    result, text = pytest_door(pytester, report, folder, "--asrbench-report", str(out), "-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert f"FAILED test_bench.py::test_wer[{DOOR_CONFIGS[1].id}]" in text, text
    assert f"PASSED test_bench.py::test_wer[{DOOR_CONFIGS[0].id}]" in text, text
    written = json.loads(out.read_text())
    assert [r["tolerance_policy"] for r in written["runs"]] == [{"wer_abs": 0.5},
                                                                {"wer_abs": 0.001}]


def test_the_pytest_door_saves_an_unwritable_report_elsewhere_and_says_where(project, pytester,
                                                                           monkeypatch):
    """As `asrbench run` does (tests/test_no_loss.py): the verdicts are kept, and the session
    ends non-zero as `asrbench run` does (exit 1): what was asked did not happen. The plugin
    used to end the session with an internal error and no report."""
    from asrbench.formats import io as report_io

    target = pytester.path / "out" / "gate.json"
    real = report_io.write_report

    def refuse_target(path, document):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied")
        real(path, document)

    monkeypatch.setattr(report_io, "write_report", refuse_target)
    result, text = pytest_door(pytester, project["report"], project["baselines"],
                               "--asrbench-report", str(target))
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert "asrbench: exit status 1: report not written where asked" in text, text
    assert f"asrbench: could not write {target} (Permission denied); the report was saved to " \
        in text, text
    saved = Path(text.split("the report was saved to ")[1].split()[0])
    assert saved != target and not target.exists()
    document = json.loads(saved.read_text())
    assert [r["config"]["id"] for r in document["runs"]] == [c.id for c in DOOR_CONFIGS]
    assert all(r["comparison"]["not_judged"] is None for r in document["runs"])


def test_the_pytest_door_refuses_a_report_path_it_cannot_write_before_any_test(project,
                                                                             pytester):
    """A folder named as the report: one line, exit 4 (usage error), before any test runs (the
    plugin used to run every test and fail at the end, writing nothing)."""
    folder = pytester.path / "a-folder"
    folder.mkdir()
    result, text = pytest_door(pytester, project["report"], project["baselines"],
                               "--asrbench-report", str(folder))
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert f"--asrbench-report {folder} is a directory" in text, text
    assert "Traceback" not in text and "passed" not in text, text


def test_an_interrupted_pytest_session_records_no_baseline(project, pytester, tmp_path):
    """Ctrl-C during `--asrbench-update-baselines`: the session's report is marked
    interrupted and the refresh is refused by gate.outcome.update_baselines, as `asrbench
    baseline update` refuses such a report (the plugin used to rewrite the entries from
    whatever had run)."""
    (pytester.path / "conftest.py").write_text(
        'pytest_plugins = ["asrbench.plugin"]\n'
        "def pytest_runtest_setup(item):\n"
        f"    if {DOOR_CONFIGS[1].id!r} in item.name:\n"
        "        raise KeyboardInterrupt\n")
    target = tmp_path / "new-baselines"
    target.mkdir()
    out = pytester.path / "gate.json"
    result, text = pytest_door(pytester, project["report"], target, "--asrbench-report",
                               str(out), "--asrbench-update-baselines",
                               no_reraise_ctrlc=True)  # the Ctrl-C stays in the child session
    assert result.ret == pytest.ExitCode.INTERRUPTED, text
    assert "asrbench: baselines not updated: the report is the report of an interrupted run" \
        in text, text
    assert not (target / "cpu.json").exists()
    assert f"report written to {out}, marked interrupted" in text, text
    assert json.loads(out.read_text())["interrupted"] is True


# -- the flow's steps, on their own -------------------------------------------------------------

def _no_device() -> tuple[str, str]:
    raise AssertionError("no matrix: the device class is not needed")


def test_select_counts_nothing_in_an_ab_timing_round_and_refuses_a_sharded_prescreen(
        monkeypatch):
    from asrbench import flow
    from asrbench.config.settings import AB_ROUND_VARIABLE
    from asrbench.errors import AsrbenchError

    overrides = {"dataset_config": "en", "language": "english", "limit": 3}
    assert [c.counters for c in flow.select(overrides, 2, device=_no_device).configs] == [True]
    monkeypatch.setenv(AB_ROUND_VARIABLE, "1")
    [config] = flow.select(overrides, 2, device=_no_device, nproc=2).configs
    assert (config.counters, config.world_size) == (False, 2) and config.id.endswith("-ws2")
    monkeypatch.delenv(AB_ROUND_VARIABLE)
    with pytest.raises(AsrbenchError, match="--counters-only with --shard"):
        flow.select({**overrides, "counters_only": True}, None, device=_no_device, sharded=True)


def test_measure_keeps_the_runs_a_signal_did_not_stop():
    from factories import make_run

    from asrbench import flow, processes

    class Session:
        """Evaluates the first config, and is stopped by SIGTERM in the second."""

        def evaluate(self, config, passes):
            if config is DOOR_CONFIGS[1]:
                raise processes.Ended(15)
            return make_run(config.id)

    measured = flow.measure(Session(), DOOR_CONFIGS, 1)
    assert [r.config.id for r in measured.runs] == [DOOR_CONFIGS[0].id]
    assert measured.planned == 2
    assert measured.interrupted == flow.Interruption("SIGTERM", 143)


def test_judge_names_every_selected_config_it_did_not_judge():
    from asrbench import flow
    from asrbench.gate.compare import Comparison
    from asrbench.gate.policy import Policy

    outcome = flow.judge({"a": Comparison(config_id="a")}, ["a", "b", "c"],
                         {"b": "b: baseline file unreadable"}, Policy(), "r.json", "base")
    assert outcome.not_judged == [("b", "baseline file unreadable"), ("c", flow.STOPPED_EARLY)]
    assert outcome.failed and outcome.baseline_dir == "base"


#: the gate's judging and recording: the doors reach them through asrbench/flow.py only
JUDGING = {"compare_run", "gate_runs", "gate_report", "judge_report_file", "update_baselines"}


def _door_calls(source: str) -> set[str]:
    """The names of JUDGING a door's source imports or calls, by any import path."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found |= {alias.name for alias in node.names if alias.name in JUDGING}
        elif isinstance(node, ast.Attribute) and node.attr in JUDGING:
            found.add(node.attr)
    return found


def test_every_door_judges_and_records_baselines_through_the_flow():
    """`asrbench compare`, `baseline update`, `html` and the pytest door used to call the
    gate's judging and updating themselves (judge_report_file, update_baselines, gate_report,
    compare_run), beside the flow's copy; now only asrbench/flow.py does."""
    package = Path(__file__).resolve().parent.parent / "asrbench"
    doors = sorted((package / "cli").glob("*.py")) + [package / "plugin.py"]
    calls = {path.name: _door_calls(path.read_text(encoding="utf-8")) for path in doors}
    assert {name: found for name, found in calls.items() if found} == {}
    assert _door_calls((package / "flow.py").read_text(encoding="utf-8")) == JUDGING - {"gate_runs"}
    # the scan sees both ways of reaching them
    assert _door_calls("from asrbench.gate.outcome import update_baselines\n"
                       "import asrbench.gate.compare as c\nc.compare_run(1, 2, 3)\n") == {
        "update_baselines", "compare_run"}


def test_the_doors_lines_are_made_by_render_from_the_flows_data(tmp_path):
    """The pytest door's end-of-session lines (render.doors.finished_lines on flow.Finished):
    a report saved elsewhere of an interrupted session, a config not judged, a refused
    baseline update; every line terminal-safe."""
    from factories import make_report

    from asrbench import flow
    from asrbench.gate.outcome import GateOutcome, could_not_judge
    from asrbench.render.doors import could_not_judge_line, finished_lines, missing_entry_line

    report = make_report()
    outcome = GateOutcome([could_not_judge("a", "bad\x1b[2J entry")])
    written = flow.Written(report, Path("r.json"), tmp_path / "r.json", "Permission denied")
    done = flow.Finished(outcome, [], written=written, interrupted=True,
                         baselines=flow.Refreshed(error="the report is interrupted"))
    assert finished_lines(done) == [
        f"asrbench: could not write r.json (Permission denied); the report was saved to "
        f"{tmp_path / 'r.json'}, marked interrupted (the session was interrupted)",
        "asrbench: could not judge a: bad\\x1b[2J entry",
        "asrbench: result: FAIL: could not judge 1 of 1 config(s)",
        "asrbench: baselines not updated: the report is interrupted"]
    assert finished_lines(flow.Finished(GateOutcome([]), []), "old.json") == [
        "asrbench: judged old.json; nothing written over it or reports/latest.* "
        "(--asrbench-report PATH writes this session's report and summary)"]
    assert could_not_judge_line(outcome.not_judged + [(None, "x")]) == (
        "asrbench: error: could not judge: a: bad\\x1b[2J entry (and 1 more: see above)")
    assert could_not_judge_line([]) is None
    assert missing_entry_line("cfg\x1b", Path("b/cpu.json"), ["benchmarks", "-k", "a b"],
                              "asrbench baseline update --report r.json --only cfg") == (
        "no baseline entry for cfg\\x1b in b/cpu.json; create it with: pytest benchmarks -k "
        "'a b' --asrbench-update-baselines   (or: asrbench baseline update --report r.json "
        "--only cfg)")


def _worse_wer_baselines(project: dict[str, Path], tmp_path: Path) -> Path:
    """The project's baselines with every stored WER 0.05 lower: the clean report regresses."""
    baseline = json.loads((project["baselines"] / "cpu.json").read_text())
    for config in DOOR_CONFIGS:
        baseline["entries"][config.id]["metrics"]["wer"] -= 0.05
    folder = tmp_path / "lower"
    folder.mkdir()
    (folder / "cpu.json").write_text(json.dumps(baseline))
    return folder


def test_the_exit_status_never_contradicts_a_failing_summary(project, pytester, tmp_path):
    """`-k` deselects the failing test_wer: every selected test passes, but the gate's Markdown
    summary judges the whole run and fails. The session used to exit 0 under a red summary;
    now it exits 1 and says why (`asrbench compare` exits 1 on the same input)."""
    folder = _worse_wer_baselines(project, tmp_path)
    out = pytester.path / "gate.json"
    result, text = pytest_door(pytester, project["report"], folder, "--asrbench-report",
                               str(out), "-k", "test_cer")
    assert "failed" not in text.split("asrbench:")[0], text  # the selected tests passed
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert "asrbench: exit status 1: the gate's summary fails, though the selected tests " \
        "passed" in text, text
    assert "fail" in out.with_suffix(".md").read_text(encoding="utf-8").lower()
    assert main(["compare", "--report", str(project["report"]), "--baseline-dir",
                 str(folder)]) == 1


def test_a_refresh_that_writes_nothing_ends_the_session_red(project, pytester, tmp_path):
    """--asrbench-update-baselines into a folder whose cpu.json is truncated: nothing can be
    recorded. `asrbench baseline update` exits 2 there; the pytest door used to print the
    reason and exit 0, so a CI job refreshing baselines went green having written nothing."""
    broken = tmp_path / "broken"
    broken.mkdir()
    text_before = (project["baselines"] / "cpu.json").read_text()[:40]
    (broken / "cpu.json").write_text(text_before)
    result, text = pytest_door(pytester, project["report"], project["baselines"],
                               "--asrbench-report", str(pytester.path / "gate.json"),
                               "--asrbench-update-baselines")
    assert result.ret == pytest.ExitCode.OK, text  # control: a refresh that works stays green
    result, text = pytest_door(pytester, project["report"], broken,
                               "--asrbench-report", str(pytester.path / "gate2.json"),
                               "--asrbench-update-baselines")
    assert result.ret != pytest.ExitCode.OK, text
    assert "baselines not updated" in text, text
    assert (broken / "cpu.json").read_text() == text_before  # nothing written over it


def test_a_report_with_one_id_twice_is_refused_by_every_door(project, pytester, tmp_path,
                                                            capsys):
    """A hand-edited report holding a bad run and then the good one under the same id: the
    pytest door kept the last run only (and passed) while `compare` judged both (and failed).
    Both refuse it now in one line, as does `baseline update`."""
    document = json.loads(project["report"].read_text())
    document["runs"].insert(0, json.loads(json.dumps(document["runs"][0])))
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["compare", "--report", str(twice), "--baseline-dir",
                 str(project["baselines"])]) == 2
    assert f"two runs have the id {DOOR_CONFIGS[0].id}" in capsys.readouterr().out
    assert main(["baseline", "update", "--report", str(twice), "--baseline-dir",
                 str(tmp_path / "other")]) == 2
    assert f"two runs have the id {DOOR_CONFIGS[0].id}" in capsys.readouterr().err
    result, text = pytest_door(pytester, twice, project["baselines"])
    assert result.ret != pytest.ExitCode.OK, text
    assert f"two runs have the id {DOOR_CONFIGS[0].id}" in text, text


def test_settings_that_cannot_apply_to_a_judged_report_are_refused(project, pytester):
    """--asrbench-from-report with --asrbench-model / --asrbench-limit: the report's runs were
    judged as they were and the options ignored without a word (a green session that looked
    as if it had judged another model)."""
    result, text = pytest_door(pytester, project["report"], project["baselines"],
                               "--asrbench-model", "openai/whisper-small",
                               "--asrbench-limit", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "limit, model cannot apply to them" in text, text
    # what selects or runs configs, even with values that were never checked
    result, text = pytest_door(pytester, project["report"], project["baselines"],
                               "--asrbench-passes", "-3", "--asrbench-nproc", "-5",
                               "--asrbench-matrix", "/nonexistent")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert ("--asrbench-passes, --asrbench-nproc, --asrbench-matrix cannot apply to them"
            in text), text
    result, text = pytest_door(pytester, project["report"], project["baselines"])
    assert result.ret == pytest.ExitCode.OK, text  # the control: nothing given, judged


def test_collect_only_lists_the_tests_and_judges_nothing(project, pytester):
    """`pytest --collect-only` ran no test: the door used to judge the selected configs as
    "could not judge", write a red summary and exit 1."""
    out = pytester.path / "listed.json"
    result, text = pytest_door(pytester, project["report"], project["baselines"],
                               "--asrbench-report", str(out), "--collect-only")
    assert result.ret == pytest.ExitCode.OK, text
    assert "could not judge" not in text and f"test_wer[{DOOR_CONFIGS[0].id}]" in text, text
    assert not out.exists() and not out.with_suffix(".md").exists()


def test_every_door_refuses_a_run_whose_id_is_not_its_settings(project, pytester, tmp_path,
                                                               capsys):
    """A run's id is its baseline key. A report whose run carries another config's id (a
    3-clip run named as the 4-clip config) would be judged against, or recorded into, that
    config's entry: `compare` judged it and `baseline update` wrote it there, where the pytest
    door refused it. Every door refuses it now, in one line naming the id its settings give."""
    document = door_report_document()
    one, other = DOOR_CONFIGS
    document["runs"] = [document["runs"][0]]
    document["runs"][0]["config"]["id"] = other.id  # the 3-clip run under the 4-clip id
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps(document), encoding="utf-8")
    gives = f"its settings give the id {one.id}"
    before = (project["baselines"] / "cpu.json").read_bytes()

    assert main(["compare", "--report", str(renamed),
                 "--baseline-dir", str(project["baselines"])]) == 2  # invalid input
    captured = capsys.readouterr()
    assert gives in captured.out + captured.err
    assert main(["baseline", "update", "--report", str(renamed),
                 "--baseline-dir", str(project["baselines"])]) == 2
    assert gives in capsys.readouterr().err
    assert (project["baselines"] / "cpu.json").read_bytes() == before  # nothing written
    result, text = pytest_door(pytester, renamed, project["baselines"])
    assert result.ret != 0 and gives in text


def _counters_only_report(tmp_path: Path) -> Path:
    """A report of DOOR_CONFIGS' first config run counters-only (no throughput)."""
    document = door_report_document()
    run = document["runs"][0]
    config = DOOR_CONFIGS[0].replace(counters=True, counters_only=True)
    run["config"] = {**config.to_dict(), "id": config.id}
    run["counters"] = counters_document()
    run.pop("throughput", None)
    run["metrics"].pop("samples_per_second", None)
    document["runs"] = [run]
    path = tmp_path / "counters-only.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_missing_entry_hint_for_a_counters_only_run_says_to_record_a_timed_run(
        pytester, tmp_path, capsys):
    """A counters-only run measured no throughput, so no entry can be created from it (`baseline
    update` refuses). The hints for a missing entry said to run exactly that refused command
    (`compare`, its Markdown, a missing folder, the pytest door's
    --asrbench-update-baselines); they say to record from a timed run now."""
    report = _counters_only_report(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    markdown = tmp_path / "summary.md"
    assert main(["compare", "--report", str(report), "--baseline-dir", str(empty),
                 "--markdown", str(markdown)]) == 1
    out = capsys.readouterr().out
    assert "create the missing entries with: a timed run of the same settings (asrbench run " \
        "without --counters-only), then: asrbench baseline update --report <its report>" in out
    # the Markdown says it in words: a code block would hold prose that cannot be run
    summary = markdown.read_text(encoding="utf-8")
    assert "❌ **Missing baseline entries**; create them from a timed run of the same " \
        "settings" in summary and "```" not in summary, summary
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(empty)]) == 2  # what the old hint said to run
    assert "record the entry from a timed run first" in capsys.readouterr().err
    assert main(["compare", "--report", str(report), "--baseline-dir",
                 str(tmp_path / "nowhere")]) == 2
    captured = capsys.readouterr()
    assert ("--report <a timed run's report> --baseline-dir" in captured.out + captured.err)
    shutil.copy(BENCH_FILE, pytester.path / "test_bench.py")
    (pytester.path / "conftest.py").write_text('pytest_plugins = ["asrbench.plugin"]\n')
    result, text = pytest_door(pytester, report, empty)
    assert result.ret == 1
    assert "a counters-only run measured no throughput to create it from: record it from a " \
        "timed run, pytest" in text and "--asrbench-counters-only" not in text.split(
            "record it from a timed run, pytest")[1].split("--asrbench-update-baselines")[0]


def test_a_sigterm_ends_a_pytest_session_as_an_interruption_not_a_stale_green_summary(
        project, pytester, tmp_path):
    """A CI job cancelled or timed out sends SIGTERM. It used to kill the pytest session with
    no word, leaving the previous session's green report and summary where a later "always"
    step would publish them. Now it ends the session as Ctrl-C does: the finished configs'
    report marked interrupted, "could not judge" for the rest, a failing exit status."""
    (pytester.path / "conftest.py").write_text(
        'pytest_plugins = ["asrbench.plugin"]\n'
        "import os, signal\n"
        "def pytest_runtest_setup(item):\n"
        f"    if {DOOR_CONFIGS[1].id!r} in item.name:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n")
    shutil.copy(BENCH_FILE, pytester.path / "test_bench.py")
    out = pytester.path / "gate.json"
    out.write_text('{"stale": "a green report of an earlier session"}', encoding="utf-8")
    out.with_suffix(".md").write_text("**✅ no failure** (stale)\n", encoding="utf-8")
    result = pytester.runpytest_subprocess(
        "test_bench.py", "-p", "no:cacheprovider", "-q", "--rootdir", str(pytester.path),
        "--asrbench-from-report", str(project["report"]),
        "--asrbench-baseline-dir", str(project["baselines"]), "--asrbench-report", str(out))
    text = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.INTERRUPTED, text
    assert "SIGTERM: the session was asked to stop" in text, text
    assert f"report written to {out}, marked interrupted" in text, text
    assert json.loads(out.read_text())["interrupted"] is True
    summary = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "stale" not in summary and "could not judge" in summary, summary


@pytest.mark.parametrize("when", ["collecting", "before-the-first-config"])
def test_a_session_interrupted_before_any_config_ran_leaves_no_green_summary(
        project, pytester, tmp_path, tiny_whisper, when):
    """Ctrl-C (or SIGTERM) while the benchmarks are collected (the device probe and preflight:
    seconds here, minutes on a Gaudi) returned without a word: the earlier session's green
    summary stayed, pytest said only "no tests ran". Interrupted after collection but before
    any config finished, the summary said "could not judge" but not that the report at the
    path asked for is an earlier session's."""
    hook = ("import pytest\n"
            "@pytest.hookimpl(trylast=True)\n"
            "def pytest_generate_tests(metafunc):\n"
            "    if 'bench_config' in metafunc.fixturenames:\n"
            "        raise KeyboardInterrupt\n") if when == "collecting" else (
            "def pytest_runtest_setup(item):\n"
            "    raise KeyboardInterrupt\n")
    (pytester.path / "conftest.py").write_text('pytest_plugins = ["asrbench.plugin"]\n' + hook)
    out = pytester.path / "gate.json"
    out.write_text('{"stale": "a green report of an earlier session"}', encoding="utf-8")
    out.with_suffix(".md").write_text("**✅ no failure** (stale)\n", encoding="utf-8")
    result = pytester.runpytest_inprocess(  # the measuring door: nothing measured yet
        "test_bench.py", "-p", "no:cacheprovider", "-q", "--rootdir", str(pytester.path),
        "--asrbench-model", str(tiny_whisper), "--asrbench-dataset-config", "en",
        "--asrbench-language", "english", "--asrbench-limit", "2",
        "--asrbench-matrix", str(BENCH_FILE.parent / "matrix.toml"),
        "--asrbench-baseline-dir", str(project["baselines"]), "--asrbench-report", str(out),
        no_reraise_ctrlc=True)
    text = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.INTERRUPTED, text
    assert out.read_text(encoding="utf-8").startswith('{"stale"')  # left, and said so
    summary = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "stale" not in summary and "could not judge" in summary, summary
    assert f"{out} is an earlier session's, left as it was" in text, text
    if when == "collecting":
        assert "could not judge: the session was interrupted while its benchmarks were " \
               "collected" in text, text
    else:
        assert "no config ran, no report written" in text, text


def test_a_session_that_deselected_every_benchmark_writes_no_summary_when_interrupted(
        project, pytester, tmp_path, tiny_whisper):
    """A unit-test session (`-k` deselecting every benchmark) interrupted while running its
    tests never ran the gate: it must not write a "could not judge" summary over an earlier
    session's (only a stop during collection, before any choice was made, says so)."""
    (pytester.path / "conftest.py").write_text(
        'pytest_plugins = ["asrbench.plugin"]\n'
        "def pytest_runtest_setup(item):\n"
        "    raise KeyboardInterrupt\n")
    (pytester.path / "test_unit.py").write_text("def test_unit():\n    pass\n")
    out = pytester.path / "gate.json"
    summary = out.with_suffix(".md")
    summary.write_text("an earlier session's summary\n", encoding="utf-8")
    result = pytester.runpytest_inprocess(
        "test_bench.py", "test_unit.py", "-k", "test_unit", "-p", "no:cacheprovider", "-q",
        "--rootdir", str(pytester.path), "--asrbench-model", str(tiny_whisper),
        "--asrbench-dataset-config", "en", "--asrbench-language", "english",
        "--asrbench-limit", "2", "--asrbench-matrix", str(BENCH_FILE.parent / "matrix.toml"),
        "--asrbench-baseline-dir", str(project["baselines"]), "--asrbench-report", str(out),
        no_reraise_ctrlc=True)
    text = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.INTERRUPTED, text
    assert "deselected" in text, text
    assert summary.read_text(encoding="utf-8") == "an earlier session's summary\n"
    assert "could not judge" not in text, text
