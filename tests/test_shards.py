"""Scheduler shards: `asrbench run --shard I/N|auto`, the shard of an utterance, and
`asrbench merge` (its arithmetic and its refusals on reports built here; a real run of the tiny
Whisper: two shards merged equal one run; the Slurm and Kubernetes examples of
docs/distributed.md run as written, on the CPU).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shlex
import statistics
from pathlib import Path

import pytest
from factories import make_contention, with_own_error_rates

from asrbench.cli.main import main
from asrbench.errors import AsrbenchError
from asrbench.formats.io import load_report, write_report
from asrbench.formats.merge import merge_reports
from asrbench.formats.model import (
    COUNTER_VERSION,
    SCHEMA_VERSION,
    Contention,
    Report,
    Skip,
    ThroughputStats,
    dump,
    rate_spread,
)
from asrbench.measure.distributed import ShardSpec, parse_shard, shard_members, split_fingerprint

ROOT = Path(__file__).resolve().parent.parent

# -- the shard index from the command line and the scheduler's environment -------------------


def test_shard_i_of_n_is_zero_based_and_checked():
    assert parse_shard("0/4", environ={}) == ShardSpec(0, 4, "--shard 0/4")
    assert parse_shard(" 3/4 ", environ={}).index == 3
    for bad, message in (("4/4", "outside 0..3"), ("-1/4", "outside"), ("1/0", ">= 1"),
                         ("1", "expected I/N"), ("a/4", "integers"), ("1/4/2", "integers")):
        with pytest.raises(AsrbenchError, match=message):
            parse_shard(bad, environ={})
    with pytest.raises(AsrbenchError, match="says 4 shards but --shard-count"):
        parse_shard("1/4", count=3, environ={})


def test_shard_auto_reads_a_slurm_array():
    # --array=1-4: ids 1..4, min 1, count 4 -> index id - 1
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}
    spec = parse_shard("auto", environ=env)
    assert (spec.index, spec.count) == (2, 4)
    assert spec.source.startswith("Slurm array: SLURM_ARRAY_TASK_ID=3")
    # --array=0-9:3 -> ids 0, 3, 6, 9 (count 4): id 9 is the last of four
    env = {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "0",
           "SLURM_ARRAY_TASK_STEP": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    spec = parse_shard("auto", environ=env)
    assert (spec.index, spec.count) == (3, 4)
    with pytest.raises(AsrbenchError, match="not on the array's grid"):
        parse_shard("auto", environ={**env, "SLURM_ARRAY_TASK_ID": "4"})
    with pytest.raises(AsrbenchError, match="SLURM_ARRAY_TASK_COUNT is not"):
        parse_shard("auto", environ={"SLURM_ARRAY_TASK_ID": "0"})
    with pytest.raises(AsrbenchError, match="outside 0..1"):  # an id beyond the count
        parse_shard("auto", environ={"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2"})
    with pytest.raises(AsrbenchError, match="not an integer"):
        parse_shard("auto", environ={"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"})


def test_shard_auto_reads_a_kubernetes_indexed_job_with_the_count_given():
    env = {"JOB_COMPLETION_INDEX": "2"}
    spec = parse_shard("auto", count=3, environ=env)
    assert (spec.index, spec.count) == (2, 3) and "JOB_COMPLETION_INDEX=2" in spec.source
    with pytest.raises(AsrbenchError, match="--shard-count N"):
        parse_shard("auto", environ=env)
    with pytest.raises(AsrbenchError, match="outside 0..1"):
        parse_shard("auto", count=2, environ=env)
    with pytest.raises(AsrbenchError, match="no scheduler index found"):
        parse_shard("auto", count=2, environ={})


def test_the_kubernetes_count_may_come_from_the_config_file(tmp_path, monkeypatch):
    import argparse

    from asrbench.cli.run import _shard
    from asrbench.config.settings import load_config_file

    config = tmp_path / "shards.toml"
    config.write_text('shard_count = 3\nbatch_size = 4\n')
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    spec = _shard(argparse.Namespace(shard="auto", shard_count=None, config=config))
    assert (spec.index, spec.count) == (2, 3)
    spec = _shard(argparse.Namespace(shard="auto", shard_count=5, config=config))
    assert spec.count == 5  # the flag overrides the file
    assert load_config_file(config)[0] == {"batch_size": 4}  # not a setting of the run
    with pytest.raises(AsrbenchError, match="--shard-count needs --shard"):
        _shard(argparse.Namespace(shard=None, shard_count=2, config=None))


def test_an_utterances_shard_is_a_function_of_ids_not_of_file_order():
    ids = [f"clip-{i:05d}" for i in range(101)]
    shuffled = random.Random(7).sample(ids, len(ids))
    for count in (1, 2, 7):
        parts = [shard_members(ids, ShardSpec(i, count)) for i in range(count)]
        assert parts == [shard_members(shuffled, ShardSpec(i, count)) for i in range(count)]
        assert sorted(u for p in parts for u in p) == ids  # each utterance exactly once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # worked out independently: ids ordered by sha256, cut into 2 contiguous halves (51 + 50)
    by_hash = sorted(ids, key=lambda u: hashlib.sha256(u.encode()).digest())
    assert shard_members(ids, ShardSpec(0, 2)) == set(by_hash[:51])
    assert split_fingerprint(ids) == split_fingerprint(shuffled)
    digest = hashlib.sha256("".join(u + "\n" for u in ids).encode()).hexdigest()
    assert split_fingerprint(ids) == digest
    assert split_fingerprint(ids[:-1]) != split_fingerprint(ids)


# -- merge arithmetic and refusals on reports built here -------------------------------------

FINGERPRINT = "ab" * 32


def shard_run(index: int, count: int, utterances: list[tuple[int, str, list[int]]],
              pass_seconds: list[float], latencies: list[float], config_id: str = "cfg",
              fingerprint: str = FINGERPRINT, counters: dict | None = None,
              whisper: list[int] | None = None, **config: object) -> dict:
    """One shard's run: utterances as (split position, id, edits)."""
    words = sum(e[1] for _, _, e in utterances)
    errors = sum(e[0] for _, _, e in utterances)
    rates = [len(utterances) / s for s in pass_seconds]
    return {
        "config": {"id": config_id, **config},
        "device": {"kind": "cpu", "class": "cpu"},
        "metrics": {"wer": errors / words, "wer_normalized": 0.0, "cer": 0.0,
                    "samples_per_second": statistics.median(rates)},
        "throughput": {"samples_per_second_per_pass": rates, "samples_per_second_rsd": 0.0},
        "timings": {"pass_seconds": pass_seconds, "harness_overhead": 0.0,
                    "batches_per_pass": len(latencies) // len(pass_seconds)},
        "dataset": {"utterances": len(utterances), "normalized_wer_excluded": 0},
        "passes_identical": True,
        "utterances": [{"id": uid, "prediction": f"p {uid}", "reference": f"r {uid}",
                        "tokens": 3, "audio_seconds": 1.5, "edits": edits}
                       for _, uid, edits in utterances],
        "counters": counters,
        "shard": {"index": index, "count": count, "split_fingerprint": fingerprint,
                  "split_utterances": 5, "positions": [p for p, _, _ in utterances],
                  "latencies": latencies, "whisper_edits": whisper},
    }


def with_true_edits(run: dict) -> dict:
    """The run with each utterance's edit counts those of its own texts (what `compare` and
    `baseline update` check), the metrics left as they were."""
    from asrbench.measure.metrics import basic_normalize, utterance_edits

    for u in run["utterances"]:
        u["edits"] = utterance_edits(u["reference"], u["prediction"], basic_normalize).as_list()
    return run


def report(*runs: dict, commit: str = "c0ffee") -> Report:
    return Report.model_validate({"schema": SCHEMA_VERSION, "interrupted": False,
                                  "runs": list(runs),
                                  "environment": {"packages": {"asrbench": "1.0"},
                                                  "git": {"commit": commit}}})


def two_shards(true_edits: bool = False, **overrides: object) -> list[tuple[str, Report]]:
    # shard 0: 1 error in 10 words (WER 0.1); shard 1: 3 errors in 2 words (WER 1.5)
    zero = shard_run(0, 2, [(0, "a", [1, 4, 1, 20, 0, 4]), (3, "d", [0, 6, 0, 30, 0, 6])],
                     [2.0, 4.0], [0.5, 1.0, 1.5, 2.0], whisper=[1, 10], **overrides)
    one = shard_run(1, 2, [(1, "b", [2, 1, 2, 5, 1, 1]), (2, "c", [1, 1, 1, 5, 1, 1]),
                           (4, "e", [0, 0, 0, 0, 0, 0])],
                    [1.0, 2.0], [3.0, 4.0], whisper=[3, 2], **overrides)
    if true_edits:
        zero, one = with_true_edits(zero), with_true_edits(one)
    return [("one.json", report(one)), ("zero.json", report(zero))]


def test_merge_pools_edits_counts_samples_and_latencies():
    (run,) = merge_reports(two_shards()).runs
    assert [u.id for u in run.utterances] == ["a", "b", "c", "d", "e"]  # the split's order
    # summed edits over summed words: (1 + 0 + 2 + 1 + 0) / (4 + 6 + 1 + 1 + 0) = 4/12; the
    # mean of the shards' WERs, (0.1 + 1.5) / 2 = 0.8, would be wrong
    assert run.metrics.wer == pytest.approx(4 / 12)
    assert run.metrics.cer == pytest.approx(4 / 60)
    assert run.metrics.wer_normalized == pytest.approx(2 / 12)
    assert run.metrics.wer_normalized_whisper == pytest.approx(4 / 12)
    # all 5 samples over the shards' summed seconds, pass by pass: 5/3 and 5/6
    assert run.throughput.samples_per_second_per_pass == pytest.approx([5 / 3.0, 5 / 6.0])
    assert run.metrics.samples_per_second == pytest.approx((5 / 3 + 5 / 6) / 2)
    assert run.timings.pass_seconds == pytest.approx([3.0, 6.0])
    # latencies pooled: 0.5 1.0 1.5 2.0 3.0 4.0 -> p50 1.75, p90 3.5 (linear interpolation)
    assert run.timings.batch_latency_p50 == pytest.approx(1.75)
    assert run.timings.batch_latency_p90 == pytest.approx(3.5)
    assert run.dataset.utterances == 5 and run.dataset.audio_seconds == pytest.approx(7.5)
    assert run.metrics.tokens_per_sample == pytest.approx(3.0)
    assert run.shard is None and run.merged.shards == 2
    assert "summed timed pass" in run.merged.throughput
    assert run.config.id == "cfg" and run.counters is None
    assert "not merged" in run.merged.counters


def test_merged_shards_of_two_processor_makes_carry_no_bf16_key():
    """Shards decoded on processors of two makes are not one bf16 arithmetic: the merged
    run's device keeps neither key (cpu_bf16, cpu_id), so a bf16 entry recorded from it
    compares no transcript exactly; shards of one make keep both."""
    from asrbench.formats.environment import CPU_BF16, CPU_ID

    intel = {CPU_BF16: "avx512-bf16", CPU_ID: "vendor_id GenuineIntel, cpu family 6, model 207",
             "cpu": "Intel(R) Xeon(R) Processor"}
    shards = two_shards()
    for _, shard in shards:
        shard.runs[0].device.environment = dict(intel)
    (run,) = merge_reports(shards).runs
    assert run.device.environment == intel
    shards[1][1].runs[0].device.environment[CPU_ID] = "vendor_id AuthenticAMD, cpu family 25"
    (run,) = merge_reports(shards).runs
    assert run.device.environment == {**intel, CPU_ID: None}
    assert shards[0][1].runs[0].device.environment == intel  # the shards are left as they were


def test_merged_shards_keep_the_tolerance_policy_they_ran_under():
    """`asrbench run --matrix --shard` writes the section's tolerance into every shard's run:
    the merged run keeps it (compare holds it to the section's limits, as it holds a whole
    run), unless the shards disagree, when none is kept and the defaults judge."""
    from asrbench.formats.model import Tolerance

    section = Tolerance(reference_wer_max=0.45, samples_per_second_rel=0.9)
    shards = two_shards()
    for _, shard in shards:
        shard.runs[0].tolerance_policy = section
    (run,) = merge_reports(shards).runs
    assert run.tolerance_policy == section
    shards[1][1].runs[0].tolerance_policy = Tolerance(reference_wer_max=0.3)
    (run,) = merge_reports(shards).runs
    assert run.tolerance_policy is None


def _counters(steps: int) -> dict:
    return {"version": COUNTER_VERSION, "selection": "the first batch", "utterances": ["a", "d"],
            "rows": 2,
            "real_rows": 2, "replay_bypassed": False, "encoder_calls": 1, "decode_steps": steps,
            "steady_steps": steps - 1, "flops": 100, "flops_per_utterance": 50.0, "host_syncs": 3,
            "host_syncs_per_token": 1.0, "tokens": 6, "seconds": 0.1}


def test_merge_keeps_equal_counters_and_never_invents_differing_ones():
    shards = two_shards(counters=_counters(5))
    # the informational seconds differ between equal runs
    shards[1][1].runs[0].counters.seconds = 9.0
    (run,) = merge_reports(shards).runs
    assert run.counters is not None and run.counters.decode_steps == 5
    assert run.counters.seconds is None and run.merged.counters.startswith("merged")
    shards[0][1].runs[0].counters.decode_steps = 6
    (run,) = merge_reports(shards).runs
    assert run.counters is None and run.merged.counters.startswith("not merged")
    assert "decode_steps" in run.merged.counters


def test_merged_report_is_a_report_every_door_takes(tmp_path):
    merged = str(tmp_path / "merged.json")
    write_report(tmp_path / "merged.json", merge_reports(two_shards(true_edits=True)))
    # "r a" -> "p a": 1 of 2 words, 1 of 3 characters, in each of the 5 utterances
    assert load_report(merged).runs[0].metrics.wer == pytest.approx(5 / 10)
    baselines = str(tmp_path / "baselines")
    assert main(["baseline", "update", "--report", merged, "--baseline-dir", baselines]) == 0
    entry = json.loads((tmp_path / "baselines" / "cpu.json").read_text())["entries"]["cfg"]
    assert entry["metrics"]["wer"] == pytest.approx(5 / 10) and len(entry["predictions"]) == 5
    assert main(["compare", "--report", merged, "--baseline-dir", baselines]) == 0
    assert main(["history", "add", "--report", merged, "--history",
                 str(tmp_path / "h.sqlite")]) == 0
    assert main(["html", "--report", merged, "--baseline-dir", baselines, "--out",
                 str(tmp_path / "r.html")]) == 0


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop(0), r"shard\(s\) 1/2 missing \(1 of 2 given\)"),
    (lambda s: s.append(s[0]), "shard 1/2 given twice"),
    (lambda s: s.__setitem__(0, ("one.json", report(shard_run(
        1, 2, [(1, "b", [0, 1, 0, 1, 0, 1])], [1.0, 1.0], [1.0], config_id="other")))),
     "shards of different configs"),
    (lambda s: s.__setitem__(0, ("one.json", report(shard_run(
        1, 2, [(1, "b", [0, 1, 0, 1, 0, 1])], [1.0, 1.0], [1.0], batch_size=4)))),
     "differ in batch_size"),
    (lambda s: s.__setitem__(0, ("one.json", report(*s[0][1].runs, commit="beef"))),
     "different code versions"),
    (lambda s: s.__setitem__(0, ("one.json", report(shard_run(
        1, 2, [(1, "b", [0, 1, 0, 1, 0, 1])], [1.0, 1.0], [1.0], fingerprint="cd" * 32)))),
     "shards of different splits"),
    (lambda s: s.__setitem__(0, ("one.json", report(shard_run(
        1, 3, [(1, "b", [0, 1, 0, 1, 0, 1])], [1.0, 1.0], [1.0])))), "share their count"),
])
def test_merge_refuses_what_is_not_one_split_in_one_line(tmp_path, capsys, change, message):
    shards = two_shards()
    change(shards)
    with pytest.raises(AsrbenchError, match=message):
        merge_reports(shards)
    # the command: exit 2, one line, nothing written
    paths = []
    for number, (_, doc) in enumerate(shards):
        paths.append(tmp_path / f"{number}.json")
        write_report(paths[-1], doc)
    code = main(["merge", *map(str, paths), "--report", str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("asrbench: error:")
    assert not (tmp_path / "out.json").exists()


def test_a_shard_report_is_refused_by_the_gating_doors(tmp_path, capsys):
    path = tmp_path / "shard.json"
    write_report(path, two_shards()[1][1])
    (tmp_path / "empty").mkdir()
    for argv in (["compare", "--report", str(path)],
                 ["baseline", "update", "--report", str(path), "--baseline-dir", str(tmp_path)],
                 ["history", "add", "--report", str(path), "--history",
                  str(tmp_path / "h.sqlite")],
                 # html judged it ("Gate: pass") and export charted a part of the split under
                 # the whole config's name
                 ["html", "--report", str(path), "--baseline-dir", str(tmp_path / "empty"),
                  "--out", str(tmp_path / "r.html")],
                 ["export", "--report", str(path), "--format", "github-action-benchmark",
                  "--direction", "bigger", "--out", str(tmp_path / "x.json")]):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        err = captured.err + captured.out
        assert "is shard 0/2 of its split" in err and "asrbench merge" in err, argv
    assert not (tmp_path / "x.json").exists()


# -- real runs: two shards merged equal one run (tiny Whisper, 5 clips) ----------------------

CLIPS = 5  # odd: the shards are uneven (3 + 2)
TINY = ["--device", "cpu", "--dataset-config", "en", "--limit", str(CLIPS), "--batch-size", "2",
        "--passes", "1", "--generation-max-length", "24", "--no-progress"]
#: counters fields that are informational (not gated) and differ between equal runs
INFORMATIONAL = ("seconds", "peak_device_memory_bytes")


@pytest.fixture(scope="module")
def one_thread():
    """Every run of this module in one torch thread: the same kernels (so the same tokens) in
    the single run and the shards, and no oversubscribed cores on a loaded 2-core runner."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, tiny_whisper, one_thread):
    """The tiny config run once, unsharded, in this process."""
    path = tmp_path_factory.mktemp("single") / "single.json"
    assert main(["run", *TINY, "--model", str(tiny_whisper), "--report", str(path)]) == 0
    return dump(load_report(path))["runs"][0]


def assert_same_run(merged: dict, single: dict) -> None:
    assert merged["config"]["id"] == single["config"]["id"]  # the unsharded baseline entry
    assert [u["id"] for u in merged["utterances"]] == [u["id"] for u in single["utterances"]]
    assert ([u["prediction"] for u in merged["utterances"]]
            == [u["prediction"] for u in single["utterances"]])
    assert [u["edits"] for u in merged["utterances"]] == [u["edits"] for u in single["utterances"]]
    for metric in ("wer", "cer", "wer_normalized", "wer_normalized_whisper", "tokens_per_sample"):
        assert merged["metrics"][metric] == single["metrics"][metric], metric
    assert merged["dataset"]["utterances"] == CLIPS
    assert merged["counters"] is not None and single["counters"] is not None
    assert ({k: v for k, v in merged["counters"].items() if k not in INFORMATIONAL}
            == {k: v for k, v in single["counters"].items() if k not in INFORMATIONAL})


def _doc_block(marker: str) -> str:
    """The fenced code block of docs/distributed.md whose first line holds `marker`."""
    text = (ROOT / "docs" / "distributed.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    found = [b for b in blocks if marker in b.splitlines()[0]]
    assert len(found) == 1, f"docs/distributed.md: no single block starting with {marker!r}"
    return found[0]


def _command(block: str, program: str, env: dict[str, str]) -> list[str]:
    """The one `asrbench <program> ...` command of a script or manifest (continuation lines
    joined; inside --wrap "..." too), its ${VARIABLES} expanded from env."""
    joined = re.sub(r"\\\n\s*", " ", block)
    found = re.findall(r"asrbench " + program + r'\b[^"\n]*', joined)
    assert len(found) == 1, found
    text = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], found[0])
    return shlex.split(text)


def _tiny(argv: list[str], model: Path) -> list[str]:
    """A documented `asrbench run` on the tiny Whisper: its --config (a Gaudi config) left out,
    the tiny settings added (flags override a config file anyway)."""
    out = argv[1:]
    if "--config" in out:
        at = out.index("--config")
        del out[at:at + 2]
    return [*out, *TINY, "--model", str(model)]


def _merge_and_load(command: list[str], cwd: Path) -> tuple[dict, list[str]]:
    shards = sorted(str(p) for p in cwd.glob(command[2]))
    assert main(["merge", *shards, *command[3:]]) == 0
    merged = dump(load_report(cwd / command[command.index("--report") + 1]))["runs"][0]
    return merged, shards


def test_the_slurm_example_shards_merge_into_the_single_run(tmp_path, monkeypatch, capsys,
                                                            tiny_whisper, single_run):
    """docs/distributed.md's Slurm array script run as an array of 2 tasks (--array=1-2: the
    5 clips in 2 shards, 3 + 2), then its merge step; the merged run is the single run."""
    script = _doc_block("#!/bin/bash")
    assert re.search(r"#SBATCH --array=1-\d+", script)
    monkeypatch.chdir(tmp_path)
    for task in ("1", "2"):
        env = {"SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_MIN": "1",
               "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_JOB_ID": "77"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert main(_tiny(_command(script, "run", env), tiny_whisper)) == 0
        out = capsys.readouterr().out
        assert (f"shard {int(task) - 1}/2 of each split (Slurm array: "
                f"SLURM_ARRAY_TASK_ID={task}") in out
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name)
    merge = _command(_doc_block("# submit the array"), "merge", {"job": "77"})
    merged, shards = _merge_and_load(merge, tmp_path)
    sizes = sorted(len(json.loads(Path(p).read_text())["runs"][0]["utterances"]) for p in shards)
    assert sizes == [2, 3]  # uneven shards
    assert_same_run(merged, single_run)


def test_the_kubernetes_example_shards_merge_into_the_single_run(tmp_path, monkeypatch,
                                                                 tiny_whisper, single_run):
    """docs/distributed.md's Indexed Job: its container command run for completion indices 0
    and 1 (the manifest's --shard-count scaled to 2 for 5 clips), then its merge step."""
    manifest = _doc_block("apiVersion: batch/v1")
    assert re.search(r"completionMode:\s*Indexed", manifest)
    completions = re.search(r"completions:\s*(\d+)", manifest).group(1)
    monkeypatch.chdir(tmp_path)
    for index in ("0", "1"):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", index)
        argv = _command(manifest, "run", {"JOB_COMPLETION_INDEX": index})
        at = argv.index("--shard-count") + 1
        assert argv[at] == completions
        argv[at] = "2"
        assert main(_tiny(argv, tiny_whisper)) == 0
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    merged, shards = _merge_and_load(_command(_doc_block("# after the Job completes"), "merge", {}),
                                     tmp_path)
    assert len(shards) == 2
    assert_same_run(merged, single_run)


def test_merge_refuses_shards_that_lost_utterances_and_keeps_the_most_starved_contention():
    """A shard report with an utterance removed merged into a 4-of-5 run with its WER (the
    config's id still saying the whole split), which `baseline update` recorded. A clip that
    did not decode is skipped in its own shard and still accounted for."""
    shards = two_shards()
    one = shards[0][1].runs[0]
    shorter = one.shard.model_copy(update={"positions": one.shard.positions[:-1]})
    dropped = one.model_copy(update={"utterances": one.utterances[:-1], "shard": shorter})
    with pytest.raises(AsrbenchError, match=r"the shards account for 4 of the split's 5 usable "
                                            r"utterances \(4 scored, 0 that did not decode\)"):
        merge_reports([("one.json", report(dropped)), shards[1]])
    # the same utterance skipped in its shard (it did not decode): accounted for, merged
    skip = dropped.dataset.model_copy(update={"skipped": [Skip(id="e", reason="truncated")]})
    failed = dropped.model_copy(update={"dataset": skip, "shard": dropped.shard.model_copy(
        update={"skipped_positions": [4]})})
    (run,) = merge_reports([("one.json", report(failed)), shards[1]]).runs
    assert [u.id for u in run.utterances] == ["a", "b", "c", "d"]
    # contention: a shard starved of the machine makes the merged run's throughput unjudged
    busy = Contention.model_validate(make_contention(1.0, 3.0, threads=1))
    starved = one.model_copy(update={"timings": one.timings.model_copy(
        update={"contention": busy})})
    (run,) = merge_reports([("one.json", report(starved)), shards[1]]).runs
    assert run.timings.contention == busy


def test_merge_never_writes_over_one_of_its_shards(tmp_path, capsys):
    paths = []
    for name, document in two_shards():
        paths.append(tmp_path / name)
        write_report(paths[-1], document)
    before = paths[0].read_bytes()
    assert main(["merge", *map(str, paths), "--report", str(paths[0])]) == 2
    assert "is one of the shards' reports" in capsys.readouterr().err
    assert paths[0].read_bytes() == before


def _shard_files(tmp_path: Path, change=None) -> list[str]:
    """The two shards (true edit counts, WER and samples/s their own) written as files, shard
    0 then changed by `change`."""
    paths = []
    for name, document in two_shards(true_edits=True):
        data = document.model_dump(mode="json", by_alias=True)
        _rate_and_wer_of_its_own(data["runs"][0])
        if change is not None and name == "zero.json":
            change(data["runs"][0])
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(data), encoding="utf-8")
    return [str(p) for p in paths]


def _rate_and_wer_of_its_own(run: dict) -> None:
    """A shard run left consistent with itself: its error rates and samples/s recomputed."""
    with_own_error_rates(run)
    stats = ThroughputStats.of([len(run["utterances"]) / s
                                for s in run["timings"]["pass_seconds"]])
    run["throughput"] = stats.model_dump()
    run["metrics"]["samples_per_second"] = rate_spread(stats.samples_per_second_per_pass)[0]


@pytest.mark.parametrize("change, message", [
    # a negative pass: merged into 4.99 samples/s (true 0.42) with exit 0
    (lambda r: r["timings"].__setitem__("pass_seconds", [-3.0, 4.0]), "pass_seconds"),
    # 1e308 s passes: an infinite sum, a pydantic traceback
    (lambda r: r["timings"].__setitem__("pass_seconds", [1e308, 1e308]), "pass_seconds"),
    # edit counts not the transcripts': merged into a WER of 62.6 with exit 0
    (lambda r: r["utterances"][0].__setitem__("edits", [1000, 1, 0, 1, 0, 1]),
     "zero.json: cfg: utterance a: edit counts"),
    # a WER not the shard's own counts
    (lambda r: r["metrics"].__setitem__("wer", 0.0), "zero.json: cfg: wer 0, where"),
])
def test_merge_refuses_shard_numbers_no_run_writes_in_one_line(tmp_path, capsys, change,
                                                                message):
    assert main(["merge", *_shard_files(tmp_path), "--report",
                 str(tmp_path / "ok.json")]) == 0  # the shards as they are: fine
    capsys.readouterr()
    merged = tmp_path / "merged.json"
    assert main(["merge", *_shard_files(tmp_path, change), "--report", str(merged)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not merged.exists()


def test_a_refused_merge_leaves_no_folders_behind(tmp_path, capsys):
    """`merge` of shards with different counts into fresh/deep/out.json was refused, but had
    made fresh/deep/ first (its check that the report can be written made the folders)."""
    shards = two_shards()
    paths = []
    for name, document in [shards[0], ("other.json", report(shard_run(
            1, 3, [(1, "b", [0, 1, 0, 1, 0, 1])], [1.0, 1.0], [1.0])))]:
        paths.append(tmp_path / name)
        write_report(paths[-1], document)
    out = tmp_path / "fresh" / "deep" / "out.json"
    assert main(["merge", *map(str, paths), "--report", str(out)]) == 2
    assert capsys.readouterr().err.startswith("asrbench: error: ")
    assert not (tmp_path / "fresh").exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("x", encoding="utf-8")
    assert main(["merge", *map(str, paths), "--report", str(blocked / "out.json")]) == 2
    assert "its directory cannot be written" in capsys.readouterr().err


def test_local_changes_in_any_shard_are_the_merged_runs():
    """A shard run from a checkout with local changes merged with a clean one: the merged
    environment said `dirty: False` when the clean shard came first, so history and the HTML
    page lost the "local changes" flag; it says True in either order now."""
    def flagged(dirty: bool) -> Report:
        shard = dict(two_shards()[0][1].model_dump(mode="json", by_alias=True))
        shard["environment"]["git"]["dirty"] = dirty
        return Report.model_validate(shard)

    (one_name, _), (zero_name, zero) = two_shards()
    for order in ([(one_name, flagged(True)), (zero_name, zero)],
                  [(zero_name, zero), (one_name, flagged(True))]):
        assert merge_reports(order).environment.git["dirty"] is True
    clean = merge_reports([(one_name, flagged(False)), (zero_name, zero)])
    assert clean.environment.git.get("dirty") is not True
