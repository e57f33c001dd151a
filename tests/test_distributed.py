"""Data-parallel runs: sharding, launch detection, merging, and real 2-rank gloo runs on CPU.

The subprocess tests launch `python -m torch.distributed.run --nproc-per-node 2` on a few
English clips of the embedded corpus and compare with a 1-process run of the same config, with
the tiny random Whisper (conftest's tiny_whisper): what is tested is sharding, launching and
merging, and each rank pays its process start, not seconds of whisper-base per clip. The
ranks run 1 thread each (torchrun sets OMP_NUM_THREADS=1), so the 1-process reference does
too: CPU kernels reduce in a different order with 2 threads, which here changed the token ids
(not the text) of 4 of 9 clips once; the comparison is about sharding, not thread counts.
Every launch has a subprocess timeout and a short process-group timeout, so a broken rank can
never hang the suite.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch.distributed as dist
from factories import embedded_rows

from asrbench.config.settings import EMBEDDED_CORPUS, BenchConfig, build_configs, load_config_file
from asrbench.errors import AsrbenchError
from asrbench.formats.io import load_report
from asrbench.formats.model import (
    COUNTER_VERSION,
    Compilations,
    Counters,
    DeviceInfo,
    Run,
    Skip,
    UtteranceResult,
    dump,
)
from asrbench.measure.distributed import (
    Launch,
    World,
    config_toml,
    cpu_threads,
    detect_launch,
    merge_results,
    shard,
)
from asrbench.measure.engine import measured_timings, merge_timings, score

needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no torch.distributed gloo backend")

# 5 English clips (odd: rank 0 gets 3, rank 1 gets 2), batch 2 (rank 0 pads its last batch).
CLIPS = 5
SMALL = ["--device", "cpu", "--dataset-config", "en", "--limit", str(CLIPS), "--batch-size", "2",
         "--passes", "1", "--generation-max-length", "40", "--no-progress"]
LAUNCH_TIMEOUT = 300  # seconds; a healthy 2-rank run of SMALL takes well under a minute here


def small(model: Path) -> list[str]:
    """SMALL on the given model folder (the tiny Whisper)."""
    return [*SMALL, "--model", str(model)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.setdefault("ASRBENCH_DIST_TIMEOUT", "120")
    env.update(extra)
    return env


def torchrun(target: list[str], args: list[str], cwd: Path, nproc: int = 2, **env: str
             ) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc-per-node N <target> <args>`."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", *target, *args]
    return subprocess.run(command, cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)


# -- sharding -----------------------------------------------------------------------------

@pytest.mark.parametrize("count, world", [(9, 2), (40, 3), (7, 8), (0, 2), (1, 1), (80, 8)])
def test_shards_cover_every_index_once_in_order(count, world):
    shards = [shard(count, world, rank) for rank in range(world)]
    assert [i for s in shards for i in s] == list(range(count))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the remainder goes to the first ranks
    # the sizes a balanced split must have, worked out independently of shard()
    assert sizes == [count // world + (1 if rank < count % world else 0) for rank in range(world)]


def test_shard_sizes_by_hand():
    assert [len(shard(9, 2, r)) for r in range(2)] == [5, 4]
    assert [list(shard(7, 3, r)) for r in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [len(shard(3, 5, r)) for r in range(5)] == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError):
        shard(9, 2, 2)


# -- launch environment -------------------------------------------------------------------

def test_detect_launch_torchrun_mpirun_and_none():
    assert detect_launch({}) == Launch()
    torchrun_env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "8"}
    assert detect_launch(torchrun_env) == Launch(3, 8, 3, 8, "torchrun")
    mpi_env = {"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8",
               "OMPI_COMM_WORLD_LOCAL_RANK": "5", "OMPI_COMM_WORLD_LOCAL_SIZE": "8"}
    assert detect_launch(mpi_env) == Launch(5, 8, 5, 8, "mpirun")
    assert detect_launch(mpi_env).label == "rank 5 of 8"


@pytest.mark.parametrize("env, message", [
    ({"RANK": "2", "WORLD_SIZE": "2"}, "inconsistent"),
    ({"RANK": "0"}, "WORLD_SIZE is not set"),
    ({"OMPI_COMM_WORLD_RANK": "x", "OMPI_COMM_WORLD_SIZE": "2"}, "not an integer"),
])
def test_bad_launch_environment_is_a_user_error(env, message):
    with pytest.raises(AsrbenchError, match=message):
        detect_launch(env)


def test_cpu_threads_follow_omp_then_binding_then_share():
    two = Launch(0, 2, 0, 2, "torchrun")
    assert cpu_threads(two, {"OMP_NUM_THREADS": "1"}, available=16, total=16) == 1
    assert cpu_threads(two, {}, available=4, total=16) == 4  # bound to 4 cores by mpirun
    assert cpu_threads(two, {}, available=16, total=16) == 8  # 16 cores shared by 2 ranks
    assert cpu_threads(Launch(0, 8, 0, 8), {}, available=2, total=2) == 1


def test_world_size_is_in_the_id_only_above_one():
    one = BenchConfig(dataset_config="en", language="english")
    assert "ws" not in one.id
    assert one.replace(world_size=2).id == one.id + "-ws2"
    with pytest.raises(AsrbenchError, match="world size"):
        BenchConfig(world_size=0)


def test_world_sets_its_size_and_refuses_a_config_asking_for_another():
    world = World(Launch(0, 2, 0, 2, "torchrun"), timeout_s=5)
    (config,) = world.configs([BenchConfig()])
    assert config.world_size == 2 and config.id.endswith("-ws2")
    with pytest.raises(AsrbenchError, match="world_size 4 but 2 process"):
        world.configs([BenchConfig(world_size=4)])


def test_config_toml_round_trips_to_the_same_config(tmp_path):
    config = BenchConfig(dataset=str(EMBEDDED_CORPUS), dataset_config="en", language="english",
                         batch_size=4, limit=9, generation_max_length=64, device="cpu",
                         world_size=2)
    path = tmp_path / "c.toml"
    path.write_text(config_toml(config, passes=2))
    shared, runs, passes = load_config_file(path)
    (again,) = build_configs(shared, runs)
    assert again == config and passes == 2


# -- merging shard results ----------------------------------------------------------------

CONFIG = BenchConfig(language="english", world_size=2)


def _part(ids: list[str], predictions: list[str], pass_seconds: list[float],
          overhead: float = 0.001, compilations: Compilations | None = None) -> Run:
    """A rank's own (shard) run: 4 tokens and 2 s of audio an utterance."""
    utterances = [UtteranceResult(id=i, reference="the cat sat", prediction=p, tokens=4,
                                  audio_seconds=2.0) for i, p in zip(ids, predictions)]
    timings = measured_timings(pass_seconds, (1 - overhead) * sum(pass_seconds), [0.5, 0.6],
                               feature_extraction_seconds=0.1, warmup_seconds=1.0,
                               warmup_batches=1, batches_per_pass=1, detokenize_seconds=0.01,
                               decoder="generate", compilations=compilations,
                               peak_host_rss_bytes=100)
    device = DeviceInfo.model_validate({"kind": "cpu", "class": "cpu", "name": "cpu"})
    return score(CONFIG, device, "cv", [Skip(id="bad", reason="empty reference")], utterances,
                 timings, True)


