"""transformers 4.55 (where optimum-habana runs) and 5.x (CPU and CUDA users): the keyword that
names the weights' dtype, and the CTranslate2 peer's converter on a model saved locally."""

from __future__ import annotations

import shutil

import pytest

from asrbench.measure.models import dtype_option, takes_dtype


def test_dtype_keyword_follows_the_installed_transformers():
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    expected = "dtype" if major >= 5 or (major == 4 and minor >= 56) else "torch_dtype"
    assert list(dtype_option("x")) == [expected]
    assert takes_dtype() is (expected == "dtype")


def _tiny_whisper(directory, tokenizer_dir):
    """A random 1-layer Whisper with the bundled model's vocabulary and tokenizer files."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51865, d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=1500,
                           max_target_positions=64)
    WhisperForConditionalGeneration(config).save_pretrained(directory, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                 "added_tokens.json", "special_tokens_map.json", "preprocessor_config.json"):
        source = tokenizer_dir / name
        if source.exists():
            shutil.copy(source, directory / name)


@pytest.mark.slow
def test_ctranslate2_converter_runs_on_the_installed_transformers(tmp_path):
    """ctranslate2 >= 4.8 passes dtype= to from_pretrained; under transformers 4.55 the peer's
    converter renames it (without that: TypeError from the model's constructor)."""
    pytest.importorskip("ctranslate2", reason="the peers extra (ctranslate2) is not installed")
    from asrbench.measure.bundled import ensure_converted
    from asrbench.measure.peers import _converter

    model_dir = tmp_path / "tiny"
    model_dir.mkdir()
    _tiny_whisper(model_dir, ensure_converted(progress=False))
    out = tmp_path / "ct2"
    _converter()(str(model_dir), load_as_float16=False).convert(str(out), force=True)
    assert (out / "model.bin").stat().st_size > 0
