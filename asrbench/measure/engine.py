"""The evaluation loop: features once, batches, a warm-up, timed passes.

Throughput is real utterances / wall time of a timed pass, with the device synchronized before
every clock read; warm-up (graph capture, compilation, allocator growth) is excluded and
reported separately. Whisper's features are padded to 30 s by its feature extractor, other
models' to the batch's longest clip (features.py). Where shapes must be static (HPU, graphs)
the decoder is asrbench's static decoder and the last batch is filled with
dummy rows that never reach a metric, so a graph is never re-captured mid-run; elsewhere the
last batch keeps only its real rows (dummy rows would cost real time). Graph compilations and
captures are counted over the warm-up and over each timed pass: a timed pass must compile
nothing.

Features are prepared a few batches ahead by DataLoader workers while the warm-up decodes,
stored on disk batch by batch (streaming.py) and read back one batch at a time by every
timed pass, so memory does not grow with the split; a pass's clock leaves out the waits for
the next batch (docs/measuring.md, "What a pass's clock covers").
"""

from __future__ import annotations

import contextlib
import itertools
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from asrbench.config.settings import BenchConfig
from asrbench.devices import Device
from asrbench.errors import AsrbenchError
from asrbench.formats.model import (
    Compilations,
    DatasetInfo,
    DeviceInfo,
    Metrics,
    RankTimings,
    Run,
    Skip,
    ThroughputStats,
    Timings,
    UtteranceResult,
    most_starved,
)
from asrbench.measure import decoding
from asrbench.measure.contention import ContentionMeter
from asrbench.measure.counters import CountedBatch, count_batches, select_batches, shape_key
from asrbench.measure.data import SAMPLE_RATE, LoadedSplit, SplitIndex
from asrbench.measure.decoding import (
    GreedyDecoder,
    StaticGreedyDecoder,
    length_kwargs,
    whisper_prompt,
)
from asrbench.measure.features import (
    ATTENTION_MASK,
    check_settings,
    input_name,
    is_whisper,
    model_inputs,
)
from asrbench.measure.metrics import error_rates, percentile, throughput
from asrbench.measure.models import LoadedModel
from asrbench.measure.streaming import (
    NPY_HEADER_BYTES,
    BatchSource,
    FeatureCache,
    plan_batches,
    prefetch,
)
from asrbench.processes import settled_heap


