"""`asrbench run` end to end on the embedded model, on corpora inside and outside the repo."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
from factories import embedded_rows

from asrbench.cli.main import main
from asrbench.config.settings import EMBEDDED_CORPUS
from asrbench.measure.metrics import normalizer_for


@pytest.fixture(scope="module")
def english_report(tmp_path_factory) -> dict:
    """3 English clips, batch 2 (so the last batch carries a dummy row), 1 warm-up batch, 2
    timed passes."""
    path = tmp_path_factory.mktemp("report") / "r.json"
    code = main(["run", "--dataset", str(EMBEDDED_CORPUS), "--dataset-config", "en",
                 "--language", "english", "--limit", "3", "--batch-size", "2", "--passes", "2",
                 "--warmup-batches", "1", "--device", "cpu", "--report", str(path),
                 "--no-progress"])
    assert code == 0
    return json.loads(path.read_text())


def test_report_has_schema_environment_and_one_run(english_report):
    assert english_report["schema"] == 1
    env = english_report["environment"]
    assert env["packages"]["torch"] and env["packages"]["transformers"]
    assert env["device"]["class"] == "cpu"
    # the commit of the directory the run started in (this test's), or None outside a checkout
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False)
    assert env["git"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    (run,) = english_report["runs"]
    assert run["config"]["id"] == ("whisper-base-commonvoice-mini-en-test-english-transcribe-"
                                   "fp32-bs2-n3")
    for key in ("wer", "wer_normalized", "cer", "samples_per_second", "rtfx", "tokens_per_second"):
        assert isinstance(run["metrics"][key], float)


def test_dummy_rows_never_reach_the_report(english_report):
    (run,) = english_report["runs"]
    expected = [Path(r["path"]).stem for r in embedded_rows("en")[:3]]
    assert [u["id"] for u in run["utterances"]] == expected
    assert run["dataset"]["utterances"] == 3
    assert run["timings"]["batches_per_pass"] == 2


def test_wer_in_report_equals_jiwer_recomputed_from_its_utterances(english_report):
    (run,) = english_report["runs"]
    refs = [u["reference"] for u in run["utterances"]]
    hyps = [u["prediction"] for u in run["utterances"]]
    assert run["metrics"]["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert run["metrics"]["cer"] == pytest.approx(jiwer.cer(refs, hyps))
    norm = normalizer_for("english")
    assert run["metrics"]["wer_normalized"] == pytest.approx(
        jiwer.wer([norm(r) for r in refs], [norm(h) for h in hyps]))


def test_model_really_transcribes_english(english_report):
    (run,) = english_report["runs"]
    assert run["metrics"]["wer_normalized"] < 0.35
    assert all(u["prediction"] for u in run["utterances"])
    assert all(2 <= u["tokens"] < 225 for u in run["utterances"])  # stopped at EOS


def test_throughput_is_utterances_over_timed_pass_seconds(english_report):
    (run,) = english_report["runs"]
    passes = run["timings"]["pass_seconds"]
    assert len(passes) == 2 and run["passes_identical"] is True
    per_pass = run["throughput"]["samples_per_second_per_pass"]
    assert per_pass == pytest.approx([3 / s for s in passes])
    median = sorted(per_pass)[len(per_pass) // 2] if len(per_pass) % 2 else sum(per_pass) / 2
    assert run["metrics"]["samples_per_second"] == pytest.approx(median)
    audio = sum(u["audio_seconds"] for u in run["utterances"])
    assert run["metrics"]["rtfx"] == pytest.approx(audio / run["timings"]["pass_seconds_median"])
    timings = run["timings"]
    assert timings["warmup_batches"] == 1  # --warmup-batches 1
    assert timings["pass_seconds_median"] == pytest.approx(statistics.median(passes))
    # end to end: features, the median timed pass and detokenizing
    assert timings["end_to_end_seconds"] == pytest.approx(
        timings["feature_extraction_seconds"] + statistics.median(passes)
        + timings["detokenize_seconds"])


def test_run_on_a_corpus_outside_the_repo_lists_bad_rows(outside_corpus, tmp_path, capsys,
                                                         tiny_whisper):
    """(The tiny random Whisper: what is tested is the corpus's bad rows, not transcripts. It
    never ends a row early, so a short length cap keeps its decode to a few steps.)"""
    report = tmp_path / "out.json"
    code = main(["run", "--dataset", str(outside_corpus / "en"), "--language", "en",
                 "--passes", "1", "--device", "cpu", "--model", str(tiny_whisper),
                 "--generation-max-length", "16", "--report", str(report), "--no-progress"])
    assert code == 0
    (run,) = json.loads(report.read_text())["runs"]
    assert run["dataset"]["utterances"] == 3
    assert run["dataset"]["skipped_count"] == 4
    assert {s["id"] for s in run["dataset"]["skipped"]} >= {"missing", "zero", "truncated"}
    assert "4 row(s) skipped" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--device", "hpu"], "HPU"),
    (["--dataset", "/no/such/corpus"], "does not exist"),
    (["--model", "/no/such/model"], "does not exist"),
    (["--graphs", "--device", "cpu", "--limit", "1"], "HPU and CUDA only"),
    (["--batch-size", "0"], "batch size"),
])
def test_user_errors_exit_2_with_one_line(args, message, capsys, tmp_path):
    code = main(["run", "--no-progress", "--report", str(tmp_path / "r.json"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("asrbench: error:") and message.lower() in err.lower()
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_help_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "asrbench", "run", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--dataset-config" in out and "embedded default" in out
    version = subprocess.run([sys.executable, "-m", "asrbench", "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert version.startswith("asrbench ")


def test_run_matrix_runs_the_section_of_the_device_class(tmp_path, tiny_whisper):
    """`asrbench run --matrix` expands the same section pytest would, flags override it (on
    the tiny random Whisper: the expansion is tested, not transcripts)."""
    import json

    from asrbench.cli.main import main

    matrix = tmp_path / "matrix.toml"
    matrix.write_text(f'[cpu]\nmodels = ["{tiny_whisper.as_posix()}"]\n'
                      'datasets = [{ dataset = "embedded", dataset_config = "en", '
                      'language = "english" }]\nbatch_sizes = [2, 3]\nlimit = 2\npasses = 1\n'
                      'generation_max_length = 24\n'
                      'tolerance = { samples_per_second_rel = 0.7, reference_wer_max = 0.45 }\n'
                      '[cuda]\nbatch_sizes = [64]\n')
    report = tmp_path / "r.json"
    assert main(["run", "--matrix", str(matrix), "--device", "cpu", "--limit", "1",
                 "--no-progress", "--report", str(report)]) == 0
    runs = json.loads(report.read_text())["runs"]
    # two batch sizes from [cpu] (not [cuda]); --limit 1 overrode the section's limit 2
    assert [r["config"]["batch_size"] for r in runs] == [2, 3]
    assert all(r["config"]["limit"] == 1 and r["dataset"]["utterances"] == 1 for r in runs)
    assert all(len(r["throughput"]["samples_per_second_per_pass"]) == 1 for r in runs)
    # the section's tolerance goes with each run, as the pytest door writes it: `asrbench
    # compare` of this report and a baseline recorded from it hold the run to the section's
    # limits (the CLI's report had none: its reference check used the default 0.3, and the two
    # doors judged the same run differently)
    held = {"samples_per_second_rel": 0.7, "reference_wer_max": 0.45}
    assert all(r["tolerance_policy"] == held for r in runs)
    directory = tmp_path / "baselines"
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(directory), "--tolerance", "wer_abs=0.02"]) == 0
    entries = json.loads((directory / "cpu.json").read_text())["entries"]
    assert [e["tolerance"] for e in entries.values()] == [{**held, "wer_abs": 0.02}] * 2
    assert main(["run", "--matrix", str(matrix), "--config", str(matrix)]) == 2


def test_no_command_writes_over_the_report_it_reads(tmp_path, capsys):
    """`export --out`, `html --out` and `compare --markdown` naming the report itself replaced
    it with their output (a later compare then said "not valid JSON"); by another name, a link,
    as by the same path, each is refused in one line and the report is left as it was."""
    from factories import make_report_document, write_report

    from asrbench.cli.main import main

    report = write_report(tmp_path / "r.json", make_report_document())
    before = report.read_bytes()
    (tmp_path / "link.json").symlink_to(report)
    other_name = tmp_path / "sub" / ".." / "r.json"
    (tmp_path / "sub").mkdir()
    for target in (report, tmp_path / "link.json", other_name):
        for argv in (["export", "--report", str(report), "--format", "github-action-benchmark",
                      "--direction", "bigger", "--out", str(target)],
                     ["html", "--report", str(report), "--out", str(target)],
                     ["compare", "--report", str(report), "--markdown", str(target),
                      "--baseline-dir", str(tmp_path)]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert f"{target} is the report it reads: name another file" in err, err
            assert err.count("\n") == 1
            assert report.read_bytes() == before
    assert main(["merge", str(report), "--report", str(tmp_path / "link.json")]) == 2
    assert "is one of the shards' reports" in capsys.readouterr().err
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    assert main(["merge", str(loop), str(report), "--report", str(tmp_path / "m.json")]) == 2
    assert "Traceback" not in capsys.readouterr().err
