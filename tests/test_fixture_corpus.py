"""The committed corpus is what scripts/make_fixture_corpus.py produces."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from asrbench.config import EMBEDDED_CORPUS

from conftest import embedded_rows

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


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("ffmpeg") and shutil.which("ffprobe")),
                    reason="espeak-ng/ffmpeg not installed (scripts/setup.sh installs them as root)")
def test_regenerating_a_clip_reproduces_the_committed_bytes(script, tmp_path):
    for locale_spec in script.LOCALES:
        one = dataclasses.replace(locale_spec, sentences=locale_spec.sentences[:1])
        work = tmp_path / f"work-{one.locale}"
        work.mkdir()
        (clip,) = script.synthesize_locale(one, tmp_path / one.locale, work)
        produced = (tmp_path / one.locale / "clips" / clip.path).read_bytes()
        committed = (EMBEDDED_CORPUS / one.locale / "clips" / clip.path).read_bytes()
        if produced != committed:
            pytest.skip(f"{one.locale}: this machine's espeak-ng/ffmpeg build differs from the one "
                        "that made the corpus (see data/commonvoice-mini/README.md)")
        assert 2.0 <= clip.seconds <= 12.0
