"""Issue 29: `asrbench run --counters-only` (no timed pass; counters, transcripts and error rates
gated, throughput "not measured") and the emulated-Gaudi pre-screen's rule for bf16 on the CPU
(transcripts gated exactly only against a baseline recorded with the same bf16 arithmetic,
formats.environment.cpu_bf16_arithmetic; counters exactly everywhere).

Unit tests on hand-built runs, and one real pair of runs of the tiny Whisper in this process
(slow: a timed run and a counters-only run must decode the same transcripts and count the same
work)."""

from __future__ import annotations

import json

import pytest
from factories import make_entry, make_report, make_run, run_cli

from asrbench.errors import AsrbenchError
from asrbench.formats.environment import CPU_BF16, CPU_ID, cpu_bf16_arithmetic, cpu_identity
from asrbench.formats.model import COUNTER_VERSION, Counters, Run
from asrbench.gate.compare import NOT_MEASURED, compare_run
from asrbench.gate.counters import describe_changes
from asrbench.gate.policy import Policy


def _counts(step_mm: int = 7) -> Counters:
    return Counters(version=COUNTER_VERSION, selection="s", rows=1, real_rows=1,
                    replay_bypassed=False, encoder_calls=1, decode_steps=3, steady_steps=2,
                    decode_step_ops={"aten.mm f32": step_mm}, flops=100, flops_per_utterance=100,
                    host_syncs=3, host_syncs_per_token=1.0, tokens=3)


def _counters_only(run: Run, **config) -> Run:
    """The run as a counters-only run would report it: no throughput, the mode recorded."""
    document = run.model_dump(mode="json", by_alias=True)
    document["config"].update({"counters_only": True, **config})
    document["metrics"]["samples_per_second"] = None
    document["throughput"] = None
    return Run.model_validate(document)


# -- the gate on a counters-only run --------------------------------------------------------

def test_counters_only_throughput_is_not_judged_and_says_so_never_a_pass():
    timed = make_run(predictions={"a": "hello world"})
    timed.counters = _counts()
    entry = make_entry(timed)
    entry.counters = _counts()
    run = _counters_only(timed)
    comparison = compare_run(run, entry)
    (throughput,) = [v for v in comparison.verdicts if v.metric == "samples_per_second"]
    assert throughput.verdict == "not-judged"
    assert throughput.note == "throughput: not measured (--counters-only)" == NOT_MEASURED
    assert throughput.value is None
    assert not Policy().fails([comparison])
    # The other checks still judge: the counters exactly, and the transcripts.
    assert [v.verdict for v in comparison.verdicts if v.metric == "counters"] == ["unchanged"]
    run.counters = _counts(13)
    comparison = compare_run(run, entry)
    assert Policy().fails([comparison])
    assert "decode step: aten.mm f32 7 -> 13 (+6)" in describe_changes(comparison.verdicts)
    changed = _counters_only(make_run(predictions={"a": "hello there"}))
    changed.counters = _counts()
    failing = Policy().findings(compare_run(changed, entry))
    assert [f.check for f in failing if f.fails] == ["transcripts"]


def test_counters_only_run_without_an_entry_claims_no_throughput():
    run = _counters_only(make_run())
    verdicts = compare_run(run, None).verdicts
    assert [(v.metric, v.verdict) for v in verdicts if v.metric == "samples_per_second"] == [
        ("samples_per_second", "not-judged")]


def test_a_run_claims_throughput_exactly_when_it_was_timed():
    document = make_run().model_dump(mode="json", by_alias=True)
    document["throughput"] = None
    with pytest.raises(ValueError, match="a timed run needs throughput"):
        Run.model_validate(document)
    document = make_run().model_dump(mode="json", by_alias=True)
    document["config"]["counters_only"] = True
    with pytest.raises(ValueError, match="counters-only run timed nothing"):
        Run.model_validate(document)


