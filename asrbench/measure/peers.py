"""`asrbench peers`: the asrbench engine against the evaluation loops users would otherwise run.

Same model, same clips, same precision, greedy, in one process, interleaved round by round
(the order rotates every round) so that machine noise hits every peer alike:

- trainer: transformers Seq2SeqTrainer.predict with predict_with_generate (the loop
  optimum-habana's GaudiSeq2SeqTrainer extends), labels given as the seed gives them, so it
  also computes the eval loss like the seed does;
- pipeline: transformers pipeline("automatic-speech-recognition") with batch_size;
- ctranslate2: CTranslate2 (faster-whisper's engine) on the original CTranslate2 weights of
  the bundled model (other models are converted with CTranslate2's converter), batched greedy;
- asrbench: this package's Evaluator.

Every peer is timed the same way: from decoded 16 kHz audio arrays to transcript strings
(feature extraction, generation and detokenization inside the clock). One untimed batch warms
each peer up. The speed-up of asrbench over a peer is asrbench's samples/s / the peer's.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asrbench.config.settings import BenchConfig
from asrbench.devices import Device
from asrbench.errors import AsrbenchError
from asrbench.formats.model import SCHEMA_VERSION as PEERS_SCHEMA_VERSION
from asrbench.formats.model import Environment, PeerDetail, PeerRow, PeersDocument
from asrbench.measure.bundled import BUNDLED_PREFIX, bundled_source
from asrbench.measure.data import SAMPLE_RATE, LoadedSplit
from asrbench.measure.decoding import whisper_prompt
from asrbench.measure.engine import Evaluator, PreparedModel
from asrbench.measure.metrics import error_rates
from asrbench.measure.models import LoadedModel, takes_dtype

PEER_NAMES = ("trainer", "pipeline", "ctranslate2", "asrbench")


@dataclass
class PeerResult:
    """One peer's timed rounds and the transcripts of its first timed round."""

    name: str
    seconds: list[float] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. the compute type a peer ran
    skipped: str | None = None  # why the peer could not run here


class Peer:
    """A way to transcribe a list of clips; `transcribe` is what the clock covers."""

    name = ""

    def __init__(self, loaded: LoadedModel, device: Device, config: BenchConfig,
                 prepared: PreparedModel) -> None:
        self.loaded = loaded
        self.device = device
        self.config = config
        self.prepared = prepared
        self.evaluator = Evaluator(prepared, config)
        self.detail: dict[str, Any] = {}

    def transcribe(self, audio: list[np.ndarray], references: list[str]) -> list[str]:
        raise NotImplementedError

    def generate_kwargs(self) -> dict[str, Any]:
        """The engine's greedy settings, so every transformers peer decodes alike."""
        return self.evaluator.generate_kwargs()

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.device.autocast(self.config.precision)


class AsrbenchPeer(Peer):
    """asrbench's own engine: features once per call, static batches, its decode loop."""

    name = "asrbench"

    def transcribe(self, audio: list[np.ndarray], references: list[str]) -> list[str]:
        return self.evaluator.transcribe(audio)


class PipelinePeer(Peer):
    """transformers' ASR pipeline, batched."""

    name = "pipeline"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from transformers import pipeline  # noqa: PLC0415  transformers: off the light paths

        processor = self.loaded.processor
        self.pipe = pipeline("automatic-speech-recognition", model=self.prepared.model,
                             tokenizer=_padding_tokenizer(processor.tokenizer),
                             feature_extractor=processor.feature_extractor,
                             device=self.device.torch_device, batch_size=self.config.batch_size)
        # Autocast around the model call only: on CPU it would also turn the pipeline's own
        # feature extraction (torch STFT) into bf16, which the other peers do in fp32.
        forward = self.pipe._forward

        def forward_at_precision(*args: Any, **kwargs: Any) -> Any:
            with self.autocast():
                return forward(*args, **kwargs)

        self.pipe._forward = forward_at_precision  # type: ignore[method-assign]  # (autocast)

    def transcribe(self, audio: list[np.ndarray], references: list[str]) -> list[str]:
        inputs = [{"raw": a, "sampling_rate": SAMPLE_RATE} for a in audio]
        # (transformers annotates one input; a list is batched, batch_size at a time)
        outputs = self.pipe(inputs,  # type: ignore[arg-type]
                            generate_kwargs=self.generate_kwargs())
        return [o["text"].strip() for o in outputs]


