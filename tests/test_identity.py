"""Model identity (issue 25): openai/whisper-base, bundled:whisper-base and /x/whisper-base
share a config id, so the gate compares the weights' digest too, and a run of other weights
is refused with one line; baselines without identity compare as before."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from factories import make_entry, make_run

from asrbench.cli.main import main
from asrbench.formats.model import BaselineEntry, ModelIdentity, Run
from asrbench.gate.baselines import entry_from_runs
from asrbench.gate.compare import compare_run
from asrbench.measure.models import LoadedModel, model_identity

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


def _identity(reference: str, digest: str | None) -> dict:
    return {"reference": reference, "source": reference, "revision": None,
            "weights_sha256": digest}


def _write(tmp_path: Path, run: Run, entry: BaselineEntry) -> tuple[Path, Path]:
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"schema": 1, "environment": {"packages": {}},
                                  "runs": [run.model_dump(mode="json", by_alias=True)]}))
    baselines = tmp_path / "b"
    baselines.mkdir()
    (baselines / "cpu.json").write_text(json.dumps({
        "schema": 1, "device_class": "cpu",
        "entries": {run.config.id: entry.model_dump(mode="json", by_alias=True)}}))
    return report, baselines


def _compare(report: Path, baselines: Path) -> int:
    return main(["compare", "--report", str(report), "--baseline-dir", str(baselines)])


def test_the_same_weights_compare_as_usual(tmp_path):
    run = make_run("whisper-base", model=_identity("openai/whisper-base", DIGEST_A))
    entry = make_entry(run).model_copy(
        update={"model": ModelIdentity(**_identity("/x/whisper-base", DIGEST_A))})
    assert _compare(*_write(tmp_path, run, entry)) == 0


def test_other_weights_with_the_same_short_name_are_refused_in_one_line(tmp_path, capsys):
    run = make_run("whisper-base", model=_identity("/x/whisper-base", DIGEST_B))
    entry = make_entry(run).model_copy(
        update={"model": ModelIdentity(**_identity("openai/whisper-base", DIGEST_A))})
    capsys.readouterr()
    assert _compare(*_write(tmp_path, run, entry)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (  # a refusal is a failing "could not judge" verdict (issue 28)
        "asrbench: error: could not judge: whisper-base: the run's model (/x/whisper-base, "
        "weights sha256 bbbbbbbbbbbb) is not the baseline's (openai/whisper-base, aaaaaaaaaaaa): "
        "a different model with the same short name; record a baseline for it (asrbench baseline "
        "update ...) or use the model the baseline was made with")


@pytest.mark.parametrize("run_model,entry_model", [
    (_identity("openai/whisper-base", DIGEST_B), None),  # a committed baseline: no identity
    (None, _identity("openai/whisper-base", DIGEST_A)),  # an older report
    (_identity("openai/whisper-base", None), _identity("/x/whisper-base", DIGEST_A)),
])
def test_without_both_digests_the_comparison_is_as_before(run_model, entry_model):
    plain = make_run("whisper-base", wer=0.25)
    entry = make_entry(make_run("whisper-base", wer=0.2))
    before = compare_run(plain, entry)
    run = make_run("whisper-base", wer=0.25, model=run_model)
    if entry_model is not None:
        entry = entry.model_copy(update={"model": ModelIdentity(**entry_model)})
    after = compare_run(run, entry)
    assert after == before
    assert {v.metric: v.verdict for v in after.verdicts}["wer"] == "regressed"


def test_a_recorded_baseline_keeps_the_identity_and_refuses_other_weights(tmp_path, capsys):
    recorded = make_run("whisper-base", model=_identity("bundled:whisper-base", DIGEST_A))
    entry = entry_from_runs([recorded], {"packages": {}})
    assert entry.model == recorded.model
    other = make_run("whisper-base", model=_identity("openai/whisper-base", DIGEST_B))
    capsys.readouterr()
    assert _compare(*_write(tmp_path, other, entry)) == 2
    assert "(bundled:whisper-base, aaaaaaaaaaaa)" in capsys.readouterr().err


def test_old_reports_and_baselines_load_without_identity():
    assert make_run().model is None
    assert make_entry(make_run()).model is None


SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def _weights(directory: Path) -> str:
    """A checkpoint of two small shards (written out of name order) with the index that lists
    them, and a file that is not weights; returns sha256 over the shards' bytes in name order."""
    directory.mkdir(parents=True)
    (directory / SHARDS[1]).write_bytes(b"second file" * 1000)
    (directory / SHARDS[0]).write_bytes(bytes(range(256)) * 5000)  # over 1 MiB
    (directory / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"b.weight": SHARDS[1], "a.weight": SHARDS[0],
                                        "c.weight": SHARDS[1]}}))
    (directory / "config.json").write_text("{}")
    return hashlib.sha256((directory / SHARDS[0]).read_bytes()
                          + (directory / SHARDS[1]).read_bytes()).hexdigest()


def _digest(directory: Path) -> str | None:
    return model_identity(LoadedModel(model=None, processor=None, reference="m",
                                      path=str(directory))).weights_sha256


def test_the_digest_covers_only_the_weight_files_the_model_loads(tmp_path):
    # issue 28: an unused extra *.safetensors in the folder changed the digest on 64ba4a1 (and
    # the gate refused the run as "a different model")
    single = tmp_path / "single"
    single.mkdir()
    (single / "model.safetensors").write_bytes(b"the weights" * 100)
    (single / "adapter.safetensors").write_bytes(b"not loaded")
    assert _digest(single) == hashlib.sha256(b"the weights" * 100).hexdigest()
    sharded = tmp_path / "sharded"
    expected = _weights(sharded)
    (sharded / "consolidated.safetensors").write_bytes(b"an unused copy")
    assert _digest(sharded) == expected
    # nothing the model would load: no digest (not the digest of a file that is not loaded)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "other.safetensors").write_bytes(b"x")
    assert _digest(stray) is None


def test_an_unused_weight_file_keeps_the_tiny_whispers_identity(tiny_whisper, tmp_path):
    import shutil

    copy = tmp_path / "tiny-whisper"
    shutil.copytree(tiny_whisper, copy)
    (copy / "training-state.safetensors").write_bytes(b"optimizer moments")
    expected = hashlib.sha256((tiny_whisper / "model.safetensors").read_bytes()).hexdigest()
    assert _digest(tiny_whisper) == expected
    assert _digest(copy) == expected


def test_a_local_directory_is_hashed_over_its_weight_files_in_name_order(tmp_path):
    directory = tmp_path / "whisper-base"
    expected = _weights(directory)
    identity = model_identity(LoadedModel(model=None, processor=None,
                                          reference="./whisper-base", path=str(directory)))
    assert identity == ModelIdentity(reference="./whisper-base", source=str(directory),
                                     revision=None, weights_sha256=expected)


def test_a_hub_model_names_its_cached_commit(tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--someone--whisper-base"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    expected = _weights(repo / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    identity = model_identity(LoadedModel(model=None, processor=None,
                                          reference="someone/whisper-base",
                                          path="someone/whisper-base"))
    assert identity == ModelIdentity(reference="someone/whisper-base",
                                     source="someone/whisper-base", revision=commit,
                                     weights_sha256=expected)
