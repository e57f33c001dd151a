"""The transcript reference: stock transformers generate(), fp32, on CPU, in its own process.

Every accelerated run (HPU graphs, CUDA graphs, bf16, an emulated Gaudi) is checked against
what unmodified transformers produces for the same first N utterances: the share of identical
transcripts and the WER of the run's transcripts with the reference's as truth.

The reference is never computed in the process under test. optimum-habana's
`adapt_transformers_to_gaudi()` patches transformers' generation and model classes for the
whole process, and an emulated Gaudi installs stub modules (habana_frameworks, ...) into it, so
a "reference" decoded there would share the very code it is meant to check. It is decoded
instead by `python -m asrbench.measure.reference` in a fresh interpreter whose environment hides the
GPUs and drops the emulator's PYTHONPATH entries (clean_child_env), and cached on disk under a
key that covers the request, the library versions and the model files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any, TypeGuard

from filelock import FileLock

from asrbench.config.settings import DEFAULT_REFERENCE_UTTERANCES, SETTING_NAMES, RunConfig
from asrbench.errors import AsrbenchError, first_line
from asrbench.formats.io import write_json_atomic
from asrbench.formats.model import Differing, ReferenceAgreement

# Version of the cached document's layout; load rejects any other.
REFERENCE_SCHEMA = 1
# Bumped when the decoding recipe in decode() changes, so old caches become misses.
RECIPE_VERSION = 1
REFERENCE_BATCH_SIZE = 8
MAX_DIFFERING = 50  # differing transcripts listed in an agreement (the count is always exact)
#: what the reference is, as an agreement names it
REFERENCE_NAME = "transformers generate(), fp32, CPU"
# PYTHONPATH entries containing this belong to the Gaudi emulator; the child must not see them.
EMULATION_PATH_MARKER = "asrbench/devices/emulation"
FAILURE = "reference decoding (stock transformers fp32 on CPU) failed"
# Set in the child: no GPU is visible, and torch does not autoload out-of-tree device backends
# (habana_frameworks registers one, which would load and patch torch on a Gaudi host).
CHILD_ENV = {"CUDA_VISIBLE_DEVICES": "", "TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}


@dataclass(frozen=True)
class ReferenceRequest:
    """What to decode for the reference: the run's model, data and decoding settings."""

    model: str  # model reference as BenchConfig.model (hub id, local dir, bundled:whisper-base)
    dataset: str  # hub id, Common Voice directory, or JSONL manifest
    dataset_config: str | None  # hub config / Common Voice locale
    split: str  # hub split / Common Voice <split>.tsv
    text_column: str  # reference text column for hub datasets
    max_duration: float  # clips this long or longer are skipped, as in the run
    utterances: int  # N: the first N usable utterances of the split
    language: str | None  # forced language (None: the model detects it)
    task: str  # "transcribe" or "translate"
    generation_max_length: int  # length cap of generate(), prompt included
    # sha256 of the ids and decoded audio the run saw (runner.audio_digest): the cache must miss
    # when the clips behind the same ids change; the child checks it against what it decodes
    audio_sha256: str | None = None

    @classmethod
    def for_config(cls, config: RunConfig, utterances: int = DEFAULT_REFERENCE_UTTERANCES,
                   audio_sha256: str | None = None) -> ReferenceRequest:
        """The request form of a config: its settings that decide the stock reference's
        transcripts (CONFIG_SETTINGS, by name), a local dataset path made absolute."""
        settings = config.settings()
        copied = {name: settings[name] for name in CONFIG_SETTINGS}
        dataset = config.dataset
        if Path(dataset).expanduser().exists():
            dataset = str(Path(dataset).expanduser().resolve())  # a local path, wherever run from
        return cls(**{**copied, "dataset": dataset,
                      "max_duration": float(config.max_duration)},
                   utterances=int(utterances), audio_sha256=audio_sha256)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceRequest:
        """Rebuild a request from to_dict()'s output (the child reads it this way)."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data and n != "audio_sha256"]
        if missing:
            raise AsrbenchError(f"reference request lacks {', '.join(missing)}")
        return cls(**{n: data[n] for n in names if n in data})

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    def key(self) -> str:
        """sha256 over the fields, torch/transformers versions and the local model's files."""
        payload = {
            "recipe": RECIPE_VERSION,
            "request": self.to_dict(),
            "versions": library_versions(),
            "model_files": model_fingerprint(self.model),
        }
        text = json.dumps(payload, sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: the RunConfig settings a ReferenceRequest holds: those that decide stock generate()'s
#: transcripts (tests/test_one_config.py checks every setting is here or in NOT_IN_REQUEST)
CONFIG_SETTINGS = tuple(f.name for f in fields(ReferenceRequest) if f.name in SETTING_NAMES)
#: the RunConfig settings a reference request leaves out, and why
NOT_IN_REQUEST = {
    "precision": "the reference decodes in fp32", "device": "the reference decodes on the CPU",
    "batch_size": f"the reference decodes batches of {REFERENCE_BATCH_SIZE}",
    "graphs": "the run's decoder, not stock generate()",
    "sdp_on_bf16": "the run's arithmetic (bf16), not the reference's",
    "gaudi_config": "the run's device", "world_size": "the run's ranks",
    "eos_check_every": "the run's decoder loop", "ignore_eos": "the run's decoder loop",
    "warmup_batches": "the run's timing", "counters": "the run's counted pass",
    "counters_only": "the run's passes",
    "limit": "the request's utterances: the first N of the run's (N <= limit)",
    "reference_utterances": "the request's utterances: min(reference_utterances, the run's)",
}


def library_versions() -> dict[str, str]:
    """Installed torch and transformers versions (from package metadata: no imports)."""
    versions = {}
    for name in ("torch", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def model_fingerprint(model: str) -> dict[str, Any] | None:
    """Resolved path, size and mtime of every file of a local model; None for a hub id.

    All top-level files count, not only the weights: a changed generation config or
    tokenizer changes transcripts as much as changed weights do. A hub id is keyed by its
    name only (its revision is whatever the child downloads or finds cached).
    """
    from asrbench.measure.models import resolve  # noqa: PLC0415  loads numpy (measure.models)

    source, local = resolve(model)
    if not local:
        return None
    root = Path(source).resolve()
    files = []
    for path in sorted(root.iterdir()):
        if path.is_file():
            stat = path.stat()
            files.append([path.name, stat.st_size, stat.st_mtime_ns])
    return {"path": str(root), "files": files}


def agreement(run: dict[str, str], reference: dict[str, str],
              requested: int | None = None) -> ReferenceAgreement:
    """Compare the run's transcripts (id -> text) with the reference's over the ids they share:
    the agreement a report stores (`requested`: the utterances the run's settings asked for).

    WER = (substitutions + deletions + insertions) / reference words, summed over utterances.
    A reference that is empty after strip (the model emitted nothing) cannot be scored by
    jiwer: it counts as identical with 0 errors against an empty run transcript, else as
    errors equal to the run transcript's word count (all insertions). If the reference holds
    no words at all, WER is 0.0 when every transcript is identical and 1.0 otherwise.
    """
    import jiwer  # noqa: PLC0415  jiwer (rapidfuzz, click): only when scoring

    ids = [i for i in reference if i in run]
    if not ids:
        raise AsrbenchError(
            f"the run and the reference share no utterance id (run: {len(run)} ids, "
            f"reference: {len(reference)}): were they decoded from the same split?")
    identical, errors, words = 0, 0, 0
    truths, hypotheses = [], []
    differing: list[Differing] = []
    for i in ids:
        truth, hypothesis = reference[i].strip(), run[i].strip()
        if truth == hypothesis:
            identical += 1
        elif len(differing) < MAX_DIFFERING:
            differing.append(Differing(id=i, reference_transcript=truth,
                                       run_transcript=hypothesis))
        if truth:
            truths.append(truth)
            hypotheses.append(hypothesis)
        else:
            errors += len(hypothesis.split())
    if truths:
        out = jiwer.process_words(truths, hypotheses)
        errors += out.substitutions + out.deletions + out.insertions
        words += out.hits + out.substitutions + out.deletions
    if words:
        wer = errors / words
    else:
        wer = 0.0 if identical == len(ids) else 1.0
    return ReferenceAgreement(reference=REFERENCE_NAME, requested=requested,
                              utterances=len(ids), identical=identical,
                              share=identical / len(ids), wer=float(wer), differing=differing)


def clean_child_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ for the reference child: no GPUs, no emulator directories on PYTHONPATH."""
    env = dict(os.environ if environ is None else environ)
    # An emulated Gaudi puts its stub packages (habana_frameworks, ...) on PYTHONPATH; in the
    # child they would be imported instead of, or on top of, the stock stack.
    kept = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep)
            if entry and EMULATION_PATH_MARKER not in Path(entry).as_posix()]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    env.update(CHILD_ENV)
    if int(env.get("WORLD_SIZE", "1") or 1) > 1:
        # A rank of a data-parallel run (torchrun sets OMP_NUM_THREADS=1): the other ranks wait
        # for this decode, so it may use the host's cores.
        env["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)
    return env


def cache_path(key: str, cache_dir: Path | None = None) -> Path:
    """<cache_dir or $ASRBENCH_CACHE or ~/.cache/asrbench>/reference/<key>.json."""
    from asrbench.measure.bundled import cache_root  # noqa: PLC0415  loads numpy (measure.bundled)

    return Path(cache_dir if cache_dir is not None else cache_root()) / "reference" / f"{key}.json"


def document_problem(document: Any, key: str) -> str | None:
    """Why a reference document cannot be trusted for this key, or None when it can."""
    if not isinstance(document, dict):
        return "not a JSON object"
    if document.get("schema") != REFERENCE_SCHEMA:
        return f"schema is {document.get('schema')!r}, expected {REFERENCE_SCHEMA}"
    if document.get("key") != key:
        return "key does not match the request"
    ids, transcripts = document.get("ids"), document.get("transcripts")
    if not _strings(ids):
        return "ids is not a list of strings"
    if not _strings(transcripts):
        return "transcripts is not a list of strings"
    if len(ids) != len(transcripts):
        return f"{len(ids)} ids but {len(transcripts)} transcripts"
    if len(set(ids)) != len(ids):
        return "ids repeat"
    return None


def _strings(values: object) -> TypeGuard[list[str]]:
    return isinstance(values, list) and all(isinstance(v, str) for v in values)


def load_cached(path: Path, key: str) -> dict[str, str] | None:
    """id -> transcript from a valid cache file; None (with a warning if damaged) otherwise."""
    if not path.is_file():
        return None
    problem: str | None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem = f"unreadable JSON ({first_line(exc)})"
    else:
        problem = document_problem(document, key)
    if problem:
        warnings.warn(f"{path}: ignoring cached reference transcripts: {problem}; recomputing",
                      stacklevel=3)
        return None
    return dict(zip(document["ids"], document["transcripts"]))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_child(request: ReferenceRequest, key: str, timeout: float) -> dict[str, Any]:
    """Decode the request in a fresh interpreter; return its validated document."""
    with tempfile.TemporaryDirectory(prefix="asrbench-reference-") as tmp:
        request_file, out_file = Path(tmp) / "request.json", Path(tmp) / "out.json"
        request_file.write_text(json.dumps({"key": key, "request": request.to_dict()}),
                                encoding="utf-8")
        command = [sys.executable, "-m", "asrbench.measure.reference",
                   "--request", str(request_file), "--out", str(out_file)]
        try:
            done = subprocess.run(command, env=clean_child_env(), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AsrbenchError(f"{FAILURE}: no result after {timeout:g} s") from None
        if done.returncode != 0:
            raise AsrbenchError(
                f"{FAILURE}: {_last_line(done.stderr) or f'exit status {done.returncode}'}")
        try:
            document = json.loads(out_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AsrbenchError(f"{FAILURE}: no readable output ({first_line(exc)})") from None
    problem = document_problem(document, key)
    if problem:
        raise AsrbenchError(f"{FAILURE}: its output is invalid: {problem}")
    return document


def reference_transcripts(request: ReferenceRequest, cache_dir: Path | None = None,
                          timeout: float = 3600) -> dict[str, str]:
    """id -> transcript of stock generate(), fp32 on CPU, decoded in a child process.

    Cached on disk per request.key(); a damaged cache file is ignored and recomputed.
    """
    key = request.key()
    path = cache_path(key, cache_dir)
    cached = load_cached(path, key)
    if cached is not None:
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    # Ranks of a distributed run ask for the same reference at once: one decodes, the others
    # wait and read its file.
    with FileLock(str(path) + ".lock"):
        cached = load_cached(path, key)
        if cached is not None:
            return cached
        document = run_child(request, key, timeout)
        write_json_atomic(path, document)
    return dict(zip(document["ids"], document["transcripts"]))


def audio_digest(utterances: Sequence[Any]) -> str:
    """sha256 over utterance ids and decoded samples: the reference cache must miss when the
    audio behind the same ids changes, and the child checks it decoded what the run saw."""
    import numpy as np  # noqa: PLC0415  numpy: off the light paths

    digest = hashlib.sha256()
    for utterance in utterances:
        digest.update(utterance.id.encode("utf-8") + b"\0")
        digest.update(np.ascontiguousarray(utterance.audio, dtype=np.float32).tobytes())
    return digest.hexdigest()


def language_kwargs(generation_config: Any, language: str | None, task: str) -> dict[str, str]:
    """generate()'s language/task arguments: only multilingual Whisper configs accept them."""
    if not getattr(generation_config, "lang_to_id", None):
        return {}
    return {"language": language, "task": task} if language else {"task": task}


def decode(request: ReferenceRequest) -> tuple[list[str], list[str]]:
    """(ids, transcripts) of stock generate(), fp32 on CPU, greedy; run only in the child."""
    from asrbench.measure.data import load_split  # noqa: PLC0415  loads numpy (measure.data)
    from asrbench.measure.decoding import length_kwargs  # noqa: PLC0415  loads torch (measure.decoding)
    from asrbench.measure.features import model_inputs  # noqa: PLC0415  loads numpy (measure.features)

    split = load_split(request.dataset, request.dataset_config, request.split,
                       request.text_column, request.max_duration, limit=request.utterances,
                       progress=False)
    if request.audio_sha256 is not None and audio_digest(split.utterances) != request.audio_sha256:
        raise AsrbenchError("the clips decoded for the reference differ from the ones the run "
                            "evaluated (the dataset changed in between?)")
    import torch  # noqa: PLC0415  torch: off the light paths

    from asrbench.measure.models import load  # noqa: PLC0415  loads numpy (measure.models)

    cpu = torch.device("cpu")
    loaded = load(request.model)
    model = loaded.model.to(device=cpu, dtype=torch.float32).eval()
    extractor, tokenizer = loaded.processor.feature_extractor, loaded.processor.tokenizer
    lang = language_kwargs(model.generation_config, request.language, request.task)
    utterances = split.utterances
    transcripts: list[str] = []
    # autocast is off in a fresh process already; disabling it states the fp32 contract.
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        for start in range(0, len(utterances), REFERENCE_BATCH_SIZE):
            chunk = utterances[start:start + REFERENCE_BATCH_SIZE]
            inputs = model_inputs(extractor, model, [u.audio for u in chunk], static=False)
            inputs = {k: v.to(device=cpu, dtype=torch.float32) if v.is_floating_point() else v
                      for k, v in inputs.items()}
            out = model.generate(**inputs, do_sample=False, num_beams=1, **lang,
                                 **length_kwargs(model.generation_config,
                                                 request.generation_max_length))
            out = out if torch.is_tensor(out) else out.sequences
            texts = tokenizer.batch_decode(out, skip_special_tokens=True)
            transcripts += [t.strip() for t in texts]
    return [u.id for u in utterances], transcripts


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point: decode --request's reference and write the document to --out."""
    # Before torch is imported: a child started by hand must be isolated the same way.
    os.environ.update(CHILD_ENV)
    parser = argparse.ArgumentParser(
        prog="python -m asrbench.measure.reference",
        description="Decode reference transcripts with stock transformers, fp32, on CPU.")
    parser.add_argument("--request", required=True, type=Path,
                        help='JSON file {"key": ..., "request": ReferenceRequest fields}')
    parser.add_argument("--out", required=True, type=Path, help="where to write the document")
    args = parser.parse_args(argv)

    try:
        spec = json.loads(args.request.read_text(encoding="utf-8"))
        request = ReferenceRequest.from_dict(spec["request"])
        ids, transcripts = decode(request)
        write_json_atomic(args.out, {
            "schema": REFERENCE_SCHEMA,
            "key": spec["key"],
            "request": request.to_dict(),
            "ids": ids,
            "transcripts": transcripts,
            "environment": _child_environment(),
        })
    except AsrbenchError as exc:
        # One line on stderr: the parent repeats the last line in its own error.
        print(first_line(exc), file=sys.stderr)
        return 2
    return 0


def _child_environment() -> dict[str, str]:
    import torch  # noqa: PLC0415  torch: off the light paths
    import transformers  # noqa: PLC0415  transformers: off the light paths

    return {"torch": torch.__version__, "transformers": transformers.__version__}


if __name__ == "__main__":
    sys.exit(main())
