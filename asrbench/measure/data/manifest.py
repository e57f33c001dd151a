"""JSONL manifests: one {"audio_filepath", "text", optional "id"} object per line."""

from __future__ import annotations

import codecs
import functools
import json
from collections.abc import Iterator
from pathlib import Path

from asrbench.formats.io import LONE_SURROGATE
from asrbench.measure.data.audio import decode_audio, probe_audio
from asrbench.measure.data.rows import RawRow, unusable


def rows(path: Path) -> Iterator[RawRow]:
    """Iterate a manifest; relative audio paths are relative to the manifest's directory.
    A line that is not UTF-8 or not JSON, or has no usable audio_filepath, is one skipped row."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            row_id = f"{path.stem}:{number}"
            if number == 1:  # a byte-order mark (some editors write one) is not JSON
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield RawRow(row_id, unusable("line is not valid UTF-8"), "?")
                continue
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RawRow(row_id, unusable(f"invalid JSON: {exc.msg}"), "?")
                continue
            except RecursionError:
                yield RawRow(row_id, unusable("invalid JSON: nested too deeply"), "?")
                continue
            except ValueError as exc:  # an integer beyond Python's digit limit
                yield RawRow(row_id, unusable(f"invalid JSON: {str(exc).splitlines()[0]}"), "?")
                continue
            if not isinstance(item, dict) or not item.get("audio_filepath"):
                yield RawRow(row_id, unusable("no audio_filepath"), "?")
                continue
            given = item["audio_filepath"]
            if not isinstance(given, str):
                yield RawRow(row_id, unusable("audio_filepath is not a string"), "?")
                continue
            try:
                audio = Path(given).expanduser()
            except RuntimeError:  # ~user of a user this machine does not have
                yield RawRow(row_id, unusable(f"cannot expand {given!r}"), "?")
                continue
            if not audio.is_absolute():
                audio = path.parent / audio
            text = item.get("text")
            item_id = item.get("id")
            if any(isinstance(value, str) and LONE_SURROGATE.search(value)
                   for value in (given, text, item_id)):
                # valid JSON ("\\ud800") but no text: the report could not be written as UTF-8
                yield RawRow(row_id, unusable("a field holds a lone UTF-16 surrogate"), "?")
                continue
            yield RawRow(str(item_id) if item_id not in (None, "") else row_id,
                         functools.partial(decode_audio, audio),
                         text if isinstance(text, str) else None,
                         functools.partial(probe_audio, audio))
