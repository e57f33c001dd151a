"""Model inputs from audio: what a model's own feature extractor makes of a batch of clips.

Whisper's extractor pads every clip to its 30 s window, so its batches have static shapes for
free, and its decoder takes a forced language/task prompt. Any other AutoModelForSpeechSeq2Seq
(Speech2Text, a wav2vec2 encoder with a text decoder, ...) takes clips of any length: a batch is
padded to its longest clip with the extractor's own padding, the extractor's attention mask
(where it makes one) tells the encoder which frames are padding, and its inputs (log-mel
`input_features` or raw `input_values`) reach the model under the model's main input name.
Such a model has no language or task tokens and no fixed window: a setting that needs them is
refused before anything runs (check_settings), never recorded and silently ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from asrbench.config.settings import EMBEDDED_CORPUS, EMBEDDED_RUNS, BenchConfig
from asrbench.errors import AsrbenchError
from asrbench.measure.data import SAMPLE_RATE

WHISPER = "whisper"  # model_type of the models driven with 30 s windows and a forced prompt
ATTENTION_MASK = "attention_mask"


def is_whisper(model: Any) -> bool:
    """Whether the model is driven as Whisper (30 s windows, language/task prompt); a model
    that states no type is taken as Whisper, as every model was before."""
    return getattr(getattr(model, "config", None), "model_type", WHISPER) == WHISPER


def input_name(model: Any) -> str:
    """The keyword under which the model takes its audio input (`model.main_input_name`)."""
    return getattr(model, "main_input_name", None) or "input_features"


def model_inputs(extractor: Any, model: Any, audio: list[np.ndarray],
                 static: bool) -> dict[str, Any]:
    """The model's keyword inputs for one batch of 16 kHz clips: Whisper's 30 s log-mel
    features as always; other models' inputs padded to the longest clip, with the extractor's
    attention mask where it makes one. `static`: the batch must have a fixed shape, which only
    Whisper's windows give."""
    if is_whisper(model):
        features = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        return {input_name(model): features.input_features}
    if static:
        raise AsrbenchError(_static_refusal(type(model).__name__))
    out = extractor(audio, sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt")
    inputs = {input_name(model): out[extractor.model_input_names[0]]}
    if out.get(ATTENTION_MASK) is not None:
        inputs[ATTENTION_MASK] = out[ATTENTION_MASK]
    return inputs


def _static_refusal(name: str) -> str:
    return (f"{name} is not a Whisper model: static shapes (--device hpu, --graphs, "
            "--ignore-eos, --eos-check-every) are built for Whisper's 30 s windows only; run "
            "it on cpu or cuda without those options")


def implied_language(config: BenchConfig) -> bool:
    """Whether the config's language is the one its locale implies (config/settings.py
    build_configs: the embedded run's language name for the embedded corpus, the locale
    itself elsewhere) rather than one a user set."""
    locale = config.dataset_config
    if locale is None:
        return False
    if config.dataset == str(EMBEDDED_CORPUS):
        return (locale, config.language) in EMBEDDED_RUNS
    return config.language == locale


def check_settings(model: Any, config: BenchConfig, static: bool) -> None:
    """Refuse, in one line, a setting this model cannot apply: a forced language or a task
    without the model's language/task tokens, static shapes for a model without fixed
    windows. A language its locale implies stays: it names the data's language for scoring."""
    if is_whisper(model):
        check_whisper_settings(model, config)
        return
    where = config.model
    generation = getattr(model, "generation_config", None)
    if (config.language and not implied_language(config)
            and not getattr(generation, "lang_to_id", None)):
        raise AsrbenchError(f"--language {config.language} needs a model with language "
                            f"tokens; {where} has none: drop --language")
    if config.task != "transcribe" and not getattr(generation, "task_to_id", None):
        raise AsrbenchError(f"--task {config.task} needs a model with task tokens; {where} has "
                            "none: drop --task")
    if static:
        raise AsrbenchError(_static_refusal(where))


def check_whisper_settings(model: Any, config: BenchConfig) -> None:
    """Refuse, in one line, a language or task this Whisper has no tokens for: another
    language than English or the translate task for an English-only Whisper (no language
    table: its prompt is start, no-timestamps), an unknown language or task for a multilingual
    one. Whatever passes is forced in every decode (models.complete_whisper_generation gives a
    folder without generation_config.json its tables)."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE  # noqa: PLC0415  transformers: off the light paths

    generation = getattr(model, "generation_config", None)
    languages = getattr(generation, "lang_to_id", None) or {}
    tasks = getattr(generation, "task_to_id", None) or {}
    where = config.model
    language = config.language
    name = "--language" if not implied_language(config) else "the data's language"
    code = None
    if language:
        lowered = language.lower().strip("<|>")
        code = TO_LANGUAGE_CODE.get(lowered, lowered)
    if not languages:
        if code is not None and code != "en":
            raise AsrbenchError(f"{name} {language}: {where} is an English-only Whisper (no "
                                "language tokens): it transcribes English only; use a "
                                "multilingual model")
        if config.task != "transcribe":
            raise AsrbenchError(f"--task {config.task}: {where} is an English-only Whisper (no "
                                "task tokens): it only transcribes; drop --task")
        return
    if code is not None and f"<|{code}|>" not in languages:
        raise AsrbenchError(f"{name} {language}: not one of the languages of {where} (it has "
                            f"no <|{code}|> token)")
    if config.task not in tasks:
        raise AsrbenchError(f"--task {config.task}: {where} has no <|{config.task}|> token "
                            f"(its tasks: {', '.join(sorted(tasks)) or 'none'})")