def test_merge_keeps_split_order_and_times_each_pass_by_its_slowest_rank():
    merged = merge_results(CONFIG, [
        _part(["a", "b", "c"], ["the cat sat", "the cat", "a cat sat"], [2.0, 3.0]),
        _part(["d", "e"], ["the cat sat", "the dog sat"], [4.0, 1.0], 0.02)])
    assert [u.id for u in merged.utterances] == ["a", "b", "c", "d", "e"]
    timings = merged.timings
    assert timings.pass_seconds == [4.0, 3.0]
    assert merged.throughput.samples_per_second_per_pass == pytest.approx([5 / 4.0, 5 / 3.0])
    assert [r.utterances for r in timings.ranks] == [3, 2]
    assert [r.pass_seconds for r in timings.ranks] == [[2.0, 3.0], [4.0, 1.0]]
    # scored from all 5 utterances, not from either shard: 15 reference words; errors:
    # 1 deletion (b), 1 substitution (c), 1 substitution (e)
    assert merged.metrics.wer == pytest.approx(3 / 15)
    assert merged.metrics.samples_per_second == pytest.approx((5 / 4.0 + 5 / 3.0) / 2)  # median
    assert merged.metrics.tokens_per_sample == pytest.approx(4.0)
    assert merged.metrics.rtfx == pytest.approx(10.0 / 3.5)  # 10 s of audio, median pass 3.5 s
    assert len(merged.dataset.skipped) == 1 and timings.world_size == 2
    assert merged.dataset.utterances == 5
    assert timings.harness_overhead == pytest.approx(0.02) and timings.decoder == "generate"
    # latencies pool over ranks: p50 of [0.5, 0.6, 0.5, 0.6]
    assert timings.batch_latency_p50 == pytest.approx(0.55)
    assert timings.ranks[0].batch_latency_p50 == pytest.approx(0.55)
    # the merged run is a valid report run, and the working-only latencies are not written
    document = dump(merged)
    assert "latencies" not in document["timings"]
    assert Run.model_validate(document).timings.ranks[1].utterances == 2


