"""One run-config type (issue 30): RunConfig is what the config layer builds, the engine runs,
a report stores and the pytest door gates; its TOML, argv and reference-request forms are
derived from its fields and give it back exactly, every setting included (a setting added
later included: the tests below fail until it is in every form)."""

import argparse
import json
from pathlib import Path

import pytest

from asrbench.config.matrix import load_section
from asrbench.config.options import LAUNCHER_SETTINGS, RUN_OPTIONS, config_argv, run_overrides
from asrbench.config.settings import (
    SETTING_NAMES,
    BenchConfig,
    build_configs,
    config_from_toml,
    config_toml,
)
from asrbench.errors import AsrbenchError
from asrbench.formats.model import RunConfig, parse_report

ROOT = Path(__file__).resolve().parent.parent
OLD_REPORT = ROOT / "tests" / "data" / "report-v0.1.0-schema1.json"

#: every setting away from its default (a string with a quote, a backslash, a control character
#: and a character beyond U+FFFF); a second config for the settings the first cannot hold
EVERY = {"model": "org/whisper-x", "dataset": 'data/voices "😀" \\ tab\there',
         "dataset_config": "hi", "split": "dev", "text_column": "text", "language": "hindi",
         "task": "translate", "precision": "bf16", "batch_size": 3, "generation_max_length": 100,
         "max_duration": 12.5, "graphs": True, "sdp_on_bf16": True,
         "gaudi_config": "Habana/whisper", "limit": 7, "device": "cpu", "world_size": 2,
         "eos_check_every": 4, "ignore_eos": True, "warmup_batches": 0,
         "reference_utterances": 3, "counters": False, "counters_only": False}
COUNTERS_ONLY = {**EVERY, "counters": True, "counters_only": True, "world_size": 1,
                 "dataset": "-starts-with-a-dash"}
CONFIGS = [BenchConfig(**EVERY), BenchConfig(**COUNTERS_ONLY), BenchConfig(dataset="d")]


def test_the_configs_below_move_every_setting_away_from_its_default():
    # A setting added to RunConfig fails here until EVERY gives it a value of its own; then the
    # round trips below cover it.
    assert set(EVERY) == SETTING_NAMES == set(RunConfig.model_fields) - {"id"}
    default = BenchConfig()
    for name in SETTING_NAMES:
        assert any(getattr(c, name) != getattr(default, name) for c in CONFIGS[:2]), name


def test_bench_config_is_the_report_config():
    assert BenchConfig is RunConfig
    config = BenchConfig(**EVERY)
    assert config.id == ("whisper-x-tab-here-hi-dev-hindi-translate-bf16-bs3-graphs-ml100-md12.5-"
                         "n7-col-text-ws2-ignoreeos-eos4")
    # a report stores the config itself: the same settings and id back from the file
    stored = RunConfig.model_validate(json.loads(json.dumps(config.to_dict())))
    assert stored == config and stored.model_dump() == config.model_dump()
    assert stored.to_dict() == {**EVERY, "id": config.id}


@pytest.mark.parametrize("number", range(len(CONFIGS)))
def test_the_toml_form_builds_the_same_config(number):
    config = CONFIGS[number]
    text = config_toml(config, passes=5)
    for name in SETTING_NAMES:  # every setting is written, but a None (TOML has no null)
        assert (f"\n{name} = " in text) is (getattr(config, name) is not None), name
    again, passes = config_from_toml(text)
    assert passes == 5
    assert again == config and again.model_dump() == config.model_dump()
    assert again.id == config.id


