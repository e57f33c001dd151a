"""`asrbench ab`: end to end on the embedded corpus (two sides that truly differ, identical
sides, two environments), and its pieces on hand-built data (verdicts, JSON, interruption).

The end-to-end A/Bs run the tiny random Whisper (conftest's tiny_whisper: whisper-base's
tokenizer and window, 1.7 M weights): what they test is the A/B around the model (rounds,
processes, pairing, decisions, reports), and a whisper-base process of this workload took
~30 s on a 2-core runner (three A/Bs took 14 minutes of CI); the tiny model's work is well
under a second, so a process costs its start-up (~10 s of imports)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asrbench.ab import run as ab_run
from asrbench.ab.decision import decide
from asrbench.ab.rounds import Outcome, Round, Settings, Side, comparisons, document, run_ab
from asrbench.cli.main import main
from asrbench.errors import AsrbenchError
from asrbench.formats.model import Report
from asrbench.gate.policy import Policy
from asrbench.render.text import ab_header

ROOT = Path(__file__).resolve().parent.parent
SLOWDOWN = ROOT / "tests" / "slowdown.py"
# A small English slice: 2 clips, one batch, short decodes.
WORKLOAD = ["--dataset-config", "en", "--language", "english", "--limit", "2", "--batch-size",
            "2", "--generation-max-length", "30"]


@pytest.fixture
def tiny_sides(tiny_whisper, monkeypatch):
    """The tiny model for the end-to-end A/Bs, every side process on one CPU thread
    (OMP_NUM_THREADS=1, inherited by the children): the tiny model's ops are so small that two
    threads spend their time synchronising, and a process sharing the cores with another
    multi-threaded one then swung by 10x from round to round here (0.45 to 5.2 samples/s)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tiny_whisper


def _ab(tmp_path, *extra, name="ab", model=None):
    out = tmp_path / f"{name}.json"
    chosen = ["--model", str(model)] if model else []
    code = main(["ab", *WORKLOAD, *chosen, "--json", str(out), "--markdown",
                 str(tmp_path / f"{name}.md"), "--no-progress", *extra])
    return code, (json.loads(out.read_text()) if out.exists() else None)


def _schema_check(document):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "schemas" / "ab.schema.json").read_text())
    jsonschema.validate(document, schema)


def test_ab_finds_a_real_slowdown_of_the_head(tmp_path, capsys, tiny_sides):
    """Head runs the same code with every model call followed by a sleep of nine times its
    own duration (a test-only wrapper, tests/slowdown.py): on the tiny model, whose passes also
    spend time outside the model calls, a fifth of the samples/s or less. The effect is that
    large so that no load on a busy machine can hide it (the load on one side of a round would
    have to slow it fivefold more than the other); a 2x slowdown was once UNKNOWN after 5 rounds
    here while another benchmark shared the two cores. Looks at 3, 5 and 8 rounds: on a quiet
    machine the first or second decides; 8 rounds decide a fivefold change at a spread of the
    per-round log-ratio up to ~1 (a load swinging each side by 2.7x), so a busy machine costs
    time, not a failure; an A/B that cannot tell it in 8 rounds fails."""
    head = shlex.join([sys.executable, str(SLOWDOWN), "0.9"])
    base = shlex.join([sys.executable, str(SLOWDOWN), "0"])
    code, document = _ab(tmp_path, "--base-command", base, "--head-command", head,
                         "--min-rounds", "3", "--max-rounds", "8", "--passes", "1", "--seed", "1",
                         model=tiny_sides)
    out = capsys.readouterr().out
    assert code == 1, out
    decision = document["decisions"][0]
    assert decision["outcome"] == "DIFFERENT" and decision["ratio"] < 0.6
    assert decision["ci_high"] < 1.0 and 3 <= decision["rounds"] <= 8
    assert len(document["rounds"]) == decision["rounds"]
    # the order inside rounds is recorded, and both sides measured every round
    assert all(sorted(r["order"]) == ["base", "head"] for r in document["rounds"])
    # accuracy is compared exactly: same code, same transcripts
    verdicts = {v["metric"]: v for v in document["comparisons"][0]["verdicts"]}
    assert verdicts["wer"]["verdict"] == "unchanged" and verdicts["wer"]["allowed"] == 0.0
    assert verdicts["samples_per_second"]["verdict"] == "regressed"
    assert document["comparisons"][0]["transcripts_changed"] == []
    assert document["failed"] is True
    assert "REGRESSED" in out and "result: FAIL" in out
    markdown = (tmp_path / "ab.md").read_text()
    assert "## asrbench A/B" in markdown and "❌ regressed" in markdown
    _schema_check(document)