def _largest(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _percentile(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def _batches_rows(rows: list[list[int]], real: list[int]) -> list[list[list[int]]]:
    """A pass's rows (decoding order) cut into its batches' (`real`: each batch's rows)."""
    out, start = [], 0
    for count in real:
        out.append(rows[start:start + count])
        start += count
    return out


def measured_timings(pass_seconds: list[float], model_seconds: float, latencies: list[float],
                     feature_extraction_seconds: float = 0.0, warmup_seconds: float = 0.0,
                     warmup_batches: int = 0, batches_per_pass: int = 0,
                     detokenize_seconds: float = 0.0, decoder: str = "",
                     compilations: Compilations | None = None,
                     peak_device_memory_bytes: int | None = None,
                     peak_host_rss_bytes: int | None = None) -> Timings:
    """The report's timings of one process's run, with the figures derived from what was
    measured: median pass, harness overhead (share of timed wall time outside the model calls:
    token read-back, loop, progress; the host-to-device copy and the synchronize count as model
    time), batch latency percentiles, end-to-end time. Nothing here scores transcripts."""
    median_pass = statistics.median(pass_seconds)
    return Timings(
        feature_extraction_seconds=feature_extraction_seconds, warmup_seconds=warmup_seconds,
        warmup_batches=warmup_batches, pass_seconds=list(pass_seconds),
        pass_seconds_median=median_pass, passes=len(pass_seconds),
        batches_per_pass=batches_per_pass,
        harness_overhead=1 - model_seconds / sum(pass_seconds), decoder=decoder,
        compilations=compilations, batch_latency_p50=_percentile(latencies, 50),
        batch_latency_p90=_percentile(latencies, 90), detokenize_seconds=detokenize_seconds,
        end_to_end_seconds=feature_extraction_seconds + median_pass + detokenize_seconds,
        peak_device_memory_bytes=peak_device_memory_bytes,
        peak_host_rss_bytes=peak_host_rss_bytes, latencies=list(latencies))


def counters_only_timings(feature_seconds: float, warmup: PassResult, warmup_batches: int,
                          batches: int, detokenize_seconds: float, decoder: str,
                          device: Device) -> Timings:
    """The timings of a counters-only run: no timed pass, so no pass time, throughput or
    latency; the warm-up (graph capture) and feature extraction as measured."""
    return Timings(feature_extraction_seconds=feature_seconds, warmup_seconds=warmup.seconds,
                   warmup_batches=warmup_batches, pass_seconds=[], passes=0,
                   batches_per_pass=batches, detokenize_seconds=detokenize_seconds,
                   decoder=decoder, peak_device_memory_bytes=device.peak_memory_bytes(),
                   peak_host_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def merge_timings(parts: list[Timings], utterances: list[int],
                  devices: list[str | None] | None = None) -> Timings:
    """The timings of one data-parallel run from its ranks' (in rank order; `utterances` and
    `devices`: each rank's count and device description). The ranks started each pass together
    (barrier), so a pass lasted as long as its slowest rank; latencies pool; compilations add
    up (any rank compiling while timed counts); the harness overhead is the slowest rank's
    share (so it stays a rank's figure); the other figures are the largest rank's."""
    passes = len(parts[0].pass_seconds)
    slowest = [max(p.pass_seconds[i] for p in parts) for i in range(passes)]
    counted = [p.compilations for p in parts if p.compilations is not None]
    compilations = None if len(counted) < len(parts) else Compilations(
        counter=counted[0].counter, warmup=sum(c.warmup for c in counted),
        passes=[sum(c.passes[i] for c in counted) for i in range(passes)])
    overhead = max(p.harness_overhead or 0.0 for p in parts)
    devices = devices or [None] * len(parts)
    merged = measured_timings(
        slowest, (1 - overhead) * sum(slowest), [t for p in parts for t in p.latencies],
        feature_extraction_seconds=max(p.feature_extraction_seconds or 0.0 for p in parts),
        warmup_seconds=max(p.warmup_seconds or 0.0 for p in parts),
        warmup_batches=parts[0].warmup_batches or 0,
        batches_per_pass=max(p.batches_per_pass or 0 for p in parts),
        detokenize_seconds=max(p.detokenize_seconds or 0.0 for p in parts),
        decoder=parts[0].decoder or "", compilations=compilations,
        peak_device_memory_bytes=_largest([p.peak_device_memory_bytes for p in parts]),
        peak_host_rss_bytes=_largest([p.peak_host_rss_bytes for p in parts]))
    # a pass lasts as long as its slowest rank: the most starved one speaks
    merged.contention = most_starved(p.contention for p in parts)
    merged.world_size = len(parts)
    merged.ranks = [
        RankTimings(rank=rank, utterances=count, pass_seconds=list(p.pass_seconds),
                    device=device, warmup_seconds=p.warmup_seconds,
                    feature_extraction_seconds=p.feature_extraction_seconds,
                    batches_per_pass=p.batches_per_pass,
                    batch_latency_p50=_percentile(p.latencies, 50),
                    batch_latency_p90=_percentile(p.latencies, 90),
                    peak_device_memory_bytes=p.peak_device_memory_bytes)
        for rank, (p, count, device) in enumerate(zip(parts, utterances, devices))]
    return merged


def score(config: BenchConfig, device: DeviceInfo, dataset_name: str, skipped: list[Skip],
          utterances: list[UtteranceResult], timings: Timings, passes_identical: bool,
          spelling: Any = None) -> Run:
    """The run as the report stores it: WER, CER (corpus level) from the utterances and
    throughput from the pass times filled in."""
    errors = error_rates([u.reference or "" for u in utterances],
                         [u.prediction for u in utterances], config.language, spelling)
    tokens = sum(u.tokens or 0 for u in utterances)
    audio_seconds = float(sum(u.audio_seconds or 0.0 for u in utterances))
    speed: dict[str, Any] = {}
    stats = None
    if timings.pass_seconds:  # a counters-only run timed nothing: no throughput at all
        rates = throughput(len(utterances), timings.pass_seconds)
        median_pass = statistics.median(timings.pass_seconds)
        speed = {"samples_per_second": rates.median, "rtfx": audio_seconds / median_pass,
                 "tokens_per_second": tokens / median_pass}
        stats = ThroughputStats.of(rates.per_pass)
    return Run(
        config=config, device=device,  # the run's settings as they are: one type
        metrics=Metrics(wer=errors.wer, wer_normalized=errors.wer_normalized, cer=errors.cer,
                        wer_normalized_whisper=errors.wer_normalized_whisper,
                        normalizer=errors.normalizer, tokens_per_sample=tokens / len(utterances),
                        **speed),
        throughput=stats,
        timings=timings,
        dataset=DatasetInfo(name=dataset_name, utterances=len(utterances),
                            audio_seconds=audio_seconds, skipped=list(skipped),
                            skipped_count=len(skipped),
                            normalized_wer_excluded=errors.normalized_excluded),
        passes_identical=passes_identical,
        utterances=[u.model_copy(update={"edits": e.as_list()})
                    for u, e in zip(utterances, errors.edits)])


@dataclass
class PreparedModel:
    """A model moved to its device, at its precision, wrapped for graphs where asked."""

    loaded: LoadedModel
    device: Device
    precision: str
    graphs: bool
    model: Any = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.device.prepare(self.loaded.model, self.precision)
        self._graphed_model: Any = None

    def graphed_model(self) -> Any:
        """The whole model wrapped for graph replay (generate() decoding with a static cache),
        wrapped once however many configs use it."""
        if self._graphed_model is None:
            if not getattr(self.model, "_can_compile_fullgraph", False):
                raise AsrbenchError(
                    f"--graphs needs a static KV cache, which {type(self.model).__name__} does "
                    "not support: graphs over a growing cache would replay stale steps; run "
                    "without --graphs")
            self._graphed_model = self.device.graph(self.model)
        return self._graphed_model


def _prompt_token_ids(generation_config: Any) -> set[int]:
    """Token ids the decoder is forced to start with (start, language, task, no-timestamps)."""
    ids = {getattr(generation_config, "decoder_start_token_id", None),
           getattr(generation_config, "no_timestamps_token_id", None)}
    ids.update((getattr(generation_config, "lang_to_id", None) or {}).values())
    ids.update((getattr(generation_config, "task_to_id", None) or {}).values())
    return {i for i in ids if i is not None}


def cut_after_eos(sequence: list[int], prompt_len: int, eos_id: int | None) -> list[int]:
    """A row up to and including its first end-of-text after the prompt: the padding after it
    depends only on the decoder (generate() trims to the longest row, the static decoder keeps
    the length cap), never on the transcript."""
    if eos_id is None:
        return sequence
    for index in range(prompt_len, len(sequence)):
        if sequence[index] == eos_id:
            return sequence[:index + 1]
    return sequence


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


def with_mask(kwargs: dict[str, Any], mask: torch.Tensor | None,
              device: Any = None) -> dict[str, Any]:
    """generate()'s keyword arguments, plus the batch's attention mask if it has one."""
    if mask is None:
        return kwargs
    return {**kwargs, ATTENTION_MASK: mask if device is None else mask.to(device)}


@dataclass
class Batches:
    """A split cut into static-shape batches, in decoding order."""

    features: list[torch.Tensor]  # the model's main input, one (batch_size, ...) tensor per batch
    real: list[int]  # real rows per batch; the rest are dummy padding
    order: list[int]  # split index of each real row, in decoding order
    masks: list[Any] = field(default_factory=list)  # attention mask per batch, or None

    def mask(self, index: int) -> Any:
        """The attention mask of batch `index` (None: the model takes none, e.g. Whisper)."""
        return self.masks[index] if index < len(self.masks) else None

    def restore(self, rows: list[Any]) -> list[Any]:
        """Per-row values from decoding order back to the split's order."""
        restored: list[Any] = [None] * len(rows)
        for position, index in enumerate(self.order):
            restored[index] = rows[position]
        return restored


@dataclass
class PassResult:
    """One pass over every batch."""

    seconds: float = 0.0  # wall time of the pass less waits for features, device synchronized
    compilations: int | None = None  # graph compilations/captures during the pass
    model_seconds: float = 0.0  # time inside the model calls (generate / decoder), synchronized
    latencies: list[float] = field(default_factory=list)  # per batch
    sequences: list[list[int]] = field(default_factory=list)  # token ids, decoding order
    waited: float = 0.0  # time spent waiting for the next batch (left out of seconds)


def needs_static_shapes(device: Device, graphs: bool, config: BenchConfig) -> bool:
    """Static shapes (fixed batch, static KV cache): the device needs them (HPU), graphs need
    them, or the EOS settings only the static decoder has were asked for."""
    return (graphs or not device.dynamic_shapes or config.ignore_eos
            or config.eos_check_every != 1)


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
        self.static = needs_static_shapes(self.device, prepared.graphs, config)
        check_settings(prepared.loaded.model, config, self.static)
        self.decoder = self._asrbench_decoder()
        if self.decoder is None and (config.ignore_eos or config.eos_check_every != 1):
            raise AsrbenchError("--ignore-eos and --eos-check-every need asrbench's static "
                                "decoder (Whisper with a forced --language)")
        self.model = (prepared.graphed_model() if self.decoder is None and prepared.graphs
                      else prepared.model)

    def _asrbench_decoder(self) -> GreedyDecoder | StaticGreedyDecoder | None:
        """asrbench's greedy decoder where it reproduces generate(): static shapes (graphs,
        HPU) or finished rows dropped (elsewhere). None: generate() decodes."""
        model, language = self.prepared.model, self.config.language
        if not language or not decoding.supports(model, language):
            return None
        try:
            prompt = whisper_prompt(self.generation_config, language, self.config.task)
        except (ValueError, KeyError) as exc:
            raise AsrbenchError(f"--language {self.config.language!r} / --task "
                                f"{self.config.task!r}: {exc}") from None
        length = self.config.generation_max_length
        if not self.static:
            return GreedyDecoder(model, prompt, length)
        if length <= len(prompt):
            raise AsrbenchError(f"--generation-max-length {length} leaves no room after the "
                                f"{len(prompt)}-token prompt")
        return StaticGreedyDecoder(
            model, prompt, length, self.config.batch_size,
            graph=self.device.graph if self.prepared.graphs else None,
            eos_check_every=self.config.eos_check_every, ignore_eos=self.config.ignore_eos,
            mark_step=self.device.mark_step)

    def decoder_name(self) -> str:
        """Which decoder ran, for the report."""
        if isinstance(self.decoder, StaticGreedyDecoder):
            graphs = ", graphs" if self.prepared.graphs else ""
            eos = ("decodes to the cap (ignore_eos)" if self.config.ignore_eos
                   else f"EOS read every {self.config.eos_check_every} step(s)")
            return f"asrbench static greedy (static KV cache{graphs}; {eos})"
        if self.decoder is not None:
            return "asrbench greedy (finished rows dropped)"
        return "generate (static KV cache, graphs)" if self.prepared.graphs else "generate"

    def generate_kwargs(self) -> dict[str, Any]:
        """Greedy decoding, forced language/task, stop at EOS, capped length."""
        kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1,
                                  **length_kwargs(self.generation_config,
                                                  self.config.generation_max_length)}
        if getattr(self.generation_config, "lang_to_id", None):
            kwargs["task"] = self.config.task
            if self.config.language:
                kwargs["language"] = self.config.language
        kwargs.update(self.device.generate_kwargs(self.prepared.graphs))
        return kwargs

    def featurize(self, audio: list[np.ndarray]) -> Batches:
        """Model inputs per batch (features.py), longest clips first; with static shapes the
        last batch is filled with dummy rows (copies of its last clip), otherwise it keeps its
        real rows.

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
            if self.static:
                chunk += [chunk[-1]] * (size - len(chunk))  # dummy rows: dropped from every metric
            inputs = model_inputs(extractor, self.prepared.loaded.model, chunk, self.static)
            batches.masks.append(inputs.pop(ATTENTION_MASK, None))
            batches.features.append(inputs[input_name(self.prepared.loaded.model)])
        return batches

    def feature_bytes(self, rows: list[Any], plan: list[list[int]]) -> int:
        """What the feature cache will hold for these batches, in bytes (float32 features:
        Whisper's are feature_size mel bins x nb_max_frames frames a row, 80 x 3000 x 4 bytes
        = 0.92 MiB; other models' are padded to a batch's longest clip, by the extractor's
        hop length when it makes frames), with the npy headers."""
        extractor = self.processor.feature_extractor
        bins = int(getattr(extractor, "feature_size", 1) or 1)
        whisper_frames = getattr(extractor, "nb_max_frames", None)
        hop = getattr(extractor, "hop_length", None)
        total = 0
        for batch in plan:
            width = len(batch) if not self.static else self.config.batch_size
            if is_whisper(self.prepared.loaded.model) and whisper_frames:
                frames = int(whisper_frames)
            else:
                longest = max(rows[i].samples for i in batch)
                frames = -(-longest // int(hop)) if hop else longest
            total += width * bins * frames * 4 + 2 * NPY_HEADER_BYTES
        return total

    def _generate(self, features: torch.Tensor, kwargs: dict[str, Any],
                  mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids for one batch: asrbench's decoder where it applies, else generate()
        (with the extractor's attention mask where it made one)."""
        if self.decoder is not None:
            return self.decoder(features)
        out = self.model.generate(features, **with_mask(kwargs, mask))
        return out if torch.is_tensor(out) else out.sequences

    def _pass(self, batches: Iterable[tuple[torch.Tensor, Any, int]], label: str) -> PassResult:
        """One pass over (features, attention mask or None, real rows) batches, rows returned
        in decoding order; graph compilations during it are counted. Waiting for the next
        batch (the prefetch, a read from the feature cache) is left out of its seconds."""
        device = self.device
        kwargs = {} if self.decoder is not None else self.generate_kwargs()
        result = PassResult()
        rows: list[list[int]] = []
        chosen = iter(batches)
        device.synchronize()
        compiled_before = device.compile_count()
        with settled_heap():
            self._decode_all(chosen, kwargs, label, rows, result)
        compiled_after = device.compile_count()
        if compiled_before is not None and compiled_after is not None:
            result.compilations = compiled_after - compiled_before
        result.sequences = rows
        return result

    def _decode_all(self, chosen: Iterator[tuple[torch.Tensor, Any, int]], kwargs: dict[str, Any],
                    label: str, rows: list[list[int]], result: PassResult) -> None:
        """_pass's timed loop: decodes every batch, appending to `rows` and `result`."""
        device = self.device
        start = time.perf_counter()
        while True:
            waiting = time.perf_counter()
            try:
                features, mask, count = next(chosen)
            except StopIteration:
                result.waited += time.perf_counter() - waiting
                break
            t0 = time.perf_counter()
            result.waited += t0 - waiting
            with torch.inference_mode(), device.autocast(self.prepared.precision):
                out = self._generate(features.to(device.torch_device), kwargs,
                                     None if mask is None else mask.to(device.torch_device))
            device.synchronize()
            t1 = time.perf_counter()
            # The whole (fixed-shape) output comes back; rows are trimmed on the host.
            rows.extend(self._trim(r) for r in out.cpu().tolist()[:count])
            result.model_seconds += t1 - t0
            result.latencies.append(time.perf_counter() - t0)
            if self.progress:
                self.progress(label, 1)
        device.synchronize()
        result.seconds = time.perf_counter() - start - result.waited

    def _trim(self, row: list[int]) -> list[int]:
        """asrbench's decoders: the row up to its first end-of-text after the prompt (their
        padding length is the decoder's, not the transcript's). generate()'s rows stay as
        they are: for some models the decoder start token is the end-of-text token."""
        if self.decoder is None:
            return row
        return cut_after_eos(row, len(self.decoder.prompt), self._eos)

    def detokenize(self, sequences: list[list[int]]) -> list[str]:
        """Token ids to transcripts (special tokens dropped, outer spaces stripped)."""
        texts = self.processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        return [t.strip() for t in texts]

    def transcribe(self, audio: list[np.ndarray]) -> list[str]:
        """Audio arrays to transcripts: features, one pass, detokenize (what peers time)."""
        batches = self.featurize(audio)
        passed = self._pass(((features, batches.mask(index), real) for index, (features, real)
                             in enumerate(zip(batches.features, batches.real))), "transcribe")
        return self.detokenize(batches.restore(passed.sequences))

    def _contention_meter(self) -> ContentionMeter:
        """Starts measuring the run's CPU share (measure/contention.py): against torch's
        intra-op threads where the compute is on the CPU (cpu, the emulated Gaudi), against
        the one host thread that drives an accelerator elsewhere."""
        on_cpu = self.device.kind in ("cpu", "hpu-emulated")
        return ContentionMeter(torch.get_num_threads() if on_cpu else 1,
                               "torch" if on_cpu else "host")

    def warmup_batches(self, available: int) -> int:
        """Batches to warm up on: the config's number, else what the run needs (one batch
        captures every graph when shapes are static; a full pass where they vary)."""
        wanted = self.config.warmup_batches
        if wanted is None:
            # Shapes stay fixed from batch to batch with the static decoder or a static cache
            # under graphs; generate() over a growing cache (HPU without graphs) varies them.
            fixed = isinstance(self.decoder, StaticGreedyDecoder) or self.prepared.graphs
            wanted = self.device.warmup_batches(fixed)
        return available if wanted is None else min(wanted, available)

    def run(self, split: SplitIndex | LoadedSplit, passes: int,
            whole: SplitIndex | None = None) -> Run:
        """Warm up, time `passes` passes, decode and score (a data-parallel rank scores its
        shard; the merged run is scored again from every rank's utterances).

        Clips are decoded and featurized a few batches ahead by DataLoader workers while the
        warm-up decodes; each batch's features go to an on-disk cache that the timed passes
        read one batch at a time, so memory holds a few batches whatever the split's size.

        `whole`: the whole split when `split` is a shard of it (a rank's, a scheduler's): the
        counted pass counts the whole split's first batch, as one process does, so every
        shard's counters are the unsharded run's."""
        if passes < 1:
            raise ValueError("passes must be >= 1")
        if isinstance(split, LoadedSplit):
            split = SplitIndex.of(split)
        plan = plan_batches(split.rows, self.config.batch_size)
        counters_only = self.config.counters_only
        # counters-only where the device tells which call captures: the warm-up's counted
        # batches are counted while capturing (one decode), its other batches decoded after
        one_decode = counters_only and self.counts_while_capturing()
        with FeatureCache() as cache:
            cache.check_space(self.feature_bytes(split.rows, plan), len(split.rows))
            self.device.reset_peak_memory()
            self.barrier()
            captured_from = len(self.device.graph_captures)
            # counters-only: no warm-up unless graphs must be captured before they replay, or
            # one is asked for (--warmup-batches: a model doing work once on its first call
            # is then counted warm, as a timed run counts it)
            warmup_batches = (self.warmup_batches(len(plan))
                              if not counters_only or self.prepared.graphs
                              or self.config.warmup_batches else 0)
            t_features = time.perf_counter()
            batches = prefetch(BatchSource(split.rows, plan, split.max_duration, self.featurize))
            with contextlib.closing(batches):  # workers end here, on errors too
                stream = cache.fill(batches)
                warmup = self._pass(
                    itertools.islice(stream, 0 if one_decode else warmup_batches), "warm-up")
                for _ in stream:  # the batches the warm-up did not decode, onto disk
                    pass
            # Wall time until every batch's features were on disk, less the warm-up's decoding.
            feature_seconds = time.perf_counter() - t_features - warmup.seconds
            if not cache.real:
                reasons = "; ".join(f"{s.id}: {s.reason}" for s in cache.skipped[:3])
                raise AsrbenchError(f"{split.name}: no usable utterances ({len(cache.skipped)} "
                                    f"clip(s) failed to decode, e.g. {reasons})")
            pass_seconds, model_seconds, latencies, first_sequences = [], [], [], None
            pass_compilations: list[int | None] = []
            identical = True
            counters = None
            if counters_only:
                first_sequences, counters, warmup = self._counters_only(
                    split, cache, warmup, captured_from, warmup_batches if one_decode else 0)
                if one_decode:  # the batches the plain warm-up decoded (often none)
                    warmup_batches = len(warmup.latencies)
            meter = self._contention_meter()  # the run's share of the machine while timed
            for number in range(0 if counters_only else passes):
                self.barrier()
                timed = self._pass(cache.read(), f"pass {number + 1}/{passes}")
                pass_seconds.append(timed.seconds)
                model_seconds.append(timed.model_seconds)
                pass_compilations.append(timed.compilations)
                latencies.extend(timed.latencies)
                if first_sequences is None:
                    first_sequences = timed.sequences
                elif timed.sequences != first_sequences:
                    identical = False
            contention = None if counters_only else meter.stop()  # no timed pass: unknown
            if first_sequences is None:  # passes >= 1 is checked above; for type narrowing
                raise RuntimeError("no timed pass ran")
            # One batch of each distinct batch shape (the partial last batch included);
            # a shard counts the whole split's (as one process does).
            counted_batches = ([self._stored(split, cache, number)
                                for number in select_batches(cache.shapes)]
                               if self.config.counters and not counters_only else [])
        in_pass = len(cache.real)
        if counted_batches and whole is not None and whole is not split:
            counted_batches, in_pass = self._batches_of(whole)

        t_decode = time.perf_counter()
        predictions = self.detokenize(first_sequences)
        decode_seconds = time.perf_counter() - t_decode

        # Decoding order back to the split's: each real row's index row, decoded length.
        decoded = sorted(zip(cache.rows, cache.samples, predictions, first_sequences))
        results = [
            UtteranceResult(id=split.rows[index].id, reference=split.rows[index].reference,
                            prediction=prediction,
                            tokens=count_generated(seq, self._prompt_ids, self._eos),
                            audio_seconds=samples / SAMPLE_RATE,
                            speaker=split.rows[index].speaker)
            for index, samples, prediction, seq in decoded
        ]
        skipped = sorted([*split.skipped, *cache.skipped], key=lambda s: s.position)
        counted_passes = [c for c in pass_compilations if c is not None]
        counted = (warmup.compilations is not None
                   and len(counted_passes) == len(pass_compilations))
        timings = counters_only_timings(
            feature_seconds, warmup, min(warmup_batches, len(cache.real)), len(cache.real),
            decode_seconds, self.decoder_name(), self.device
        ) if counters_only else measured_timings(
            pass_seconds, sum(model_seconds), latencies,
            feature_extraction_seconds=feature_seconds, warmup_seconds=warmup.seconds,
            warmup_batches=min(warmup_batches, len(cache.real)),
            batches_per_pass=len(cache.real),
            detokenize_seconds=decode_seconds, decoder=self.decoder_name(),
            # Graph compilations/captures (device counter) in the warm-up and in each timed
            # pass; None where the backend compiles nothing. Timed passes must show zeros.
            compilations=Compilations(counter=self.device.compile_counter(),
                                      warmup=warmup.compilations,
                                      passes=counted_passes) if counted else None,
            peak_device_memory_bytes=self.device.peak_memory_bytes(),
            peak_host_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        timings.contention = contention
        device = DeviceInfo.model_validate({
            "kind": self.device.kind, "class": self.device.device_class(),
            "name": self.device.description(), "environment": self.device.environment()})
        run = score(self.config, device, split.name,
                    [Skip(id=s.id, reason=s.reason) for s in skipped], results, timings,
                    identical, self.spelling())
        run.counters = counters
        if counted_batches:  # exact work counts, after the clocks and peak memory read
            run.counters = self._count(
                split, cache, counted_batches, in_pass=in_pass,
                compilations=((warmup.compilations or 0) + sum(counted_passes)) if counted
                else None,
                captures=self.device.graph_captures[captured_from:])
        return run

    @staticmethod
    def _stored(split: SplitIndex, cache: Any, number: int) -> tuple:
        """Stored batch `number` as the counted pass takes it: (index, features, mask, real
        rows, utterance ids)."""
        start = sum(cache.real[:number])
        features, mask, real = cache.batch(number)
        return (number, features, mask, real,
                [split.rows[i].id for i in cache.rows[start:start + real]])

    def counts_while_capturing(self) -> bool:
        """Whether a counters-only run counts the warm-up's batches while capturing their
        graphs (one decode each, graphing.capturing_calls): graphs on a device that can tell
        which call would capture (the emulated Gaudi), with asrbench's static decoder (whose
        one-time setup is kept out of the counts: counters.decoder_setup). Elsewhere the
        warm-up captures and the counted pass decodes again, eagerly."""
        return (self.prepared.graphs and self.device.capture_while_counting
                and isinstance(self.decoder, StaticGreedyDecoder))

    def _count(self, split: SplitIndex, cache: Any, batches: list[tuple], *,
               compilations: int | None, captures: list[Any],
               rows_out: dict[int, list] | None = None, in_pass: int | None = None,
               capture: frozenset[int] = frozenset()) -> Any:
        """The counted pass over `batches`: (index, features, mask, real rows, ids) each;
        `in_pass`: the batches of a (whole) pass, by default the cache's; `capture`: the
        indices of the batches counted while capturing."""
        return count_batches(
            self.prepared, self.decoder,
            [CountedBatch(features, real, number,
                          with_mask(self.generate_kwargs(), mask, self.device.torch_device),
                          ids, capture=number in capture)
             for number, features, mask, real, ids in batches],
            self.device,
            count_tokens=lambda row: count_generated(self._trim(row), self._prompt_ids,
                                                     self._eos),
            compilations=compilations, captures=captures,
            batches_in_pass=len(cache.real) if in_pass is None else in_pass,
            rows_out=rows_out)

    def _counters_only(self, split: SplitIndex, cache: Any, warmup: PassResult,
                       captured_from: int, deferred: int = 0
                       ) -> tuple[list[list[int]], Any, PassResult]:
        """--counters-only: no timed pass. The counted batches' transcripts (one batch of each
        distinct batch shape) come from their counted pass (same decoder, model, cache,
        autocast and batch shape as a timed pass), the other batches' from one plain, untimed
        decode; graph captures are the warm-up's and that decode's.

        With graphs, every batch the warm-up did not decode goes through the device's graph
        wrappers once, as a timed pass sends it, so a graph captured again for a later batch
        (a recapture per batch, or on the partial last batch only) is counted: where the
        device tells which call captures (`deferred` > 0: counts_while_capturing), every
        counted batch is counted while capturing (a call that would replay runs the module's
        own forward, a call that would capture captures); elsewhere the counted batches the
        warm-up did not decode are decoded again by the plain decode (the eager counted pass
        bypasses the wrappers).

        `deferred`: warm-up batches not decoded yet (counts_while_capturing): those after the
        leading run of counted ones (the first batch, and any counted batch right after it)
        are decoded plainly after the counted pass, in order, as the warm-up would have (a
        counted batch among them is decoded again: with --warmup-batches 3 or more).
        Returns the rows, the counters and the warm-up that ran (`warmup` itself when nothing
        was deferred)."""
        chosen = select_batches(cache.shapes)
        deferred = min(deferred, len(cache.real))
        capturing = deferred > 0
        leading = 0
        while leading < deferred and leading in chosen:
            leading += 1
        decoded: dict[int, list] = {}
        before = self.device.compile_count() if capturing else 0
        counters = self._count(split, cache, [self._stored(split, cache, n) for n in chosen],
                               compilations=None, captures=[], rows_out=decoded,
                               capture=frozenset(chosen) if capturing else frozenset())
        # (an eager counted pass is left out, as before: on a Gaudi the counter also counts
        # the lazy-mode recipes an eager decode compiles)
        after = self.device.compile_count() if capturing else 0
        counters.first_calls = capturing or not warmup.latencies
        if deferred:
            warmup = self._pass((cache.batch(n) for n in range(leading, deferred)), "warm-up")
        # the batches no graph wrapper has seen since the warm-up's: a timed pass sends each
        # through them (without graphs, only the batches the counted pass did not decode)
        warmed = len(warmup.latencies) if not capturing else 0
        unseen = [n for n in range(len(cache.real))
                  if n not in decoded or (self.prepared.graphs and not capturing
                                          and n >= warmed)]
        rest = self._pass((cache.batch(n) for n in unseen), "decode")
        if (warmup.compilations is not None and rest.compilations is not None
                and before is not None and after is not None):
            # the counted pass's captures where it stood in for the warm-up
            counters.compilations = (after - before) + warmup.compilations + rest.compilations
        tally: dict[str, int] = {}
        for capture in self.device.graph_captures[captured_from:]:
            tally[capture.key()] = tally.get(capture.key(), 0) + capture.count
        counters.captures = tally
        others = dict(zip(unseen, _batches_rows(rest.sequences, [cache.real[n] for n in unseen])))
        sequences: list[list[int]] = []
        for number in range(len(cache.real)):
            sequences += ([self._trim(r) for r in decoded[number]] if number in decoded
                          else others[number])
        return sequences, counters, warmup

    def _batches_of(self, whole: SplitIndex) -> tuple[list[tuple], int]:
        """The batches a whole split's counted pass counts, featurized as a run's cache holds
        them, for a shard's counted pass: its first usable batch and, where its shape differs,
        its last (the partial last batch), as (index, features, mask, real rows, ids). Only
        their clips are decoded. (A batch in between that lost clips to decoding errors is
        another shape that only a whole run counts.) And the whole pass's batches."""
        plan = plan_batches(whole.rows, self.config.batch_size)
        source = BatchSource(whole.rows, plan, whole.max_duration, self.featurize)
        usable = []
        for numbers in (range(len(plan)), range(len(plan) - 1, -1, -1)):
            for number in numbers:  # the first (then the last) batch with a usable clip
                batch = source[number]
                if batch.features is not None:
                    mask = None if batch.mask is None else torch.from_numpy(batch.mask)
                    usable.append((number, torch.from_numpy(batch.features), mask,
                                   len(batch.rows), [whole.rows[i].id for i in batch.rows]))
                    break
        if not usable:
            raise AsrbenchError(f"{whole.name}: no usable utterance to count")
        keys = [shape_key(features, mask, real) for _, features, mask, real, _ in usable]
        return [usable[i] for i in select_batches(keys)], len(plan)

    def spelling(self) -> Any:
        """The tokenizer's English spelling normalizer (for scoring), if it has one."""
        return getattr(self.processor.tokenizer, "english_spelling_normalizer", None)

