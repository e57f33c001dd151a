"""Shared fixtures for asrbench's own tests: the embedded corpus and throwaway corpora."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from asrbench.config.settings import EMBEDDED_CORPUS

HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent",
          "locale", "segment"]


def embedded_rows(locale: str) -> list[dict[str, str]]:
    """The embedded corpus's table for a locale, as dicts."""
    with open(EMBEDDED_CORPUS / locale / "test.tsv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def write_cv_table(directory: Path, rows: list[dict[str, str]], split: str = "test") -> Path:
    """Write a Common Voice <split>.tsv with the standard header."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{split}.tsv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER, delimiter="\t", quoting=csv.QUOTE_NONE,
                                extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in HEADER})
    return path


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