def test_ab_two_settings_in_one_environment_batch_sizes(tmp_path, tiny_sides):
    """Two settings: batch 1 against batch 2. The ids differ (the batch size is part of a
    config's id), the runs are paired by position, the transcripts come out the same, so
    accuracy passes exactly; the throughput verdict is the rule applied to the recorded
    rounds, and the exit status follows it."""
    code, document = _ab(tmp_path, "--base-args", "--batch-size 1", "--head-args",
                         "--batch-size 2", "--min-rounds", "2", "--max-rounds", "2",
                         "--passes", "1", "--threshold", "0.1", "--seed", "2",
                         model=tiny_sides)
    pair = document["pairs"][0]
    assert "-bs1-" in pair["base"] and "-bs2-" in pair["head"]
    comparison = document["comparisons"][0]
    assert comparison["config_id"] == f"{pair['base']} -> {pair['head']}"
    verdicts = {v["metric"]: v["verdict"] for v in comparison["verdicts"]}
    assert verdicts["wer"] == verdicts["cer"] == "unchanged"
    decision = document["decisions"][0]
    rounds = document["rounds"]
    base = [r["samples_per_second"]["base"][0] for r in rounds]
    head = [r["samples_per_second"]["head"][0] for r in rounds]
    again = decide(base, head, 0.1, document["settings"]["alpha_per_look"])
    assert again.outcome == decision["outcome"] and again.ratio == pytest.approx(decision["ratio"])
    assert code == (1 if verdicts["samples_per_second"] == "regressed" else 0)
    assert document["sides"]["base"]["report"]["runs"][0]["config"]["batch_size"] == 1


