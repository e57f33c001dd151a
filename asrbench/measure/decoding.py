"""Greedy Whisper decoding, two ways, both making generate()'s decisions.

The decisions are transformers' generate()'s: the same forced prompt, the same suppression
rules, argmax over float32 scores, the same length cap, and rows that have emitted end-of-text
continue as padding; so the transcripts are the same (tests/test_decoding.py checks both
decoders against generate(), token for token).

- GreedyDecoder (devices with dynamic shapes, no graphs: CPU, CUDA eager): a row leaves the
  batch, and its key/value cache, as soon as it has emitted end-of-text, and only the last
  position is projected onto the vocabulary.
- StaticGreedyDecoder (HPU, and any run with graphs): every shape is fixed. A static KV cache of
  the batch size and the length cap, updated in place; the encoder and the decoder step are the
  modules handed to the device's graph wrapper, and the step's arguments are tensors of fixed
  shape only. The cache and the encoder states are attributes of the step, not arguments: HPU
  graphs key a non-tensor argument by its identity and never see what Python changed inside it
  (docs/hpu.md), and a 30 s encoder state passed as an argument would be copied into the
  graph's input at every token. Whether every row has finished is read from the device only
  every `eos_check_every` steps (a graph-replayed loop pays a host sync for each read), or never
  with `ignore_eos` (decode to the cap as optimum-habana's trainer does; rows are still cut at
  their first end-of-text, so the transcripts do not change).
"""

from __future__ import annotations

from typing import Any

import torch

from asrbench.measure.counters import decoder_setup


def whisper_prompt(generation_config: Any, language: str, task: str) -> list[int]:
    """The forced decoder prompt without timestamps: start, language, task, no-timestamps."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE  # noqa: PLC0415  transformers: off the light paths

    name = language.lower().strip("<|>")
    code = TO_LANGUAGE_CODE.get(name, name)
    lang_to_id = generation_config.lang_to_id
    if f"<|{code}|>" not in lang_to_id:
        raise ValueError(f"language {language!r} is not one of the model's languages")
    tokens = [generation_config.decoder_start_token_id, lang_to_id[f"<|{code}|>"],
              generation_config.task_to_id[task], generation_config.no_timestamps_token_id]
    return [int(t) for t in tokens]


def prompt_length(generation_config: Any) -> int:
    """Tokens generate() puts before the first generated one: Whisper's start, language and
    task (multilingual models) and no-timestamps; a plain encoder-decoder's start token."""
    if getattr(generation_config, "no_timestamps_token_id", None) is None:
        return 1
    return 1 + (2 if getattr(generation_config, "lang_to_id", None) else 0) + 1


def length_kwargs(generation_config: Any, max_length: int) -> dict[str, int]:
    """generate()'s length cap for a decoder length of `max_length` tokens, prompt included
    (asrbench's --generation-max-length, as the static decoder counts it), the same on every
    transformers version: Whisper's generate() counts its prompt in max_length on 4.55 and
    not on 5.x (max_length=10 gave 6 generated tokens on 4.55.4 and 9 on 5.25.0 on the
    same clip), while max_new_tokens means the same on both."""
    return {"max_new_tokens": max(1, max_length - prompt_length(generation_config))}


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


class _WhisperGreedy:
    """What both decoders take from generate(): prompt, length cap, end-of-text and padding
    ids, and the suppression rules of the model's generation config."""

    def __init__(self, model: Any, prompt: list[int], max_length: int) -> None:
        generation = model.generation_config
        self.model = model
        self.prompt = prompt
        self.max_length = max_length
        eos = generation.eos_token_id
        self.eos = eos[0] if isinstance(eos, list) else eos
        pad = generation.pad_token_id
        self.pad = self.eos if pad is None else pad
        self.device = model.device
        self.rules = [SuppressTokens(generation.suppress_tokens, self.device),
                      SuppressAtBegin(generation.begin_suppress_tokens, self.device)]


class GreedyDecoder(_WhisperGreedy):
    """Batched greedy decoding for WhisperForConditionalGeneration, finished rows dropped."""

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """Token ids (prompt included), rows padded after end-of-text, like generate()."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache  # noqa: PLC0415  transformers: off the light paths

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


class _Encode(torch.nn.Module):
    """Encoder states of one static batch of log-mel features."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.get_encoder()
        self.dtype = model.dtype

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.encoder(features.to(self.dtype)).last_hidden_state


class _Step(torch.nn.Module):
    """One decoder step on fixed shapes: tokens (batch, T) at cache positions (T,) -> the next
    token of every row. T is the prompt length on the first step and 1 afterwards, so a graph
    wrapper holds two graphs; the first step is also the one that fills the cross-attention
    cache and applies the begin-suppression rule."""

    def __init__(self, model: Any, cache: Any, hidden: torch.Tensor,
                 rules: list[SuppressTokens]) -> None:
        super().__init__()
        self.decoder = model.get_decoder()
        self.proj_out = model.proj_out
        self.cache = cache
        self.hidden = hidden
        self.rules = rules

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        state = self.decoder(input_ids=tokens, encoder_hidden_states=self.hidden,
                             past_key_values=self.cache, use_cache=True,
                             cache_position=positions).last_hidden_state
        scores = self.proj_out(state[:, -1]).float()
        step = 0 if tokens.shape[1] > 1 else 1  # the prompt step emits the first token
        for rule in self.rules:
            rule(scores, step)
        return scores.argmax(dim=-1)


