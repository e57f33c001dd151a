"""Engine pieces that need no model run: token counting and static-shape batching."""

from types import SimpleNamespace

import numpy as np
import torch

from asrbench.config import BenchConfig
from asrbench.data import LoadedSplit, Utterance
from asrbench.engine import Evaluator, count_generated


def test_count_generated_skips_forced_prompt_and_stops_after_eos():
    prompt = {50258, 50276, 50359, 50363}
    # prompt, 3 text tokens, EOS, then EOS padding: 3 tokens + EOS = 4.
    assert count_generated([50258, 50276, 50359, 50363, 10, 11, 12, 50257, 50257], prompt, 50257) == 4
    # transformers strips the prompt itself for Whisper: same count without it.
    assert count_generated([10, 11, 12, 50257, 50257, 50257], prompt, 50257) == 4
    # hit the length cap: no EOS, every token counts.
    assert count_generated([10, 11, 12], prompt, 50257) == 3


class _Extractor:
    """Stands in for WhisperFeatureExtractor: one row per clip, value = clip length."""

    def __call__(self, clips, sampling_rate, return_tensors):
        return SimpleNamespace(input_features=torch.tensor([[float(len(c))] for c in clips]))


def test_last_batch_is_padded_to_the_static_batch_size_and_counts_real_rows():
    utts = [Utterance(f"u{i}", np.zeros(100 * (i + 1), dtype=np.float32), "x") for i in range(5)]
    prepared = SimpleNamespace(loaded=SimpleNamespace(
        processor=SimpleNamespace(feature_extractor=_Extractor()),
        model=SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=0))),
        device=None, graphs=False)
    evaluator = Evaluator(prepared, BenchConfig(batch_size=2))
    batches, real = evaluator.featurize(LoadedSplit("t", utts))
    assert real == [2, 2, 1]
    assert [tuple(b.shape) for b in batches] == [(2, 1)] * 3
    # the dummy row repeats the last real clip of the batch
    assert batches[2][:, 0].tolist() == [500.0, 500.0]
