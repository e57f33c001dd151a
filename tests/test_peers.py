"""`asrbench peers`: the comparison document, and one real run of every peer on a few clips."""

import json
from pathlib import Path

import numpy as np
import pytest

from asrbench.cli.main import main
from asrbench.config.settings import BenchConfig
from asrbench.errors import AsrbenchError
from asrbench.formats.model import dump, parse_peers
from asrbench.measure.data import LoadedSplit, Utterance
from asrbench.measure.peers import PeerResult, summarize
from asrbench.render.peers import markdown, table


def _split(references):
    return LoadedSplit("t", [Utterance(f"u{i}", np.zeros(16000 * 2, dtype=np.float32), r)
                             for i, r in enumerate(references)])


class _Loaded:
    processor = type("P", (), {"tokenizer": None})()


def test_summary_ratios_wer_and_differing_transcripts():
    split = _split(["a b c d", "e f"])  # 2 clips, 4 s of audio, 6 reference words
    results = [PeerResult("trainer", [4.0, 5.0, 6.0], ["a b c d", "e x"]),
               PeerResult("ctranslate2", skipped="not installed"),
               PeerResult("asrbench", [1.0, 2.0, 0.5], ["a b c d", "e f"])]
    doc = dump(summarize(BenchConfig(language="en"), split, _Loaded(), results,
                         {"cpu_count": 2}))
    rows = {r["name"]: r for r in doc["peers"]}
    assert doc["precision"] == "fp32" and doc["machine"] == {"cpu_count": 2, "packages": {},
                                                         "device": {}, "git": {}}
    assert parse_peers(doc) == summarize(BenchConfig(language="en"), split, _Loaded(), results,
                                         {"cpu_count": 2})  # the typed document, as written
    assert rows["asrbench"]["samples_per_second"] == pytest.approx(2 / 1.0)  # median of rounds
    assert rows["trainer"]["samples_per_second"] == pytest.approx(2 / 5.0)
    assert rows["trainer"]["rtfx"] == pytest.approx(4 / 5.0)
    assert rows["trainer"]["asrbench_speedup"] == pytest.approx(5.0)
    assert rows["trainer"]["wer"] == pytest.approx(1 / 6)
    assert rows["trainer"]["transcripts_equal_to_asrbench"] is False
    assert rows["trainer"]["transcripts_differing"] == ["u1"]
    assert rows["asrbench"]["transcripts_equal_to_asrbench"] is True
    assert rows["ctranslate2"] == {"name": "ctranslate2", "skipped": "not installed"}
    text = table(doc)
    assert "5.00x" in text and "1 differ" in text and "skipped: not installed" in text
    md = markdown(doc).splitlines()
    assert md[2].startswith("| trainer | 0.400 | 0.80 | 0.1667 |")
    assert md[2].endswith("| 5.00x | 1 differ |")


PEERS_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "peers"
COMMITTED = sorted(p for p in PEERS_DIR.glob("*.json")
                   if "peers" in json.loads(p.read_text()))  # (not the compile tool's file)


def test_the_committed_peers_documents_load_and_validate_against_the_published_schema():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev extra")
    schema = json.loads((PEERS_DIR.parent.parent / "schemas" / "peers.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    assert len(COMMITTED) == 6
    for path in COMMITTED:
        document = json.loads(path.read_text())
        errors = list(validator.iter_errors(document))
        assert not errors, f"{path.name}: {errors[0].message}"
        assert dump(parse_peers(document, path)) == document  # read and written back as it is
    broken = json.loads(COMMITTED[0].read_text())
    broken["peers"][0] = {"name": "trainer", "wer": 0.1}  # neither ran nor skipped
    with pytest.raises(AsrbenchError, match=r"invalid peers document x.json: peers\[0\]: a "
                                            r"peer that ran needs samples_per_second"):
        parse_peers(broken, "x.json")
    assert list(validator.iter_errors({**broken, "rounds": "3"}))  # the schema refuses too


def test_unknown_peer_and_hpu_are_user_errors(capsys):
    assert main(["peers", "--peers", "asrbench,whisper.cpp"]) == 2
    assert "unknown peer(s) whisper.cpp" in capsys.readouterr().err
    assert main(["peers", "--device", "hpu"]) == 2
    assert "cpu or cuda" in capsys.readouterr().err


def test_every_peer_runs_and_agrees_with_asrbench(tmp_path, capsys):
    """A short real run: 3 English clips, batch 2 (one padded batch), 24-token cap, fp32, one
    timed round per peer (each round of four peers is 12 whisper-base clips: ~40 s on the
    2-core runner; the median of several rounds is tested on hand-built data above)."""
    out = tmp_path / "peers.json"
    code = main(["peers", "--limit", "3", "--batch-size", "2", "--rounds", "1",
                 "--generation-max-length", "24", "--json", str(out), "--no-progress",
                 "--markdown", str(tmp_path / "peers.md")])
    assert code == 0
    doc = json.loads(out.read_text())
    assert {"machine", "precision", "peers"} <= set(doc) and doc["precision"] == "fp32"
    rows = {r["name"]: r for r in doc["peers"]}
    assert list(rows) == ["trainer", "pipeline", "ctranslate2", "asrbench"]
    ours = rows["asrbench"]
    for name, row in rows.items():
        assert "skipped" not in row, row
        assert len(row["round_seconds"]) == 1
        assert row["samples_per_second"] == pytest.approx(3 / np.median(row["round_seconds"]))
        assert row["asrbench_speedup"] == pytest.approx(ours["samples_per_second"]
                                                        / row["samples_per_second"])
        # greedy, same weights, same cap: every peer transcribes these clips alike
        assert row["transcripts_equal_to_asrbench"], (name, row["transcripts_differing"])
        assert row["wer"] == pytest.approx(ours["wer"])
    assert rows["ctranslate2"]["detail"]["compute_type"] == "float32"
    assert "original CTranslate2" in rows["ctranslate2"]["detail"]["weights"]
    assert "asrbench x" in capsys.readouterr().out
    assert (tmp_path / "peers.md").read_text().count("| identical |") == 4