def _padding_tokenizer(tokenizer: Any) -> Any:
    """The tokenizer with a pad token (end-of-text, as openai/whisper-* ship it) for batching."""
    if tokenizer.pad_token is not None:
        return tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class _LabelledClips:
    """The seed's eval set: log-mel features and tokenized references per clip."""

    def __init__(self, features: np.ndarray, labels: list[list[int]]) -> None:
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_features": self.features[i], "labels": self.labels[i]}


class _SpeechCollator:
    """Stacks features; pads labels with -100 and drops a leading start token (as the seed)."""

    def __init__(self, processor: Any, start_id: int | None) -> None:
        self.processor = processor
        self.start_id = start_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        features = torch.from_numpy(np.stack([r["input_features"] for r in rows]))
        width = max(len(r["labels"]) for r in rows)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, :len(r["labels"])] = torch.tensor(r["labels"], dtype=torch.long)
        if self.start_id is not None and bool((labels[:, 0] == self.start_id).all()):
            labels = labels[:, 1:]
        return {"input_features": features, "labels": labels}


class TrainerPeer(Peer):
    """Seq2SeqTrainer.predict(predict_with_generate=True): the seed's evaluation loop."""

    name = "trainer"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: PLC0415  transformers: off the light paths
        from transformers.utils import is_accelerate_available  # noqa: PLC0415  transformers: off the light paths

        if not is_accelerate_available():
            raise PeerUnavailable("transformers' Trainer needs accelerate (pip install accelerate)")

        self._output_dir = tempfile.mkdtemp(prefix="asrbench-trainer-")
        arguments = Seq2SeqTrainingArguments(
            output_dir=self._output_dir, per_device_eval_batch_size=self.config.batch_size,
            predict_with_generate=True, generation_max_length=self.config.generation_max_length,
            report_to=[], disable_tqdm=True, dataloader_num_workers=0,
            use_cpu=self.device.kind == "cpu")
        processor = self.loaded.processor
        start = getattr(self.loaded.model.generation_config, "decoder_start_token_id", None)
        self.trainer = Seq2SeqTrainer(model=self.prepared.model, args=arguments,
                                      data_collator=_SpeechCollator(processor, start),
                                      processing_class=processor.feature_extractor)

    def transcribe(self, audio: list[np.ndarray], references: list[str]) -> list[str]:
        processor = self.loaded.processor
        features = processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE,
                                               return_tensors="np").input_features
        labels = processor.tokenizer(references).input_ids
        # max_new_tokens (decoding.length_kwargs) takes precedence over the Trainer's
        # generation_max_length, whose meaning for Whisper changed with transformers 5.
        kwargs = self.generate_kwargs()
        with self.autocast():
            output = self.trainer.predict(_LabelledClips(features, labels), **kwargs)
        ids = np.where(output.predictions != -100, output.predictions,
                       _padding_tokenizer(processor.tokenizer).pad_token_id)
        return [t.strip() for t in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def close(self) -> None:
        shutil.rmtree(self._output_dir, ignore_errors=True)


# CTranslate2 compute types per asrbench precision, in order of preference.
_CT2_COMPUTE = {"fp32": ("float32",), "bf16": ("bfloat16", "float32"),
                "fp16": ("float16", "float32")}


class CTranslate2Peer(Peer):
    """CTranslate2 Whisper, batched greedy, on the original CTranslate2 weights when bundled."""

    name = "ctranslate2"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        try:
            import ctranslate2  # noqa: PLC0415  optional: the peers extra
        except ImportError:
            raise PeerUnavailable("ctranslate2 is not installed (pip install ctranslate2)"
                                  ) from None
        self.ct2 = ctranslate2
        kind = "cuda" if self.device.kind == "cuda" else "cpu"
        if self.device.kind not in ("cuda", "cpu"):
            raise PeerUnavailable(f"CTranslate2 has no {self.device.kind} backend")
        supported = ctranslate2.get_supported_compute_types(kind)
        wanted = _CT2_COMPUTE[self.config.precision]
        compute = next((c for c in wanted if c in supported), None)
        if compute is None:
            raise PeerUnavailable(f"no CTranslate2 compute type for {self.config.precision} "
                                  f"on {kind}")
        self.detail["compute_type"] = compute
        if compute != wanted[0]:
            self.detail["note"] = (f"CTranslate2 has no {wanted[0]} on this {kind} "
                                   f"(supported: {', '.join(sorted(supported))}); ran {compute}")
        self._dir = tempfile.mkdtemp(prefix="asrbench-ct2-")
        try:
            self.detail["weights"] = self._materialize(Path(self._dir))
        except BaseException:
            self.close()
            raise

        # torch's intra-op thread count (OMP_NUM_THREADS if set), so both engines use the same.
        self.model = ctranslate2.models.Whisper(self._dir, device=kind, compute_type=compute,
                                                intra_threads=torch.get_num_threads())
        self.prompt = self._prompt()

    def _materialize(self, out: Path) -> str:
        """Write a CTranslate2 model directory; returns where its weights came from."""
        reference = self.loaded.reference
        if reference.startswith(BUNDLED_PREFIX):
            source = bundled_source(reference[len(BUNDLED_PREFIX):])
            with open(out / "model.bin", "wb") as fh:
                for part in source.model_parts:
                    with open(part, "rb") as piece:
                        shutil.copyfileobj(piece, fh, 1 << 20)
            for path in (source.config_json, source.tokenizer_json,
                         source.config_json.parent / "vocabulary.txt"):
                if path.is_file():
                    shutil.copy(path, out)
            return "original CTranslate2 model.bin of the bundled package"
        try:
            _converter()(self.loaded.path, load_as_float16=False).convert(str(out), force=True)
        except Exception as exc:  # the converter raises many types; the peer is reported skipped
            raise PeerUnavailable(f"CTranslate2 could not convert {reference}: {exc}") from None
        return f"converted from {self.loaded.path} by ctranslate2.converters.TransformersConverter"

    def _prompt(self) -> list[int]:
        """[start, language, task, no-timestamps], as transformers forces them."""
        if not self.config.language:
            raise PeerUnavailable("CTranslate2 needs a forced language (--language)")
        return whisper_prompt(self.loaded.model.generation_config, self.config.language,
                              self.config.task)

    def transcribe(self, audio: list[np.ndarray], references: list[str]) -> list[str]:
        extractor = self.loaded.processor.feature_extractor
        tokenizer = self.loaded.processor.tokenizer
        size = self.config.batch_size
        # transformers' max_length counts the prompt; CTranslate2's Whisper generates at most
        # max_length / 2 tokens (measured in tests/test_bundled.py), hence the factor 2.
        generated = self.config.generation_max_length - len(self.prompt)
        texts: list[str] = []
        for start in range(0, len(audio), size):
            features = extractor(audio[start:start + size], sampling_rate=SAMPLE_RATE,
                                 return_tensors="np").input_features
            results = self.model.generate(self.ct2.StorageView.from_array(features),
                                          [self.prompt] * len(features), beam_size=1,
                                          max_length=2 * generated)
            texts.extend(tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True).strip()
                         for r in results)
        return texts

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class PeerUnavailable(Exception):
    """A peer cannot run with this model or on this machine (reported, not fatal)."""