def test_ab_between_two_environments_with_identical_code_passes(tmp_path, tiny_sides):
    """Base is another checkout (its own commit, its own copy of asrbench on PYTHONPATH, run
    from its own directory); head is this one. The code is the same, so nothing may fail;
    every process's report is kept. The throughput decision is not what this test is about, and it
    must not hang on two processes running at the same speed: with --threshold 0.99 a
    regression needs an interval wholly below 1 and reaching below 0.01 (head a hundred times
    slower), which no load does to identical code (a 50% threshold once failed here on a busy
    machine, where processes of the same code ran 2.3x apart)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs this repository as a git checkout to clone the base side from")
    checkout = tmp_path / "base-checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True)
    (checkout / "BASE-SIDE").write_text("the base side of an A/B test\n")
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(git + ["add", "BASE-SIDE"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "base side"], check=True)
    base_commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True,
                                 text=True).stdout.strip()
    base = shlex.join(["env", f"PYTHONPATH={checkout}", sys.executable, "-m", "asrbench"])
    kept = tmp_path / "kept"
    code, document = _ab(tmp_path, "--base-command", base, "--base-cwd", str(checkout),
                         "--min-rounds", "2", "--max-rounds", "2", "--passes", "1",
                         "--keep-reports", str(kept), "--threshold", "0.99", "--seed", "4",
                         model=tiny_sides)
    assert code == 0
    decision = document["decisions"][0]
    assert decision["outcome"] in ("SAME", "UNKNOWN") or decision["ratio"] > 1, decision
    assert document["comparisons"][0]["regressed"] is False
    base_report = document["sides"]["base"]["report"]
    assert base_report["environment"]["git"]["commit"] == base_commit
    assert document["sides"]["head"]["report"]["environment"]["git"]["commit"] != base_commit
    assert sorted(p.name for p in kept.iterdir()) == [
        "accuracy-base.json", "accuracy-head.json", "round1-base.json", "round1-head.json",
        "round2-base.json", "round2-head.json"]
    assert len(document["rounds"]) == 2
    # the accuracy runs count the work (compared exactly); head's timing rounds skip the
    # counted pass (the base checkout's rounds do too when its asrbench knows ASRBENCH_AB_ROUND:
    # a checkout older than that counts, which is harmless)
    for kept_report in kept.iterdir():
        (kept_run,) = json.loads(kept_report.read_text())["runs"]
        if kept_report.name.startswith("accuracy-"):
            assert kept_run["counters"] is not None, kept_report.name
        elif kept_report.name.endswith("-head.json"):
            assert kept_run["counters"] is None, kept_report.name
    _schema_check(document)


@pytest.mark.parametrize("argv, message", [
    (["--base-python", "/nonexistent/python"], "base: cannot run /nonexistent/python"),
    (["--min-rounds", "1"], "--min-rounds must be >= 2"),
    (["--min-rounds", "5", "--max-rounds", "4"], "--max-rounds (4) must be >= --min-rounds"),
    (["--threshold", "2"], "--threshold must be between 0 and 1"),
    (["--base-python", "x", "--base-command", "y"], "give one"),
    (["--head-args", "'unclosed"], "--head-args"),
    # each side's run options parse as `asrbench run`'s before any process starts
    (["--head-args", "--batch-sise 4"], "head's run options (the shared ones, then --head-args): "
                                        "unrecognized arguments: --batch-sise 4"),
    (["--base-args", "--batch-size four"], "base's run options"),
    (["--head-args", "--help"], "ask for help"),
    (["--head-args", "--dataset https://user:S3cr3t-pw@hub.example/x --frobnicate"],
     "unrecognized arguments"),
])
def test_ab_user_errors_are_one_line(tmp_path, capsys, argv, message):
    code, _ = _ab(tmp_path, *argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2 and message in err and "Traceback" not in err
    assert "S3cr3t-pw" not in err + captured.out and "usage:" not in captured.out
    assert not (tmp_path / "ab.json").exists()  # refused before any side ran


def test_a_side_running_another_checkout_parses_its_own_options(tmp_path, capsys,
                                                                 monkeypatch):
    """--head-cwd names a checkout whose `python -m asrbench` is its own (another version:
    an option this asrbench lacks is not refused here); the checkout's side gets no check, the
    other side still does."""
    from asrbench.cli.ab import check_side_options

    other = tmp_path / "other-checkout"
    (other / "asrbench").mkdir(parents=True)
    (other / "asrbench" / "__init__.py").write_text("")
    settings = Settings(shared=["--dataset-config", "en"])
    ours = ab_run.this_asrbench()
    check_side_options(settings, {"head": Side("head", ours, ["--new-option", "3"], other)})
    with pytest.raises(AsrbenchError, match="unrecognized arguments: --new-option 3"):
        check_side_options(settings, {"base": Side("base", ours, ["--new-option", "3"],
                                                   tmp_path)})
    monkeypatch.chdir(other)  # no --X-cwd, run from inside the other checkout
    check_side_options(settings, {"head": Side("head", ours, ["--new-option", "3"])})


def test_ab_takes_no_abbreviated_options(capsys):
    """`--mode` is not read as a prefix of `--model`: a mistyped option is an error."""
    with pytest.raises(SystemExit) as info:
        main(["ab", "--mode", "processes"])
    assert info.value.code == 2
    assert "unrecognized arguments: --mode processes" in capsys.readouterr().err


# -- pieces, on hand-built data ---------------------------------------------------------------

def _report(predictions, rate=10.0, config_id="cfg"):
    return Report.model_validate({
        "schema": 1, "environment": {}, "runs": [{
            "config": {"id": config_id}, "device": {"class": "cpu"},
            "metrics": {"wer": 0.1, "wer_normalized": 0.1, "cer": 0.05,
                        "samples_per_second": rate},
            "throughput": {"samples_per_second_per_pass": [rate], "samples_per_second_rsd": 0.0},
            "utterances": [{"id": k, "prediction": v} for k, v in predictions.items()]}]})


def _outcome(base_predictions, head_predictions, base_rates, head_rates):
    settings = Settings(shared=[], seed=0)
    sides = {"base": Side("base", ["python"]), "head": Side("head", ["python"])}
    outcome = Outcome(settings, sides, {"base": _report(base_predictions),
                                        "head": _report(head_predictions)}, [("cfg", "cfg")])
    outcome.rounds = [Round(number=i + 1, order=["base", "head"],
                            samples_per_second={"base": [b], "head": [h]}, seconds=1.0)
                      for i, (b, h) in enumerate(zip(base_rates, head_rates))]
    outcome.decisions = [decide(base_rates, head_rates, settings.threshold,
                                settings.per_look_alpha)]
    return outcome


def test_changed_transcripts_fail_even_when_throughput_is_the_same():
    outcome = _outcome({"a": "hello world", "b": "<b>@team</b> | x"},
                       {"a": "hello there world", "b": "<b>@team</b> | x"},
                       [10.0, 10.1, 9.9, 10.0], [10.0, 10.1, 9.9, 10.0])
    comps = comparisons(outcome)
    assert [t.id for t in comps[0].transcripts] == ["a"]
    assert comps[0].verdict("samples_per_second").verdict == "unchanged"
    assert Policy().fails(comps) and not Policy(transcripts="warn").fails(comps)


def test_a_faster_head_is_an_improvement_that_passes():
    outcome = _outcome({"a": "x"}, {"a": "x"}, [10.0, 10.1, 9.9, 10.0], [12.0, 12.1, 11.9, 12.0])
    verdict = comparisons(outcome)[0].verdict("samples_per_second")
    assert verdict.verdict == "improved" and "DIFFERENT" in verdict.note
    assert not Policy().fails(comparisons(outcome))


def test_the_document_records_every_setting_and_round_typed():
    from asrbench.formats.model import AbReport, AbSettings

    outcome = _outcome({"a": "x"}, {"a": "x"}, [10.0, 10.1, 9.9, 10.0], [12.0, 12.1, 11.9, 12.0])
    record = outcome.settings.record()
    # every field of the recorded settings is filled in by record() (one added later too)
    assert record.model_fields_set == set(AbSettings.model_fields)
    document = document_of(outcome)
    _schema_check(document)
    assert document["schema"] == 1 and document["kind"] == "ab"
    assert document["settings"] == {
        "shared": [], "threshold": 0.05, "alpha": 0.05, "alpha_per_look": 0.05 / 5,
        "looks": [4, 6, 9, 14, 20], "min_rounds": 4, "max_rounds": 20, "passes": 2,
        "rounds_limit": None, "seed": 0, "cards": None, "cards_variable": None}
    assert document["rounds"][1] == {"number": 2, "order": ["base", "head"], "seconds": 1.0,
                                     "samples_per_second": {"base": [10.1], "head": [12.1]},
                                     "cards": None}
    again = AbReport.model_validate(document)
    assert again.settings == record and again.rounds == outcome.rounds
    with pytest.raises(ValueError, match="threshold"):
        AbReport.model_validate({**document, "settings": {**document["settings"],
                                                          "threshold": 2}})


def document_of(outcome):
    return document(outcome, comparisons(outcome), False)


def test_an_interrupted_ab_keeps_the_rounds_that_finished(tmp_path, monkeypatch):
    from asrbench.ab import rounds as ab

    reports = {"base": _report({"a": "x"}), "head": _report({"a": "x"})}
    calls = []

    def measure(self, name, number):
        calls.append((number, name))
        if number == 3:
            raise KeyboardInterrupt
        if name == "base":
            return [10.0]
        return [13.0 if number % 2 else 7.5]  # head swings: no verdict yet

    monkeypatch.setattr(ab.ProcessRunner, "accuracy", lambda self, name: reports[name])
    monkeypatch.setattr(ab.ProcessRunner, "measure", measure)
    settings = Settings(shared=[], min_rounds=2, max_rounds=6, seed=0)
    sides = {"base": Side("base", ["python"]), "head": Side("head", ["python"])}
    outcome = run_ab(settings, sides, tmp_path)
    assert outcome.interrupted and len(outcome.rounds) == 2
    assert outcome.decisions[0].rounds == 2
    # its Markdown summary leads with "could not judge", never "no failure"
    from asrbench.ab.run import AbResult
    from asrbench.render.text import ab_markdown

    summary = ab_markdown(AbResult(outcome, comparisons(outcome), False), Policy())
    header = summary.split("\n\n")[0] + summary.split("\n\n")[1]
    assert "no failure" not in header and "interrupted before its decision" in summary, summary
    # nor does the terminal say "result: ok" (it did, under its INTERRUPTED header)
    from asrbench.render.text import ab_text

    text = ab_text(AbResult(outcome, comparisons(outcome), False), Policy())
    assert "result: ok" not in text and text.splitlines()[-1].startswith("result: FAIL (could "
                                                                         "not judge"), text
    assert "could not judge: the A/B was interrupted before its decision" in text


def test_rounds_stop_only_at_the_looks(tmp_path, monkeypatch):
    """The rule is tested at the looks only (3, 5, 8, 10 for 3..10 rounds): a verdict that
    would be clear after round 4 is taken after round 5, at the per-look level of 4 looks."""
    from asrbench.ab import rounds as ab
    from asrbench.ab.decision import Decision

    reports = {"base": _report({"a": "x"}), "head": _report({"a": "x"})}
    levels = []

    def decide(base, head, threshold, alpha):
        levels.append(alpha)
        outcome = "DIFFERENT" if len(base) >= 4 else "UNKNOWN"
        return Decision(outcome=outcome, rounds=len(base), ratio=0.8, ci_low=0.7, ci_high=0.9,
                        confidence=1 - alpha, p_value=0.001, ratio_of_medians=0.8,
                        threshold=threshold)

    monkeypatch.setattr(ab.ProcessRunner, "accuracy", lambda self, name: reports[name])
    monkeypatch.setattr(ab.ProcessRunner, "measure", lambda self, name, number: [10.0])
    monkeypatch.setattr(ab, "decide", decide)
    settings = Settings(shared=[], min_rounds=3, max_rounds=10, seed=0)
    assert settings.looks == [3, 5, 8, 10]
    said = []
    outcome = run_ab(settings, {"base": Side("base", ["python"]), "head": Side("head", ["python"])},
                     tmp_path, say=said.append)
    assert len(outcome.rounds) == 5 and outcome.decisions[0].outcome == "DIFFERENT"
    assert levels and all(level == pytest.approx(0.05 / 4) for level in levels)
    assert "next look after round 5" in said[-2] and said[-1].startswith("round 5")
    assert "DIFFERENT 0.800" in said[-1]


def test_config_pairs_share_alpha(tmp_path, monkeypatch):
    """An A/B of two configs (the default run: Hindi and English) decides each pair at
    alpha / (looks x 2): at alpha / looks for each, identical sides were called DIFFERENT in
    one config or the other about twice as often as --alpha promises. The document and the
    header say the level used."""
    from asrbench.ab import rounds as ab
    from asrbench.ab.decision import Decision
    from asrbench.ab.run import AbResult
    from asrbench.render.text import ab_text

    two = Report.model_validate({**_report({"a": "x"}).model_dump(mode="json", by_alias=True),
                                 "runs": [_report({"a": "x"}, config_id=c).runs[0]
                                          .model_dump(mode="json", by_alias=True)
                                          for c in ("hi", "en")]})
    levels = []

    def decide(base, head, threshold, alpha):
        levels.append(alpha)
        return Decision(outcome="SAME", rounds=len(base), ratio=1.0, ci_low=0.99, ci_high=1.01,
                        confidence=1 - alpha, p_value=0.9, ratio_of_medians=1.0,
                        threshold=threshold)

    monkeypatch.setattr(ab.ProcessRunner, "accuracy", lambda self, name: two)
    monkeypatch.setattr(ab.ProcessRunner, "measure", lambda self, name, number: [10.0, 20.0])
    monkeypatch.setattr(ab, "decide", decide)
    settings = Settings(shared=[], seed=0)
    outcome = run_ab(settings, {"base": Side("base", ["python"]), "head": Side("head", ["python"])},
                     tmp_path)
    assert len(outcome.pairs) == 2 and len(outcome.rounds) == settings.min_rounds
    assert levels and all(level == pytest.approx(0.05 / 5 / 2) for level in levels)
    assert document_of(outcome)["settings"]["alpha_per_look"] == pytest.approx(0.05 / 5 / 2)
    header = ab_text(AbResult(outcome, comparisons(outcome), False), Policy())
    assert "alpha 0.05 (0.005 per look at rounds 4, 6, 9, 14, 20 and per config pair of 2)" \
        in header, header


_WAIT_FOR_THE_OTHER = """
import os, pathlib, sys, time
mine, other = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
mine.write_text(os.environ["ASRBENCH_TEST_CARD"])
end = time.monotonic() + 60
while not other.exists():
    if time.monotonic() > end:
        sys.exit("the other side never started")
    time.sleep(0.01)
