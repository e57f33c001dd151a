"""A local Common Voice release: <dir>/<locale>/<split>.tsv and <dir>/<locale>/clips/*.mp3."""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Iterator

from asrbench.data import RawRow, unusable
from asrbench.data.audio import decode_audio
from asrbench.errors import AsrbenchError

REQUIRED_COLUMNS = ("path", "sentence")


def locate(root: Path, locale: str | None, split: str) -> Path:
    """Find <split>.tsv under root/<locale>/ or directly under root (root = one locale)."""
    candidates = [root / locale / f"{split}.tsv"] if locale else []
    candidates.append(root / f"{split}.tsv")
    for tsv in candidates:
        if tsv.is_file():
            return tsv
    locales = sorted(p.name for p in root.iterdir() if (p / f"{split}.tsv").is_file())
    hint = (f"locales with {split}.tsv here: {', '.join(locales)} (pass --dataset-config)"
            if locales else f"expected {root}/<locale>/{split}.tsv and clips/")
    wanted = f"{root / locale / (split + '.tsv')}" if locale else f"{root / (split + '.tsv')}"
    raise AsrbenchError(f"Common Voice split not found: {wanted} does not exist; {hint}")


def rows(root: Path, locale: str | None, split: str) -> tuple[str, Iterator[RawRow]]:
    """Describe the split and iterate its rows (audio decoded lazily)."""
    tsv = locate(root, locale, split)
    with open(tsv, encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise AsrbenchError(f"{tsv}: not a Common Voice table, missing column(s) {', '.join(missing)}")
    name = f"{tsv.parent.name}/{split} ({tsv.parent})"
    return name, _iter_rows(tsv)


def _iter_rows(tsv: Path) -> Iterator[RawRow]:
    clips = tsv.parent / "clips"
    with open(tsv, encoding="utf-8", newline="") as fh:
        # Common Voice tables are plain TSV: quotes are literal characters in sentences.
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        for number, record in enumerate(reader, start=2):
            clip = (record.get("path") or "").strip()
            if not clip:
                yield RawRow(f"{tsv.name}:{number}", unusable("row has no clip path"), record.get("sentence"))
                continue
            yield RawRow(Path(clip).stem, functools.partial(decode_audio, clips / clip),
                         record.get("sentence"))

