"""Shared fixtures for asrbench's own tests (the embedded corpus, throwaway corpora, a history
of real runs) and the `slow` marker that splits off the fast tier.

    pytest -m "not slow"     the fast tier: every module's quick tests, no model run
    pytest -m "not heavy"    what `bash scripts/test.sh` (the README's test command, CI) runs
    pytest                   everything (`bash scripts/test.sh --all`)

Which tests are slow is written down here, in one place (SLOW_MODULES, SLOW_FIXTURES,
SLOW_PARAMS, SLOW_TESTS), rather than in each module: a test is slow when it loads a Whisper
model (in this process or in an `asrbench`/pytest child), runs a browser or a PostgreSQL
server, or takes more than about 3 s on a 2-core machine. A new module of slow tests, or a new
fixture that loads a model, gets a line here.

The heavy tier (HEAVY_TESTS) is a few slow tests whose claim the CI tier already checks more
cheaply (the same path in fp32, or in English), and one research tool's end-to-end test whose
parts CI checks, left out of `bash scripts/test.sh` so that CI stays within its time on a slow
2-core runner; `bash scripts/test.sh --all` runs them too.

Helpers for building data live in factories.py (test modules import them from there, not from
here).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from factories import embedded_rows, make_real_history, write_cv_table, write_tiny_whisper

from asrbench.config.settings import EMBEDDED_CORPUS

# pytest's own fixture for running pytest in a throwaway directory (test_plugin.py).
pytest_plugins = ["pytester"]

# -- the slow tier ------------------------------------------------------------------------------

#: Modules (relative to the repository root) whose every test is slow.
SLOW_MODULES = {
    "benchmarks/test_asr_regression.py": "the product's gate: a model run per configuration",
    "tests/test_counters_gate_e2e.py": "three `asrbench run`s (tiny Whisper) and pytest children",
    "tests/test_emulation.py": "emulated-Gaudi runs in child processes and stock generate()",
    "tests/test_gate_power.py": "a whole `asrbench ab` and baseline runs",
    "tests/test_models_any.py": "tiny Speech2Text and wav2vec2+BERT models built and run (~80 s)",
    "tests/test_out_of_tree.py": "out-of-tree regressions through `asrbench run`/`compare` "
                                 "children (benchmarks/tools/out_of_tree.py, tiny Whisper)",
}

#: Fixtures whose users are slow, wherever they are requested (name: what it does).
SLOW_FIXTURES = {
    "real_history": "an `asrbench run` (conftest.py)",
    "browser": "headless Chromium (test_html_report)",
    "whisper": "loads the bundled Whisper model (test_decoding)",
    "converted": "converts the bundled model (test_bundled)",
    "english_report": "an `asrbench run` (test_cli)",
    "one_and_two_ranks": "one- and two-rank `asrbench run`s (test_distributed)",
    "suite": "pytest runs of the plugin on a model (test_plugin)",
    "project": "pytest and compare children over a model run (test_policy)",
    "fresh_report": "the real_history run's own report (test_results)",
    "tiny_whisper": "builds a tiny Whisper from the converted bundled model's files (conftest)",
    "single_run": "an in-process `asrbench run` of the tiny Whisper (test_shards)",
}

#: Parameters that make a test slow (fixture or argument name: slow values).
SLOW_PARAMS = {
    # test_history: the store on a PostgreSQL server (store_url asks for the postgres_server
    # fixture only for this value, so no test lists postgres_server among its fixtures)
    "store_url": {"postgresql"},
}

#: Single slow tests, by module: each runs a model, a child `asrbench`/pytest or a tool.
SLOW_TESTS = {
    "tests/test_ab.py": {
        "test_ab_finds_a_real_slowdown_of_the_head",
        "test_ab_two_settings_in_one_environment_batch_sizes",
        "test_ab_between_two_environments_with_identical_code_passes",
    },
    "tests/test_abstats.py": {  # thousands of simulated A/Bs: 5-25 s
        "test_sequential_looks_keep_identical_sides_below_alpha",
        "test_power_for_a_ten_percent_slowdown_at_the_noise_measured_here",
    },
    "tests/test_cli.py": {
        "test_help_and_module_entry_point",
        "test_run_on_a_corpus_outside_the_repo_lists_bad_rows",
        "test_run_matrix_runs_the_section_of_the_device_class",
    },
    "tests/test_cli_reference.py": {"test_help_of_every_command_imports_no_heavy_library"},
    "tests/test_data.py": {"test_hub_offline_failure_is_one_line_user_error"},  # ~20 s timeout
    "tests/test_distributed.py": {
        "test_more_ranks_than_utterances_is_a_clear_error",
        "test_mpirun_environment_as_gaudi_spawn_sets_it",
        "test_a_failing_rank_fails_the_run_with_a_clear_error",
        "test_pytest_nproc_runs_each_config_distributed_and_gates_it",
    },
    "tests/test_devices_hpu.py": {  # a child Python importing torch and transformers
        "test_importing_the_backend_imports_neither_habana_nor_optimum_habana"},
    "tests/test_fixture_corpus.py": {"test_regenerating_a_clip_reproduces_the_committed_bytes"},
    "tests/test_light_imports.py": {  # each a fresh `asrbench` interpreter: 4-25 s loaded
        "test_plugin_options_load_no_torch", "test_help_loads_no_torch",
        "test_compare_loads_no_torch", "test_baseline_update_loads_no_torch",
        "test_history_add_and_list_load_no_torch", "test_export_loads_no_torch",
        "test_html_loads_no_torch",
    },
    "tests/test_no_loss.py": {"test_a_signal_during_the_second_run_keeps_the_first"},
    "tests/test_nothing_leaked.py": {"test_a_password_in_an_old_reports_argv_reaches_no_output"},
    "tests/test_nothing_left.py": {  # pytest / asrbench children, signals to real processes
        "test_the_pytest_door_escapes_data_and_refuses_a_bad_report_in_one_line",
        "test_a_run_killed_with_sigkill_leaves_no_worker_and_its_cache_goes_next_time",
        "test_a_signal_to_bisect_ends_its_whole_tree_and_removes_its_worktree"},
    "tests/test_peers.py": {"test_every_peer_runs_and_agrees_with_asrbench"},
    "tests/test_plugin.py": {
        "test_the_installed_plugin_runs_in_another_repository_with_its_own_device_option"},
    "tests/test_reference.py": {"test_child_matches_stock_generate_and_is_cached"},
    "tests/test_scripts.py": {  # runs test.sh
        "test_test_sh_leaves_reports_latest_json_alone",
        "test_the_heavy_tier_is_what_test_sh_leaves_out_and_all_runs"},
}


#: The heavy tier, by test id (relative to the repository root): why each is heavy and which
#: test of the CI tier checks the same path more cheaply. Heavy tests are slow tests too.
HEAVY_TESTS = {
    "tests/test_decoding.py::test_same_tokens_as_generate[en-english-bf16]":
        "bf16 autocast is ~2x fp32 on a CPU without AMX; [en-english-fp32] checks the same loop",
    "tests/test_decoding.py::test_static_decoder_under_emulated_hpu_graphs_equals_generate"
    "[en-english-bf16]":
        "bf16 autocast on CPU; test_emulation's bf16 [en] checks static graphs against stock bf16",
    "tests/test_emulation.py::"
    "test_emulated_graphs_bf16_transcripts_agree_with_stock_generate_under_cpu_bf16[hi]":
        "a second bf16 emulated run (minutes); [en] runs in CI, fp32 [hi] is checked exactly",
    "tests/test_gate_power.py::test_gate_power_smallest_run_prints_the_table_and_rejudges":
        "a research tool's bookkeeping (benchmarks/tools/gate_power.py), 80-90 s of tiny-model "
        "processes, out of CI since 2026-12-07 to keep it under 25 minutes; CI runs what the "
        "tool drives: asrbench ab (test_ab), compare's counters verdict "
        "(test_counters_gate_e2e) and baseline update (test_baselines)",
}


def is_slow(module: str, name: str, fixtures: list[str], params: dict[str, object]) -> bool:
    """Whether a test (module path relative to the root, function name, the fixtures it uses,
    its parameters) belongs to the slow tier."""
    return (module in SLOW_MODULES or name in SLOW_TESTS.get(module, ())
            or any(f in SLOW_FIXTURES for f in fixtures)
            or any(params.get(k) in values for k, values in SLOW_PARAMS.items()))


#: Every test this session collected, before -m, -k or --deselect leave any out: what the
#: registries above are checked against (tests/test_habits.py). One record per test: its id
#: as HEAVY_TESTS writes it (module::name[params]), module, function name, fixtures, parameters.
COLLECTED = pytest.StashKey[list[dict[str, Any]]]()
#: Where a session writes those records as JSON, when this variable names a file (the registry
#: check collects the suite in a child that way when its own session did not collect it all).
COLLECTED_JSON_VARIABLE = "ASRBENCH_TESTS_COLLECTED_JSON"


def _plain(value: object) -> object:
    """A parameter value as JSON holds it (its repr unless a string, number, bool or None)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m/-k/--deselect filters
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow, heavy = pytest.mark.slow, pytest.mark.heavy
    collected: list[dict[str, Any]] = []
    for item in items:
        try:
            module = item.path.relative_to(config.rootpath).as_posix()
        except ValueError:  # a test outside the repository (pytester's own)
            continue
        callspec = getattr(item, "callspec", None)
        name = getattr(item, "originalname", item.name)
        fixtures = list(getattr(item, "fixturenames", ()))
        params = dict(callspec.params) if callspec else {}
        collected.append({"id": f"{module}::{item.name}", "module": module, "name": name,
                          "fixtures": fixtures,
                          "params": {k: _plain(v) for k, v in params.items()}})
        if f"{module}::{item.name}" in HEAVY_TESTS:
            item.add_marker(heavy)
            item.add_marker(slow)
        elif is_slow(module, name, fixtures, params):
            item.add_marker(slow)
    config.stash[COLLECTED] = collected
    if os.environ.get(COLLECTED_JSON_VARIABLE):
        Path(os.environ[COLLECTED_JSON_VARIABLE]).write_text(json.dumps(collected),
                                                              encoding="utf-8")


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def outside_corpus(tmp_path: Path) -> Path:
    """A Common Voice release outside the repo: 3 good English clips, then 4 bad rows.

    Bad rows: a missing clip, a zero-byte clip, a truncated clip, an empty reference.
    """
    root = tmp_path / "cv-release"
    clips = root / "en" / "clips"
    clips.mkdir(parents=True)
    rows = []
    for row in embedded_rows("en")[:3]:
        shutil.copy(EMBEDDED_CORPUS / "en" / "clips" / row["path"], clips / row["path"])
        rows.append(row)
    good = clips / rows[0]["path"]
    (clips / "zero.mp3").write_bytes(b"")
    (clips / "truncated.mp3").write_bytes(good.read_bytes()[:64])
    rows += [
        {"path": "missing.mp3", "sentence": "this clip does not exist", "locale": "en"},
        {"path": "zero.mp3", "sentence": "this clip is empty", "locale": "en"},
        {"path": "truncated.mp3", "sentence": "this clip is cut short", "locale": "en"},
        {"path": rows[1]["path"], "sentence": "", "locale": "en"},
    ]
    write_cv_table(root / "en", rows)
    return root


