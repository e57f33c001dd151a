"""pytest plugin: benchmark options, session fixtures, the matrix, the report and the gate.

Registered by the repository's root conftest.py (`pytest_plugins = ["asrbench.plugin"]`).
Tests that take the `bench_config` fixture are parametrized with one config per matrix row
(test ids are config ids, so `-k whisper-small` selects). The device is provisioned once, each
model is loaded/warmed once per (model, precision, graphs, device), each split is decoded once,
and each config is evaluated once however many tests read it (runner.Session caches them).
"""

from __future__ import annotations

import itertools
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from asrbench.config import EMBEDDED_CORPUS, BenchConfig, build_configs, read_toml
from asrbench.errors import AsrbenchError

DEFAULT_MATRIX = Path("benchmarks") / "matrix.toml"
STATE_KEY = pytest.StashKey[dict]()
MATRIX_KEYS = {"models", "datasets", "precisions", "batch_sizes", "graphs", "passes", "tolerance",
               "sdp_on_bf16", "gaudi_config", "generation_max_length", "max_duration", "limit",
               "eos_check_every", "ignore_eos", "warmup_batches", "reference_utterances"}
#: matrix keys copied onto every config of a section (the rest expand to a cross product)
SECTION_SETTINGS = ("sdp_on_bf16", "gaudi_config", "generation_max_length", "max_duration", "limit",
                    "eos_check_every", "ignore_eos", "warmup_batches", "reference_utterances")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asrbench", "asrbench speech-recognition regression benchmarks")
    group.addoption("--device", default="auto", help="hpu, cuda, cpu or auto (default auto)")
    group.addoption("--model", help="benchmark this model instead of the matrix's")
    group.addoption("--dataset", help="benchmark this dataset instead of the matrix's")
    group.addoption("--dataset-config", help="Hub config / Common Voice locale for --dataset")
    group.addoption("--split", default=None, help="split for --dataset (default test)")
    group.addoption("--language", help="forced language for --dataset")
    group.addoption("--precision", help="precision for --model/--dataset runs (default fp32)")
    group.addoption("--batch-size", type=int, help="batch size for --model/--dataset runs")
    group.addoption("--limit", type=int, help="only the first N usable utterances")
    group.addoption("--matrix", default=str(DEFAULT_MATRIX),
                    help=f"matrix of configs per device class (default {DEFAULT_MATRIX})")
    group.addoption("--baseline-dir", default="baselines", help="baseline files (default baselines/)")
    group.addoption("--report", default="reports/latest.json",
                    help="JSON report of this session (default reports/latest.json)")
    group.addoption("--update-baselines", action="store_true",
                    help="rewrite the baseline entries of the configs run in this session")
    group.addoption("--allow-missing-baselines", action="store_true",
                    help="a config without a baseline entry skips its checks instead of failing")
    group.addoption("--passes", type=int, help="timed passes per config (default: matrix, else 3)")
    group.addoption("--transcripts", choices=("fail", "warn"), default="fail",
                    help="changed transcripts fail the test (default) or only warn")
    group.addoption("--nproc", type=int, default=1,
                    help="data-parallel processes per config: N > 1 runs each config with "
                         "torchrun --nproc-per-node N (one device each) and gates its report")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "asrbench: a benchmark test driven by the asrbench matrix")
    config.stash[STATE_KEY] = {"session": None, "configs": None, "results": {}, "comparisons": {},
                               "tolerance": None, "device_class": None}


def _state(config: pytest.Config) -> dict[str, Any]:
    return config.stash[STATE_KEY]


def _session(config: pytest.Config):
    from asrbench.runner import Session

    state = _state(config)
    if state["session"] is None:
        state["session"] = Session(progress=False)
    return state["session"]


def _expand_section(section: dict[str, Any], device: str, where: str
                    ) -> tuple[list[BenchConfig], int | None, dict[str, float] | None]:
    from asrbench.baselines import check_tolerance

    unknown = set(section) - MATRIX_KEYS
    if unknown:
        raise AsrbenchError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    tolerance = section.get("tolerance")
    if tolerance is not None:
        tolerance = check_tolerance(tolerance, f"{where} tolerance")
    datasets = section.get("datasets", [{"dataset": "embedded"}])
    configs = []
    for model, data, precision, batch, graphs in itertools.product(
            section.get("models", ["bundled:whisper-base"]), datasets,
            section.get("precisions", ["fp32"]), section.get("batch_sizes", [8]),
            section.get("graphs", [False])):
        entry = dict(data)
        if entry.get("dataset") == "embedded":
            entry["dataset"] = str(EMBEDDED_CORPUS)
        for key in SECTION_SETTINGS:
            if key in section:
                entry.setdefault(key, section[key])
        configs += build_configs({**entry, "model": model, "precision": precision,
                                  "batch_size": batch, "graphs": graphs, "device": device}, [])
    return configs, section.get("passes"), tolerance