class StaticGreedyDecoder(_WhisperGreedy):
    """Greedy Whisper decoding in fixed shapes, for graph replay (HPU graphs, CUDA graphs).

    `graph` wraps a module for capture and replay (the device's wrapper; identity when graphs
    are off); `mark_step` ends a lazy-mode step (Gaudi: htcore.mark_step, called once per token
    as optimum-habana's generation loop does), so the per-token bookkeeping is one small graph
    rather than one that grows with the decode. Every call takes a batch of exactly
    `batch_size` rows and returns a (batch_size, max_length) tensor: prompt, tokens, then
    padding after end-of-text. The tensor is reused by the next call: read it first.
    """

    def __init__(self, model: Any, prompt: list[int], max_length: int, batch_size: int,
                 graph: Any = None, eos_check_every: int = 1, ignore_eos: bool = False,
                 mark_step: Any = None) -> None:
        if eos_check_every < 1:
            raise ValueError("eos_check_every must be >= 1")
        if max_length <= len(prompt):
            raise ValueError(f"max_length {max_length} leaves no room after the "
                             f"{len(prompt)}-token prompt")
        super().__init__(model, prompt, max_length)
        device = self.device
        self.batch_size = batch_size
        self.graph = graph or (lambda module: module)
        self.mark_step = mark_step or (lambda: None)
        self.eos_check_every = eos_check_every
        self.ignore_eos = ignore_eos
        # Persistent tensors: the same objects (and shapes) at every step and every batch.
        size = len(prompt)
        prompt_tensor = torch.tensor(prompt, dtype=torch.long, device=device)
        self.prompt_tokens = prompt_tensor.expand(batch_size, -1).contiguous()
        self.prompt_positions = torch.arange(size, dtype=torch.long, device=device)
        self.template = torch.full((batch_size, max_length), self.pad, dtype=torch.long,
                                   device=device)
        self.template[:, :size] = prompt_tensor
        self.start = torch.tensor([size], dtype=torch.long, device=device)
        self.out = self.template.clone()
        self.cursor = self.start.clone()
        self.done = torch.zeros(batch_size, dtype=torch.bool, device=device)
        self.encode = self.graph(_Encode(model))
        self.features: torch.Tensor | None = None  # the encoder's input, one tensor for all
        self.step: Any = None  # built on the first batch, once the encoder's output is known
        self.steps_run = 0  # decoder steps of the last call (prompt step included)

    def _build(self, hidden: torch.Tensor) -> None:
        from transformers.cache_utils import EncoderDecoderCache, StaticCache  # noqa: PLC0415  transformers: off the light paths

        config = self.model.config.get_text_config()
        common = dict(config=config, max_batch_size=self.batch_size, device=self.device,
                      dtype=self.model.dtype)
        # generate() sizes its static cache max_length - 1: the last token is never fed back.
        cache = EncoderDecoderCache(StaticCache(max_cache_len=self.max_length - 1, **common),
                                    StaticCache(max_cache_len=hidden.shape[1], **common))
        self.hidden = torch.empty_like(hidden)
        self.cache = cache
        step = _Step(self.model, cache, self.hidden, self.rules)
        # transformers 5 allocates a static cache's tensors on its first update (4.55 in the
        # constructor). Inside a captured graph they would be the graph's own memory, which
        # the next replay overwrites (CUDA graphs refuse: "accessing tensor output of
        # CUDAGraphs that has been overwritten", seen on an H200 with transformers 5.17). One
        # eager prompt step allocates them here, outside any graph; __call__ resets the cache
        # before every batch.
        self.hidden.copy_(hidden)
        step(self.prompt_tokens, self.prompt_positions)
        cache.reset()
        self.step = self.graph(step)

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[0] != self.batch_size:
            raise ValueError(f"static batch of {self.batch_size} rows expected, got "
                             f"{features.shape[0]}")
        # One input tensor for every batch: a graph keys its inputs by shape and view (stride,
        # offset), and a caller's slice of a larger tensor must not make a new graph.
        if self.features is None:
            with decoder_setup():  # one-time setup: never a batch's counted work
                self.features = torch.empty_like(features,
                                                 memory_format=torch.contiguous_format)
        self.features.copy_(features)
        hidden = self.encode(self.features)
        if self.step is None:
            with decoder_setup():
                self._build(hidden)
        self.hidden.copy_(hidden)
        self.cache.reset()  # in place: the graphs keep reading the same cache tensors
        self.out.copy_(self.template)
        self.cursor.copy_(self.start)
        self.done.zero_()
        chosen = self.step(self.prompt_tokens, self.prompt_positions)
        length, steps = len(self.prompt), 1
        while True:
            # Rows that have ended continue as padding, as in generate().
            chosen = torch.where(self.done, self.pad, chosen)
            self.out.index_copy_(1, self.cursor, chosen[:, None])
            self.done |= chosen == self.eos
            self.mark_step()
            length += 1
            if length >= self.max_length:
                break
            # The one host read of the loop, every eos_check_every steps (never with ignore_eos).
            if (not self.ignore_eos and steps % self.eos_check_every == 0
                    and bool(self.done.all())):
                break
            chosen = self.step(chosen[:, None], self.cursor)
            self.cursor.add_(1)
            steps += 1
        self.steps_run = steps
        return self.out
