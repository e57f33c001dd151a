"""Bad input is accounted for, never scored and never a traceback (issue 11, data cases).

Each case builds its own hostile file; the big test puts every kind of bad row into one Common
Voice directory and checks that each row of the table is in the report, used or skipped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from factories import HEADER, embedded_rows, write_cv_table

from asrbench.config.settings import EMBEDDED_CORPUS
from asrbench.errors import AsrbenchError
from asrbench.measure.data import collect, hub, load_split
from asrbench.measure.data.audio import AudioError, decode_audio

CLIPS = EMBEDDED_CORPUS / "en" / "clips"


def _good(name: str) -> Path:
    return CLIPS / name


def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV")
    return path


def test_a_truncated_mp3_is_skipped_not_scored_against_its_whole_reference(tmp_path):
    whole = _good("common_voice_en_fixture_0001.mp3").read_bytes()
    half = tmp_path / "half.mp3"
    half.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(AudioError, match="truncated: decoded .* of the .* s the file declares"):
        decode_audio(half)
    assert len(decode_audio(_good("common_voice_en_fixture_0001.mp3"))) > 0  # whole: fine


def test_a_text_file_named_mp3_says_what_is_wrong(tmp_path):
    fake = tmp_path / "fake.mp3"
    fake.write_text("this is a text file, not audio\n")
    with pytest.raises(AudioError, match="not a recognised audio file"):
        decode_audio(fake)


def test_a_long_clip_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    long_clip = _wav(tmp_path / "long.wav", 40.0)
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("decoded a clip that is too long"))
    with pytest.raises(AudioError, match="too long: 40.0 s >= 30 s"):
        decode_audio(long_clip, max_seconds=30.0)


def test_duplicate_rows_are_skipped_and_same_stem_files_stay_distinct(tmp_path):
    root = tmp_path / "cv" / "en"
    (root / "clips").mkdir(parents=True)
    shutil.copy(_good("common_voice_en_fixture_0001.mp3"), root / "clips" / "same.mp3")
    _wav(root / "clips" / "same.wav", 1.0)
    write_cv_table(root, [{"path": "same.mp3", "sentence": "first", "locale": "en"},
                          {"path": "same.wav", "sentence": "second", "locale": "en"},
                          {"path": "same.mp3", "sentence": "listed twice", "locale": "en"}])
    split = load_split(str(root.parent), "en")
    assert [u.id for u in split.utterances] == ["same", "same.wav"]
    assert [(s.id, s.reason.split(":")[0]) for s in split.skipped] == [("same", "duplicate")]


def test_a_row_that_is_not_utf8_is_one_skipped_row(tmp_path):
    root = tmp_path / "cv" / "en"
    (root / "clips").mkdir(parents=True)
    shutil.copy(_good("common_voice_en_fixture_0001.mp3"), root / "clips" / "ok.mp3")
    header = "\t".join(HEADER).encode()
    good = "\t".join(["c", "ok.mp3", "a good row", "", "", "", "", "", "en", ""]).encode()
    bad = b"\t".join([b"c", b"bad.mp3", b"caf\xe9 latin-1 bytes", b"", b"", b"", b"", b"", b"en",
                      b""])
    (root / "test.tsv").write_bytes(header + b"\n" + bad + b"\n" + good + b"\n")
    split = load_split(str(root.parent), "en")
    assert [u.id for u in split.utterances] == ["ok"]
    assert [s.reason for s in split.skipped] == ["row is not valid UTF-8"]


def test_a_header_that_is_not_utf8_is_a_one_line_error(tmp_path):
    root = tmp_path / "cv" / "en"
    root.mkdir(parents=True)
    (root / "test.tsv").write_bytes(b"client_id\tp\xe4th\tsentence\n")
    with pytest.raises(AsrbenchError) as info:
        load_split(str(root.parent), "en")
    assert "header line is not valid UTF-8" in str(info.value) and "\n" not in str(info.value)


def test_manifest_rows_with_bad_paths_or_bytes_are_skipped(tmp_path):
    _wav(tmp_path / "a.wav", 1.0)
    lines = [json.dumps({"audio_filepath": "a.wav", "text": "good"}).encode(),
             json.dumps({"audio_filepath": 42, "text": "a number"}).encode(),
             json.dumps({"audio_filepath": "~no-such-user-here/x.wav", "text": "tilde"}).encode(),
             b'{"audio_filepath": "a.wav", "text": "caf\xe9"}',
             json.dumps({"audio_filepath": "a.wav", "text": "same id", "id": "m:1"}).encode()]
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    split = load_split(str(manifest))
    assert [u.id for u in split.utterances] == ["m:1"]
    reasons = {s.id: s.reason for s in split.skipped}
    assert reasons["m:2"] == "audio_filepath is not a string"
    assert "cannot expand" in reasons["m:3"] or "missing audio file" in reasons["m:3"]
    assert reasons["m:4"] == "line is not valid UTF-8"
    assert sum(1 for s in split.skipped if s.reason.startswith("duplicate")) == 1


def test_a_hub_row_with_a_local_path_and_no_bytes_never_reads_that_path(tmp_path):
    datasets = pytest.importorskip("datasets")
    secret = _wav(tmp_path / "local-secret.wav", 1.0)
    ds = datasets.Dataset.from_dict({
        "audio": [{"bytes": None, "path": str(secret)}],
        "sentence": ["one"],
    }).cast_column("audio", datasets.Audio(decode=False))
    name, rows = hub.rows("someone/cv", None, "test", "sentence", ds=ds)
    with pytest.raises(AsrbenchError, match="no usable utterances"):
        collect(name, rows, max_duration=30, limit=None)


def test_every_kind_of_bad_row_is_accounted_for(tmp_path):
    """One Common Voice directory holding each bad case: every table row is either an
    utterance or a skipped row with its reason; nothing is lost or counted twice."""
    root = tmp_path / "cv" / "en"
    clips = root / "clips"
    clips.mkdir(parents=True)
    good_rows = embedded_rows("en")[:2]
    for row in good_rows:
        shutil.copy(CLIPS / row["path"], clips / row["path"])
    whole = (CLIPS / good_rows[0]["path"]).read_bytes()
    (clips / "half.mp3").write_bytes(whole[:len(whole) // 2])
    (clips / "text.mp3").write_text("not audio")
    (clips / "zero.mp3").write_bytes(b"")
    _wav(clips / "long.wav", 31.0)
    _wav(clips / "nan.wav", 1.0)
    samples, rate = sf.read(clips / "nan.wav")
    samples[10] = np.nan
    sf.write(clips / "nan.wav", samples, rate, subtype="FLOAT")
    bad = [{"path": "half.mp3", "sentence": "truncated"}, {"path": "text.mp3", "sentence": "text"},
           {"path": "zero.mp3", "sentence": "empty file"},
           {"path": "missing.mp3", "sentence": "gone"},
           {"path": "long.wav", "sentence": "too long"}, {"path": "nan.wav", "sentence": "nan"},
           {"path": good_rows[1]["path"], "sentence": ""},
           {"path": good_rows[0]["path"], "sentence": "listed again"},
           {"path": "../../etc/passwd", "sentence": "escape"}, {"path": "", "sentence": "no path"}]
    write_cv_table(root, good_rows + [{**r, "locale": "en"} for r in bad])
    split = load_split(str(root.parent), "en")
    table_rows = len(good_rows) + len(bad)
    assert len(split.utterances) + len(split.skipped) == table_rows
    assert [u.id for u in split.utterances] == [Path(r["path"]).stem for r in good_rows]
    reasons = [s.reason for s in split.skipped]
    for expected in ("truncated", "not a recognised audio file", "empty audio file",
                     "missing audio file", "too long", "NaN", "empty reference", "duplicate",
                     "not a file name in clips/", "no clip path"):
        assert any(expected in r for r in reasons), (expected, reasons)


def test_asrbench_run_reports_every_row_of_a_bad_directory(tmp_path, tiny_whisper):
    """The same directory through `asrbench run`: the report lists each table row once, as an
    utterance or as a skipped row with its reason (the tiny random Whisper: the rows are
    tested, not transcripts)."""
    from asrbench.cli.main import main

    root = tmp_path / "cv" / "en"
    clips = root / "clips"
    clips.mkdir(parents=True)
    good = embedded_rows("en")[:1]
    shutil.copy(CLIPS / good[0]["path"], clips / good[0]["path"])
    (clips / "text.mp3").write_text("not audio")
    rows = good + [{"path": "text.mp3", "sentence": "text", "locale": "en"},
                   {"path": "missing.mp3", "sentence": "gone", "locale": "en"},
                   {"path": good[0]["path"], "sentence": "again", "locale": "en"}]
    write_cv_table(root, rows)
    report = tmp_path / "r.json"
    assert main(["run", "--dataset", str(root.parent), "--dataset-config", "en",
                 "--model", str(tiny_whisper), "--generation-max-length", "16", "--passes", "1",
                 "--no-progress", "--report", str(report)]) == 0
    (run,) = json.loads(report.read_text())["runs"]
    assert len(run["utterances"]) + len(run["dataset"]["skipped"]) == len(rows)
    assert sorted(s["reason"].split(" ")[0] for s in run["dataset"]["skipped"]) == \
        ["duplicate:", "missing", "not"]


def _row(clip: str, sentence: str) -> str:
    return "\t".join(["c", clip, sentence, "", "", "", "", "", "en", ""])


def test_rows_the_csv_module_cannot_read_are_skipped_and_the_next_rows_kept(tmp_path):
    """A sentence over the csv module's field limit (128 KiB) and a bare CR inside a sentence:
    each is one skipped row with its reason, and the rows after it are read. The long field
    used to end the run with a csv traceback; the CR silently cut the reference at the CR and
    made its tail a phantom row."""
    root = tmp_path / "cv" / "en"
    (root / "clips").mkdir(parents=True)
    for name in ("a", "b", "c", "d"):
        shutil.copy(_good("common_voice_en_fixture_0001.mp3"), root / "clips" / f"{name}.mp3")
    lines = ["\t".join(HEADER), _row("a.mp3", "first"), _row("b.mp3", "x" * 200_000),
             _row("c.mp3", "It has been raining\rsince early this morning."),
             _row("d.mp3", "last, with a CRLF ending")]
    (root / "test.tsv").write_bytes(("\n".join(lines[:4]) + "\r\n" + lines[4] + "\r\n")
                                    .encode("utf-8"))
    split = load_split(str(root.parent), "en")
    assert [u.id for u in split.utterances] == ["a", "d"]
    assert [u.reference for u in split.utterances] == ["first", "last, with a CRLF ending"]
    reasons = {s.id: s.reason for s in split.skipped}
    assert sorted(reasons) == ["test.tsv:3", "test.tsv:4"], reasons
    assert reasons["test.tsv:3"].startswith("unreadable row (field larger than field limit")
    assert reasons["test.tsv:4"].startswith("unreadable row (new-line character")


def test_manifest_lines_that_json_reads_but_are_no_text_are_skipped(tmp_path):
    """Lone UTF-16 surrogates (valid JSON, no text: the finished run's report could not be
    written, and the run was lost), nesting past Python's recursion limit and an integer past
    its digit limit: each one skipped row with its reason, never a traceback."""
    _wav(tmp_path / "a.wav", 1.0)
    lines = [json.dumps({"audio_filepath": "a.wav", "text": "good"}),
             '{"audio_filepath": "a.wav", "text": "bad \\udc80 surrogate", "id": "s1"}',
             '{"audio_filepath": "a.wav", "text": "fine", "id": "s\\ud800"}',
             "[" * 100_000 + "]" * 100_000,
             '{"audio_filepath": "a.wav", "text": "big", "id": ' + "9" * 5000 + "}"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    split = load_split(str(manifest))
    assert [u.id for u in split.utterances] == ["m:1"]
    reasons = {s.id: s.reason for s in split.skipped}
    assert reasons["m:2"] == reasons["m:3"] == "a field holds a lone UTF-16 surrogate"
    assert reasons["m:4"] == "invalid JSON: nested too deeply"
    assert reasons["m:5"].startswith("invalid JSON: ") and "digits" in reasons["m:5"]


@pytest.mark.parametrize("kind", ["not utf-8", "too deep", "a directory", "a device"])
def test_a_config_file_that_cannot_be_read_is_one_line(tmp_path, kind):
    """`--config` / `--matrix` files: bytes that are not UTF-8, nesting past the recursion
    limit, a directory and a link to /dev/zero (which used to hang, reading forever) are one
    line naming the file, not a traceback."""
    from asrbench.config.settings import read_toml

    path = tmp_path / "c.toml"
    if kind == "not utf-8":
        path.write_bytes(b"\xff\xfe")
    elif kind == "too deep":
        path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    elif kind == "a directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(AsrbenchError) as info:
        read_toml(path, "config file")
    message = str(info.value)
    assert message.startswith(f"config file {path} ") and "\n" not in message, message


def test_a_truncated_wav_is_skipped_though_libsndfile_reads_what_is_there(tmp_path):
    """libsndfile takes a WAV's length from the file's size, so a WAV cut to a third decoded
    as a shorter clip and was scored against its whole reference. The data chunk's header
    still says how long it was: refused as truncated, from a path and from bytes. A whole
    WAV, and one with a chunk after its data, still decode."""
    whole = _wav(tmp_path / "whole.wav", 2.0)
    data = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:len(data) // 3])
    for source in (cut, cut.read_bytes()):
        with pytest.raises(AudioError, match="truncated: the WAV holds .* of the .* data "
                                             "bytes its header declares"):
            decode_audio(source)
    assert decode_audio(whole).shape == (32000,)
    trailing = tmp_path / "trailing.wav"
    trailing.write_bytes(data + b"LIST\x04\x00\x00\x00INFO")
    assert decode_audio(trailing).shape == (32000,)


def test_names_too_long_for_the_file_system_are_a_skipped_row_or_one_line(tmp_path):
    """A clip name over 255 bytes made Path.is_file() raise (ENAMETOOLONG), a traceback that
    ended the run; a --dataset, --dataset-config or --split that long did the same. A clip is
    now one skipped row (index and decode alike), the others one line."""
    from asrbench.measure.data import index_split

    root = tmp_path / "cv" / "en"
    (root / "clips").mkdir(parents=True)
    shutil.copy(_good("common_voice_en_fixture_0001.mp3"), root / "clips" / "ok.mp3")
    long_name = "a" * 300 + ".mp3"
    write_cv_table(root, [{"path": "ok.mp3", "sentence": "a good row", "locale": "en"},
                          {"path": long_name, "sentence": "too long", "locale": "en"}])
    for split in (load_split(str(root.parent), "en"), index_split(str(root.parent), "en")):
        assert [getattr(u, "id", None) for u in getattr(split, "utterances", None)
                or split.rows] == ["ok"]
        [skipped] = split.skipped
        assert "cannot be read (File name too long)" in skipped.reason, skipped
    for args in ((str(tmp_path / ("d" * 300 + ".jsonl")),), (str(root.parent), "x" * 300),
                 (str(root.parent), "en", "s" * 300)):
        with pytest.raises(AsrbenchError) as info:
            index_split(*args)
        assert "File name too long" in str(info.value) and "\n" not in str(info.value)


def test_an_unforeseen_failure_of_a_later_config_keeps_the_runs_that_finished():
    """The first config's run finished, the second raised something no one foresaw (it was
    a traceback, and the report kept nothing): the finished run is kept, as after Ctrl-C, and
    the failure is named."""
    from factories import make_run

    from asrbench import flow
    from asrbench.config.settings import BenchConfig

    finished = make_run()

    class Session:
        def evaluate(self, config, passes):
            if config.limit == 2:
                raise RuntimeError("a bug\nwith a second line")
            return finished

    measured = flow.measure(Session(), [BenchConfig(limit=1), BenchConfig(limit=2)], 1)
    assert measured.runs == [finished] and measured.interrupted is not None
    assert (measured.interrupted.code, measured.interrupted.error) == (
        1, "RuntimeError: a bug")
    with pytest.raises(RuntimeError):  # nothing finished: nothing to keep, the error as it is
        flow.measure(Session(), [BenchConfig(limit=2)], 1)


def test_a_clip_with_nothing_at_16khz_or_overflowing_samples_is_skipped(tmp_path):
    """Ten frames at 1 MHz resample to no sample at 16 kHz: it was scored as a 0-second
    utterance. Finite samples of 1e30 (a float WAV) give log-mel features that are not a
    number: the model's garbage transcript was scored. Both are refused (by the header where it
    tells, else when decoded), and a loud but sane float clip is kept."""
    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, np.full(10, 0.1, dtype=np.float32), 1_000_000, format="WAV")
    from asrbench.measure.data.audio import probe_audio

    with pytest.raises(AudioError, match="no samples at 16000 Hz .10 at 1000000 Hz."):
        probe_audio(tiny)
    with pytest.raises(AudioError, match="no samples at 16000 Hz"):
        decode_audio(tiny)
    speech = decode_audio(_good("common_voice_en_fixture_0001.mp3"))
    for scale, refused in ((1e30, True), (1e13, True), (32767.0, False), (1.0, False)):
        clip = tmp_path / f"x{scale:g}.wav"
        sf.write(clip, speech * np.float32(scale), 16000, format="WAV", subtype="FLOAT")
        if refused:
            with pytest.raises(AudioError, match="samples far outside -1..1"):
                decode_audio(clip)
        else:
            assert np.all(np.isfinite(decode_audio(clip)))


def test_a_byte_order_mark_is_not_data_and_skipped_rows_name_their_file_line(tmp_path):
    """A table saved with a UTF-8 byte-order mark: with `path` first the run was refused
    ("missing column(s) path"), with client_id first every speaker was silently lost; a
    manifest's first row was skipped as invalid JSON. A skipped row of a table with blank
    lines was named by its count of records, not by its line in the file."""
    root = tmp_path / "cv" / "en"
    (root / "clips").mkdir(parents=True)
    shutil.copy(_good("common_voice_en_fixture_0001.mp3"), root / "clips" / "ok.mp3")
    (root / "test.tsv").write_text("\ufeffpath\tsentence\n\n\nok.mp3\ta good row\n\n"
                                   "x/../y.mp3\tbad path\n", encoding="utf-8")
    split = load_split(str(root.parent), "en")
    assert [u.id for u in split.utterances] == ["ok"]
    assert [s.id for s in split.skipped] == ["test.tsv:6"]  # the file's sixth line
    write_cv_table(root, [{"client_id": "alice", "path": "ok.mp3", "sentence": "a good row",
                           "locale": "en"}])
    plain = load_split(str(root.parent), "en").utterances[0].speaker
    (root / "test.tsv").write_bytes(b"\xef\xbb\xbf" + (root / "test.tsv").read_bytes())
    assert plain is not None and load_split(str(root.parent), "en").utterances[0].speaker == plain
    shutil.copy(_good("common_voice_en_fixture_0001.mp3"), tmp_path / "a.mp3")
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\xef\xbb\xbf" + json.dumps({"audio_filepath": "a.mp3",
                                                       "text": "hello"}).encode() + b"\n")
    split = load_split(str(manifest))
    assert [u.reference for u in split.utterances] == ["hello"] and not split.skipped


def test_a_repeated_id_after_a_clip_that_fails_to_decode_is_the_same_row_everywhere(tmp_path):
    """Rows a, dup (NaN samples: fails only when decoded), dup (good), c: the run (index, then
    decode) skipped the second dup as a duplicate, the reference child (collect) kept it, so
    the clips decoded for the reference were not the run's and the agreement check failed the
    gate. Both keep the same rows now: a and c."""
    from asrbench.measure.data import decode_row, index_split

    for name in ("a", "b", "c"):
        shutil.copy(_good("common_voice_en_fixture_0001.mp3"), tmp_path / f"{name}.mp3")
    broken = np.zeros(16000, dtype=np.float32)
    broken[100] = np.nan
    sf.write(tmp_path / "nan.wav", broken, 16000, format="WAV", subtype="FLOAT")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in (
        {"audio_filepath": "a.mp3", "id": "a", "text": "one"},
        {"audio_filepath": "nan.wav", "id": "dup", "text": "two"},
        {"audio_filepath": "b.mp3", "id": "dup", "text": "three"},
        {"audio_filepath": "c.mp3", "id": "c", "text": "four"})), encoding="utf-8")
    indexed = index_split(str(manifest))
    decoded = [decode_row(row, indexed.max_duration) for row in indexed.rows]
    run_keeps = [d.id for d in decoded if not hasattr(d, "reason")]
    assert run_keeps == ["a", "c"]
    assert [u.id for u in load_split(str(manifest)).utterances] == run_keeps
    assert [u.id for u in load_split(str(manifest), limit=2).utterances] == run_keeps


def test_three_files_whose_names_overlap_keep_three_ids(tmp_path):
    """x.wav.mp3 (stem x.wav), x.mp3 (stem x) and x.wav (stem x taken, full name x.wav taken):
    the third, a file of its own, was skipped as a duplicate. Each keeps an id of its own now;
    the same file listed twice is still a duplicate."""
    root = tmp_path / "cv" / "en"
    (root / "clips").mkdir(parents=True)
    for name in ("x.wav.mp3", "x.mp3"):
        shutil.copy(_good("common_voice_en_fixture_0001.mp3"), root / "clips" / name)
    _wav(root / "clips" / "x.wav", 1.0)
    write_cv_table(root, [{"path": name, "sentence": f"row {n}", "locale": "en"}
                          for n, name in enumerate(("x.wav.mp3", "x.mp3", "x.wav", "x.wav"))])
    split = load_split(str(root.parent), "en")
    assert [u.id for u in split.utterances] == ["x.wav", "x", "clips/x.wav"]
    assert [(s.id, s.reason.split(":")[0]) for s in split.skipped] == [
        ("clips/x.wav", "duplicate")]


def test_a_text_column_for_a_local_dataset_is_refused(tmp_path):
    """--text-column is a Hub dataset's: for a Common Voice folder or a manifest it was ignored
    without a word, and still named in the config's id (`-col-nosuchcol`)."""
    from asrbench.measure.data import index_split

    manifest = tmp_path / "m.jsonl"
    shutil.copy(_good("common_voice_en_fixture_0001.mp3"), tmp_path / "a.mp3")
    manifest.write_text(json.dumps({"audio_filepath": "a.mp3", "text": "hi"}) + "\n",
                        encoding="utf-8")
    for dataset, kind in ((str(EMBEDDED_CORPUS), "directory"), (str(manifest), "manifest")):
        with pytest.raises(AsrbenchError, match=f"--text-column nosuchcol applies to Hub "
                                                f"datasets only: .* is a local {kind}"):
            index_split(dataset, "en", text_column="nosuchcol")
    assert index_split(str(manifest), text_column="sentence").rows  # the default: fine
