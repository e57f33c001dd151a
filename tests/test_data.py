"""Data sources: Common Voice layout, JSONL manifests, Hub datasets; bad rows are kept track of."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from factories import embedded_rows

from asrbench.config.settings import EMBEDDED_CORPUS
from asrbench.errors import AsrbenchError
from asrbench.measure.data import SAMPLE_RATE, AudioError, collect, decode_audio, hub, load_split


def test_embedded_corpus_has_the_common_voice_layout():
    for locale in ("hi", "en"):
        rows = embedded_rows(locale)
        assert len(rows) >= 40
        for row in rows:
            assert (EMBEDDED_CORPUS / locale / "clips" / row["path"]).is_file()
            assert row["path"].endswith(".mp3") and row["sentence"].strip()
    total = sum(f.stat().st_size for f in EMBEDDED_CORPUS.rglob("*") if f.is_file())
    assert total < 6 * 1024 * 1024


def test_embedded_clips_are_48k_mp3_of_2_to_12_seconds():
    for locale in ("hi", "en"):
        for row in embedded_rows(locale):
            info = sf.info(EMBEDDED_CORPUS / locale / "clips" / row["path"])
            assert info.samplerate == 48000 and info.channels == 1
            assert 2.0 <= info.duration <= 12.0


def test_common_voice_split_selected_by_config_or_by_locale_directory():
    by_config = load_split(str(EMBEDDED_CORPUS), "en", "test", limit=2)
    by_dir = load_split(str(EMBEDDED_CORPUS / "en"), None, "test", limit=2)
    assert [u.id for u in by_config.utterances] == [u.id for u in by_dir.utterances]
    first = embedded_rows("en")[0]
    assert by_config.utterances[0].id == Path(first["path"]).stem
    assert by_config.utterances[0].reference == first["sentence"]


def test_missing_locale_names_the_available_ones():
    with pytest.raises(AsrbenchError, match="en, hi"):
        load_split(str(EMBEDDED_CORPUS), None, "test")
    with pytest.raises(AsrbenchError, match="does not exist"):
        load_split(str(EMBEDDED_CORPUS), "fr", "test")


def test_bad_rows_are_skipped_with_reasons_and_counted(outside_corpus):
    split = load_split(str(outside_corpus), "en", "test")
    assert len(split.utterances) == 3
    reasons = {s.id: s.reason for s in split.skipped}
    assert len(split.skipped) == 4
    assert "missing" in reasons["missing"]
    assert "0 bytes" in reasons["zero"]
    assert "undecodable" in reasons["truncated"] or "not a recognised audio" in reasons["truncated"]
    assert "empty reference" in reasons.values()


def test_clips_at_or_over_max_duration_are_dropped():
    full = load_split(str(EMBEDDED_CORPUS), "en", "test", limit=5)
    cutoff = sorted(u.audio_seconds for u in full.utterances)[2]
    split = load_split(str(EMBEDDED_CORPUS), "en", "test", max_duration=cutoff, limit=5)
    assert all(u.audio_seconds < cutoff for u in split.utterances)
    assert any("too long" in s.reason for s in split.skipped)


def test_limit_counts_usable_utterances(outside_corpus):
    split = load_split(str(outside_corpus), "en", "test", limit=2)
    assert len(split.utterances) == 2


def test_decode_downmixes_and_resamples_to_16k(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate  # one second
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, -left * 0 + 0.25], axis=1).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, rate)
    audio = decode_audio(path)
    assert audio.dtype == np.float32
    assert abs(len(audio) - SAMPLE_RATE) <= 1
    # mono = mean of channels: the constant 0.25 channel halves to a 0.125 offset.
    assert float(np.mean(audio)) == pytest.approx(0.125, abs=1e-3)


def test_decode_errors_are_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="missing"):
        decode_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="empty"):
        decode_audio(b"")
    with pytest.raises(AudioError, match="undecodable"):
        decode_audio(b"not audio at all")


def _wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV")
    return buf.getvalue()


def test_jsonl_manifest_relative_paths_ids_and_bad_lines(tmp_path):
    (tmp_path / "a.wav").write_bytes(_wav_bytes(1.0))
    lines = [
        json.dumps({"audio_filepath": "a.wav", "text": "first", "id": "utt-a"}),
        json.dumps({"audio_filepath": "a.wav", "text": "second"}),
        "{not json",
        json.dumps({"text": "no audio"}),
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    split = load_split(str(manifest))
    assert [u.id for u in split.utterances] == ["utt-a", "m:2"]
    assert [u.reference for u in split.utterances] == ["first", "second"]
    assert len(split.skipped) == 2
    assert any("invalid JSON" in s.reason for s in split.skipped)


def test_hub_rows_decode_undecoded_audio_bytes():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({
        "audio": [{"bytes": _wav_bytes(1.5), "path": "clips/x1.mp3"},
                  {"bytes": b"garbage", "path": "clips/x2.mp3"}],
        "sentence": ["one", "two"],
    }).cast_column("audio", datasets.Audio(decode=False))
    name, rows = hub.rows("someone/cv", "hi", "test", "sentence", ds=ds)
    split = collect(name, rows, max_duration=30, limit=None)
    assert name == "someone/cv/hi/test"
    assert [u.id for u in split.utterances] == ["x1"]
    assert split.utterances[0].audio_seconds == pytest.approx(1.5)
    assert split.skipped[0].id == "x2"


def test_hub_unknown_text_column_is_a_user_error():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"audio": [{"bytes": _wav_bytes(1.0), "path": "a.wav"}],
                                     "text": ["x"]}
                                    ).cast_column("audio", datasets.Audio(decode=False))
    with pytest.raises(AsrbenchError, match="--text-column"):
        hub.rows("someone/ds", None, "test", "sentence", ds=ds)


def test_hub_offline_failure_is_one_line_user_error(monkeypatch):
    """Offline mode asked for after datasets was imported (as in this pytest process): no Hub
    probe, no retries with back-off (about 20 s before), one line that says why."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(hub, "hub_reachable", lambda: pytest.fail("probed the Hub"))
    with pytest.raises(AsrbenchError, match="could not load dataset") as info:
        load_split("nobody/no-such-dataset-asrbench", "hi", "test")
    assert "\n" not in str(info.value)
    assert "offline mode: HF_HUB_OFFLINE" in str(info.value)


