"""The result model (asrbench/formats/model.py): published JSON Schemas equal the code's, files that
asrbench writes validate against them with an independent library (jsonschema), a report of
the released 0.1.0 still loads, another schema version is refused with how to migrate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from factories import REAL_RUN_REPORT

from asrbench.errors import AsrbenchError
from asrbench.formats.model import SCHEMA_VERSION, json_schemas, parse_baselines, parse_report

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
OLD_REPORT = Path(__file__).resolve().parent / "data" / "report-v0.1.0-schema1.json"
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev extra")


def _validator(name: str):
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_published_schemas_equal_what_the_code_generates():
    generated = json_schemas()
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(generated)
    for name, schema in generated.items():
        published = json.loads((SCHEMAS / name).read_text())
        assert published == schema, f"schemas/{name} is stale: run python -m asrbench.formats.io"


@pytest.fixture(scope="module")
def fresh_report(real_history):
    """A report the embedded default writes now: the real `asrbench run` (English, 4 clips, 2
    timed passes) that the session's real_history fixture made, its own file (not the copies
    with a planted throughput). One run of the model serves both (was a second run here)."""
    _, reports, _ = real_history
    return json.loads((reports[0].parent / REAL_RUN_REPORT).read_text())


def test_reports_validate_against_the_published_schema(fresh_report):
    validator = _validator("report.schema.json")
    for document in (fresh_report, json.loads(OLD_REPORT.read_text())):
        errors = sorted(validator.iter_errors(document), key=str)
        assert not errors, errors[0].message


@pytest.mark.parametrize("name", ["cpu.json", "hpu-emulated.json"])
def test_committed_baselines_validate_against_the_published_schema(name):
    errors = list(_validator("baseline.schema.json").iter_errors(
        json.loads((ROOT / "baselines" / name).read_text())))
    assert not errors, errors[0].message


@pytest.mark.parametrize("mutate", [
    lambda r: r["runs"][0]["metrics"].update(wer="low"),
    lambda r: r["runs"][0]["device"].update({"class": "../../etc"}),
    lambda r: r["runs"][0]["throughput"].update(samples_per_second_per_pass=[]),
    lambda r: r.pop("runs"),
])
def test_the_schema_and_the_loader_both_refuse_broken_reports(mutate):
    document = json.loads(OLD_REPORT.read_text())
    mutate(document)
    assert list(_validator("report.schema.json").iter_errors(document))
    with pytest.raises(AsrbenchError, match="invalid report"):
        parse_report(document, "r.json")


def test_a_report_of_the_released_version_still_loads():
    report = parse_report(json.loads(OLD_REPORT.read_text()), OLD_REPORT)
    (run,) = report.runs
    assert run.reference is None and run.timings.compilations is None  # fields it predates
    assert run.metrics.wer == pytest.approx(0.0667, abs=1e-4)
    assert [u.id for u in run.utterances] == ["common_voice_en_fixture_0001",
                                              "common_voice_en_fixture_0002"]


@pytest.mark.parametrize("parse,what", [(parse_report, "report"),
                                        (parse_baselines, "baseline file")])
def test_another_schema_version_is_refused_with_how_to_migrate(parse, what):
    with pytest.raises(AsrbenchError) as info:
        parse({"schema": SCHEMA_VERSION + 1}, "f.json")
    message = str(info.value)
    assert f"invalid {what} f.json: schema 2 is not supported" in message
    assert "asrbench run" in message and "baseline update" in message and "\n" not in message


def test_errors_name_the_field_in_one_line():
    document = json.loads(OLD_REPORT.read_text())
    document["runs"][0]["utterances"][1]["prediction"] = 7
    with pytest.raises(AsrbenchError) as info:
        parse_report(document, "r.json")
    assert str(info.value) == ("invalid report r.json: runs[0].utterances[1].prediction: "
                               "expected a string, got int")


def test_an_undefined_normalized_wer_is_written_as_null_not_nan():
    from asrbench.formats.model import Metrics, dump

    metrics = Metrics(wer=0.5, wer_normalized=math.nan, cer=0.1, samples_per_second=1.0)
    assert dump(metrics)["wer_normalized"] is None
    json.dumps(dump(metrics), allow_nan=False)  # writable: no NaN in the file


def test_a_fresh_report_records_the_runs_contention_during_its_timed_passes(fresh_report):
    """issue 28: the run's own share of its threads' CPU (and load, steal) is in the report."""
    contention = fresh_report["runs"][0]["timings"]["contention"]
    assert contention["threads_of"] == "torch" and contention["threads"] >= 1
    assert contention["cpu_seconds"] > 0 and contention["wall_seconds"] > 0
    assert contention["cpu_share"] == pytest.approx(
        contention["cpu_seconds"] / (contention["wall_seconds"] * contention["threads"]))
    if Path("/proc/loadavg").exists():
        assert contention["load_average_1m"] is not None and contention["steal_share"] is not None