_REAL_HISTORY: dict[str, object] = {}


@pytest.fixture(scope="session")
def real_history(tmp_path_factory):
    """Six reports of one real `asrbench run` of the embedded default (English, 4 clips, 2
    passes) in an SQLite store, one commit each, runs 4-6 planted at half the throughput of runs
    1-3 (factories.make_real_history, PLANTED_LEVELS): (store path, report paths, commits). Made
    once per session."""
    if "error" in _REAL_HISTORY:
        pytest.fail(f"the real runs failed earlier: {_REAL_HISTORY['error']}", pytrace=False)
    if "value" not in _REAL_HISTORY:
        try:
            _REAL_HISTORY["value"] = make_real_history(tmp_path_factory.mktemp("real-history"))
        except Exception as exc:
            _REAL_HISTORY["error"] = str(exc)[-2000:]
            raise
    return _REAL_HISTORY["value"]


#: The tiny model's folder name: the model part of its runs' config ids ("tiny-whisper-...").
TINY_WHISPER_NAME = "tiny-whisper"


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """A tiny random Whisper model folder with whisper-base's tokenizer, built once per session
    (factories.write_tiny_whisper): for tests of what runs around a model (A/B rounds, ranks)."""
    return write_tiny_whisper(tmp_path_factory.mktemp("tiny") / TINY_WHISPER_NAME)
