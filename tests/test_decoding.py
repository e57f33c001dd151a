"""The finished-rows-dropping greedy decoder against transformers' generate()."""

from types import SimpleNamespace

import pytest
import torch

from asrbench.config.settings import EMBEDDED_CORPUS
from asrbench.measure.data import load_split
from asrbench.measure.decoding import (
    GreedyDecoder,
    SuppressAtBegin,
    SuppressTokens,
    length_kwargs,
    prompt_length,
    supports,
    whisper_prompt,
)
from asrbench.measure.models import load

GENERATION = SimpleNamespace(decoder_start_token_id=50258, no_timestamps_token_id=50363,
                             lang_to_id={"<|en|>": 50259, "<|hi|>": 50276},
                             task_to_id={"transcribe": 50359, "translate": 50358})


def test_prompt_accepts_language_names_and_codes():
    assert whisper_prompt(GENERATION, "hindi", "transcribe") == [50258, 50276, 50359, 50363]
    assert whisper_prompt(GENERATION, "hi", "transcribe") == [50258, 50276, 50359, 50363]
    assert whisper_prompt(GENERATION, "<|en|>", "translate") == [50258, 50259, 50358, 50363]
    with pytest.raises(ValueError, match="klingon"):
        whisper_prompt(GENERATION, "klingon", "transcribe")


def test_generate_length_counts_the_prompt_on_every_transformers_version():
    """asrbench's cap counts the decoder prompt; generate() gets max_new_tokens, whose meaning
    transformers 5 kept (Whisper's max_length stopped counting the prompt there)."""
    assert prompt_length(GENERATION) == 4  # start, language, task, no-timestamps
    english_only = SimpleNamespace(decoder_start_token_id=50257, no_timestamps_token_id=50362)
    assert prompt_length(english_only) == 2
    assert prompt_length(SimpleNamespace(decoder_start_token_id=2)) == 1  # Speech2Text & co.
    assert length_kwargs(GENERATION, 225) == {"max_new_tokens": 221}
    assert length_kwargs(SimpleNamespace(), 3) == {"max_new_tokens": 2}


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


#: generate()'s rows per (locale, precision, clips, max_length), made once per module: the
#: static decoder's test compares against the first 4 rows of the 5 clips the dynamic decoder's
#: test decodes (a whisper-base clip costs seconds on a 2-core CPU)
_GENERATED: dict[tuple[str, str, int, int], list[list[int]]] = {}


def _generate(whisper, locale: str, language: str, precision: str, count: int,
              max_length: int) -> list[list[int]]:
    """Stock generate()'s token rows for the first `count` clips of a locale."""
    key = (locale, precision, count, max_length)
    if key not in _GENERATED:
        model = whisper.model
        # features first, outside the autocast: the feature extractor's torch path would run
        # its mel filter bank in bf16 there and hand numpy a bf16 tensor (as asrbench never does)
        features = _features(whisper, locale, count)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16,
                                                    enabled=precision == "bf16"):
            _GENERATED[key] = model.generate(
                features, language=language, task="transcribe",
                do_sample=False, num_beams=1,
                **length_kwargs(model.generation_config, max_length)).tolist()
    return _GENERATED[key]


@pytest.mark.parametrize("locale,language,precision", [("en", "english", "fp32"),
                                                        ("hi", "hindi", "fp32"),
                                                        ("en", "english", "bf16")])
def test_same_tokens_as_generate(whisper, locale, language, precision):
    """Every row's tokens up to EOS equal generate()'s, for rows ending at different steps."""
    model = whisper.model
    max_length = 32
    # bf16 autocast is about twice as slow as fp32 on a CPU without AMX: 3 clips there
    count = 3 if precision == "bf16" else 5
    features = _features(whisper, locale, count)
    decoder = GreedyDecoder(model, whisper_prompt(model.generation_config, language, "transcribe"),
                            max_length)
    eos = model.generation_config.eos_token_id
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        ours = decoder(features).tolist()
    theirs = _generate(whisper, locale, language, precision, count, max_length)

    def text_tokens(row):
        row = [t for t in row if t not in decoder.prompt]
        return row[:row.index(eos)] if eos in row else row

    assert [text_tokens(r) for r in ours] == [text_tokens(r) for r in theirs]
    ended = [len(text_tokens(r)) for r in ours]
    if locale == "en":
        # the comparison covers rows that finished early while others went on
        assert len(set(ended)) > 1 and max(ended) < max_length - 4
    assert all(len(r) <= max_length for r in ours)


def _features(whisper, locale, count):
    split = load_split(str(EMBEDDED_CORPUS), locale, limit=count, progress=False)
    return whisper.processor.feature_extractor([u.audio for u in split.utterances],
                                               sampling_rate=16000,
                                               return_tensors="pt").input_features