def test_baseline_update_from_counters_only_keeps_the_recorded_throughput(tmp_path):
    from asrbench.gate.baselines import load_for
    from asrbench.gate.outcome import update_baselines

    timed = make_run(config_id="cfg", rates=(4.0, 5.0, 6.0), predictions={"a": "old text"})
    update_baselines(make_report(timed), tmp_path)
    before = load_for(tmp_path, "cpu").entries["cfg"]
    fresh = _counters_only(make_run(config_id="cfg", wer=0.0, cer=0.0,
                                    predictions={"a": "new text"}))
    fresh.counters = _counts()
    update = update_baselines(make_report(fresh), tmp_path)
    after = load_for(tmp_path, "cpu").entries["cfg"]
    # the change table says the throughput was kept, not measured now
    from asrbench.render.text import change_table

    table = change_table(update.files[0][1])
    assert "samples_per_second       5.0000 -> 5.0000  (kept: not measured by this report)" \
        in table and "recorded from 1 process" not in table, table
    assert after.metrics.samples_per_second == 5.0
    assert after.noise == before.noise
    assert after.predictions == {"a": "new text"} and after.counters == _counts()
    with pytest.raises(AsrbenchError, match="measured no throughput, and there is no entry"):
        update_baselines(make_report(_counters_only(make_run(config_id="other"))), tmp_path)


def test_counters_only_runs_stay_out_of_the_history_and_the_exports(tmp_path):
    from asrbench.history.export import github_action_benchmark_entries
    from asrbench.history.store import open_store

    report = make_report(_counters_only(make_run()))
    with pytest.raises(AsrbenchError, match="counters-only"):
        github_action_benchmark_entries(report, "bigger")
    with open_store(str(tmp_path / "h.sqlite"), create=True) as store:
        with pytest.raises(AsrbenchError, match="counters-only run"):
            store.add(report)


def test_counters_only_with_no_counters_or_ranks_is_refused_in_one_line():
    from asrbench.config.settings import BenchConfig

    with pytest.raises(AsrbenchError, match="drop --no-counters"):
        BenchConfig(counters_only=True, counters=False)
    with pytest.raises(AsrbenchError, match="one process"):
        BenchConfig(counters_only=True, world_size=2)


def test_counters_only_with_passes_is_refused_in_one_line_before_anything_runs(tmp_path):
    """`--counters-only --passes N` used to run counters-only and drop N without a word; the
    pre-screen times no pass, so asking for timed passes too is a contradiction, refused before
    any model loads (`asrbench run` and the pytest door share flow.select)."""
    from asrbench import flow

    report = tmp_path / "r.json"
    with pytest.raises(AsrbenchError, match=r"--counters-only with --passes 2: .*times no pass"):
        run_cli(["run", "--model", str(tmp_path / "no-such-model"), "--counters-only",
                 "--passes", "2", "--report", str(report), "--no-progress"])
    assert not report.exists()
    with pytest.raises(AsrbenchError, match="times no pass"):
        flow.select({"counters_only": True}, 1, device=lambda: ("cpu", "cpu"))
    # either alone is accepted (None: no --passes given)
    assert flow.select({"counters_only": True}, None, device=lambda: ("cpu", "cpu")).configs
    # counters_only from a config file: its own `passes`, or --passes beside it, was dropped
    # without a word (the check only saw the flag); refused the same way now
    alone = tmp_path / "alone.toml"
    alone.write_text('dataset_config = "en"\nlimit = 1\ncounters_only = true\n')
    timed = tmp_path / "timed.toml"
    timed.write_text('dataset_config = "en"\nlimit = 1\ncounters_only = true\npasses = 3\n')
    with pytest.raises(AsrbenchError, match=r"alone.toml sets counters_only = true and "
                                             r"--passes 2 .*times no pass"):
        flow.select({}, 2, device=lambda: ("cpu", "cpu"), config_file=alone)
    with pytest.raises(AsrbenchError, match=r"timed.toml: counters_only = true with passes = 3"):
        flow.select({}, None, device=lambda: ("cpu", "cpu"), config_file=timed)
    with pytest.raises(AsrbenchError, match="timed.toml: counters_only = true with passes = 3"):
        run_cli(["run", "--config", str(timed), "--report", str(report), "--no-progress"])
    assert not report.exists()
    # the flag over the file (as over a matrix section's passes): the flag decides
    (config,) = flow.select({"counters_only": True}, None, device=lambda: ("cpu", "cpu"),
                            config_file=timed).configs
    assert config.counters_only and flow.select(
        {}, None, device=lambda: ("cpu", "cpu"), config_file=alone).configs[0].counters_only


