"""A benchmark session: provisions devices, models and splits once and caches evaluations.

The CLI and the pytest plugin are two front doors onto this one object, so a device is
provisioned once, a model is loaded, set to its precision and graph-wrapped once per
(model, precision, graphs, device), a split is indexed once per dataset selection (rows and
clip headers, no audio: a run decodes its clips batch by batch, a data-parallel rank only its
shard's), and a config is evaluated once however many tests read its result.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TYPE_CHECKING, Any

from asrbench.config.settings import BenchConfig
from asrbench.devices import Device, get_device
from asrbench.errors import AsrbenchError, first_line
from asrbench.formats.model import ReferenceAgreement, Run, ShardInfo, computes_as_reference
from asrbench.measure.data import LoadedSplit, SplitIndex, decode_row, index_split, load_split
from asrbench.measure.distributed import merge_results, shard, shard_members, split_fingerprint
from asrbench.measure.engine import Evaluator, PreparedModel, needs_static_shapes
from asrbench.measure.metrics import whisper_normalizer_for
from asrbench.measure.models import hash_ahead, load, model_identity, model_limits
from asrbench.measure.reference import (
    REFERENCE_NAME,
    ReferenceRequest,
    agreement,
    audio_digest,
    reference_transcripts,
)
from asrbench.processes import keep_freed_memory, release_collections

if TYPE_CHECKING:  # pragma: no cover
    from asrbench.measure.distributed import ShardSpec, World


def _emulation_active() -> bool:
    emulation = sys.modules.get("asrbench.devices.emulation")
    return emulation is not None and emulation.is_active()


def quiet_transformers() -> None:
    """Silence library chatter that would bury the progress bars and the summary."""
    import transformers  # noqa: PLC0415  transformers: off the light paths

    transformers.logging.set_verbosity_error()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*attention mask.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


class Session:
    """Caches of everything that is expensive to build, keyed by what determines it."""

    def __init__(self, progress: bool = True, world: World | None = None,
                 shard: ShardSpec | None = None) -> None:
        self.progress = progress
        self.world = world  # a data-parallel run's rank; None (or size 1): this process alone
        self.shard = shard  # a scheduler shard of every split (asrbench run --shard); None: all
        self._devices: dict[tuple, Device] = {}
        self._models: dict[tuple, PreparedModel] = {}
        self._splits: dict[tuple, LoadedSplit] = {}
        self._indexes: dict[tuple, SplitIndex] = {}
        self._results: dict[tuple, Run] = {}
        quiet_transformers()
        keep_freed_memory()  # every pass of either door on the same allocator (processes.py)

    def device(self, config: BenchConfig) -> Device:
        """The provisioned device for a config (one per backend and backend options)."""
        key = (config.device, config.gaudi_config, config.sdp_on_bf16)
        if config.device != "hpu-emulated" and _emulation_active():
            raise AsrbenchError(
                f"{config.id}: this process runs the emulated Gaudi, which patches transformers "
                "and torch for the whole process; run other devices in a separate asrbench run")
        if key not in self._devices:
            self._devices[key] = get_device(config.device, gaudi_config=config.gaudi_config,
                                            sdp_on_bf16=config.sdp_on_bf16)
        device = self._devices[key]
        if config.graphs and not device.supports_graphs:
            raise AsrbenchError(f"--graphs is supported on HPU and CUDA only; the {device.kind} "
                                "backend "
                                "runs without graph capture (drop --graphs)")
        return device

    def model(self, config: BenchConfig) -> PreparedModel:
        """The loaded, precision-set, graph-wrapped model for a config."""
        device = self.device(config)
        key = (config.model, config.precision, config.graphs, id(device))
        if key not in self._models:
            self._models[key] = PreparedModel(load(config.model), device, config.precision,
                                              config.graphs)
            release_collections()  # the imports are done (processes.hold_collections)
        return self._models[key]

    def split(self, config: BenchConfig) -> LoadedSplit:
        """The decoded test split for a config's dataset selection (every clip in memory: for
        peers and tools; evaluate() decodes batch by batch from index())."""
        key = (config.dataset, config.dataset_config, config.split, config.text_column,
               config.max_duration, config.limit)
        if key not in self._splits:
            self._splits[key] = load_split(config.dataset, config.dataset_config, config.split,
                                           config.text_column, config.max_duration, config.limit,
                                           progress=self.progress)
        return self._splits[key]

    def index(self, config: BenchConfig) -> SplitIndex:
        """The test split's index (rows and clip headers, no audio) for a config."""
        key = (config.dataset, config.dataset_config, config.split, config.text_column,
               config.max_duration, config.limit)
        if key not in self._indexes:
            self._indexes[key] = index_split(config.dataset, config.dataset_config,
                                             config.split, config.text_column,
                                             config.max_duration, config.limit,
                                             progress=self.progress)
        return self._indexes[key]

    def evaluate(self, config: BenchConfig, passes: int) -> Run:
        """Evaluate a config (cached: a second call with the same config returns the same run),
        then check its transcripts against the stock reference where that applies."""
        key = (config, passes)
        if key not in self._results:
            prepared = self.model(config)
            split = self.index(config)
            if self.shard is None:
                result = self._evaluate(prepared, config, split, passes)
            else:
                result = self._evaluate_scheduler_shard(prepared, config, split, passes,
                                                        self.shard)
            # Every rank asks (one decodes, the others wait on its cache file, so no rank sits
            # at the next barrier while rank 0 decodes); rank 0 reports it.
            result.reference = self.reference_agreement(prepared, config, split, result)
            # which model this was, beyond its short name (the weights hashed once per process)
            result.model = model_identity(prepared.loaded)
            self._results[key] = result
        return self._results[key]

    def reference_agreement(self, prepared: PreparedModel, config: BenchConfig,
                            split: SplitIndex, result: Run) -> ReferenceAgreement | None:
        """How far the run's first N transcripts agree with stock transformers generate() in
        fp32 on CPU (decoded in a child process, cached); None for the reference setup itself
        (CPU, fp32, no static decoder: asrbench's CPU decoder is checked token for token
        against generate() by tests/test_decoding.py) or with --reference-utterances 0."""
        reference_setup = (computes_as_reference(prepared.device.kind, config.precision)
                           and not needs_static_shapes(prepared.device, config.graphs, config))
        count = min(config.reference_utterances, len(result.utterances))
        if reference_setup or count == 0:
            return None
        if self.progress:
            print(f"{config.id}: decoding the stock reference (transformers generate(), fp32, "
                  f"CPU) of the first {count} utterance(s)", file=sys.stderr, flush=True)
        try:
            # The run's first clips, decoded again (the run keeps no audio).
            rows = {row.id: row for row in split.rows}
            first = [decode_row(rows[u.id], split.max_duration) for u in result.utterances[:count]]
            request = ReferenceRequest.for_config(config, count,
                                                  audio_sha256=audio_digest(first))
            transcripts = reference_transcripts(request)
            run = {u.id: u.prediction for u in result.utterances[:count]}
            return agreement(run, transcripts, requested=config.reference_utterances)
        except (AsrbenchError, OSError) as exc:
            # The run's results are kept; the check that could not be made fails the gate.
            message = first_line(exc)
            print(f"{config.id}: WARNING agreement not checked: {message}", file=sys.stderr,
                  flush=True)
            return ReferenceAgreement(reference=REFERENCE_NAME,
                                      requested=config.reference_utterances, error=message)

    def _evaluate(self, prepared: PreparedModel, config: BenchConfig, split: SplitIndex,
                  passes: int, whole: SplitIndex | None = None) -> Run:
        if self.world is not None and self.world.size > 1:
            return self._evaluate_shard(prepared, config, split, passes, self.world, whole)
        return self._evaluate_split(prepared, config, split, passes, whole=whole)

    def _evaluate_scheduler_shard(self, prepared: PreparedModel, config: BenchConfig,
                                  split: SplitIndex, passes: int, spec: ShardSpec) -> Run:
        """One scheduler shard of the split (its rows chosen by shard_members, in split order),
        through the unchanged run (data-parallel ranks share the shard); the run keeps the
        unsharded config (so the merged shards have its id and baseline entry) and records
        the shard with what the merge needs."""
        ids = [row.id for row in split.rows]
        members = shard_members(ids, spec)
        if not members:
            raise AsrbenchError(f"{config.id}: {spec.label} is empty: the split has "
                                f"{len(ids)} usable utterance(s) for {spec.count} shards; use "
                                "fewer shards")
        part = SplitIndex(split.name, split.max_duration,
                          [row for row in split.rows if row.id in members], list(split.skipped))
        result = self._evaluate(prepared, config, part, passes, whole=split)
        positions = {row.id: row.position for row in split.rows}
        skipped = {(s.id, s.reason): s.position for s in split.skipped}
        result.shard = ShardInfo(
            index=spec.index, count=spec.count, source=spec.source,
            split_fingerprint=split_fingerprint(ids), split_utterances=len(ids),
            positions=[positions[u.id] for u in result.utterances],
            skipped_positions=[skipped.get((s.id, s.reason), positions.get(s.id, -1))
                               for s in result.dataset.skipped],
            latencies=list(result.timings.latencies),
            whisper_edits=list(whisper_edits(config, result, prepared)))
        return result

    def _evaluate_split(self, prepared: PreparedModel, config: BenchConfig, split: SplitIndex,
                        passes: int, barrier: Any = None, whole: SplitIndex | None = None
                        ) -> Run:
        """Evaluate on this process's device (a data-parallel rank: its shard)."""
        from tqdm.auto import tqdm  # noqa: PLC0415  tqdm.auto probes for a notebook: only where a bar is drawn

        evaluator = Evaluator(prepared, config, barrier=barrier)
        batches = -(-len(split.rows) // config.batch_size)
        total = evaluator.warmup_batches(batches) + batches * passes
        with tqdm(total=total, desc=config.id, unit="batch", disable=not self.progress,
                  leave=False) as bar:
            def advance(label: str, n: int) -> None:
                bar.set_postfix_str(label, refresh=False)
                bar.update(n)

            evaluator.progress = advance
            return evaluator.run(split, passes, whole=whole)

    def _evaluate_shard(self, prepared: PreparedModel, config: BenchConfig, split: SplitIndex,
                        passes: int, world: World, whole: SplitIndex | None = None) -> Run:
        """This rank's contiguous shard of the index through the unchanged engine (the rank
        decodes only its own clips), then every rank's results merged (each rank gets the
        same merged run; rank 0 reports it)."""
        count = len(split.rows)
        if count < world.size:
            raise AsrbenchError(f"{config.id}: {count} utterance(s) cannot be shared among "
                                f"{world.size} ranks (each needs one): use fewer processes "
                                "or a larger --limit")
        mine = shard(count, world.size, world.rank)
        world.connect(prepared.device)
        # Every rank counts the first batch of the whole split (not of its shard), so the
        # counters rank 0 reports are the ones a single process counts.
        local = self._evaluate_split(prepared, config, split.part(mine), passes,
                                     barrier=world.barrier, whole=whole or split)
        parts = world.all_gather(local)
        tokenizer = prepared.loaded.processor.tokenizer
        # Skipped rows in split order, as one process lists them: index skips by their row,
        # the ranks' decode failures by the row of the clip that failed.
        positions = {(s.id, s.reason): s.position for s in split.skipped}
        rows = {row.id: row.position for row in split.rows}
        return merge_results(config, parts,
                             getattr(tokenizer, "english_spelling_normalizer", None),
                             order=lambda s: positions.get((s.id, s.reason), rows.get(s.id, -1)))


def whisper_edits(config: BenchConfig, result: Run, prepared: PreparedModel) -> tuple[int, int]:
    """[word errors, words] of a run's utterances after Whisper's own normalizer (what its
    wer_normalized_whisper divides; references empty once normalized are left out, as there)."""
    import jiwer  # noqa: PLC0415  jiwer (rapidfuzz, click): only when scoring

    spelling = getattr(prepared.loaded.processor.tokenizer, "english_spelling_normalizer", None)
    normalize = whisper_normalizer_for(config.language, spelling)
    pairs = [(normalize(u.reference or "").strip(), normalize(u.prediction).strip())
             for u in result.utterances]
    kept = [(r, p) for r, p in pairs if r]
    if not kept:
        return 0, 0
    out = jiwer.process_words([r for r, _ in kept], [p for _, p in kept])
    return (out.substitutions + out.deletions + out.insertions,
            out.substitutions + out.deletions + out.hits)


def preflight(configs: list[BenchConfig]) -> None:
    """Check the settings a model limits, for every config, before the first one runs: a
    clip longer than the feature extractor's window would be cut silently, and a length cap
    beyond the decoder's positions fails minutes into a run. Reads only the model's config
    files (no weights). Starts the digests the loads will take first (models.hash_ahead):
    they read the weights on another core while this reads configs and imports."""
    for model in dict.fromkeys(config.model for config in configs):
        hash_ahead(model)
    seen: dict[str, tuple[float | None, int | None]] = {}
    for config in configs:
        if config.model not in seen:
            seen[config.model] = model_limits(config.model)
        window, positions = seen[config.model]
        if window is not None and config.max_duration > window:
            raise AsrbenchError(
                f"{config.id}: --max-duration {config.max_duration:g} s is beyond the "
                f"{window:g} s the model's feature extractor takes (longer clips would be cut "
                f"and scored as whole): use at most {window:g}")
        if positions is not None and config.generation_max_length > positions:
            raise AsrbenchError(
                f"{config.id}: --generation-max-length {config.generation_max_length} is "
                f"beyond the model's {positions} decoder positions: use at most {positions}")