def test_merged_compilations_add_up_and_stay_unknown_if_any_rank_did_not_count():
    counted = Compilations(counter="c", warmup=3, passes=[0, 1])
    merged = merge_timings([_part(["a"], ["x"], [1.0, 1.0], compilations=counted).timings,
                            _part(["b"], ["y"], [1.0, 1.0], compilations=counted).timings],
                           [1, 1])
    assert merged.compilations == Compilations(counter="c", warmup=6, passes=[0, 2])
    partial = merge_timings([_part(["a"], ["x"], [1.0], compilations=counted).timings,
                             _part(["b"], ["y"], [1.0]).timings], [1, 1])
    assert partial.compilations is None


def test_merged_run_keeps_rank_0s_counters():
    """Rank 0's counted batch is the split's first, the one a single process counts."""
    def counters(rows: int, step_mm: int) -> Counters:
        return Counters(version=COUNTER_VERSION, selection="first batch", rows=rows,
                        real_rows=rows, replay_bypassed=False, encoder_calls=1, decode_steps=3,
                        steady_steps=2, decode_step_ops={"aten.mm f32": step_mm}, flops=10,
                        flops_per_utterance=10 / rows, host_syncs=0, host_syncs_per_token=0,
                        tokens=3 * rows)

    first, second = _part(["a"], ["x"], [1.0]), _part(["b"], ["y"], [1.0])
    first.counters, second.counters = counters(1, 7), counters(1, 9)
    merged = merge_results(CONFIG, [first, second])
    assert merged.counters == counters(1, 7)
    assert Run.model_validate(dump(merged)).counters.decode_step_ops == {"aten.mm f32": 7}
    assert merge_results(CONFIG, [_part(["a"], ["x"], [1.0]), second]).counters is None


# -- real 2-rank runs (gloo, CPU) -----------------------------------------------------------

