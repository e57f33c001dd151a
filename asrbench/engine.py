"""The evaluation loop: features once, static-shape batches, one warm-up pass, timed passes.

Throughput is real utterances / wall time of a timed pass, with the device synchronized before
every clock read; warm-up (graph capture, compilation, allocator growth) is excluded and
reported separately. Every batch has the same shape: features are padded to 30 s by the
feature extractor and the last batch is filled with dummy rows that never reach a metric, so
an HPU graph or a compiled graph is never re-captured mid-run.
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from asrbench import decoding
from asrbench.config import BenchConfig
from asrbench.data import SAMPLE_RATE, LoadedSplit, Skipped
from asrbench.decoding import GreedyDecoder, whisper_prompt
from asrbench.devices import Device
from asrbench.errors import AsrbenchError
from asrbench.metrics import ErrorRates, Throughput, error_rates, percentile, throughput
from asrbench.models import LoadedModel


@dataclass(frozen=True)
class UtteranceResult:
    """One utterance's outcome."""

    id: str
    reference: str
    prediction: str
    tokens: int  # tokens generated after the forced prompt, up to and including EOS
    audio_seconds: float


@dataclass
class RunResult:
    """Everything one evaluation produced; report.py serializes it."""

    config: BenchConfig
    utterances: list[UtteranceResult]
    skipped: list[Skipped]
    errors: ErrorRates
    throughput: Throughput
    timings: dict[str, Any]
    device: dict[str, Any]
    dataset_name: str
    passes_identical: bool  # every timed pass produced the same transcripts as the first

    @property
    def audio_seconds(self) -> float:
        return float(sum(u.audio_seconds for u in self.utterances))

    def metrics(self) -> dict[str, Any]:
        """Headline numbers: what tests and baselines compare."""
        n = len(self.utterances)
        tokens = sum(u.tokens for u in self.utterances)
        median_pass = self.timings["pass_seconds_median"]
        return {
            "wer": self.errors.wer,
            "wer_normalized": self.errors.wer_normalized,
            "cer": self.errors.cer,
            "samples_per_second": self.throughput.median,
            "rtfx": self.audio_seconds / median_pass,
            "tokens_per_second": tokens / median_pass,
            "tokens_per_sample": tokens / n,
        }


@dataclass
class PreparedModel:
    """A model moved to its device, at its precision, wrapped for graphs where asked."""

    loaded: LoadedModel
    device: Device
    precision: str
    graphs: bool
    model: Any = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.device.prepare(self.loaded.model, self.precision, self.graphs)


def _prompt_token_ids(generation_config: Any) -> set[int]:
    """Token ids the decoder is forced to start with (start, language, task, no-timestamps)."""
    ids = {getattr(generation_config, "decoder_start_token_id", None),
           getattr(generation_config, "no_timestamps_token_id", None)}
    ids.update((getattr(generation_config, "lang_to_id", None) or {}).values())
    ids.update((getattr(generation_config, "task_to_id", None) or {}).values())
    return {i for i in ids if i is not None}


def count_generated(sequence: list[int], prompt_ids: set[int], eos_id: int | None) -> int:
    """Tokens generated for one row: skip the forced prompt, stop after the first EOS."""
    count = 0
    in_prompt = True
    for token in sequence:
        if in_prompt and token in prompt_ids:
            continue
        in_prompt = False
        count += 1
        if token == eos_id:
            break
    return count


@dataclass
class Batches:
    """A split cut into static-shape batches, in decoding order."""

    features: list[torch.Tensor]  # one (batch_size, mels, frames) tensor per batch
    real: list[int]  # real rows per batch; the rest are dummy padding
    order: list[int]  # split index of each real row, in decoding order

    def restore(self, rows: list[Any]) -> list[Any]:
        """Per-row values from decoding order back to the split's order."""
        restored: list[Any] = [None] * len(rows)
        for position, index in enumerate(self.order):
            restored[index] = rows[position]
        return restored


@dataclass
class PassResult:
    """One pass over every batch."""

    seconds: float = 0.0  # wall time of the pass, device synchronized at both ends
    model_seconds: float = 0.0  # time inside the model calls (generate / decoder), synchronized
    latencies: list[float] = field(default_factory=list)  # per batch
    sequences: list[list[int]] = field(default_factory=list)  # token ids, split order