PEERS: dict[str, Callable[..., Peer]] = {"trainer": TrainerPeer, "pipeline": PipelinePeer,
                                         "ctranslate2": CTranslate2Peer, "asrbench": AsrbenchPeer}


def run_peers(config: BenchConfig, split: LoadedSplit, loaded: LoadedModel, device: Device,
              names: tuple[str, ...] = PEER_NAMES, rounds: int = 3,
              progress: Callable[[str], Any] | None = None) -> list[PeerResult]:
    """Warm each peer up on one batch, then time `rounds` interleaved rounds over all clips."""
    if rounds < 1:
        raise AsrbenchError("--rounds must be >= 1")
    if "asrbench" not in names:
        names = (*names, "asrbench")  # the reference every other peer is compared with
    audio = [u.audio for u in split.utterances]
    references = [u.reference for u in split.utterances]
    prepared = PreparedModel(loaded, device, config.precision, False)
    peers: list[Peer] = []
    results: dict[str, PeerResult] = {}
    for name in names:
        result = results[name] = PeerResult(name)
        try:
            peer = PEERS[name](loaded, device, config, prepared)
        except PeerUnavailable as exc:
            result.skipped = str(exc)
            continue
        result.detail = peer.detail
        if progress:
            progress(f"warm-up {name}")
        try:
            peer.transcribe(audio[:config.batch_size], references[:config.batch_size])
        except Exception as exc:  # a peer that breaks is reported, the others still run
            if name == "asrbench":
                raise
            result.skipped = f"failed in warm-up: {type(exc).__name__}: {exc}"
            getattr(peer, "close", lambda: None)()
            continue
        peers.append(peer)
    try:
        for number in range(rounds):
            shift = number % len(peers)
            for peer in peers[shift:] + peers[:shift]:
                if progress:
                    progress(f"round {number + 1}/{rounds} {peer.name}")
                device.synchronize()
                start = time.perf_counter()
                predictions = peer.transcribe(audio, references)
                device.synchronize()
                results[peer.name].seconds.append(time.perf_counter() - start)
                if number == 0:
                    results[peer.name].predictions = predictions
    finally:
        for peer in peers:
            close = getattr(peer, "close", None)
            if close:
                close()
    return [results[name] for name in names]