# -- bf16 on the CPU: keyed by the processor's bf16 arithmetic --------------------------------

@pytest.mark.parametrize("flags, cap, key", [
    ({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_bf16", "amx_tile"}, "",
     "amx-bf16"),
    ({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512_bf16"}, "", "avx512-bf16"),
    ({"avx2", "avx512f", "avx512bw", "avx512vl"}, "", "avx512"),
    ({"avx2"}, "", "avx2"),
    ({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_bf16", "amx_tile"},
     "AVX512_CORE_BF16", "avx512-bf16"),
    ({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512_bf16"}, "avx2", "avx2"),
    ({"avx2"}, "AVX512_CORE_AMX", "avx2"),  # a ceiling never raises what the CPU has
])
def test_cpu_bf16_key_is_what_the_processor_and_onednn_ceiling_allow(flags, cap, key):
    environ = {"ONEDNN_MAX_CPU_ISA": cap} if cap else {}
    assert cpu_bf16_arithmetic(flags, "x86_64", environ) == key


#: a run's agreement with the stock fp32 reference, within the limits the tests' entries set
AGREEMENT = {"reference": "stock fp32 CPU", "utterances": 1, "identical": 1, "share": 1.0,
             "wer": 0.0}


#: the make of the processor in the tests' runs and entries (formats.environment.cpu_identity)
AMD = "vendor_id AuthenticAMD, cpu family 25, model 17"
INTEL = "vendor_id GenuineIntel, cpu family 6, model 207"


def _emulated(precision: str, key: str | None, predictions: dict[str, str],
              reference: dict | None = AGREEMENT, make: str | None = AMD) -> Run:
    environment = {} if key is None else {CPU_BF16: key, CPU_ID: make}
    return make_run(config_id=f"e-{precision}", predictions=predictions,
                    device={"kind": "hpu-emulated", "class": "hpu-emulated",
                            "environment": environment},
                    config={"id": f"e-{precision}", "precision": precision},
                    reference=reference if precision != "fp32" else None)


def test_bf16_transcripts_of_other_bf16_arithmetic_are_judged_by_agreement_not_failed():
    recorded = _emulated("bf16", "avx512-bf16", {"u4": "tomatarkarive"})
    entry = make_entry(recorded, reference_wer_max=0.45)
    entry.environment = {CPU_BF16: "avx512-bf16", CPU_ID: AMD}
    entry.counters = _counts()
    # the AMX runner: one Hindi transcript differs, counters identical
    run = _emulated("bf16", "amx-bf16", {"u4": "tomatarkarivay"})
    run.counters = _counts()
    comparison = compare_run(run, entry)
    assert comparison.transcripts == []
    judged = {v.metric: v.verdict for v in comparison.verdicts}
    assert judged["transcripts"] == judged["wer"] == judged["cer"] == "not-judged"
    (note,) = {v.note for v in comparison.verdicts if v.metric == "wer"}
    assert f"computes as amx-bf16 ({AMD}), the baseline's as avx512-bf16 ({AMD})" in note
    assert not Policy().fails([comparison])
    # ... but the counters still gate exactly on that runner
    run.counters = _counts(13)
    assert Policy().fails([compare_run(run, entry)])
    # the same arithmetic: exact, and the changed transcript fails
    same = _emulated("bf16", "avx512-bf16", {"u4": "tomatarkarivay"})
    failing = Policy().findings(compare_run(same, entry))
    assert "transcripts" in [f.check for f in failing if f.fails]
    # fp32 is exact on any processor
    fp32_entry = make_entry(_emulated("fp32", "avx512-bf16", {"u4": "tomatarkarive"}))
    fp32 = _emulated("fp32", "amx-bf16", {"u4": "tomatarkarivay"})
    assert "transcripts" in [f.check for f in Policy().findings(compare_run(fp32, fp32_entry))]


def test_bf16_of_the_same_instruction_set_on_another_make_is_judged_by_agreement():
    """Found on this project's VMs: an AMD EPYC and an Intel Xeon without AMX, both
    AVX512-BF16, decode the emulated Hindi bf16 config's clip 0004 as `tomatarkarive` and
    `tomatarkarivay`: the instruction set alone does not say how a CPU rounds bf16 (oneDNN
    picks its kernels by more than that). The processor's make is part of the key: another
    make is judged by agreement with the fp32 reference, never failed; the same make and
    instruction set are compared exactly; an entry recorded before the make was is not."""
    entry = make_entry(_emulated("bf16", "avx512-bf16", {"u4": "tomatarkarive"}),
                       reference_wer_max=0.45)
    entry.environment = {CPU_BF16: "avx512-bf16", CPU_ID: AMD}
    intel = _emulated("bf16", "avx512-bf16", {"u4": "tomatarkarivay"}, make=INTEL)
    comparison = compare_run(intel, entry)
    assert not Policy().fails([comparison]) and comparison.transcripts == []
    note = next(v.note for v in comparison.verdicts if v.metric == "transcripts")
    assert f"computes as avx512-bf16 ({INTEL}), the baseline's as avx512-bf16 ({AMD})" in note
    same = _emulated("bf16", "avx512-bf16", {"u4": "tomatarkarivay"}, make=AMD)
    assert Policy().fails([compare_run(same, entry)])
    entry.environment = {CPU_BF16: "avx512-bf16"}  # recorded before the make was
    older = compare_run(same, entry)
    assert not Policy().fails([older])
    note = next(v.note for v in older.verdicts if v.metric == "transcripts")
    assert "(make unrecorded)" in note and "asrbench baseline update --report" in note


@pytest.mark.parametrize("cpuinfo, make", [
    ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\n"
     "model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\n\nprocessor\t: 1\n"
     "vendor_id\t: AuthenticAMD\n", INTEL),
    ("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
     "CPU variant\t: 0x1\nCPU part\t: 0xd0c\n\n",
     "CPU implementer 0x41, CPU architecture 8, CPU part 0xd0c"),
    ("processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\nclock\t\t: 2300MHz\n",
     "cpu POWER9 (raw), altivec supported"),
    # no make named (no /proc/cpuinfo: Windows, macOS): None, never equal to another machine's
    ("", None),
    ("processor\t: 0\nmodel name\t: \ufffd\n", None),
])
def test_the_processor_make_is_read_from_the_first_cpuinfo_entry(cpuinfo, make):
    assert cpu_identity(cpuinfo) == make


def test_an_entry_without_a_recorded_bf16_key_is_not_compared_exactly():
    entry = make_entry(_emulated("bf16", None, {"u": "a"}))
    run = _emulated("bf16", "avx2", {"u": "b"})
    comparison = compare_run(run, entry)
    assert "the baseline's as unrecorded" in next(v.note for v in comparison.verdicts
                                                  if v.metric == "transcripts")
    assert not Policy().fails([comparison])


def test_bf16_transcripts_nothing_can_judge_are_refused_not_passed():
    """Not comparable exactly and no agreement with the fp32 reference (reference_utterances
    0): nothing judges the run's accuracy, so it cannot be judged (fail closed), never passed."""
    entry = make_entry(_emulated("bf16", "avx512-bf16", {"u": "a"}))
    entry.environment = {CPU_BF16: "avx512-bf16", CPU_ID: AMD}
    run = _emulated("bf16", "amx-bf16", {"u": "b"}, reference=None)
    with pytest.raises(AsrbenchError, match="no agreement with the fp32 reference"):
        compare_run(run, entry)


# -- a real pair of runs: the same transcripts and counts, nothing timed ---------------------

RUN = ["run", "--dataset-config", "en", "--language", "english", "--limit", "3",
       "--batch-size", "2", "--generation-max-length", "16", "--reference-utterances", "0",
       "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("decoder", [[], ["--eos-check-every", "2"]], ids=["greedy", "static"])
def test_counters_only_decodes_and_counts_what_a_timed_run_does(tmp_path, tiny_whisper, capsys,
                                                                decoder):
    """3 clips in batches of 2 (a partial last batch): the counters-only run's transcripts
    (its counted batch and one plain decode of the rest) and counts equal a timed run's; it
    times nothing and records the mode; compare against the timed run's baseline passes and
    says throughput was not measured. With the static decoder (--eos-check-every) too: its
    one-time setup, which a timed run's warm-up does, is not counted in the first batch."""
    model = ["--model", str(tiny_whisper), *decoder]
    assert run_cli([*RUN, *model, "--passes", "1", "--report", str(tmp_path / "t.json")]) == 0
    assert run_cli([*RUN, *model, "--counters-only", "--report", str(tmp_path / "c.json")]) == 0
    timed = json.loads((tmp_path / "t.json").read_text())["runs"][0]
    only = json.loads((tmp_path / "c.json").read_text())["runs"][0]
    assert [(u["id"], u["prediction"], u["tokens"]) for u in only["utterances"]] == \
        [(u["id"], u["prediction"], u["tokens"]) for u in timed["utterances"]]
    assert len(only["utterances"]) == 3
    unstable = ("seconds", "peak_device_memory_bytes", "first_calls")
    assert {k: v for k, v in only["counters"].items() if k not in unstable} == \
        {k: v for k, v in timed["counters"].items() if k not in unstable}
    assert only["config"]["counters_only"] is True and timed["config"]["counters_only"] is False
    assert only["throughput"] is None and only["metrics"]["samples_per_second"] is None
    assert only["timings"]["pass_seconds"] == [] and only["timings"]["passes"] == 0
    assert only["timings"]["warmup_batches"] == 0  # the CPU captures nothing: no warm-up
    assert (only["counters"]["first_calls"], timed["counters"]["first_calls"]) == (True, None)
    assert "not measured" in capsys.readouterr().out
    baselines = tmp_path / "baselines"
    assert run_cli(["baseline", "update", "--report", str(tmp_path / "t.json"),
                    "--baseline-dir", str(baselines)]) == 0
    capsys.readouterr()
    assert run_cli(["compare", "--report", str(tmp_path / "c.json"),
                    "--baseline-dir", str(baselines)]) == 0
    out = capsys.readouterr().out
    assert "NOT-JUDGED" in out and "[throughput: not measured (--counters-only)]" in out
    assert "same counts" in out


def test_the_html_report_of_a_counters_only_run_says_not_measured(tmp_path):
    pytest.importorskip("plotly")
    from asrbench.gate.outcome import gate_report, update_baselines
    from asrbench.history.changepoints import report_history
    from asrbench.render.html import build_html

    update_baselines(make_report(make_run()), tmp_path)
    only = _counters_only(make_run())
    only.counters = _counts()
    report = make_report(only)
    text = build_html(report, gate_report(report, tmp_path), report_history(report, None))
    assert "not measured" in text and "0 (counters-only)" in text


def test_work_done_once_on_a_first_call_is_said_and_counted_warm_when_asked(
        tmp_path, tiny_whisper, capsys, monkeypatch):
    """A decoder layer that builds a cache on its first call (a transposed copy of its fc1
    weight): a timed run's warm-up does that before counting, a counters-only run counts it
    (its counted batch is the first call). Its verdict against the timed baseline says so and
    how to count warm; `--warmup-batches 1` (which counters-only used to drop without a word)
    then counts exactly what the timed run counted."""
    from transformers.models.whisper import modeling_whisper

    real = modeling_whisper.WhisperDecoderLayer.forward

    def lazily_cached(self, *args, **kwargs):
        if not hasattr(self, "_asrbench_test_cache"):
            self._asrbench_test_cache = self.fc1.weight.t().clone()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(modeling_whisper.WhisperDecoderLayer, "forward", lazily_cached)
    model = ["--model", str(tiny_whisper)]
    reports = {name: tmp_path / f"{name}.json" for name in ("timed", "cold", "warm")}
    assert run_cli([*RUN, *model, "--passes", "1", "--report", str(reports["timed"])]) == 0
    assert run_cli([*RUN, *model, "--counters-only", "--report", str(reports["cold"])]) == 0
    assert run_cli([*RUN, *model, "--counters-only", "--warmup-batches", "1",
                    "--report", str(reports["warm"])]) == 0
    runs = {name: json.loads(path.read_text())["runs"][0] for name, path in reports.items()}
    unstable = ("seconds", "peak_device_memory_bytes", "first_calls")

    def counts(name):
        return {k: v for k, v in runs[name]["counters"].items() if k not in unstable}

    assert counts("cold") != counts("timed")  # the control: the first call's clone counted
    assert counts("warm") == counts("timed")
    assert runs["warm"]["timings"]["warmup_batches"] == 1 and runs["warm"]["throughput"] is None
    assert (runs["cold"]["counters"]["first_calls"], runs["warm"]["counters"]["first_calls"]) \
        == (True, False)
    baselines = tmp_path / "baselines"
    assert run_cli(["baseline", "update", "--report", str(reports["timed"]),
                    "--baseline-dir", str(baselines)]) == 0
    capsys.readouterr()
    assert run_cli(["compare", "--report", str(reports["cold"]),
                    "--baseline-dir", str(baselines)]) == 1
    out = capsys.readouterr().out
    assert "aten.clone f32" in out and "counted on the first call (--counters-only, no " \
        "warm-up)" in out and "--warmup-batches 1" in out, out
    assert run_cli(["compare", "--report", str(reports["warm"]),
                    "--baseline-dir", str(baselines)]) == 0
    assert "same counts" in capsys.readouterr().out


def test_a_recapture_is_not_explained_away_as_first_call_work():
    """A counters-only run without a warm-up adds "counted on the first call ... run again with
    --warmup-batches 1" to the first counter that moved. Graph captures are counted alike in
    both modes (a timed run's count holds its warm-up's), so a recapture got that hint and sent
    its reader to rerun; an op that moved still gets it."""
    timed = make_run(predictions={"a": "hello world"})
    timed.counters = _counts().model_copy(update={"compilations": 3})
    entry = make_entry(timed)
    entry.counters = timed.counters

    def cold(counters: Counters) -> Run:
        document = _counters_only(timed).model_dump(mode="json", by_alias=True)
        document["timings"].update({"passes": 0, "warmup_batches": 0, "pass_seconds": []})
        document["counters"] = counters.model_dump(mode="json", by_alias=True)
        return Run.model_validate(document)

    recaptured = compare_run(cold(_counts().model_copy(update={"compilations": 4})), entry)
    (moved,) = [v for v in recaptured.verdicts if v.verdict == "regressed"]
    assert moved.metric == "counters.compilations"
    assert "counted on the first call" not in moved.note, moved.note
    more_ops = compare_run(cold(_counts(13).model_copy(update={"compilations": 3,
                                                                "first_calls": True})), entry)
    (hinted,) = [v.note for v in more_ops.verdicts if "counted on the first call" in v.note]
    assert "--warmup-batches 1" in hinted
    # counted while capturing graphs (the emulated Gaudi): --warmup-batches changes nothing
    # there, and the field, not timings.warmup_batches, says the batches were first calls
    graphs = cold(_counts(13).model_copy(update={"compilations": 3, "first_calls": True}))
    graphs.config = graphs.config.model_copy(update={"graphs": True})
    graphs.timings = graphs.timings.model_copy(update={"warmup_batches": 1})
    (hinted,) = [v.note for v in compare_run(graphs, entry).verdicts
                 if "counted on the first call" in v.note]
    assert "--warmup-batches" not in hinted and "a timed run (--passes 1)" in hinted, hinted
    warm = cold(_counts(13).model_copy(update={"compilations": 3, "first_calls": False}))
    assert not any("counted on the first call" in v.note
                   for v in compare_run(warm, entry).verdicts)