"""


def test_run_together_runs_both_at_once_each_with_its_card(tmp_path):
    """Each side waits until the other has started, so run one after the other they would
    fail (no assumption on speed); each sees its own card in the environment."""
    from asrbench.ab.rounds import run_together

    a, b = tmp_path / "a", tmp_path / "b"
    jobs = [(Side("base", [sys.executable, "-c", _WAIT_FOR_THE_OTHER]), [str(a), str(b)],
             {"ASRBENCH_TEST_CARD": "0"}),
            (Side("head", [sys.executable, "-c", _WAIT_FOR_THE_OTHER]), [str(b), str(a)],
             {"ASRBENCH_TEST_CARD": "1"})]
    run_together(jobs, timeout=120)
    assert a.read_text() == "0" and b.read_text() == "1"


def test_run_together_reports_the_failure_and_kills_the_other(tmp_path):
    from asrbench.ab.rounds import run_together

    marker = tmp_path / "still-running"
    slow = Side("base", [sys.executable, "-c",
                         ("import sys, time, pathlib; time.sleep(60); "
                          "pathlib.Path(sys.argv[1]).write_text('x')")])
    broken = Side("head", [sys.executable, "-c",
                           "import sys; print('noise ' * 20000); sys.exit('head: boom')"])
    with pytest.raises(AsrbenchError) as info:
        run_together([(slow, [str(marker)], None), (broken, ["run"], None)], timeout=120)
    assert str(info.value).startswith("head: ") and "exited 1: head: boom" in str(info.value)
    assert "\n" not in str(info.value)
    assert not marker.exists()  # the slow side was killed, not awaited


def test_cards_deal_both_sides_a_card_at_random_each_round(tmp_path, monkeypatch):
    from asrbench.ab import rounds as ab

    reports = {"base": _report({"a": "x"}), "head": _report({"a": "x"})}
    dealt = []

    def measure_on_cards(self, number, cards):
        dealt.append(dict(cards))
        return {"base": [10.0], "head": [10.0 + (number % 3) * 0.1]}

    monkeypatch.setattr(ab.ProcessRunner, "accuracy", lambda self, name: reports[name])
    monkeypatch.setattr(ab.ProcessRunner, "measure", lambda *a: pytest.fail("one at a time"))
    monkeypatch.setattr(ab.ProcessRunner, "measure_on_cards", measure_on_cards)
    settings = Settings(shared=[], min_rounds=8, max_rounds=8, seed=3, cards=("2", "5"),
                        cards_variable="HABANA_VISIBLE_MODULES")
    sides = {"base": Side("base", ["python"]), "head": Side("head", ["python"])}
    outcome = run_ab(settings, sides, tmp_path)
    assert len(dealt) == 8 and all(sorted(d.values()) == ["2", "5"] for d in dealt)
    assert {d["base"] for d in dealt} == {"2", "5"}  # both ways round over 8 rounds
    assert [r.cards for r in outcome.rounds] == dealt
    record = document(outcome, comparisons(outcome), False)
    assert record["rounds"][0]["cards"] == dealt[0]
    assert record["settings"]["cards"] == ["2", "5"]
    assert "both sides at once on cards 2 and 5 (HABANA_VISIBLE_MODULES" in ab_header(outcome)[3]


@pytest.mark.parametrize("argv,variable", [
    (["--device", "hpu", "--cards", "0,1"], "HABANA_VISIBLE_MODULES"),
    (["--device", "cuda", "--cards", "1, 3"], "CUDA_VISIBLE_DEVICES"),
    (["--cards", "0,1", "--cards-variable", "MY_CARD"], "MY_CARD"),
])
def test_cards_pick_the_variable_from_the_device(argv, variable, monkeypatch, tmp_path):
    from asrbench.ab import rounds as ab

    seen = {}

    def run_ab(settings, *rest):
        seen["settings"] = settings
        raise AsrbenchError("stopped by the test before any process")

    monkeypatch.setattr(ab, "run_ab", run_ab)
    assert main(["ab", *argv, "--json", str(tmp_path / "ab.json")]) == 2
    assert seen["settings"].cards_variable == variable
    assert len(seen["settings"].cards) == 2 and "" not in seen["settings"].cards


@pytest.mark.parametrize("argv,message", [
    (["--cards", "0,1"], "--cards needs --device hpu or cuda"),
    (["--device", "hpu", "--cards", "0"], "--cards takes two different cards"),
    (["--device", "hpu", "--cards", "1,1"], "--cards takes two different cards"),
    (["--device", "hpu", "--cards", "0,"], "--cards takes two different cards"),
])
def test_cards_user_errors_are_one_line(argv, message, capsys):
    assert main(["ab", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ab_settings_refuse_nonsense():
    with pytest.raises(AsrbenchError, match="--rounds-limit"):
        Settings(shared=[], rounds_limit=0)
    with pytest.raises(AsrbenchError, match="--passes"):
        Settings(shared=[], passes=0)
    assert Settings(shared=[]).round_passes == 2 and Settings(shared=[], passes=1).round_passes == 1


FAKE_SIDE = """
import json, os, random, sys
sys.path.insert(0, {tests!r})
from factories import make_report, make_run
argv = sys.argv[1:]
report = argv[argv.index("--report") + 1]
rate = 10.0 + random.random()
run = make_run(rates=(rate, rate * 1.01), device={{"kind": "hpu-emulated", "class": "hpu-emulated",
               "environment": {{"recipe_cache": os.environ.get("PT_HPU_RECIPE_CACHE_CONFIG")}}}})
