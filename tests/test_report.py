"""Reports (asrbench/formats/io.py): loading validates and names the file and the field; writes
are atomic."""

from __future__ import annotations

import json

import pytest
from factories import make_run_document as _run

from asrbench.errors import AsrbenchError


@pytest.mark.parametrize("field,value,where", [
    ("compilations", {"counter": "c", "warmup": 3, "passes": [0, -1]},
     "timings.compilations.passes"),
    ("compilations", {"counter": "c", "passes": [0]}, "timings.compilations"),
    ("reference", {"utterances": 4, "identical": 5, "share": 1.25, "wer": 0.0}, "reference"),
    ("reference", {"utterances": 4, "identical": 2, "share": "half", "wer": 0.0},
     "reference.share"),
    ("reference", {"error": 3}, "reference.error"),
])
def test_report_loading_validates_compilations_and_reference(tmp_path, field, value, where):
    from asrbench.formats.io import load_report

    run = _run()
    run["utterances"] = [{"id": "a", "prediction": "hello world"}]
    if field == "compilations":
        run["timings"] = {"compilations": value}
    else:
        run["reference"] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema": 1, "environment": {}, "runs": [run]}))
    with pytest.raises(AsrbenchError, match=f"runs\\[0\\].{where.replace('.', '[.]')}"):
        load_report(path)


def test_write_json_atomic_replaces_whole_files_and_cleans_up(tmp_path, monkeypatch):
    from asrbench.formats.io import write_json_atomic

    path = tmp_path / "deep" / "r.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})  # not valid JSON: refused, old file kept
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


@pytest.mark.parametrize("document,where", [
    ({"schema": 2, "environment": {}, "runs": []}, "schema"),
    ({"schema": 1, "environment": [], "runs": []}, "environment"),
    ({"schema": 1, "environment": {}, "runs": {}}, "runs"),
])
def test_report_top_level_is_validated(tmp_path, document, where):
    from asrbench.formats.io import load_report

    path = tmp_path / "r.json"
    path.write_text(json.dumps(document))
    with pytest.raises(AsrbenchError, match=f"invalid report {path}: {where}"):
        load_report(path)


def test_a_report_that_is_not_json_is_a_one_line_error(tmp_path):
    from asrbench.formats.io import load_report

    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(AsrbenchError) as info:
        load_report(path)
    assert "not valid JSON" in str(info.value) and "\n" not in str(info.value)
