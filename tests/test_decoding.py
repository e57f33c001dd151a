"""The finished-rows-dropping greedy decoder against transformers' generate()."""

from types import SimpleNamespace

import pytest
import torch

from asrbench.config import EMBEDDED_CORPUS
from asrbench.data import load_split
from asrbench.decoding import GreedyDecoder, SuppressAtBegin, SuppressTokens, supports, whisper_prompt
from asrbench.models import load

GENERATION = SimpleNamespace(decoder_start_token_id=50258, no_timestamps_token_id=50363,
                             lang_to_id={"<|en|>": 50259, "<|hi|>": 50276},
                             task_to_id={"transcribe": 50359, "translate": 50358})


def test_prompt_accepts_language_names_and_codes():
    assert whisper_prompt(GENERATION, "hindi", "transcribe") == [50258, 50276, 50359, 50363]
    assert whisper_prompt(GENERATION, "hi", "transcribe") == [50258, 50276, 50359, 50363]
    assert whisper_prompt(GENERATION, "<|en|>", "translate") == [50258, 50259, 50358, 50363]
    with pytest.raises(ValueError, match="klingon"):
        whisper_prompt(GENERATION, "klingon", "transcribe")


def test_suppression_rules():
    scores = torch.zeros(2, 6)
    SuppressTokens([1, 4], torch.device("cpu"))(scores, step=3)
    assert torch.isinf(scores[:, [1, 4]]).all() and not torch.isinf(scores[:, [0, 2, 3, 5]]).any()
    first, later = torch.zeros(1, 6), torch.zeros(1, 6)
    SuppressAtBegin([2], torch.device("cpu"))(first, step=0)
    SuppressAtBegin([2], torch.device("cpu"))(later, step=1)
    assert torch.isinf(first[0, 2]) and not torch.isinf(later).any()


def test_supports_only_whisper_with_a_forced_language():
    whisper = SimpleNamespace(config=SimpleNamespace(model_type="whisper"),
                              generation_config=GENERATION, proj_out=None, get_encoder=None)
    assert supports(whisper, "hindi")
    assert not supports(whisper, None)  # language detection stays with generate()
    other = SimpleNamespace(config=SimpleNamespace(model_type="speech_to_text"),
                            generation_config=GENERATION)
    assert not supports(other, "en")


@pytest.fixture(scope="module")
def whisper():
    return load("bundled:whisper-base")


@pytest.mark.parametrize("locale,language,precision", [("en", "english", "fp32"),
                                                        ("hi", "hindi", "fp32"),
                                                        ("en", "english", "bf16")])
def test_same_tokens_as_generate(whisper, locale, language, precision):
    """Every row's tokens up to EOS equal generate()'s, for rows ending at different steps."""
    model, processor = whisper.model, whisper.processor
    max_length = 32
    split = load_split(str(EMBEDDED_CORPUS), locale, limit=5, progress=False)
    features = processor.feature_extractor([u.audio for u in split.utterances],
                                           sampling_rate=16000, return_tensors="pt").input_features
    decoder = GreedyDecoder(model, whisper_prompt(model.generation_config, language, "transcribe"),
                            max_length)
    eos = model.generation_config.eos_token_id
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        ours = decoder(features).tolist()
        theirs = model.generate(features, language=language, task="transcribe", do_sample=False,
                                num_beams=1, max_length=max_length).tolist()

    def text_tokens(row):
        row = [t for t in row if t not in decoder.prompt]
        return row[:row.index(eos)] if eos in row else row

    assert [text_tokens(r) for r in ours] == [text_tokens(r) for r in theirs]
    ended = [len(text_tokens(r)) for r in ours]
    if locale == "en":
        # the comparison covers rows that finished early while others went on
        assert len(set(ended)) > 1 and max(ended) < max_length - 4
    assert all(len(r) <= max_length for r in ours)
