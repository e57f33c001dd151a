"""Settings applied or refused, never claimed (issue 28): --language and --task reach the
decoder of every Whisper, with or without a generation_config.json, and a language or task the
model has no tokens for is refused in one line.

The run's report says which settings it ran with; a spy on the decoding (asrbench's decoders
and generate()) records what generation received and the prompt it actually decoded after, and
the two must agree for every setting the report records that reaches generation (language,
task, length cap, batch size, precision). The tiny Whisper with its generation_config.json
removed is the model: on 64ba4a1 its generation config had no language table, so
`generate_kwargs` left --language out and the model guessed, while the report said `en`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from factories import embedded_rows

from asrbench.cli.main import main
from asrbench.config.settings import BenchConfig
from asrbench.errors import AsrbenchError

CLIPS, BATCH, MAX_LENGTH = 2, 2, 12


@pytest.fixture(scope="module")
def without_generation_config(tiny_whisper, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nogen") / "tiny-whisper"
    shutil.copytree(tiny_whisper, folder)
    (folder / "generation_config.json").unlink()
    return folder


def _spied_run(model: Path, report: Path, monkeypatch, language: str, task: str,
               via_generate: bool) -> list[dict]:
    """`asrbench run` in process; every decode call's settings and decoded prompt."""
    from transformers import WhisperForConditionalGeneration
    from transformers.models.whisper.modeling_whisper import WhisperDecoder

    from asrbench.measure import decoding, engine

    calls: list[dict] = []
    every_prompt: list[list[int]] = []  # also the counted pass's, which decodes outside _generate
    seen: dict = {"prompts": []}
    original_forward = WhisperDecoder.forward

    def forward(self, *args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[1] > 1:  # the prompt step: the tokens forced
            seen["prompts"].extend(ids.tolist())
            every_prompt.extend(ids.tolist())
        return original_forward(self, *args, **kwargs)
    original_init = decoding._WhisperGreedy.__init__
    original_generate = WhisperForConditionalGeneration.generate
    original = engine.Evaluator._generate

    def init(self, model, prompt, max_length):
        seen.update(decoder_prompt=list(prompt), max_length=max_length)
        original_init(self, model, prompt, max_length)

    def generate(self, *args, **kwargs):
        seen.update(kwargs={k: v for k, v in kwargs.items() if k != "attention_mask"})
        return original_generate(self, *args, **kwargs)

    def spy(self, features, kwargs, mask=None):
        seen["prompts"] = []
        out = original(self, features, kwargs, mask)
        calls.append({"rows": features.shape[0], "dtype": self.prepared.model.dtype,
                      "decoder": self.decoder is not None, "out": out.tolist(), **seen,
                      "prompts": list(seen["prompts"])})
        return out

    monkeypatch.setattr(decoding._WhisperGreedy, "__init__", init)
    monkeypatch.setattr(WhisperForConditionalGeneration, "generate", generate)
    monkeypatch.setattr(engine.Evaluator, "_generate", spy)
    monkeypatch.setattr(WhisperDecoder, "forward", forward)
    if via_generate:  # generate() decodes instead of asrbench's decoder
        monkeypatch.setattr(decoding, "supports", lambda model, language: False)
    assert main(["run", "--model", str(model), "--dataset-config", "en", "--limit", str(CLIPS),
                 "--batch-size", str(BATCH), "--passes", "1", "--generation-max-length",
                 str(MAX_LENGTH), "--language", language, "--task", task, "--device", "cpu",
                 "--reference-utterances", "0", "--no-progress", "--report", str(report)]) == 0
    assert calls
    calls[0]["every_prompt"] = every_prompt
    return calls


@pytest.mark.parametrize("language,task,via_generate", [("en", "transcribe", False),
                                                         ("hi", "translate", True)],
                         ids=["asrbench-decoder", "generate"])
def test_the_reports_settings_are_what_generation_received(without_generation_config, tmp_path,
                                                           monkeypatch, language, task,
                                                           via_generate):
    from transformers import WhisperTokenizerFast

    report = tmp_path / "report.json"
    calls = _spied_run(without_generation_config, report, monkeypatch, language, task,
                       via_generate)
    run = json.loads(report.read_text(encoding="utf-8"))["runs"][0]
    config = run["config"]
    # the speaker of each utterance reaches the report (Common Voice client_id, pseudonymized)
    speakers = {Path(r["path"]).stem: hashlib.sha256(r["client_id"].encode()).hexdigest()[:16]
                for r in embedded_rows("en")}
    assert ([u["speaker"] for u in run["utterances"]]
            == [speakers[u["id"]] for u in run["utterances"]])
    assert (config["language"], config["task"]) == (language, task)
    # the prompt these settings mean, from the tokenizer's own special tokens
    tokenizer = WhisperTokenizerFast.from_pretrained(without_generation_config)
    prompt = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", f"<|{config['language']}|>",
                                              f"<|{config['task']}|>", "<|notimestamps|>"])
    assert tokenizer.unk_token_id not in prompt
    for call in calls:
        assert call["decoder"] is not via_generate
        if via_generate:
            kwargs = call["kwargs"]
            assert (kwargs["language"], kwargs["task"]) == (config["language"], config["task"])
            assert kwargs["max_new_tokens"] == config["generation_max_length"] - len(prompt)
        else:
            assert call["decoder_prompt"] == prompt
            assert call["max_length"] == config["generation_max_length"]
        # what the decoder was fed: every row of the batch starts from that prompt
        assert call["prompts"] == [prompt] * call["rows"]
        for row in call["out"]:
            assert len(row) <= config["generation_max_length"]
        assert call["rows"] <= config["batch_size"]
        assert str(call["dtype"]) == {"fp32": "torch.float32"}[config["precision"]]
    assert calls[0]["rows"] == config["batch_size"]
    assert calls[0]["every_prompt"] and all(p == prompt for p in calls[0]["every_prompt"])


