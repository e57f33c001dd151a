"""A local Common Voice release: <dir>/<locale>/<split>.tsv and <dir>/<locale>/clips/*.mp3."""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

from asrbench.errors import AsrbenchError
from asrbench.measure.data.audio import decode_audio, probe_audio
from asrbench.measure.data.rows import RawRow, speaker_id, unusable

REQUIRED_COLUMNS = ("path", "sentence")


def locate(root: Path, locale: str | None, split: str) -> Path:
    """Find <split>.tsv under root/<locale>/ or directly under root (root = one locale)."""
    candidates = [root / locale / f"{split}.tsv"] if locale else []
    candidates.append(root / f"{split}.tsv")
    for tsv in candidates:
        try:
            if tsv.is_file():
                return tsv
        except OSError as exc:  # a --dataset-config or --split too long for a file name
            raise AsrbenchError(f"Common Voice split {tsv} cannot be read "
                                f"({exc.strerror or exc})") from None
    locales = sorted(p.name for p in root.iterdir() if (p / f"{split}.tsv").is_file())
    hint = (f"locales with {split}.tsv here: {', '.join(locales)} (pass --dataset-config)"
            if locales else f"expected {root}/<locale>/{split}.tsv and clips/")
    wanted = f"{root / locale / (split + '.tsv')}" if locale else f"{root / (split + '.tsv')}"
    raise AsrbenchError(f"Common Voice split not found: {wanted} does not exist; {hint}")


def rows(root: Path, locale: str | None, split: str) -> tuple[str, Iterator[RawRow]]:
    """Describe the split and iterate its rows (audio decoded lazily)."""
    tsv = locate(root, locale, split)
    try:
        with open(tsv, "rb") as fh:  # only the first line: a bad byte further on is one row
            # a byte-order mark (some editors write one) is not part of the first column's name
            header = (fh.readline().decode("utf-8").removeprefix("\ufeff").rstrip("\r\n")
                      .split("\t"))
    except UnicodeDecodeError:
        raise AsrbenchError(f"{tsv}: the header line is not valid UTF-8") from None
    except OSError as exc:
        raise AsrbenchError(f"{tsv}: cannot be read ({exc.strerror or exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise AsrbenchError(f"{tsv}: not a Common Voice table, missing column(s) "
                            f"{', '.join(missing)}")
    name = f"{tsv.parent.name}/{split} ({tsv.parent})"
    return name, _iter_rows(tsv)


def _has_bad_bytes(record: dict) -> bool:
    """Fields read with surrogateescape hold lone surrogates where the bytes were not UTF-8."""
    return any(isinstance(v, str) and any("\udc80" <= c <= "\udcff" for c in v)
               for v in record.values())


def _records(lines: Iterable[str]) -> Iterator[tuple[int, dict | csv.Error]]:
    """A Common Voice table's records with the file line each ends on (the reader skips blank
    lines, so a count of records is not a line number; its own line_num does not move on a
    row it cannot read), and a row the csv module cannot read (a field over its size limit, a
    bare CR) as its error in that row's place: the reader goes on at the next line."""
    read = 0

    def counted() -> Iterator[str]:
        nonlocal read
        for line in lines:
            read += 1
            yield line

    # Common Voice tables are plain TSV: quotes are literal characters in sentences.
    reader = csv.DictReader(counted(), delimiter="\t", quoting=csv.QUOTE_NONE)
    while True:
        try:
            record: dict | csv.Error = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            record = exc
        yield read, record


def _iter_rows(tsv: Path) -> Iterator[RawRow]:
    clips = tsv.parent / "clips"
    stems: dict[str, str] = {}  # clip id -> the clip file it names
    # surrogateescape: one row with bytes that are not UTF-8 is one skipped row, not a crash.
    # newline="\n": a record is a line ending in LF or CRLF; a bare CR inside a sentence is a
    # csv error for that row (skipped, with the reason), not a silent cut of the sentence.
    # utf-8-sig: a byte-order mark before the header is not part of the first column's name
    with open(tsv, encoding="utf-8-sig", errors="surrogateescape", newline="\n") as fh:
        for number, record in _records(fh):
            row_id = f"{tsv.name}:{number}"
            if isinstance(record, csv.Error):
                yield RawRow(row_id, unusable(f"unreadable row ({record})"), "?")
                continue
            if _has_bad_bytes(record):
                yield RawRow(row_id, unusable("row is not valid UTF-8"), "?")
                continue
            clip = (record.get("path") or "").strip()
            if not clip:
                yield RawRow(row_id, unusable("row has no clip path"), record.get("sentence"))
                continue
            if Path(clip).name != clip or clip in (".", ".."):
                yield RawRow(row_id, unusable(f"clip path {clip!r} is not a file name in clips/"),
                             record.get("sentence"))
                continue
            # The id is the clip's name without its extension, as Common Voice ids are; two
            # different files with one stem (same.mp3, same.wav) keep their full names apart,
            # and a full name that is another file's stem (x.wav beside x.wav.mp3) its path
            # under clips/ (no file name holds a "/"): a row of its own is never a duplicate.
            clip_id = Path(clip).stem
            if stems.setdefault(clip_id, clip) != clip:
                clip_id = clip
                if stems.setdefault(clip_id, clip) != clip:
                    clip_id = f"clips/{clip}"
            yield RawRow(clip_id, functools.partial(decode_audio, clips / clip),
                         record.get("sentence"), functools.partial(probe_audio, clips / clip),
                         speaker_id(record.get("client_id")))

