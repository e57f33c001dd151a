"""Engine pieces that need no model run: token counting and static-shape batching."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from asrbench.config.settings import BenchConfig
from asrbench.measure.engine import Evaluator, count_generated


def test_count_generated_skips_forced_prompt_and_stops_after_eos():
    prompt = {50258, 50276, 50359, 50363}
    # prompt, 3 text tokens, EOS, then EOS padding: 3 tokens + EOS = 4.
    tokens = [50258, 50276, 50359, 50363, 10, 11, 12, 50257, 50257]
    assert count_generated(tokens, prompt, 50257) == 4
    # transformers strips the prompt itself for Whisper: same count without it.
    assert count_generated([10, 11, 12, 50257, 50257, 50257], prompt, 50257) == 4
    # hit the length cap: no EOS, every token counts.
    assert count_generated([10, 11, 12], prompt, 50257) == 3


class _Extractor:
    """Stands in for WhisperFeatureExtractor: one row per clip, value = clip length."""

    def __call__(self, clips, sampling_rate, return_tensors):
        return SimpleNamespace(input_features=torch.tensor([[float(len(c))] for c in clips]))


def _prepared(dynamic_shapes: bool, graphs: bool = False):
    return SimpleNamespace(loaded=SimpleNamespace(
        processor=SimpleNamespace(feature_extractor=_Extractor()),
        model=SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=0))),
        device=SimpleNamespace(dynamic_shapes=dynamic_shapes), graphs=graphs, model=None)


def test_batches_are_longest_first_static_shape_and_padded_with_dummy_rows():
    lengths = [300, 100, 500, 200, 400]
    utts = [np.zeros(n, dtype=np.float32) for n in lengths]
    evaluator = Evaluator(_prepared(dynamic_shapes=False), BenchConfig(batch_size=2))
    batches = evaluator.featurize(utts)
    assert batches.real == [2, 2, 1]
    assert [tuple(b.shape) for b in batches.features] == [(2, 1)] * 3
    assert batches.order == [2, 4, 0, 3, 1]  # longest clip first
    assert [b[:, 0].tolist() for b in batches.features] == [[500.0, 400.0], [300.0, 200.0],
                                                            [100.0, 100.0]]  # dummy repeats 100
    # rows come back in the split's order whatever order they were decoded in
    decoded = [f"len{lengths[i]}" for i in batches.order]
    assert batches.restore(decoded) == [f"len{n}" for n in lengths]


@pytest.mark.parametrize("count,batch", [(5, 2), (12, 8), (7, 3), (1, 4)])
def test_without_static_shapes_the_last_batch_keeps_only_its_real_rows(count, batch):
    """Dummy rows cost real time where shapes may vary (CPU, CUDA eager): none are added."""
    utts = [np.zeros(100 + i, dtype=np.float32) for i in range(count)]
    evaluator = Evaluator(_prepared(dynamic_shapes=True), BenchConfig(batch_size=batch))
    batches = evaluator.featurize(utts)
    assert sum(batches.real) == count
    assert [b.shape[0] for b in batches.features] == batches.real
    assert batches.real[-1] == count - batch * (len(batches.real) - 1)


@pytest.mark.parametrize("dynamic_shapes,graphs,settings,static", [
    (False, False, {}, True),  # HPU: static shapes always
    (True, True, {}, True),  # graphs on a dynamic device
    (True, False, {"ignore_eos": True}, True),  # optimum-habana-comparable mode
    (True, False, {"eos_check_every": 4}, True),
    (True, False, {}, False),  # CPU / CUDA eager
])
def test_which_runs_need_static_shapes(dynamic_shapes, graphs, settings, static):
    from asrbench.measure.engine import needs_static_shapes

    device = SimpleNamespace(dynamic_shapes=dynamic_shapes)
    assert needs_static_shapes(device, graphs, BenchConfig(**settings)) is static


def test_cut_after_eos_keeps_the_first_eos_after_the_prompt_and_drops_padding():
    from asrbench.measure.engine import cut_after_eos

    eos = 50257
    # The prompt may hold no EOS; padding after the first EOS depends only on the decoder.
    assert cut_after_eos([1, 2, 3, 4, 10, eos, eos, eos], 4, eos) == [1, 2, 3, 4, 10, eos]
    assert cut_after_eos([1, 2, 3, 4, 10, 11], 4, eos) == [1, 2, 3, 4, 10, 11]  # hit the cap
    assert cut_after_eos([10, eos, 12], 0, eos) == [10, eos]
    assert cut_after_eos([10, 11], 0, None) == [10, 11]




def test_unknown_forced_language_is_a_user_error():
    from asrbench.errors import AsrbenchError

    generation = SimpleNamespace(eos_token_id=50257, decoder_start_token_id=50258,
                                 no_timestamps_token_id=50363, lang_to_id={"<|en|>": 50259},
                                 task_to_id={"transcribe": 50359})
    model = SimpleNamespace(config=SimpleNamespace(model_type="whisper"),
                            generation_config=generation, proj_out=None, get_encoder=None)
    prepared = SimpleNamespace(loaded=SimpleNamespace(processor=None, model=model),
                               device=SimpleNamespace(dynamic_shapes=True), graphs=False,
                               model=model)
    with pytest.raises(AsrbenchError, match="klingon"):
        Evaluator(prepared, BenchConfig(language="klingon"))