def _whisper(languages: dict | None, tasks: dict | None, vocab_size: int = 51865):
    generation = SimpleNamespace(lang_to_id=languages, task_to_id=tasks,
                                 no_timestamps_token_id=None)
    return SimpleNamespace(config=SimpleNamespace(model_type="whisper", vocab_size=vocab_size),
                           generation_config=generation)


@pytest.mark.parametrize("language,task,words", [
    ("hi", "transcribe", "--language hi: m is an English-only Whisper (no language tokens)"),
    ("hindi", "transcribe", "--language hindi: m is an English-only Whisper"),
    ("en", "translate", "--task translate: m is an English-only Whisper (no task tokens)"),
    (None, "translate", "--task translate: m is an English-only Whisper"),
])
def test_an_english_only_whisper_refuses_another_language_or_task(language, task, words):
    from asrbench.measure.features import check_settings

    with pytest.raises(AsrbenchError) as caught:
        check_settings(_whisper(None, None, 51864), BenchConfig(model="m", language=language,
                                                                task=task), False)
    assert str(caught.value).startswith(words) and "\n" not in str(caught.value)


def test_an_english_only_whisper_takes_english_transcription():
    from asrbench.measure.features import check_settings

    for language in ("en", "english", "English", None):
        check_settings(_whisper(None, None, 51864), BenchConfig(model="m", language=language),
                       False)


def test_a_multilingual_whisper_refuses_a_language_or_task_it_has_no_token_for():
    from asrbench.measure.features import check_settings

    model = _whisper({"<|en|>": 1, "<|hi|>": 2}, {"transcribe": 3})
    check_settings(model, BenchConfig(model="m", language="hindi"), False)
    with pytest.raises(AsrbenchError, match=r"^--language yue: not one of the languages of m "
                                            r"\(it has no <\|yue\|> token\)$"):
        check_settings(model, BenchConfig(model="m", language="yue"), False)
    with pytest.raises(AsrbenchError, match=r"^--task translate: m has no <\|translate\|> token"):
        check_settings(model, BenchConfig(model="m", language="en", task="translate"), False)


def test_the_tables_come_from_the_tokenizer_for_a_multilingual_whisper_only():
    from asrbench.measure.models import complete_whisper_generation

    vocab = {"<|en|>": 50259, "<|hi|>": 50276, "<|transcribe|>": 50359,
             "<|translate|>": 50358, "<|notimestamps|>": 50363, "hello": 7}
    processor = SimpleNamespace(tokenizer=SimpleNamespace(get_vocab=lambda: dict(vocab)))
    multilingual = _whisper(None, None, 51865)
    complete_whisper_generation(multilingual, processor)
    generation = multilingual.generation_config
    assert generation.lang_to_id == {"<|en|>": 50259, "<|hi|>": 50276}
    assert generation.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert generation.no_timestamps_token_id == 50363
    english_only = _whisper(None, None, 51864)
    complete_whisper_generation(english_only, processor)
    assert english_only.generation_config.lang_to_id is None  # English-only: no table
    assert english_only.generation_config.no_timestamps_token_id == 50363
    # a generation config that has its tables is left as it is
    own = _whisper({"<|en|>": 1}, {"transcribe": 2})
    complete_whisper_generation(own, processor)
    assert own.generation_config.lang_to_id == {"<|en|>": 1}


def test_a_complete_generation_config_is_left_without_reading_the_vocabulary():
    """A Whisper whose generation config has its tables and no-timestamps token (a
    generation_config.json, as the bundled model's) costs no vocabulary dict (51,865 tokens,
    made per get_vocab call): loading it reads none."""
    from asrbench.measure.models import complete_whisper_generation

    def unread() -> dict:
        raise AssertionError("the vocabulary was read")

    processor = SimpleNamespace(tokenizer=SimpleNamespace(get_vocab=unread))
    complete = _whisper({"<|en|>": 1}, {"transcribe": 2})
    complete.generation_config.no_timestamps_token_id = 3
    complete_whisper_generation(complete, processor)
    english_only = _whisper(None, None, 51864)
    english_only.generation_config.no_timestamps_token_id = 3
    complete_whisper_generation(english_only, processor)
    assert (complete.generation_config.lang_to_id, english_only.generation_config.lang_to_id) == (
        {"<|en|>": 1}, None)