def _parse_run_options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    for option in RUN_OPTIONS:
        option.add_to_argparse(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("number", range(len(CONFIGS)))
def test_the_argv_form_builds_the_same_config(number):
    config = CONFIGS[number]
    argv = config_argv(config)
    with_options = {o.field for o in RUN_OPTIONS if o.field}
    # every setting has an option, but what the launcher sets (torchrun's ranks)
    assert with_options == SETTING_NAMES - LAUNCHER_SETTINGS
    for option in RUN_OPTIONS:
        if option.field and getattr(config, option.field) not in (None, False):
            assert any(a.startswith(f"--{option.name}") for a in argv), option.name
    (again,) = build_configs(run_overrides(_parse_run_options(argv)), [])
    launcher = {name: getattr(config, name) for name in LAUNCHER_SETTINGS}
    assert again.replace(**launcher) == config
    assert again.replace(**launcher).model_dump() == config.model_dump()


def test_the_reference_request_holds_every_setting_that_decides_its_transcripts():
    from asrbench.measure.reference import CONFIG_SETTINGS, NOT_IN_REQUEST, ReferenceRequest

    # each setting is in the request or said to be left out (and why): never forgotten
    assert set(CONFIG_SETTINGS) | set(NOT_IN_REQUEST) == SETTING_NAMES
    assert not set(CONFIG_SETTINGS) & set(NOT_IN_REQUEST)
    config = BenchConfig(**EVERY)
    request = ReferenceRequest.for_config(config, 3, audio_sha256="ab" * 32)
    for name in CONFIG_SETTINGS:
        assert getattr(request, name) == getattr(config, name), name
    assert (request.utterances, request.audio_sha256) == (3, "ab" * 32)
    assert ReferenceRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


def test_settings_are_checked_with_their_types_when_built_and_when_loaded():
    with pytest.raises(AsrbenchError, match="setting batch_size must be int, got float 8.0"):
        BenchConfig(batch_size=8.0)
    with pytest.raises(AsrbenchError, match="setting limit must be int, got bool True"):
        BenchConfig(limit=True)
    with pytest.raises(AsrbenchError, match="unknown setting.s. batch"):
        BenchConfig(batch=2)
    with pytest.raises(AsrbenchError, match="counters-only runs in one process"):
        BenchConfig(counters_only=True, world_size=2)
    assert BenchConfig(max_duration=12).max_duration == 12.0  # an integer number of seconds
    document = json.loads(OLD_REPORT.read_text())
    document["runs"][0]["config"]["batch_size"] = "8"
    with pytest.raises(AsrbenchError, match=r"runs\[0\]\.config\.batch_size: expected an integer"):
        parse_report(document, "old.json")
    document["runs"][0]["config"]["batch_size"] = 0
    with pytest.raises(AsrbenchError, match=r"runs\[0\]\.config: batch size must be >= 1"):
        parse_report(document, "old.json")


#: stored settings load_report refuses (RunConfig._check): each out of its bounds or choices
REFUSED_SETTINGS = [
    ("batch_size", 0), ("generation_max_length", 4), ("max_duration", 0), ("limit", 0),
    ("world_size", 0), ("eos_check_every", 0), ("warmup_batches", -1),
    ("reference_utterances", -1), ("precision", "fp64"), ("task", "summarize"),
]


@pytest.mark.parametrize(("name", "value"), REFUSED_SETTINGS)
def test_the_published_report_schema_refuses_the_settings_the_loader_refuses(name, value):
    # On 05c3756 schemas/report.schema.json bounded world_size (>= 1); the one config type
    # described every setting but dropped that bound and never had the others, so a report
    # an external validator passed could be one `asrbench compare` refuses.
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev extra")
    schema = json.loads((Path(__file__).parent.parent / "schemas" / "report.schema.json")
                        .read_text())
    document = json.loads(OLD_REPORT.read_text())
    jsonschema.validate(document, schema)  # the report as written passes both
    parse_report(document, "old.json")
    document["runs"][0]["config"][name] = value
    with pytest.raises(AsrbenchError, match=r"runs\[0\]\.config"):
        parse_report(document, "old.json")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)


def test_a_report_written_before_settings_existed_loads_and_is_written_back_as_it_was():
    from asrbench.gate.counters import claimed_but_missing

    document = json.loads(OLD_REPORT.read_text())
    run = parse_report(document).runs[0]
    held = document["runs"][0]["config"]
    assert "counters" not in held and "eos_check_every" not in held
    assert run.config.model_dump(mode="json") == held  # no setting it predates is claimed
    assert run.config.id == held["id"] == run.config.derived_id()
    assert run.config.counters and not run.config.is_set("counters")
    assert claimed_but_missing(run) is None  # not counted: counting did not exist
    # a stored id is kept as it is (it is the key the run was gated under)
    assert RunConfig.model_validate({"id": "cfg", "extra": 1}).model_dump() == {"id": "cfg",
                                                                               "extra": 1}