with open(report, "w") as fh:
    fh.write(make_report(run).model_dump_json(by_alias=True))
with open({log!r}, "a") as fh:
    fh.write(json.dumps([argv[0], os.environ.get("PT_HPU_RECIPE_CACHE_CONFIG"),
                         os.environ.get("ASRBENCH_AB_ROUND")]) + "\\n")
"""


@pytest.mark.parametrize("extra", [[], ["--recipe-cache", "RECIPES"]])
def test_gaudi_ab_sides_each_keep_one_recipe_folder_across_rounds(tmp_path, extra):
    """`asrbench ab --device hpu-emulated`: every process of a side (its accuracy run and each
    round) gets PT_HPU_RECIPE_CACHE_CONFIG=<folder of that side>,false,<MB>: the same folder
    across rounds, another for the other side; --no-recipe-cache gives none. The sides are a
    stand-in asrbench (a script writing a report), so no model runs."""
    log = tmp_path / "env.jsonl"
    script = tmp_path / "side.py"
    script.write_text(FAKE_SIDE.format(tests=str(ROOT / "tests"), log=str(log)))
    extra = [str(tmp_path / "recipes") if a == "RECIPES" else a for a in extra]
    keep = tmp_path / "reports"
    code = main(["ab", "--device", "hpu-emulated", "--min-rounds", "2", "--max-rounds", "2",
                 "--base-command", f"{sys.executable} {script} base",
                 "--head-command", f"{sys.executable} {script} head",
                 "--json", str(tmp_path / "ab.json"), "--keep-reports", str(keep),
                 "--no-progress", *extra])
    assert code in (0, 1)
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(seen) == 6  # accuracy + 2 rounds, per side
    by_side = {}
    for side, value, _ in seen:
        by_side.setdefault(side, set()).add(value)
    root = tmp_path / "recipes" if extra else keep / "hpu-recipes"
    assert by_side == {"base": {f"{root / 'base'},false,8192"},
                       "head": {f"{root / 'head'},false,8192"}}
    assert (root / "base").is_dir() and (root / "head").is_dir()
    assert [flag for _, _, flag in seen].count("1") == 4  # the rounds, not the accuracy runs
    # the reports of the rounds carry it too (HPUDevice.environment records the variable)
    rounds = sorted(keep.glob("round*-head.json"))
    assert len(rounds) == 2
    assert {json.loads(p.read_text())["runs"][0]["device"]["environment"]["recipe_cache"]
            for p in rounds} == {f"{root / 'head'},false,8192"}


def test_no_recipe_cache_and_other_devices_give_the_sides_no_recipe_folder(tmp_path):
    from asrbench.ab.rounds import ProcessRunner
    from asrbench.ab.run import settings_from
    from asrbench.cli.main import build_parser

    def environment(*argv):
        args = build_parser().parse_args(["ab", *argv])
        runner = ProcessRunner(settings_from(args), {}, tmp_path)
        return runner._environment("base", ASRBENCH_AB_ROUND="1")

    assert environment("--device", "hpu") == {
        "PT_HPU_RECIPE_CACHE_CONFIG": f"{tmp_path / 'hpu-recipes' / 'base'},false,8192",
        "ASRBENCH_AB_ROUND": "1"}
    assert environment("--device", "hpu", "--no-recipe-cache") == {"ASRBENCH_AB_ROUND": "1"}
    assert environment("--device", "cpu") == {"ASRBENCH_AB_ROUND": "1"}
    with pytest.raises(AsrbenchError, match="contradict"):
        environment("--recipe-cache", str(tmp_path), "--no-recipe-cache")
    with pytest.raises(AsrbenchError, match="--counters-only times nothing"):
        environment("--counters-only")


def test_two_settings_never_fail_on_counters_whatever_moved():
    """fp32 against bf16 (or --eos-check-every) keeps the batch shape: the per-counter
    verdicts got through and failed every such A/B. Two settings count different work by
    design: one "not compared" line says what moved; the same config is compared exactly."""
    from asrbench.formats.model import COUNTER_VERSION

    def counted(report, mm, config_id):
        document = report.model_dump(mode="json", by_alias=True)
        document["runs"][0]["config"]["id"] = config_id
        document["runs"][0]["counters"] = {
            "version": COUNTER_VERSION, "selection": "s", "rows": 1, "real_rows": 1,
            "replay_bypassed": False, "encoder_calls": 1, "decode_steps": 3, "steady_steps": 2,
            "decode_step_ops": {"aten.mm f32": mm}, "flops": 100, "flops_per_utterance": 100,
            "host_syncs": 3, "host_syncs_per_token": 1.0, "tokens": 3}
        return Report.model_validate(document)

    outcome = _outcome({"a": "x"}, {"a": "x"}, [10.0] * 4, [10.0] * 4)
    outcome.reports = {"base": counted(outcome.reports["base"], 7, "cfg-fp32"),
                       "head": counted(outcome.reports["head"], 9, "cfg-bf16")}
    outcome.pairs = [("cfg-fp32", "cfg-bf16")]
    comps = comparisons(outcome)
    counters = [v for v in comps[0].verdicts if v.metric.startswith("counters")]
    assert [(v.metric, v.verdict) for v in counters] == [("counters", "unchanged")]
    assert counters[0].note.startswith("counters not compared: the two sides run different "
                                       "settings (what moved: ") and "7 -> 9" in counters[0].note
    assert not Policy().fails(comps)
    outcome.pairs = [("cfg-fp32", "cfg-fp32")]  # one config on two code versions: exact
    outcome.reports["head"] = counted(outcome.reports["head"], 9, "cfg-fp32")
    assert Policy().fails(comparisons(outcome))


def test_a_side_that_writes_no_report_never_borrows_an_earlier_one(tmp_path):
    """--keep-reports names a folder an earlier A/B filled: a side whose process wrote
    nothing (here `true`) was judged from the earlier A/B's report there, a verdict for code
    that never ran. The path is cleared before each side starts."""
    from asrbench.ab.rounds import ProcessRunner

    stale = tmp_path / "accuracy-base.json"
    stale.write_text(json.dumps(_report({"a": "x"}).model_dump(mode="json", by_alias=True)))
    runner = ProcessRunner(Settings(shared=[], seed=0), {"base": Side("base", ["true"])},
                           tmp_path)
    with pytest.raises(AsrbenchError, match="not found"):
        runner.accuracy("base")
    assert not stale.exists()


def test_throughput_row_says_what_its_numbers_are():
    """The A/B throughput row shows each side's median samples/s, while the verdict is the
    paired ratio's: where the two point different ways (a slower head in every round but
    one, whose medians still favour head), the note says so instead of showing "regressed"
    beside a positive delta unexplained."""
    from asrbench.ab.decision import Decision
    from asrbench.ab.rounds import _throughput_verdict

    base, head = [10.0, 20.0, 30.0], [9.5, 21.0, 28.5]
    decision = Decision(outcome="DIFFERENT", rounds=3, ratio=0.982, ci_low=0.97, ci_high=0.995,
                        confidence=0.99, p_value=0.001, ratio_of_medians=1.05, threshold=0.02)
    row = _throughput_verdict("cfg", decision, base, head, Settings(shared=[], seed=0))
    assert row.verdict == "regressed" and row.delta == pytest.approx(1.0)
    assert "each side's median over its rounds" in row.note
    assert "they point the other way: head/base of the medians 1.050" in row.note, row.note
    agreeing = Decision(outcome="DIFFERENT", rounds=3, ratio=0.95, ci_low=0.93, ci_high=0.97,
                        confidence=0.99, p_value=0.001, ratio_of_medians=0.95, threshold=0.02)
    row = _throughput_verdict("cfg", agreeing, base, [9.5, 19.0, 28.5],
                              Settings(shared=[], seed=0))
    assert "point the other way" not in row.note