class Evaluator:
    """Runs one BenchConfig over one loaded split on a prepared model."""

    def __init__(self, prepared: PreparedModel, config: BenchConfig,
                 progress: Callable[[str, int], Any] | None = None,
                 barrier: Callable[[], None] | None = None) -> None:
        self.prepared = prepared
        self.config = config
        self.device = prepared.device
        self.processor = prepared.loaded.processor
        self.generation_config = prepared.loaded.model.generation_config
        self.progress = progress
        # Data-parallel runs: every rank waits here before each pass, so passes start together.
        self.barrier = barrier or (lambda: None)
        self._prompt_ids = _prompt_token_ids(self.generation_config)
        self._eos = self.generation_config.eos_token_id
        if isinstance(self._eos, list):
            self._eos = self._eos[0]
        self.decoder = self._fast_decoder()

    def _fast_decoder(self) -> GreedyDecoder | None:
        """GreedyDecoder when the device allows a shrinking batch and it matches generate()."""
        model = self.prepared.model
        if (not self.device.dynamic_shapes or self.prepared.graphs
                or not decoding.supports(model, self.config.language)):
            return None
        try:
            prompt = whisper_prompt(self.generation_config, self.config.language, self.config.task)
        except (ValueError, KeyError) as exc:
            raise AsrbenchError(f"--language {self.config.language!r} / --task "
                                f"{self.config.task!r}: {exc}") from None
        return GreedyDecoder(model, prompt, self.config.generation_max_length)

    def generate_kwargs(self) -> dict[str, Any]:
        """Greedy decoding, forced language/task, stop at EOS, capped length."""
        kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1,
                                  "max_length": self.config.generation_max_length}
        if getattr(self.generation_config, "lang_to_id", None):
            kwargs["task"] = self.config.task
            if self.config.language:
                kwargs["language"] = self.config.language
        kwargs.update(self.device.generate_kwargs(self.prepared.graphs))
        return kwargs

    def featurize(self, audio: list[np.ndarray]) -> Batches:
        """Log-mel features per static-shape batch, longest clips first (last batch padded).

        Sorting by duration puts clips with similar transcript lengths in one batch, so fewer
        decoder steps are spent on rows that have already finished.
        """
        size = self.config.batch_size
        extractor = self.processor.feature_extractor
        order = sorted(range(len(audio)), key=lambda i: (-len(audio[i]), i))
        batches = Batches([], [], order)
        for start in range(0, len(order), size):
            chunk = [audio[i] for i in order[start:start + size]]
            batches.real.append(len(chunk))
            chunk += [chunk[-1]] * (size - len(chunk))  # dummy rows: dropped from every metric
            features = extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            batches.features.append(features.input_features)
        return batches

    def _generate(self, features: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        """Token ids for one batch: the finished-rows-dropping decoder where it applies."""
        if self.decoder is not None:
            return self.decoder(features)
        out = self.prepared.model.generate(features, **kwargs)
        return out if torch.is_tensor(out) else out.sequences

    def _pass(self, batches: Batches, label: str) -> PassResult:
        """One pass over all batches (rows returned in the split's order)."""
        device = self.device
        kwargs = {} if self.decoder is not None else self.generate_kwargs()
        result = PassResult()
        rows: list[list[int]] = []
        device.synchronize()
        start = time.perf_counter()
        for features, count in zip(batches.features, batches.real):
            t0 = time.perf_counter()
            with torch.inference_mode(), device.autocast(self.prepared.precision):
                out = self._generate(features.to(device.torch_device), kwargs)
            device.synchronize()
            t1 = time.perf_counter()
            rows.extend(out[:count].tolist())
            result.model_seconds += t1 - t0
            result.latencies.append(time.perf_counter() - t0)
            if self.progress:
                self.progress(label, 1)
        device.synchronize()
        result.seconds = time.perf_counter() - start
        result.sequences = batches.restore(rows)
        return result

    def detokenize(self, sequences: list[list[int]]) -> list[str]:
        """Token ids to transcripts (special tokens dropped, outer spaces stripped)."""
        texts = self.processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        return [t.strip() for t in texts]

    def transcribe(self, audio: list[np.ndarray]) -> list[str]:
        """Audio arrays to transcripts: features, one pass, detokenize (what peers time)."""
        return self.detokenize(self._pass(self.featurize(audio), "transcribe").sequences)

    def run(self, split: LoadedSplit, passes: int) -> RunResult:
        """Warm up once, time `passes` passes, decode and score."""
        if passes < 1:
            raise ValueError("passes must be >= 1")
        t_features = time.perf_counter()
        batches = self.featurize([u.audio for u in split.utterances])
        feature_seconds = time.perf_counter() - t_features

        self.device.reset_peak_memory()
        self.barrier()
        warmup_seconds = self._pass(batches, "warm-up").seconds
        pass_seconds, model_seconds, latencies, first_sequences = [], [], [], None
        identical = True
        for number in range(passes):
            self.barrier()
            timed = self._pass(batches, f"pass {number + 1}/{passes}")
            pass_seconds.append(timed.seconds)
            model_seconds.append(timed.model_seconds)
            latencies.extend(timed.latencies)
            if first_sequences is None:
                first_sequences = timed.sequences
            elif timed.sequences != first_sequences:
                identical = False
        assert first_sequences is not None

        t_decode = time.perf_counter()
        tokenizer = self.processor.tokenizer
        predictions = self.detokenize(first_sequences)
        decode_seconds = time.perf_counter() - t_decode

        results = [
            UtteranceResult(u.id, u.reference, prediction,
                            count_generated(seq, self._prompt_ids, self._eos), u.audio_seconds)
            for u, prediction, seq in zip(split.utterances, predictions, first_sequences)
        ]
        language = self.config.language
        spelling = getattr(tokenizer, "english_spelling_normalizer", None)
        errors = error_rates([r.reference for r in results], predictions, language, spelling)
        median_pass = statistics.median(pass_seconds)
        timings = {
            "feature_extraction_seconds": feature_seconds,
            "warmup_seconds": warmup_seconds,
            "pass_seconds": pass_seconds,
            "pass_seconds_median": median_pass,
            "passes": passes,
            "batches_per_pass": len(batches.features),
            # Share of timed wall time spent outside the model calls (token read-back, loop,
            # progress); the host-to-device copy and the synchronize count as model time.
            "harness_overhead": 1 - sum(model_seconds) / sum(pass_seconds),
            "decoder": "asrbench greedy (finished rows dropped)" if self.decoder else "generate",
            "batch_latency_p50": percentile(latencies, 50),
            "batch_latency_p90": percentile(latencies, 90),
            "detokenize_seconds": decode_seconds,
            "end_to_end_seconds": feature_seconds + median_pass + decode_seconds,
            "peak_device_memory_bytes": self.device.peak_memory_bytes(),
            "peak_host_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
        return RunResult(
            config=self.config, utterances=results, skipped=list(split.skipped), errors=errors,
            throughput=throughput(len(results), pass_seconds), timings=timings,
            device={"kind": self.device.kind, "class": self.device.device_class(),
                    "name": self.device.description(), "environment": self.device.environment()},
            dataset_name=split.name, passes_identical=identical,
        )