def matrix_configs(path: Path, device_class: str, kind: str, device: str
                   ) -> tuple[list[BenchConfig], int | None, dict[str, float] | None]:
    """The matrix section for a device class (falling back to its kind, e.g. 'cuda'): configs,
    passes, and the tolerance policy written into new or refreshed baseline entries."""
    matrix = read_toml(path, "matrix file (--matrix)")
    for name in (device_class, kind):
        if name in matrix:
            return _expand_section(matrix[name], device, f"{path} [{name}]")
    raise AsrbenchError(f"{path} has no section for device class {device_class!r} or {kind!r} "
                        f"(sections: {', '.join(matrix)})")


def _configs(config: pytest.Config) -> tuple[list[BenchConfig], int]:
    state = _state(config)
    if state["configs"] is None:
        opt = config.option
        if opt.nproc < 1:
            raise AsrbenchError(f"--nproc must be >= 1, got {opt.nproc}")
        if opt.nproc > 1:
            # The ranks need every card: this process must not hold one, so a child probes.
            from asrbench.distributed import probe_device

            device_class, kind = probe_device(opt.device)
        else:
            probe = _session(config).device(BenchConfig(device=opt.device))
            device_class, kind = probe.device_class(), probe.kind
        state["device_class"] = device_class
        passes = None
        if opt.model or opt.dataset:
            shared = {k: v for k, v in {
                "model": opt.model, "dataset": opt.dataset, "dataset_config": opt.dataset_config,
                "split": opt.split, "language": opt.language, "precision": opt.precision,
                "batch_size": opt.batch_size, "limit": opt.limit, "device": opt.device}.items()
                if v is not None}
            configs = build_configs(shared, [])
        else:
            configs, passes, tolerance = matrix_configs(Path(opt.matrix), device_class, kind,
                                                        opt.device)
            state["tolerance"] = tolerance
            if opt.limit is not None:
                configs = [c.replace(limit=opt.limit) for c in configs]
        if opt.nproc > 1:
            configs = [c.replace(world_size=opt.nproc) for c in configs]  # ...-wsN ids
        state["configs"] = (configs, opt.passes or passes or 3)
    return state["configs"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_config" not in metafunc.fixturenames:
        return
    try:
        configs, _ = _configs(metafunc.config)
    except AsrbenchError as exc:
        raise pytest.UsageError(f"asrbench: {exc}") from None
    metafunc.parametrize("bench_config", configs, ids=[c.id for c in configs])


@pytest.fixture(scope="session")
def bench_session(request: pytest.FixtureRequest):
    """The session cache: devices, warmed models, decoded splits, evaluations."""
    return _session(request.config)


@pytest.fixture(scope="session")
def bench_passes(request: pytest.FixtureRequest) -> int:
    """Timed passes per config."""
    return _configs(request.config)[1]


@pytest.fixture
def bench_device(bench_session, bench_config):
    """The provisioned device backend of this config."""
    return bench_session.device(bench_config)


@pytest.fixture
def bench_model(bench_session, bench_config):
    """The loaded, precision-set, graph-wrapped model (shared across configs that agree)."""
    return bench_session.model(bench_config)


@pytest.fixture
def bench_split(bench_session, bench_config):
    """The decoded test split (shared across configs that read the same data)."""
    return bench_session.split(bench_config)


@pytest.fixture
def bench_run(request, bench_config, bench_passes, tmp_path_factory) -> dict[str, Any]:
    """This config's evaluation as a report entry (evaluated once per session); with
    --nproc N > 1, by torchrun on N processes, read back from the report rank 0 wrote."""
    from asrbench.distributed import launch_run
    from asrbench.report import run_entry

    results = _state(request.config)["results"]
    if bench_config.id not in results:
        try:
            if bench_config.world_size > 1:
                results[bench_config.id] = launch_run(bench_config, bench_passes,
                                                      tmp_path_factory.mktemp("asrbench-ranks"))
            else:
                result = request.getfixturevalue("bench_session").evaluate(bench_config, bench_passes)
                results[bench_config.id] = run_entry(result)
        except AsrbenchError as exc:
            pytest.fail(f"asrbench: {exc}", pytrace=False)
    return results[bench_config.id]


@pytest.fixture
def bench_entry(request, bench_config) -> dict[str, Any] | None:
    """This config's baseline entry (None if absent or being rewritten). Loaded before the
    evaluation, so a malformed baseline file fails at once."""
    from asrbench import baselines

    opt = request.config.option
    if opt.update_baselines:
        return None
    # With --nproc the probed class: this process holds no device (the ranks do).
    device_class = (_state(request.config)["device_class"] if bench_config.world_size > 1
                    else request.getfixturevalue("bench_device").device_class())
    try:
        document = baselines.load_for(opt.baseline_dir, device_class)
    except AsrbenchError as exc:
        pytest.fail(f"asrbench: {exc}", pytrace=False)
    return (document or {}).get("entries", {}).get(bench_config.id)


@pytest.fixture
def bench_comparison(request, bench_entry, bench_run):
    """Verdicts of this config against its baseline entry; a missing entry fails (or skips)."""
    from asrbench import baselines
    from asrbench.compare import compare_run
    from asrbench.gate import refresh_command

    opt = request.config.option
    if opt.update_baselines:
        pytest.skip("--update-baselines: this entry is rewritten from this run, not checked")
    config_id = bench_run["config"]["id"]
    comparison = compare_run(bench_run, bench_entry, _state(request.config)["tolerance"])
    _state(request.config)["comparisons"][config_id] = comparison
    if bench_entry is None:
        message = (f"no baseline entry for {config_id} in "
                   f"{baselines.baseline_path(opt.baseline_dir, bench_run['device']['class'])}; "
                   f"create it with: pytest {shlex.join(_selection_args(request.config))} "
                   f"--update-baselines   (or: {refresh_command([config_id], opt.report)})")
        if opt.allow_missing_baselines:
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    return comparison


@pytest.fixture
def bench_tolerance(request, bench_entry) -> dict[str, float]:
    """The tolerances this config is held to: its baseline entry's, else the matrix section's
    policy over the defaults (the checks that need no baseline use it too)."""
    from asrbench.baselines import DEFAULT_TOLERANCE, tolerance_of

    if bench_entry is not None:
        return tolerance_of(bench_entry)
    return {**DEFAULT_TOLERANCE, **(_state(request.config)["tolerance"] or {})}


def _selection_args(config: pytest.Config) -> list[str]:
    return [a for a in config.invocation_params.args if a != "--update-baselines"] or ["benchmarks"]


def describe(verdict) -> str:
    """One line: metric, baseline -> current, delta, allowed band, verdict and note."""
    delta = "n/a" if verdict.delta is None else f"{verdict.delta:+.4f}"
    return (f"{verdict.metric}: baseline {verdict.baseline:.4f} -> {verdict.value:.4f} "
            f"(delta {delta}, allowed ±{verdict.allowed:.4f}) {verdict.verdict.upper()}"
            + (f" [{verdict.note}]" if verdict.note else ""))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write one report for every config run, with verdicts; refresh baselines if asked."""
    state = session.config.stash.get(STATE_KEY, None)
    if not state or not state["results"]:
        return
    from asrbench import baselines
    from asrbench.gate import GateOutcome
    from asrbench.report import SCHEMA, environment, write_json_atomic

    opt = session.config.option
    runs = list(state["results"].values())
    for run in runs:
        comparison = state["comparisons"].get(run["config"]["id"])
        run["comparison"] = comparison.to_dict() if comparison else None
        # The section's tolerance policy, so `asrbench compare` on this report holds a config
        # without a baseline entry to the same limits as these tests did.
        run["tolerance_policy"] = state["tolerance"]
    env = environment(dict(runs[-1]["device"]))
    report_path = Path(opt.report)
    write_json_atomic(report_path, {"schema": SCHEMA, "environment": env, "runs": runs})
    outcome = GateOutcome(list(state["comparisons"].values()))
    markdown_path = report_path.with_suffix(".md")
    markdown_path.write_text(outcome.markdown, encoding="utf-8")
    outcome.append_step_summary()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"asrbench: report written to {report_path} (summary: {markdown_path})"]
    if opt.update_baselines:
        for device_class in sorted({r["device"]["class"] for r in runs}):
            selected = [r for r in runs if r["device"]["class"] == device_class]
            changes = baselines.update(opt.baseline_dir, device_class, selected, env, state["tolerance"])
            lines.append(f"asrbench: updated {baselines.baseline_path(opt.baseline_dir, device_class)}")
            lines.append(baselines.change_table(changes))
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line, file=sys.stderr)
