"""transformers 4.55 (where optimum-habana runs) and 5.x (CPU and CUDA users): the keyword that
names the weights' dtype, and the CTranslate2 peer's converter on a model saved locally."""

from __future__ import annotations

import json

import pytest

from asrbench.measure.models import dtype_option, takes_dtype


def test_dtype_keyword_follows_the_installed_transformers():
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    expected = "dtype" if major >= 5 or (major == 4 and minor >= 56) else "torch_dtype"
    assert list(dtype_option("x")) == [expected]
    assert takes_dtype() is (expected == "dtype")


@pytest.mark.slow
def test_ctranslate2_converter_runs_on_the_installed_transformers(tmp_path, tiny_whisper):
    """ctranslate2 >= 4.8 passes dtype= to from_pretrained; under transformers 4.55 the peer's
    converter renames it (without that: TypeError from the model's constructor). The model is
    conftest's tiny random Whisper with the bundled tokenizer."""
    pytest.importorskip("ctranslate2", reason="the peers extra (ctranslate2) is not installed")
    import ctranslate2

    from asrbench.measure.peers import _converter

    out = tmp_path / "ct2"
    _converter()(str(tiny_whisper), load_as_float16=False).convert(str(out), force=True)
    # the converted model is the tiny Whisper: CTranslate2 loads it with the source's mel bins
    # and languages, and its decoding config carries the source's generation config
    source = json.loads((tiny_whisper / "config.json").read_text(encoding="utf-8"))
    generation = json.loads((tiny_whisper / "generation_config.json").read_text(encoding="utf-8"))
    converted = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert converted["suppress_ids"] == generation["suppress_tokens"]
    assert converted["suppress_ids_begin"] == generation["begin_suppress_tokens"]
    assert converted["lang_ids"] == sorted(generation["lang_to_id"].values())
    model = ctranslate2.models.Whisper(str(out), device="cpu")
    assert model.is_multilingual and model.n_mels == source["num_mel_bins"] == 80
    assert model.num_languages == len(generation["lang_to_id"]) == 99


def _cache_tensors(cache, depth: int = 4) -> set[tuple[int, int]]:
    """(id, data pointer) of every tensor reachable from a cache object through attributes,
    lists and dicts (whatever the installed transformers names its layers' tensors)."""
    import torch

    found: set[tuple[int, int]] = set()

    def walk(value, level):
        if isinstance(value, torch.Tensor):
            found.add((id(value), value.data_ptr()))
        elif level and isinstance(value, (list, tuple)):
            for item in value:
                walk(item, level - 1)
        elif level and isinstance(value, dict):
            for item in value.values():
                walk(item, level - 1)
        elif level and hasattr(value, "__dict__") and not isinstance(value, type):
            for item in vars(value).values():
                walk(item, level - 1)

    walk(cache, depth)
    return found


def test_static_decoder_allocates_its_cache_before_any_graph_captures_a_step():
    """A graph wrapper captures what a step allocates as graph memory, which the next replay
    overwrites: transformers 5 allocates a static cache's tensors on its first update (4.55 in
    its constructor), so StaticGreedyDecoder runs one eager prompt step before wrapping. No
    wrapped call may create a cache tensor. (Passes trivially on 4.55; scripts/
    smoke-transformers5.sh runs it on transformers 5, where it fails without that step.)"""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from asrbench.measure.decoding import StaticGreedyDecoder

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=8,
                           max_source_positions=16, max_target_positions=32,
                           decoder_start_token_id=1, eos_token_id=2, pad_token_id=2,
                           bos_token_id=1)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = 2
    model.generation_config.suppress_tokens = model.generation_config.begin_suppress_tokens = []
    holder: dict = {}
    calls: list[bool] = []

    def graph(module):
        def replayed(*args):
            cache = holder["decoder"].__dict__.get("cache")
            before = _cache_tensors(cache) if cache is not None else None
            out = module(*args)
            if before is not None:
                calls.append(_cache_tensors(cache) == before)
            return out
        return replayed

    decoder = StaticGreedyDecoder(model, [1, 3, 4, 5], 10, 2, graph=graph)
    holder["decoder"] = decoder
    features = torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        first = decoder(features).tolist()
        second = decoder(features).tolist()
    assert first == second  # the priming step leaves no trace in the next batch
    assert len(calls) >= 2 * 6 and all(calls), calls  # every wrapped step allocated nothing
