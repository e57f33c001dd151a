"""The transcript reference: agreement numbers, cache keys, the disk cache, and the real child."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from factories import embedded_rows
from safetensors.numpy import save_file

import asrbench
from asrbench.config.settings import EMBEDDED_CORPUS, BenchConfig
from asrbench.errors import AsrbenchError
from asrbench.formats.model import ReferenceAgreement, dump
from asrbench.measure import reference as ref
from asrbench.measure.reference import (
    MAX_DIFFERING,
    ReferenceRequest,
    agreement,
    cache_path,
    clean_child_env,
    language_kwargs,
    reference_transcripts,
)


def make_request(**changes) -> ReferenceRequest:
    """A request whose key() needs no model on disk (a hub id is keyed by name only)."""
    base = dict(model="openai/whisper-tiny", dataset="some/dataset", dataset_config="en",
                split="test", text_column="sentence", max_duration=30.0, utterances=16,
                language="en", task="transcribe", generation_max_length=225)
    base.update(changes)
    return ReferenceRequest(**base)


# --- agreement() --------------------------------------------------------------------------

def test_agreement_hand_worked():
    reference = {
        "a": "the cat sat on the mat",  # 6 words
        "b": "hello world",  # 2 words
        "c": "good morning everyone",  # 3 words
        "d": "one two three four",  # 4 words
    }
    run = {
        "a": "the cat sat on the mat",  # identical: 0 errors
        "b": "  hello world ",  # identical once stripped: 0 errors
        "c": "good evening everyone all",  # morning->evening (S) + "all" (I): 2 errors
        "d": "one three four",  # "two" dropped (D): 1 error
        "e": "not in the reference",  # not shared: ignored
    }
    result = agreement(run, reference)
    # 4 shared, 2 identical; (0 + 0 + 2 + 1) errors / (6 + 2 + 3 + 4) words = 3 / 15 = 0.2.
    assert result.utterances == 4
    assert result.identical == 2
    assert result.share == pytest.approx(0.5)
    assert result.wer == pytest.approx(0.2)
    differing = [
        {"id": "c", "reference_transcript": "good morning everyone",
         "run_transcript": "good evening everyone all"},
        {"id": "d", "reference_transcript": "one two three four",
         "run_transcript": "one three four"},
    ]
    assert [d.model_dump() for d in result.differing] == differing
    # the agreement is the report's own type: what a report stores, as it is
    assert isinstance(result, ReferenceAgreement)
    assert json.loads(json.dumps(dump(result))) == {
        "reference": "transformers generate(), fp32, CPU", "requested": None, "error": None,
        "utterances": 4, "identical": 2, "share": 0.5, "wer": pytest.approx(0.2),
        "differing": differing}
    assert agreement(run, reference, requested=16).requested == 16


def test_agreement_ignores_the_run_dicts_order():
    reference = {"x": "a b c", "y": "d e", "z": "f"}
    # x: c->q (S) = 1; y: identical; z: f->g (S) + h (I) = 2; 3 errors / 6 words = 0.5.
    forward = {"x": "a b q", "y": "d e", "z": "g h"}
    backward = dict(reversed(list(forward.items())))
    assert agreement(forward, reference) == agreement(backward, reference)
    result = agreement(backward, reference)
    assert result.wer == pytest.approx(0.5)
    assert [d.id for d in result.differing] == ["x", "z"]  # the reference's order


def test_agreement_over_shared_ids_only():
    # Only "k" is shared: "one two" vs "one three" is 1 substitution over 2 words.
    result = agreement({"k": "one three", "only-run": "x"}, {"k": "one two", "only-ref": "y"})
    assert (result.utterances, result.identical, result.wer) == (1, 0, pytest.approx(0.5))


def test_agreement_with_empty_references():
    # Empty vs empty is identical and costs nothing.
    both_empty = agreement({"e": " ", "w": "a b"}, {"e": "", "w": "a b"})
    assert (both_empty.identical, both_empty.share, both_empty.wer) == (2, 1.0, 0.0)
    # e: empty reference, run says "uh oh": 2 insertions; w: b->c, 1 substitution.
    # 3 errors / 2 reference words = 1.5.
    mixed = agreement({"e": "uh oh", "w": "a c"}, {"e": "  ", "w": "a b"})
    assert mixed.identical == 0 and mixed.wer == pytest.approx(1.5)
    # No reference words at all: 0.0 when all identical, else 1.0.
    assert agreement({"e": ""}, {"e": ""}).wer == 0.0
    nothing = agreement({"e": "hi"}, {"e": ""})
    assert (nothing.identical, nothing.share, nothing.wer) == (0, 0.0, 1.0)


def test_agreement_lists_at_most_the_cap_but_counts_all():
    reference = {f"u{i}": "yes" for i in range(MAX_DIFFERING + 10)}
    run = {k: "no" for k in reference}
    result = agreement(run, reference)
    assert result.identical == 0 and result.wer == pytest.approx(1.0)
    assert len(result.differing) == MAX_DIFFERING
    assert result.differing[0].id == "u0"


def test_agreement_without_shared_ids_is_a_user_error():
    with pytest.raises(AsrbenchError, match="share no utterance id"):
        agreement({"a": "x"}, {"b": "x"})


# --- key() --------------------------------------------------------------------------------

def test_key_is_stable_and_changes_with_every_field():
    assert make_request().key() == make_request().key()
    changed = dict(model="openai/whisper-small", dataset="other/dataset", dataset_config="hi",
                   split="validation", text_column="text", max_duration=20.0, utterances=8,
                   language=None, task="translate", generation_max_length=128,
                   audio_sha256="0" * 64)
    assert set(changed) == {f.name for f in dataclasses.fields(ReferenceRequest)}
    keys = {make_request(**{name: value}).key() for name, value in changed.items()}
    keys.add(make_request().key())
    assert len(keys) == len(changed) + 1


def test_key_changes_with_library_versions(monkeypatch):
    before = make_request().key()
    monkeypatch.setattr(ref, "library_versions",
                        lambda: {"torch": "0.0", "transformers": "0.0"})
    assert make_request().key() != before


def test_key_changes_when_local_model_files_change(tmp_path, monkeypatch):
    # a stand-in folder: the key reads only its files' names, sizes and times, so the check
    # that a model folder can load (measure/models.py check_model_directory) is not what is
    # tested here
    monkeypatch.setattr("asrbench.measure.models.check_model_directory", lambda directory: None)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    # what a model directory must hold before any key is made (models.check_model_directory):
    # feature extractor settings, tokenizer files, real safetensors weights
    (model / "preprocessor_config.json").write_text("{}")
    (model / "tokenizer.json").write_text("{}")
    weights = model / "model.safetensors"
    save_file({"w": np.zeros(4, dtype=np.float32)}, str(weights))
    os.utime(weights, ns=(1_000_000_000, 1_000_000_000))
    request = make_request(model=str(model))
    first = request.key()
    assert request.key() == first
    os.utime(weights, ns=(2_000_000_000, 2_000_000_000))  # touched
    touched = request.key()
    save_file({"w": np.zeros(5, dtype=np.float32)}, str(weights))  # resized
    os.utime(weights, ns=(2_000_000_000, 2_000_000_000))
    assert len({first, touched, request.key()}) == 3


def test_request_for_config_and_round_trip():
    config = BenchConfig()
    request = ReferenceRequest.for_config(config, utterances=5)
    assert (request.model, request.dataset, request.utterances) == (config.model, config.dataset, 5)
    assert ReferenceRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


# --- child environment and generate() arguments -------------------------------------------

def test_child_env_hides_gpus_and_the_emulator():
    # where the emulated Gaudi's stubs are (asrbench.devices.emulation.STUBS), without torch
    emulator = str(Path(asrbench.__file__).resolve().parent / "devices" / "emulation" / "stubs")
    assert os.path.isdir(emulator)
    environ = {"PYTHONPATH": os.pathsep.join([emulator, "/keep/me"]), "HOME": "/home/x",
               "CUDA_VISIBLE_DEVICES": "0,1"}
    env = clean_child_env(environ)
    assert env["PYTHONPATH"] == "/keep/me"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["HOME"] == "/home/x"
    assert env["TORCH_DEVICE_BACKEND_AUTOLOAD"] == "0"
    assert "PYTHONPATH" not in clean_child_env({"PYTHONPATH": emulator})
    assert environ["CUDA_VISIBLE_DEVICES"] == "0,1"  # the caller's mapping is not modified


def test_language_kwargs_only_for_multilingual_configs():
    multilingual = dataclasses.make_dataclass("G", ["lang_to_id"])({"<|en|>": 1})
    english_only = dataclasses.make_dataclass("G", ["lang_to_id"])(None)
    assert language_kwargs(multilingual, "en", "transcribe") == {"language": "en",
                                                                 "task": "transcribe"}
    assert language_kwargs(multilingual, None, "translate") == {"task": "translate"}
    assert language_kwargs(english_only, "en", "transcribe") == {}


# --- the disk cache -----------------------------------------------------------------------

def document(key: str, ids=("a", "b"), transcripts=("first", "second"), schema=1) -> dict:
    return {"schema": schema, "key": key, "request": {}, "ids": list(ids),
            "transcripts": list(transcripts), "environment": {}}


def no_child(*args, **kwargs):
    raise AssertionError("a reference child was started")


def test_valid_cache_is_used_without_a_child(tmp_path, monkeypatch):
    request = make_request()
    path = cache_path(request.key(), tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(document(request.key())))
    monkeypatch.setattr(subprocess, "run", no_child)
    assert reference_transcripts(request, cache_dir=tmp_path) == {"a": "first", "b": "second"}


@pytest.mark.parametrize("content", [
    "{not json",
    json.dumps(["a", "list"]),
    json.dumps(document("0" * 64)),  # another request's key
    json.dumps(document("KEY", schema=2)),
    json.dumps(document("KEY", transcripts=("only one",))),
    json.dumps(document("KEY", transcripts=("first", 2))),
    json.dumps(document("KEY", ids=("a", "a"))),
])
def test_damaged_cache_is_ignored_and_recomputed(tmp_path, monkeypatch, content):
    request = make_request()
    key = request.key()
    path = cache_path(key, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(content.replace("KEY", key))
    calls = []

    def fake_child(req, k, timeout):
        calls.append((req, k))
        return document(k, ids=("x", "y"), transcripts=("fresh one", "fresh two"))

    monkeypatch.setattr(ref, "run_child", fake_child)
    with pytest.warns(UserWarning, match="ignoring cached reference"):
        result = reference_transcripts(request, cache_dir=tmp_path)
    assert result == {"x": "fresh one", "y": "fresh two"}
    assert calls == [(request, key)]
    # The recomputed document replaced the damaged one and is now used as is.
    monkeypatch.setattr(ref, "run_child", no_child)
    assert reference_transcripts(request, cache_dir=tmp_path) == result


def test_failing_child_is_one_line_user_error(tmp_path):
    # The dataset does not exist: the child fails in load_split, before importing torch.
    request = make_request(dataset=str(tmp_path / "no-such-corpus"))
    with pytest.raises(AsrbenchError) as info:
        reference_transcripts(request, cache_dir=tmp_path)
    message = str(info.value)
    assert message == ("reference decoding (stock transformers fp32 on CPU) failed: "
                       f"dataset {tmp_path / 'no-such-corpus'} does not exist")
    assert not list((tmp_path / "reference").glob("*.json"))


def test_child_timeout_is_a_user_error(tmp_path, monkeypatch):
    def too_slow(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", too_slow)
    with pytest.raises(AsrbenchError, match=r"failed: no result after 5 s"):
        reference_transcripts(make_request(), cache_dir=tmp_path, timeout=5)


# --- the real thing -----------------------------------------------------------------------

def stock_generate(model_dir: Path, clips: list[Path], max_length: int) -> list[str]:
    """Stock transformers in this process: the independent reference for the child's output."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from asrbench.measure.data.audio import decode_audio

    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()
    audio = [decode_audio(clip) for clip in clips]
    features = processor.feature_extractor(audio, sampling_rate=16000,
                                           return_tensors="pt").input_features
    with torch.inference_mode():
        out = model.generate(features, do_sample=False, num_beams=1, max_length=max_length,
                             language="en", task="transcribe")
    return [t.strip() for t in processor.tokenizer.batch_decode(out, skip_special_tokens=True)]


