"""The bundled model: CTranslate2 parsing, one-time conversion, and proof of equivalence."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

from asrbench.config.settings import EMBEDDED_CORPUS
from asrbench.errors import AsrbenchError
from asrbench.measure.bundled import (
    MARKER_FILE,
    BundledSource,
    bundled_source,
    ensure_converted,
    read_model_bin,
    source_digest,
)
from asrbench.measure.data import load_split


def _name(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def test_read_model_bin_parses_variables_and_aliases():
    weights = np.arange(6, dtype=np.float16).reshape(2, 3)
    blob = struct.pack("<I", 6) + _name("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", 2)
    blob += _name("w") + struct.pack("<B", 2) + struct.pack("<II", 2, 3) + struct.pack("<B", 4)
    blob += struct.pack("<I", weights.nbytes) + weights.tobytes()
    blob += _name("heads") + struct.pack("<B", 0) + struct.pack("<B", 2) + struct.pack("<I", 2)
    blob += struct.pack("<h", 8)
    blob += struct.pack("<I", 1) + _name("alias") + _name("w")
    variables = read_model_bin(blob)
    assert variables["w"].dtype == np.float16 and variables["w"].tolist() == weights.tolist()
    assert int(variables["heads"]) == 8
    assert variables["alias"] is variables["w"]
    with pytest.raises(AsrbenchError, match="trailing"):
        read_model_bin(blob + b"x")
    with pytest.raises(AsrbenchError, match="version"):
        read_model_bin(struct.pack("<I", 5) + blob[4:])


def test_unknown_bundled_model_is_a_user_error():
    with pytest.raises(AsrbenchError, match="bundled:whisper-base"):
        bundled_source("whisper-huge")


def test_the_source_digest_is_hashed_once_per_process_while_the_files_stay(tmp_path,
                                                                          monkeypatch):
    """A run resolves the bundled model twice (preflight, load): its ~145 MB are hashed once;
    a changed file (a reinstalled package) is hashed anew."""
    from asrbench.measure import bundled

    files = []
    for name in ("model.bin.part1", "model.bin.part2", "config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes(name.encode())
        files.append(tmp_path / name)
    source = BundledSource(model_parts=(files[0], files[1]), config_json=files[2],
                           tokenizer_json=files[3])
    hashed = []
    monkeypatch.setattr(bundled, "sha256_files",
                        lambda paths, prefix, real=bundled.sha256_files:
                        hashed.append(1) or real(paths, prefix))
    first = source_digest(source)
    assert source_digest(source) == first and len(hashed) == 1
    files[2].write_bytes(b"another config")
    changed = source_digest(source)
    assert changed != first and len(hashed) == 2
    files[2].unlink()
    with pytest.raises(FileNotFoundError):
        source_digest(source)


@pytest.fixture(scope="module")
def converted():
    return ensure_converted()


def test_conversion_happens_once_and_is_marked(converted):
    marker = converted / MARKER_FILE
    info = json.loads(marker.read_text())
    assert info["source_sha256"] == source_digest(bundled_source())
    before = (converted / "model.safetensors").stat().st_mtime_ns
    assert ensure_converted() == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == before
    assert not (converted / "pytorch_model.bin").exists()  # safetensors only


def test_generation_config_supports_language_and_task(converted):
    from transformers import GenerationConfig, WhisperTokenizerFast

    generation = GenerationConfig.from_pretrained(converted)
    tokenizer = WhisperTokenizerFast.from_pretrained(converted)
    assert generation.lang_to_id["<|hi|>"] == tokenizer.convert_tokens_to_ids("<|hi|>")
    assert generation.lang_to_id["<|en|>"] == tokenizer.convert_tokens_to_ids("<|en|>")
    assert generation.task_to_id["transcribe"] == tokenizer.convert_tokens_to_ids("<|transcribe|>")
    assert generation.no_timestamps_token_id == tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    assert generation.is_multilingual and len(generation.alignment_heads) == 8


GENERATED = 48  # generated-token cap for the equivalence check (Hindi clips hit it)
CLIPS = 3  # per locale: two frameworks decoding is ~4 s a clip on a 2-core runner


def test_greedy_transcripts_identical_to_ctranslate2_on_the_original_weights(converted, tmp_path):
    """Proof of the conversion: same clips, greedy, fp32 on both sides, same token ids."""
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 is in the dev extra")
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    source = bundled_source()
    with open(tmp_path / "model.bin", "wb") as out:
        for part in source.model_parts:
            out.write(part.read_bytes())
    for path in (source.config_json, source.tokenizer_json,
                 source.config_json.parent / "vocabulary.txt"):
        shutil.copy(path, tmp_path)
    ct2 = ctranslate2.models.Whisper(str(tmp_path), device="cpu", compute_type="float32")
    model = WhisperForConditionalGeneration.from_pretrained(converted,
                                                            torch_dtype=torch.float32).eval()
    processor = WhisperProcessor.from_pretrained(converted)
    tokenizer = processor.tokenizer
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")

    compared = 0
    for locale, language in (("en", "english"), ("hi", "hindi")):
        split = load_split(str(EMBEDDED_CORPUS), locale, limit=CLIPS)
        features = processor.feature_extractor([u.audio for u in split.utterances],
                                               sampling_rate=16000,
                                               return_tensors="np").input_features
        prompt = tokenizer.convert_tokens_to_ids(
            ["<|startoftranscript|>", f"<|{locale}|>", "<|transcribe|>", "<|notimestamps|>"])
        # CTranslate2's Whisper max_length allows max_length / 2 generated tokens here (measured:
        # 10 -> 5, 40 -> 20); transformers' max_length counts the 4 prompt tokens.
        ct2_out = ct2.generate(ctranslate2.StorageView.from_array(features),
                               [prompt] * len(features), beam_size=1, max_length=2 * GENERATED)
        with torch.inference_mode():
            hf_out = model.generate(torch.from_numpy(features), language=language,
                                    task="transcribe", do_sample=False, num_beams=1,
                                    max_length=GENERATED + len(prompt))
        for ct2_result, row in zip(ct2_out, hf_out.tolist()):
            ct2_ids = ct2_result.sequences_ids[0]
            hf_ids = row[:row.index(eos)] if eos in row else row
            assert len(ct2_ids) <= GENERATED
            assert hf_ids == ct2_ids
            assert tokenizer.decode(hf_ids, skip_special_tokens=True) == tokenizer.decode(ct2_ids)
            compared += 1
    assert compared == 2 * CLIPS