@pytest.fixture(scope="module")
def one_and_two_ranks(tmp_path_factory, tiny_whisper):
    """The SMALL config run once in this process and once by torchrun on 2 ranks."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no torch.distributed gloo backend")
    path = tmp_path_factory.mktemp("dist")
    one = subprocess.run([sys.executable, "-m", "asrbench", "run", *small(tiny_whisper),
                          "--report", str(path / "one.json")], cwd=path,
                         env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True,
                         timeout=LAUNCH_TIMEOUT)
    assert one.returncode == 0, one.stderr[-4000:]
    proc = torchrun(["-m", "asrbench"], ["run", *small(tiny_whisper), "--report",
                                         str(path / "two.json")], path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return (dump(load_report(path / "one.json"))["runs"][0],
            dump(load_report(path / "two.json"))["runs"][0], proc, path)


@needs_gloo
def test_two_ranks_give_the_one_rank_predictions_and_wer(one_and_two_ranks):
    one, two, _, _ = one_and_two_ranks
    expected_ids = [Path(r["path"]).stem for r in embedded_rows("en")[:CLIPS]]
    assert [u["id"] for u in two["utterances"]] == expected_ids  # each once, in split order
    assert ([u["prediction"] for u in two["utterances"]]
            == [u["prediction"] for u in one["utterances"]])
    assert [u["tokens"] for u in two["utterances"]] == [u["tokens"] for u in one["utterances"]]
    for metric in ("wer", "wer_normalized", "cer", "tokens_per_sample"):
        assert two["metrics"][metric] == one["metrics"][metric]
    assert one["device"]["environment"]["torch_threads"] == 1
    assert two["config"]["id"] == one["config"]["id"] + "-ws2"
    assert two["dataset"]["utterances"] == CLIPS and two["passes_identical"] is True


@needs_gloo
def test_two_rank_throughput_is_all_utterances_over_the_slowest_rank(one_and_two_ranks):
    _, two, _, _ = one_and_two_ranks
    ranks = two["timings"]["ranks"]
    assert [r["utterances"] for r in ranks] == [3, 2]
    assert [r["batches_per_pass"] for r in ranks] == [2, 1]  # 3 = 2 + 1 real rows, 2 = 2
    slowest = [max(r["pass_seconds"][0] for r in ranks)]
    assert two["timings"]["pass_seconds"] == slowest
    assert (two["throughput"]["samples_per_second_per_pass"]
            == pytest.approx([CLIPS / s for s in slowest]))
    assert two["device"]["environment"]["torch_threads"] == 1  # torchrun's OMP_NUM_THREADS=1


@needs_gloo
def test_only_rank_zero_prints_and_writes(one_and_two_ranks):
    _, _, proc, path = one_and_two_ranks
    assert proc.stdout.count("report written to") == 1
    assert proc.stdout.count("2 ranks (torchrun)") == 1
    assert sorted(p.name for p in path.iterdir()) == ["one.json", "two.json"]


@needs_gloo
def test_more_ranks_than_utterances_is_a_clear_error(tmp_path, tiny_whisper):
    args = [a if a != str(CLIPS) else "1" for a in small(tiny_whisper)]
    proc = torchrun(["-m", "asrbench"], ["run", *args, "--report", str(tmp_path / "r.json")],
                    tmp_path)
    assert proc.returncode != 0
    # Both ranks find it; the first to exit makes torchrun end the other (SIGTERM), which may
    # come before that one has printed: one rank's line is what a user is sure to see.
    assert re.search(r"asrbench: error: rank [01] of 2: .*1 utterance\(s\) cannot be shared "
                     r"among 2 ranks", proc.stderr), proc.stderr[-3000:]
    report = tmp_path / "r.json"
    if report.exists():  # rank 0 ended by torchrun while loading: nothing it finished
        written = json.loads(report.read_text())
        assert written["interrupted"] is True and written["runs"] == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_gloo
def test_two_nodes_on_the_loopback_give_the_single_runs_transcripts(one_and_two_ranks):
    """torchrun across nodes (docs/distributed.md, "Several nodes"): two torchrun agents, one
    per "node" (--nnodes 2 --node-rank 0/1, one process each), meeting at 127.0.0.1. The run is
    the one-process run: transcripts, error rates, and counters (every rank counts the whole
    split's first batch)."""
    one, _, _, path = one_and_two_ranks
    port = str(_free_port())
    report = path / "two-nodes.json"
    agents = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
         "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", port,
         "-m", "asrbench", "run", *SMALL, "--model", one["config"]["model"],
         "--report", str(report)],
        cwd=path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node in (0, 1)]
    outputs = []
    try:
        for agent in agents:
            outputs.append(agent.communicate(timeout=LAUNCH_TIMEOUT)[0])
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    assert [a.returncode for a in agents] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    two = dump(load_report(report))["runs"][0]
    assert two["config"]["id"] == one["config"]["id"] + "-ws2"
    assert [u["id"] for u in two["utterances"]] == [u["id"] for u in one["utterances"]]
    assert ([u["prediction"] for u in two["utterances"]]
            == [u["prediction"] for u in one["utterances"]])
    for metric in ("wer", "wer_normalized", "cer"):
        assert two["metrics"][metric] == one["metrics"][metric]
    assert [r["utterances"] for r in two["timings"]["ranks"]] == [3, 2]
    informational = ("seconds", "peak_device_memory_bytes")
    assert ({k: v for k, v in two["counters"].items() if k not in informational}
            == {k: v for k, v in one["counters"].items() if k not in informational})