def test_child_matches_stock_generate_and_is_cached(tmp_path, monkeypatch):
    from asrbench.measure.bundled import ensure_converted

    rows = embedded_rows("en")[:4]
    request = ReferenceRequest(
        model="bundled:whisper-base", dataset=str(EMBEDDED_CORPUS), dataset_config="en",
        split="test", text_column="sentence", max_duration=30.0, utterances=len(rows),
        language="en", task="transcribe", generation_max_length=48)
    result = reference_transcripts(request, cache_dir=tmp_path)

    clips = [EMBEDDED_CORPUS / "en" / "clips" / row["path"] for row in rows]
    expected = stock_generate(ensure_converted("whisper-base"), clips, max_length=48)
    assert list(result) == [clip.stem for clip in clips]
    assert list(result.values()) == expected
    assert all(expected)  # real transcripts, not empty strings

    stored = json.loads(cache_path(request.key(), tmp_path).read_text())
    assert stored["request"] == request.to_dict() and set(stored["environment"]) == {
        "torch", "transformers"}
    monkeypatch.setattr(subprocess, "run", no_child)
    assert reference_transcripts(request, cache_dir=tmp_path) == result


def test_audio_digest_changes_with_samples_and_ids():
    """Same ids, other samples (a regenerated corpus): another digest, so another cache key."""
    from types import SimpleNamespace

    import numpy as np

    from asrbench.measure.reference import audio_digest

    a = [SimpleNamespace(id="u1", audio=np.zeros(4, dtype=np.float32))]
    b = [SimpleNamespace(id="u1", audio=np.array([0, 0, 0, 1e-6], dtype=np.float32))]
    c = [SimpleNamespace(id="u2", audio=np.zeros(4, dtype=np.float32))]
    assert audio_digest(a) == audio_digest([SimpleNamespace(id="u1", audio=np.zeros(4))])
    assert len({audio_digest(a), audio_digest(b), audio_digest(c)}) == 3
    assert make_request(audio_sha256=audio_digest(a)).key() != \
        make_request(audio_sha256=audio_digest(b)).key()
