"""The committed corpus is what scripts/make_fixture_corpus.py produces."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from factories import embedded_rows

from asrbench.config.settings import EMBEDDED_CORPUS

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_fixture_corpus.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_fixture_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_tables_hold_the_scripts_sentences_in_order(script):
    for locale_spec in script.LOCALES:
        rows = embedded_rows(locale_spec.locale)
        expected = [script.normalize_sentence(s) for s in locale_spec.sentences]
        assert [r["sentence"] for r in rows] == expected
        assert [r["path"] for r in rows] == [script.clip_name(locale_spec.locale, i + 1)
                                            for i in range(len(expected))]


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("ffmpeg")
                         and shutil.which("ffprobe")),
                    reason="espeak-ng/ffmpeg not installed (scripts/setup.sh installs them as "
                           "root)")
def test_regenerating_a_clip_reproduces_the_committed_bytes(script, tmp_path):
    for locale_spec in script.LOCALES:
        one = dataclasses.replace(locale_spec, sentences=locale_spec.sentences[:1])
        work = tmp_path / f"work-{one.locale}"
        work.mkdir()
        (clip,) = script.synthesize_locale(one, tmp_path / one.locale, work)
        produced_path = tmp_path / one.locale / "clips" / clip.path
        committed_path = EMBEDDED_CORPUS / one.locale / "clips" / clip.path
        if _tool_versions() == RECORDED_TOOLS:
            # The README's tools: a rerun must be byte-identical.
            assert produced_path.read_bytes() == committed_path.read_bytes(), one.locale
        # Any tool versions: the same sentence gives audio of about the same length.
        from asrbench.measure.data.audio import decode_audio

        produced, committed = decode_audio(str(produced_path)), decode_audio(str(committed_path))
        assert abs(len(produced) - len(committed)) <= 0.1 * len(committed), one.locale
        assert 2.0 <= clip.seconds <= 12.0


RECORDED_TOOLS = None  # filled from asrbench/corpus/commonvoice-mini/README.md below


def _recorded_tools() -> tuple[str, str]:
    """The espeak-ng and ffmpeg versions the README says made the committed corpus."""
    import re

    text = (EMBEDDED_CORPUS / "README.md").read_text(encoding="utf-8")
    match = re.search(r"Tools used for this copy: eSpeak NG text-to-speech: ([^;]+); ffmpeg "
                      r"version (\S+?)\.?\s", text)
    assert match, "asrbench/corpus/commonvoice-mini/README.md no longer records its tool versions"
    return match.group(1).strip(), match.group(2)


def _tool_versions() -> tuple[str, str]:
    import re
    import subprocess

    espeak = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    espeak_version = re.search(r"text-to-speech: (\S+)", espeak)
    ffmpeg_version = re.search(r"ffmpeg version (\S+)", ffmpeg)
    return (espeak_version.group(1) if espeak_version else "?",
            ffmpeg_version.group(1) if ffmpeg_version else "?")


RECORDED_TOOLS = _recorded_tools()
