"""Greedy Whisper decoding that stops spending compute on rows that have finished.

transformers' generate() keeps every row of a batch in every decoder step until the longest
row ends, feeding end-of-text padding through the decoder and the vocabulary projection. Here a
row leaves the batch (and its key/value cache) as soon as it emits end-of-text, and only the
last position is projected onto the vocabulary. The decisions are generate()'s: the same
forced prompt, the same suppression rules, argmax over float32 scores, the same length cap,
so the transcripts are the same (tests/test_decoding.py checks that against generate()).

Used on devices with dynamic shapes (CPU, CUDA) for Whisper models with a forced language;
HPU keeps optimum-habana's static-shape generate, where a shrinking batch would re-compile.
"""

from __future__ import annotations

from typing import Any

import torch


def whisper_prompt(generation_config: Any, language: str, task: str) -> list[int]:
    """The forced decoder prompt without timestamps: start, language, task, no-timestamps."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    name = language.lower().strip("<|>")
    code = TO_LANGUAGE_CODE.get(name, name)
    lang_to_id = generation_config.lang_to_id
    if f"<|{code}|>" not in lang_to_id:
        raise ValueError(f"language {language!r} is not one of the model's languages")
    tokens = [generation_config.decoder_start_token_id, lang_to_id[f"<|{code}|>"],
              generation_config.task_to_id[task], generation_config.no_timestamps_token_id]
    return [int(t) for t in tokens]


def supports(model: Any, language: str | None) -> bool:
    """Whether GreedyDecoder reproduces generate() for this model and setting."""
    config = getattr(model, "config", None)
    generation = getattr(model, "generation_config", None)
    return (getattr(config, "model_type", None) == "whisper" and bool(language)
            and bool(getattr(generation, "lang_to_id", None))
            and hasattr(model, "proj_out") and hasattr(model, "get_encoder"))


class SuppressTokens:
    """Never emit these ids (generation_config.suppress_tokens)."""

    def __init__(self, ids: list[int] | None, device: torch.device) -> None:
        self.ids = torch.tensor(sorted(ids or []), dtype=torch.long, device=device)

    def __call__(self, scores: torch.Tensor, step: int) -> None:
        if self.ids.numel():
            scores.index_fill_(1, self.ids, float("-inf"))


class SuppressAtBegin(SuppressTokens):
    """Not as the first generated token (generation_config.begin_suppress_tokens)."""

    def __call__(self, scores: torch.Tensor, step: int) -> None:
        if step == 0:
            super().__call__(scores, step)


class GreedyDecoder:
    """Batched greedy decoding for WhisperForConditionalGeneration, finished rows dropped."""

    def __init__(self, model: Any, prompt: list[int], max_length: int) -> None:
        generation = model.generation_config
        self.model = model
        self.prompt = prompt
        self.max_length = max_length
        eos = generation.eos_token_id
        self.eos = eos[0] if isinstance(eos, list) else eos
        pad = generation.pad_token_id
        self.pad = self.eos if pad is None else pad
        device = model.device
        self.rules = [SuppressTokens(generation.suppress_tokens, device),
                      SuppressAtBegin(generation.begin_suppress_tokens, device)]

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """Token ids (prompt included), rows padded after end-of-text, like generate()."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        model = self.model
        batch = features.shape[0]
        device = features.device
        hidden = model.get_encoder()(features.to(model.dtype)).last_hidden_state
        out = torch.full((batch, self.max_length), self.pad, dtype=torch.long, device=device)
        prompt = torch.tensor(self.prompt, dtype=torch.long, device=device)
        out[:, :len(self.prompt)] = prompt
        tokens = prompt.expand(batch, -1)
        live = torch.arange(batch, device=device)  # original row of each row still decoding
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        decoder = model.get_decoder()
        length = len(self.prompt)
        while length < self.max_length:
            state = decoder(input_ids=tokens, encoder_hidden_states=hidden,
                            past_key_values=cache, use_cache=True).last_hidden_state
            scores = model.proj_out(state[:, -1]).float()
            for rule in self.rules:
                rule(scores, length - len(self.prompt))
            chosen = scores.argmax(dim=-1)
            out[live, length] = chosen
            length += 1
            # One host read per step: needed to decide whether the batch shrinks or ends.
            finished = (chosen == self.eos).nonzero().flatten().tolist()
            if finished:
                if len(finished) == len(live):
                    break
                keep = torch.ones(len(live), dtype=torch.bool, device=device)
                keep[finished] = False
                index = keep.nonzero().flatten()
                cache.batch_select_indices(index)
                hidden, live, chosen = hidden[index], live[index], chosen[index]
            tokens = chosen[:, None]
        return out[:, :length]