@needs_gloo
def test_mpirun_environment_as_gaudi_spawn_sets_it(tmp_path, tiny_whisper):
    """Two processes with only mpirun's OMPI_COMM_WORLD_* variables and gaudi_spawn.py's
    MASTER_ADDR/MASTER_PORT (no mpirun here: the variables are what asrbench reads)."""
    args = [sys.executable, "-m", "asrbench", "run", "--device", "cpu", "--dataset-config", "en",
            "--limit", "3", "--batch-size", "2", "--passes", "1", "--generation-max-length", "32",
            "--no-progress", "--model", str(tiny_whisper), "--report", str(tmp_path / "r.json")]
    port = str(_free_port())
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env(OMPI_COMM_WORLD_RANK=str(rank),
                                                  OMPI_COMM_WORLD_SIZE="2",
                                                  OMPI_COMM_WORLD_LOCAL_RANK=str(rank),
                                                  OMPI_COMM_WORLD_LOCAL_SIZE="2",
                                                  OMP_NUM_THREADS="1",
                                                  MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for rank in range(2)]
    try:
        outputs = [proc.communicate(timeout=LAUNCH_TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert "2 ranks (mpirun)" in outputs[0][0] and outputs[1][0] == ""
    (run,) = dump(load_report(tmp_path / "r.json"))["runs"]
    assert run["config"]["id"].endswith("-n3-ws2")
    assert [r["utterances"] for r in run["timings"]["ranks"]] == [2, 1]


FAULTY_RANK = textwrap.dedent('''
    """asrbench run with a fault on rank $FAULT_RANK: an exception, or a hang, in its features."""
    import os, sys, time
    from asrbench.measure import engine
    from asrbench.cli.main import main

    if os.environ["RANK"] == os.environ["FAULT_RANK"]:
        def fault(self, *args, **kwargs):
            if os.environ["FAULT"] == "hang":
                time.sleep(3600)
            raise RuntimeError("injected fault in feature extraction")
        engine.Evaluator.featurize = fault
    sys.exit(main(sys.argv[1:]))
''')


@needs_gloo
@pytest.mark.parametrize("fault, timeout, blamed", [
    ("raise", "120", "rank 1 of 2: failed: RuntimeError: injected fault"),
    ("hang", "15", "rank 0 of 2: barrier before a timed pass failed: another rank failed or "
                   "did not arrive within 15 s"),
])
def test_a_failing_rank_fails_the_run_with_a_clear_error(tmp_path, tiny_whisper, fault, timeout,
                                                         blamed):
    script = tmp_path / "faulty_rank.py"
    script.write_text(FAULTY_RANK)
    # torchrun must tear the job down: a hung rank would run into torchrun()'s subprocess
    # timeout (LAUNCH_TIMEOUT, a hang guard), which fails the test.
    proc = torchrun([str(script)], ["run", *small(tiny_whisper), "--report",
                                    str(tmp_path / "r.json")], tmp_path,
                    FAULT_RANK="1", FAULT=fault, ASRBENCH_DIST_TIMEOUT=timeout)
    assert proc.returncode != 0
    assert f"asrbench: error: {blamed}" in proc.stderr, proc.stderr[-4000:]
    assert not (tmp_path / "r.json").exists()


# -- pytest benchmarks --nproc 2 ------------------------------------------------------------

MATRIX = """
[cpu]
models = ["{model}"]
datasets = [{ dataset = "embedded", dataset_config = "en", language = "english" }]
batch_sizes = [2]
limit = 3
passes = 2
generation_max_length = 40
# Throughput is compared between separate processes: on a busy machine only a 10x slowdown fails
# (and the second run only warns); cpu_share_min 0 judges it however busy the machine is, so
# test_throughput never skips and the outcome counts do not depend on the machine's load.
tolerance = { samples_per_second_rel = 0.9, cpu_share_min = 0 }
"""
BENCH_FILE = Path(__file__).resolve().parent.parent / "benchmarks" / "test_asr_regression.py"


@needs_gloo
def test_pytest_nproc_runs_each_config_distributed_and_gates_it(tmp_path, tiny_whisper):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["asrbench.plugin"]\n')
    (tmp_path / "test_bench.py").write_text(BENCH_FILE.read_text())
    (tmp_path / "matrix.toml").write_text(MATRIX.replace("{model}", tiny_whisper.as_posix()))

    def pytest_run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "pytest", "test_bench.py", "--asrbench-device", "cpu",
                   "--asrbench-nproc", "2", "--asrbench-matrix", "matrix.toml", "-p",
                   "no:cacheprovider", "--rootdir", str(tmp_path), "--asrbench-baseline-dir",
                   "baselines", "-rA", *args]
        return subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                              timeout=2 * LAUNCH_TIMEOUT)

    config_id = (f"{tiny_whisper.name}-commonvoice-mini-en-test-english-transcribe-fp32-bs2-ml40"
                 "-n3-ws2")
    first = pytest_run("--asrbench-update-baselines", "--asrbench-report", "first.json")
    # 7 tests: the 5 baseline checks skip while rewriting; on CPU fp32 nothing compiles and the
    # run is the reference setup, so the other two skip with their reasons every time.
    assert first.returncode == 0 and "7 skipped" in first.stdout, first.stdout[-3000:]
    entries = json.loads((tmp_path / "baselines" / "cpu.json").read_text())["entries"]
    assert list(entries) == [config_id]  # the world size is part of the baseline key
    # throughput only warns: the baseline came from another process (issue 28)
    second = pytest_run("--asrbench-report", "second.json", "--asrbench-throughput", "warn")
    assert second.returncode == 0 and "5 passed, 2 skipped" in second.stdout, second.stdout[-3000:]
    (run,) = dump(load_report(tmp_path / "second.json"))["runs"]
    assert run["config"]["id"] == config_id and len(run["timings"]["ranks"]) == 2
    assert all(v["verdict"] != "regressed" for v in run["comparison"]["verdicts"]
               if v["metric"] != "samples_per_second")
    assert (set(entries[config_id]["predictions"].values())
            == {u["prediction"] for u in run["utterances"]})
