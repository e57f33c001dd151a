"""JSONL manifests: one {"audio_filepath", "text", optional "id"} object per line."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Iterator

from asrbench.data import RawRow, unusable
from asrbench.data.audio import decode_audio


def rows(path: Path) -> Iterator[RawRow]:
    """Iterate a manifest; relative audio paths are relative to the manifest's directory."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row_id = f"{path.stem}:{number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RawRow(row_id, unusable(f"invalid JSON: {exc.msg}"), "?")
                continue
            if not isinstance(item, dict) or not item.get("audio_filepath"):
                yield RawRow(row_id, unusable("no audio_filepath"), "?")
                continue
            audio = Path(item["audio_filepath"]).expanduser()
            if not audio.is_absolute():
                audio = path.parent / audio
            text = item.get("text")
            yield RawRow(str(item.get("id") or row_id), functools.partial(decode_audio, audio),
                         text if isinstance(text, str) else None)