@pytest.mark.parametrize("device_class", ["cpu", "hpu-emulated"])
def test_the_committed_baselines_keep_their_ids(device_class):
    # The matrix's configs give exactly the ids the committed baselines are keyed by (the cpu
    # file also holds the two-rank runs of `--asrbench-nproc 2`).
    section = load_section(ROOT / "benchmarks" / "matrix.toml", device_class, device_class,
                           device_class)
    ids = {c.id for c in section.configs}
    if device_class == "cpu":
        ids |= {c.replace(world_size=2).id for c in section.configs}
    entries = json.loads((ROOT / "baselines" / f"{device_class}.json").read_text())["entries"]
    assert ids == set(entries)


def test_tolerance_is_one_type_from_the_defaults_to_the_entry():
    from factories import make_entry, make_run

    from asrbench.formats.model import Tolerance
    from asrbench.gate.baselines import DEFAULT_TOLERANCE, check_tolerance, tolerance_of

    # the defaults set every tolerance (one added to the model without a default fails here)
    assert set(DEFAULT_TOLERANCE.given()) == set(Tolerance.model_fields)
    policy = check_tolerance({"wer_abs": 0.1, "cpu_share_min": 0.0}, "matrix [cpu] tolerance")
    assert policy == Tolerance(wer_abs=0.1, cpu_share_min=0.0)
    resolved = tolerance_of(make_entry(make_run(), wer_abs=0.2), policy)
    assert resolved.given() == {"wer_abs": 0.2,  # the entry's own wins over the policy
                                "cer_abs": 0.005, "samples_per_second_rel": 0.05,
                                "noise_factor": 3.0, "reference_share_min": 0.25,
                                "reference_wer_max": 0.3,
                                "cpu_share_min": 0.0}  # the policy's, over the default
    assert resolved.limit("cpu_share_min") == 0.0
    with pytest.raises(KeyError, match="cer_abs is not set"):
        policy.limit("cer_abs")  # an override alone is no resolved tolerance


def test_the_pytest_doors_baseline_free_checks_hold_the_tolerance_compare_holds():
    # test_reference_agreement and test_no_recompilation judge run_checks with the
    # bench_tolerance fixture; `asrbench compare` judges the same checks with
    # tolerance_of(entry, the run's policy). On 05c3756 (and until this fix) the fixture dropped
    # the matrix section's (or the judged report's) policy whenever the config had a baseline
    # entry, so a `reference_share_min` set in the matrix held in compare and not in pytest.
    from types import SimpleNamespace

    from factories import make_entry, make_run

    from asrbench.formats.model import Tolerance
    from asrbench.gate.baselines import tolerance_of
    from asrbench.plugin import STATE_KEY, PluginState, bench_tolerance

    fixture = bench_tolerance.__wrapped__
    policy = Tolerance(reference_share_min=0.9, reference_wer_max=0.05)
    request = SimpleNamespace(config=SimpleNamespace(
        stash={STATE_KEY: PluginState(matrix_tolerance=policy)}))
    config = BenchConfig(limit=2)
    entry = make_entry(make_run(config.id))
    held = fixture(request, config, entry)
    assert held == tolerance_of(entry, policy)  # what compare_run holds the run to
    assert (held.limit("reference_share_min"), held.limit("reference_wer_max")) == (0.9, 0.05)
    own = make_entry(make_run(config.id), reference_share_min=0.1)
    assert fixture(request, config, own).limit("reference_share_min") == 0.1  # the entry's wins
    assert fixture(request, config, None).limit("reference_share_min") == 0.9  # no entry


@pytest.mark.parametrize("line", ["models = []", "datasets = []", 'precisions = "fp32"',
                                  "batch_sizes = []"])
def test_an_empty_or_scalar_matrix_list_is_one_line(tmp_path, line):
    """`models = []` (or datasets) selected no config: the pytest door ended in an internal
    error with no summary, `asrbench run` in a traceback ("the report holds no runs")."""
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(f"[cpu]\n{line}\n")
    with pytest.raises(AsrbenchError) as info:
        load_section(matrix, "cpu", "cpu", "cpu")
    key = line.split(" = ")[0]
    assert f"[cpu]: {key} must be a non-empty list" in str(info.value)