def _text_tokens(row, prompt, eos):
    row = [t for t in row[len(prompt):]]
    return row[:row.index(eos)] if eos in row else row


@pytest.mark.parametrize("locale,language,precision", [("en", "english", "fp32"),
                                                        ("hi", "hindi", "fp32"),
                                                        ("en", "english", "bf16")])
def test_static_decoder_under_emulated_hpu_graphs_equals_generate(whisper, locale, language,
                                                                  precision):
    """The static decoder with its encoder and step wrapped in (emulated) HPU graphs: two
    batches of 2 decode like generate(); the second batch only replays (3 graphs in all)."""
    from asrbench.devices.emulation.graphs import STATS, wrap_in_hpu_graph
    from asrbench.measure.decoding import StaticGreedyDecoder

    model = whisper.model
    max_length = 32
    features = _features(whisper, locale, 4)
    prompt = whisper_prompt(model.generation_config, language, "transcribe")
    eos = model.generation_config.eos_token_id
    captures = STATS.captures
    decoder = StaticGreedyDecoder(model, prompt, max_length, 2, graph=wrap_in_hpu_graph)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        ours = [r for half in (features[:2], features[2:]) for r in decoder(half).tolist()]
    # generate()'s rows of the first 4 clips: those of the 5 test_same_tokens_as_generate
    # decodes (fp32; made once), each row decoded independently of the others in its batch
    theirs = _generate(whisper, locale, language, precision, 5, max_length)[:4]
    assert STATS.captures - captures == 3  # encoder, prompt step, token step
    assert all(len(r) == max_length for r in ours)
    prompt_len = len(prompt)
    assert [r[:prompt_len] for r in ours] == [prompt] * 4
    # generate() drops the prompt for Whisper; compare the generated tokens up to EOS
    assert [_text_tokens(r, prompt, eos) for r in ours] == \
        [_text_tokens(prompt + [t for t in r if t not in prompt], prompt, eos) for r in theirs]


EOS_MAX_LENGTH = 40


@pytest.fixture(scope="module")
def every_step(whisper):
    """Two English clips of different lengths (the rows end at different steps) and the static
    decoder's rows and steps with EOS checked at every step, the default: (features, rows,
    steps run). Made once for the three cadences below (a whisper-base clip costs seconds on
    a 2-core CPU)."""
    from asrbench.measure.decoding import StaticGreedyDecoder

    model = whisper.model
    features = _features(whisper, "en", 2)
    prompt = whisper_prompt(model.generation_config, "english", "transcribe")
    with torch.inference_mode():
        each = StaticGreedyDecoder(model, prompt, EOS_MAX_LENGTH, 2)
        rows = each(features).tolist()
    return features, rows, each.steps_run


@pytest.mark.parametrize("every,ignore_eos", [(4, False), (16, False), (1, True)])
def test_eos_cadence_and_ignore_eos_change_steps_not_tokens(whisper, every_step, every,
                                                            ignore_eos):
    from asrbench.measure.decoding import StaticGreedyDecoder

    model = whisper.model
    max_length = EOS_MAX_LENGTH
    features, baseline, each_steps_run = every_step
    prompt = whisper_prompt(model.generation_config, "english", "transcribe")
    eos = model.generation_config.eos_token_id
    with torch.inference_mode():
        marks = []
        other = StaticGreedyDecoder(model, prompt, max_length, 2, eos_check_every=every,
                                    ignore_eos=ignore_eos, mark_step=lambda: marks.append(1))
        rows = other(features).tolist()
    assert len(marks) == other.steps_run  # one lazy-mode step mark per token, as optimum-habana
    assert [_text_tokens(r, prompt, eos) for r in rows] == \
        [_text_tokens(r, prompt, eos) for r in baseline]
    ended = max(len(_text_tokens(r, prompt, eos)) + 1 for r in baseline)  # +1: the EOS itself
    assert each_steps_run == ended < max_length - len(prompt)
    if ignore_eos:
        assert other.steps_run == max_length - len(prompt)  # to the cap, as optimum-habana
    else:
        # stops at the first multiple of `every` at which every row had ended
        assert other.steps_run == min(-(-ended // every) * every, max_length - len(prompt))


def test_static_decoder_refuses_a_batch_of_another_size(whisper):
    from asrbench.measure.decoding import StaticGreedyDecoder

    model = whisper.model
    prompt = whisper_prompt(model.generation_config, "english", "transcribe")
    decoder = StaticGreedyDecoder(model, prompt, 16, 4)
    with pytest.raises(ValueError, match="static batch of 4"):
        decoder(torch.zeros(3, 80, 3000))
    with pytest.raises(ValueError, match="eos_check_every"):
        StaticGreedyDecoder(model, prompt, 16, 4, eos_check_every=0)