def _spy_load_dataset(monkeypatch, error: Exception | None = None) -> list[tuple[bool, bool]]:
    """datasets.load_dataset replaced: records (datasets', huggingface_hub's) offline flags at
    the call, then raises `error` (or returns an empty dataset)."""
    pytest.importorskip("datasets")
    import datasets
    import datasets.config
    import huggingface_hub.constants

    seen: list[tuple[bool, bool]] = []

    def load_dataset(*args, **kwargs):
        seen.append((datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE))
        if error is not None:
            raise error
        return datasets.Dataset.from_dict({"audio": [], "sentence": []})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return seen


def test_a_hub_out_of_reach_loads_only_a_cached_copy_and_fails_at_once(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    before = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    seen = _spy_load_dataset(monkeypatch, ConnectionError("Couldn't reach 'x/y' on the Hub"))
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(AsrbenchError, match="the Hub cannot be reached") as info:
        hub.load("x/y", "hi", "test")
    assert seen == [(True, True)]  # offline while datasets looked: its cache, no retries
    assert "\n" not in str(info.value)
    assert (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE) == before


def test_a_reachable_hub_is_asked_as_before(monkeypatch):
    seen = _spy_load_dataset(monkeypatch)
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    assert hub.load("x/y", "hi", "test").column_names == ["audio", "sentence"]
    assert seen == [(False, False)]


def test_common_voice_keeps_each_rows_speaker_as_a_pseudonym(tmp_path):
    """client_id (Common Voice's speaker) reaches every utterance and index row as the first 16
    hex digits of its sha256 (the blockwise bootstrap groups by it); a table without the
    column, like a manifest, has no speakers."""
    import csv
    import hashlib
    import shutil

    from asrbench.measure.data import index_split

    with open(EMBEDDED_CORPUS / "en" / "test.tsv", encoding="utf-8", newline="") as fh:
        table = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    expected = {Path(r["path"]).stem: hashlib.sha256(r["client_id"].encode()).hexdigest()[:16]
                for r in table}
    split = load_split(str(EMBEDDED_CORPUS), "en", "test", limit=3)
    assert [u.speaker for u in split.utterances] == [expected[u.id] for u in split.utterances]
    rows = index_split(str(EMBEDDED_CORPUS), "en", "test", limit=3).rows
    assert [r.speaker for r in rows] == [expected[r.id] for r in rows]
    # without client_id: no speakers
    locale = tmp_path / "en"
    shutil.copytree(EMBEDDED_CORPUS / "en" / "clips", locale / "clips")
    with open(locale / "test.tsv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["path", "sentence"])
        writer.writerows([[r["path"], r["sentence"]] for r in table[:2]])
    assert [u.speaker for u in load_split(str(tmp_path), "en", "test").utterances] == [None, None]