def summarize(config: BenchConfig, split: LoadedSplit, loaded: LoadedModel,
              results: list[PeerResult], machine: Mapping[str, object] | Environment
              ) -> PeersDocument:
    """The document (formats.model.PeersDocument, schemas/peers.schema.json): machine,
    settings, and one row per peer."""
    n = len(split.utterances)
    references = [u.reference for u in split.utterances]
    spelling = getattr(loaded.processor.tokenizer, "english_spelling_normalizer", None)
    reference_row = next(r for r in results if r.name == "asrbench")
    ours = n / statistics.median(reference_row.seconds)
    rows = []
    for result in results:
        if result.skipped:
            rows.append(PeerRow(name=result.name, skipped=result.skipped))
            continue
        median = statistics.median(result.seconds)
        rates = error_rates(references, result.predictions, config.language, spelling)
        differ = [u.id for u, a, b in zip(split.utterances, result.predictions,
                                           reference_row.predictions) if a != b]
        rows.append(PeerRow(
            name=result.name, samples_per_second=n / median,
            rtfx=split.audio_seconds / median, wer=rates.wer,
            wer_normalized=rates.wer_normalized, transcripts_equal_to_asrbench=not differ,
            transcripts_differing=differ, round_seconds=result.seconds,
            round_rsd=(statistics.stdev(result.seconds) / statistics.mean(result.seconds)
                       if len(result.seconds) > 1 else None),
            asrbench_speedup=ours / (n / median),
            detail=PeerDetail.model_validate(result.detail) if result.detail else None))
    return PeersDocument(
        schema_=PEERS_SCHEMA_VERSION, machine=Environment.model_validate(machine),
        precision=config.precision, model=config.model, dataset=split.name,
        language=config.language, utterances=n, audio_seconds=split.audio_seconds,
        batch_size=config.batch_size, generation_max_length=config.generation_max_length,
        rounds=len(reference_row.seconds), peers=rows)


def _converter() -> Any:
    """CTranslate2's TransformersConverter, adapted to the installed transformers: ctranslate2
    4.8 passes `dtype=` to `from_pretrained`, which transformers 4.55 (the optimum-habana
    range) forwards to the model's constructor (TypeError); there it is renamed `torch_dtype=`
    through the converter's own load_model hook."""
    from ctranslate2.converters import TransformersConverter  # noqa: PLC0415  optional: the peers extra

    class Converter(TransformersConverter):
        def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
            if "dtype" in kwargs and not takes_dtype():
                kwargs["torch_dtype"] = kwargs.pop("dtype")
            return super().load_model(model_class, model_name_or_path, **kwargs)

    return Converter
