"""Load a sequence-to-sequence speech model and its processor from a model reference.

A reference is a Hub id (openai/whisper-small), a local transformers directory, or
`bundled:<name>` (the embedded default, converted once into the user cache by bundled.py).
Remote code stays off and only safetensors weights are accepted.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asrbench.errors import AsrbenchError, first_line
from asrbench.formats.model import ModelIdentity
from asrbench.measure.bundled import BUNDLED_PREFIX, converted_directory, ensure_converted
from asrbench.measure.features import WHISPER, is_whisper
from asrbench.measure.hashing import ahead, once, sha256_files
from asrbench.measure.reach import hub_offline_requested, hub_reachable


@dataclass
class LoadedModel:
    """A model ready for generate(), with what the engine needs to drive it."""

    model: Any  # transformers PreTrainedModel (possibly graph-wrapped by the device)
    processor: Any  # feature extractor + tokenizer
    reference: str  # what the user asked for
    path: str  # where the weights came from (cache dir, local dir, or hub id)


def resolve(reference: str) -> tuple[str, bool]:
    """Map a model reference to (path or hub id, is_local)."""
    if reference.startswith(BUNDLED_PREFIX):
        return str(ensure_converted(reference[len(BUNDLED_PREFIX):])), True
    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise AsrbenchError(f"{path} is not a transformers model directory (no config.json)")
        check_model_directory(path)
        return str(path), True
    if path.exists():  # a file (e.g. the folder's config.json) where a folder is meant
        raise AsrbenchError(f"--model {reference} is a file, not a model directory: give the "
                            f"folder that holds config.json ({path.parent})")
    if path.is_absolute() or reference.startswith((".", "~")) or reference.count("/") > 1:
        raise AsrbenchError(f"model directory {reference} does not exist")
    return reference, False


#: the largest safetensors header asrbench reads (the format's own limit is 100 MB)
MAX_SAFETENSORS_HEADER = 100_000_000


def _read_json(path: Path, directory: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AsrbenchError(f"model directory {directory}: {path.name} cannot be read "
                            f"({getattr(exc, 'strerror', None) or first_line(exc)})") from None


def _check_safetensors(file: Path, directory: Path) -> None:
    """A safetensors file whose header reads and whose tensors all lie inside the file (the
    format: 8 bytes of header length, a JSON header, the tensors' bytes); read without torch,
    in milliseconds. A truncated or random file is one line naming it."""
    where = f"model directory {directory}: {file.name}"
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            head = fh.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if length < 2 or length > MAX_SAFETENSORS_HEADER or length > size - 8:
                raise AsrbenchError(f"{where} is not a safetensors file or is truncated "
                                    f"({size} bytes; re-download or re-save the weights)")
            header = json.loads(fh.read(length))
    except OSError as exc:
        raise AsrbenchError(f"{where} cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, ValueError):
        raise AsrbenchError(f"{where} is not a safetensors file (its header is not valid "
                            "JSON): re-download or re-save the weights") from None
    if not isinstance(header, dict):
        raise AsrbenchError(f"{where} is not a safetensors file (its header is not a table)")
    ends = [t.get("data_offsets", [0, 0])[1] for k, t in header.items()
            if k != "__metadata__" and isinstance(t, dict)]
    needed = 8 + length + max([e for e in ends if isinstance(e, int)], default=0)
    if needed > size:
        raise AsrbenchError(f"{where} is truncated: {size} bytes, its header describes "
                            f"{needed}; re-download or re-save the weights")


def check_model_directory(directory: Path) -> None:
    """Refuse, before anything loads, a local model folder that cannot work, in one line:
    weights missing, truncated or not safetensors; no feature extractor settings; no
    tokenizer files; a model that wants more or fewer mel bins than its extractor makes."""
    directory = Path(directory)
    config = _read_json(directory / "config.json", directory)
    files = weight_files(directory)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise AsrbenchError(f"model directory {directory}: {WEIGHTS_INDEX} names "
                            f"{len(missing)} missing weight file(s), e.g. {missing[0]}")
    if not files:
        others = sorted(p.name for p in directory.glob("*.bin")) + sorted(
            p.name for p in directory.glob("*.pt"))
        raise AsrbenchError(f"model directory {directory} has no {SINGLE_WEIGHTS} (nor "
                            f"{WEIGHTS_INDEX})"
                            + (f"; {others[0]} is not read: asrbench loads safetensors only, "
                               "re-save with save_pretrained(safe_serialization=True)"
                               if others else ""))
    for file in files:
        _check_safetensors(file, directory)
    extractor_file = directory / "preprocessor_config.json"
    if not extractor_file.is_file():
        raise AsrbenchError(f"model directory {directory} has no preprocessor_config.json (the "
                            "feature extractor's settings): save the processor with the model")
    extractor = _read_json(extractor_file, directory)
    names = {p.name for p in directory.iterdir()}
    has_tokenizer = ("tokenizer.json" in names or "vocab.txt" in names
                     or any(n.endswith(".model") for n in names)
                     or ("vocab.json" in names and ("merges.txt" in names
                                                    or config.get("model_type") != "whisper")))
    if not has_tokenizer:
        raise AsrbenchError(f"model directory {directory} has no tokenizer files (tokenizer.json, "
                            "or vocab.json with merges.txt): save the processor with the model")
    bins = config.get("num_mel_bins") or config.get("input_feat_per_channel")
    made = extractor.get("feature_size")
    if isinstance(bins, int) and isinstance(made, int) and bins != made:
        raise AsrbenchError(f"model directory {directory}: the model takes {bins} mel bins "
                            f"(config.json) but its feature extractor makes {made} "
                            "(preprocessor_config.json feature_size): the two files come from "
                            "different models")


def _source_options(reference: str) -> tuple[str, bool, dict[str, Any]]:
    """(path or hub id, is local, from_pretrained options). A hub model already in the local
    cache loads from it; one that is not, with the Hub out of reach, fails at once with one
    line (instead of minutes of retries)."""
    from transformers import AutoConfig  # noqa: PLC0415  transformers: off the light paths

    source, local = resolve(reference)
    options: dict[str, Any] = dict(local_files_only=local, trust_remote_code=False)
    if local:
        return source, local, options
    try:
        AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=False)
        return source, local, {**options, "local_files_only": True}
    except (OSError, ValueError):
        pass
    if hub_offline_requested():
        raise AsrbenchError(f"model {reference!r} is not in the local Hugging Face cache and "
                            "offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE): "
                            "download it first, or use a local directory or "
                            "bundled:whisper-base")
    if not hub_reachable():
        raise AsrbenchError(f"model {reference!r} is not in the local Hugging Face cache and the "
                            "Hub cannot be reached: connect, or use a local directory or "
                            "bundled:whisper-base")
    return source, local, options


def takes_dtype() -> bool:
    """Whether this transformers names the weights' dtype `dtype=` (4.56 and later; 5.x
    deprecates `torch_dtype=`) rather than `torch_dtype=` (4.55, which optimum-habana needs and
    which forwards an unknown `dtype=` to the model's constructor)."""
    import transformers  # noqa: PLC0415  transformers: off the light paths

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return (major, minor) >= (4, 56)


def dtype_option(dtype: Any) -> dict[str, Any]:
    """`from_pretrained`'s dtype keyword for the installed transformers."""
    return {"dtype" if takes_dtype() else "torch_dtype": dtype}


def load(reference: str) -> LoadedModel:
    """Load model (fp32 weights, eval mode, on CPU) and processor; the device moves it."""
    import torch  # noqa: PLC0415  torch: off the light paths
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor  # noqa: PLC0415  transformers: off the light paths

    # Remote code stays off: a model repository's Python never runs here.
    source, local, options = _source_options(reference)
    try:
        processor = AutoProcessor.from_pretrained(source, **options)
        model = AutoModelForSpeechSeq2Seq.from_pretrained(
            source, **dtype_option(torch.float32), use_safetensors=True, **options)
    except (OSError, ValueError) as exc:
        where = "from the directory" if local else "from the Hugging Face Hub"
        raise AsrbenchError(
            f"could not load model {reference!r} {where}: {first_line(exc)}"
            + ("" if local else ". Offline? Use a local directory or bundled:whisper-base.")
        ) from None
    model.eval()
    complete_whisper_generation(model, processor)
    return LoadedModel(model=model, processor=processor, reference=reference, path=source)


#: the smallest multilingual Whisper vocabulary: English-only models have 51864 tokens
#: (openai/whisper's `is_multilingual = n_vocab >= 51865`)
MULTILINGUAL_VOCAB = 51865


def complete_whisper_generation(model: Any, processor: Any) -> None:
    """Give a Whisper loaded without generation_config.json the language and task tables.

    Without that file transformers builds the generation config from config.json, which has no
    `lang_to_id`, `task_to_id` or `no_timestamps_token_id`: generate() and asrbench's decoders
    would then not force --language/--task at all (the model guesses the language) while the
    report says they were. The tables come from the tokenizer's own special tokens
    (`<|en|>` ..., `<|transcribe|>`, `<|translate|>`, `<|notimestamps|>`), so the prompt is the
    one the same weights get with their generation config. An English-only Whisper (a
    vocabulary under MULTILINGUAL_VOCAB) gets no language table: it has no language or task in
    its prompt, and features.check_settings refuses another language or task for it."""
    generation = getattr(model, "generation_config", None)
    tokenizer = getattr(processor, "tokenizer", None)
    if generation is None or tokenizer is None or not is_whisper(model):
        return
    vocab_size = getattr(model.config, "vocab_size", 0) or 0
    no_timestamps = getattr(generation, "no_timestamps_token_id", None) is None
    tables = not getattr(generation, "lang_to_id", None) and vocab_size >= MULTILINGUAL_VOCAB
    if not (no_timestamps or tables):
        return  # complete already (a generation_config.json): the vocabulary is not read
    vocab = tokenizer.get_vocab()  # a dict of every token (Whisper: 51865), made per call
    if no_timestamps and "<|notimestamps|>" in vocab:
        generation.no_timestamps_token_id = vocab["<|notimestamps|>"]
    if not tables:
        return
    from transformers.models.whisper.tokenization_whisper import LANGUAGES  # noqa: PLC0415  transformers: off the light paths

    languages = {f"<|{code}|>": vocab[f"<|{code}|>"] for code in LANGUAGES
                 if f"<|{code}|>" in vocab}
    tasks = {task: vocab[f"<|{task}|>"] for task in ("transcribe", "translate")
             if f"<|{task}|>" in vocab}
    if languages and tasks:
        generation.lang_to_id = languages
        generation.task_to_id = tasks
        generation.is_multilingual = True


#: the weight files from_pretrained(use_safetensors=True) reads from a directory, in its order
#: of preference: the single file, else the shards its index lists (transformers'
#: SAFE_WEIGHTS_NAME and SAFE_WEIGHTS_INDEX_NAME)
SINGLE_WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"


def weight_files(directory: str | Path) -> list[Path]:
    """The *.safetensors files the model loads from `directory`, in name order: model.safetensors
    where it exists, else the shards model.safetensors.index.json lists ([] where neither
    exists). Other *.safetensors files in the folder are not loaded. An index that cannot be
    read, has no weight_map or names a file outside the folder is refused in one line."""
    directory = Path(directory)
    if (directory / SINGLE_WEIGHTS).is_file():
        return [directory / SINGLE_WEIGHTS]
    index = directory / WEIGHTS_INDEX
    if not index.is_file():
        return []
    weight_map = _read_json(index, directory)
    weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
    if not isinstance(weight_map, dict):
        raise AsrbenchError(f"model directory {directory}: {index.name} has no weight_map")
    shards = set(weight_map.values())
    if not all(isinstance(name, str) and Path(name).name == name for name in shards):
        raise AsrbenchError(f"model directory {directory}: {index.name} names a weight file "
                            "outside the folder")
    return [directory / name for name in sorted(shards)]


def loaded_weight_files(directory: str | Path) -> list[Path]:
    """weight_files(directory), or [] where its index cannot be used (identity is then
    unknown rather than an error)."""
    try:
        return weight_files(directory)
    except AsrbenchError:
        return []


def weights_digest(directory: str | Path) -> str | None:
    """sha256 over the weight files the model loads (loaded_weight_files), in name order, read
    in 8 MiB chunks; None where there are none or they cannot be read. For one file or a
    complete set of shards this is the digest over all *.safetensors files in name order that
    earlier versions recorded, so identities stay the same. Hashed once per process (whisper-
    base: 145 MB), often ahead of need (hash_ahead)."""
    def compute() -> str | None:
        files = loaded_weight_files(directory)
        try:
            return sha256_files(files) if files else None
        except OSError:
            return None

    return once(("weights", str(Path(directory).resolve())), compute)


def hash_ahead(reference: str) -> threading.Thread | None:
    """Start the digests loading `reference` will take (the bundled model's source package and
    converted weights, a local folder's weights) on a thread of their own, to run beside the
    imports that come first (measure.hashing). Nothing for a Hub id, whose files are found
    only when it loads, or a bundled model not converted yet. The thread, where one started."""
    if reference.startswith(BUNDLED_PREFIX):
        name = reference[len(BUNDLED_PREFIX):]

        def bundled() -> None:
            directory = converted_directory(name)
            if directory is not None:
                weights_digest(directory)

        return ahead(bundled)
    path = Path(reference).expanduser()
    return ahead(lambda: weights_digest(path)) if path.is_dir() else None


def stated_model_type(reference: str) -> str | None:
    """The `model_type` a model's config.json states, read without importing transformers'
    model code: WHISPER for a bundled model (every one is a Whisper checkpoint), the file's
    field for a local folder or a Hub model already in the local cache; None where it cannot be
    told (not cached, unreadable: loading the model reports that, in one line)."""
    if reference.startswith(BUNDLED_PREFIX):
        return WHISPER
    path = Path(reference).expanduser()
    if path.is_dir():
        config: object = path / "config.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415  huggingface_hub: only for Hub models

            config = try_to_load_from_cache(reference, "config.json")
        except Exception:  # an id the cache helper rejects: nothing to read
            return None
        if not isinstance(config, str):
            return None
    try:
        stated = _read_json(Path(str(config)), Path(str(config)).parent).get("model_type")
    except (AsrbenchError, AttributeError):  # unreadable, or not a JSON object
        return None
    return stated if isinstance(stated, str) else None


def _snapshot_directory(loaded: LoadedModel) -> Path | None:
    """The local directory the weights were read from: the path itself, or for a Hub id the
    snapshot in the Hugging Face cache (None where it cannot be found)."""
    path = Path(loaded.path).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415  huggingface_hub: only for Hub models

        config = try_to_load_from_cache(loaded.path, "config.json")
    except Exception:  # an id the cache helper rejects: no local snapshot to name
        return None
    return Path(config).parent if isinstance(config, str) else None


def model_identity(loaded: LoadedModel) -> ModelIdentity:
    """Which model was loaded: the reference given, where it resolved to, a Hub model's
    commit (its `.../snapshots/<commit>/` directory) and the sha256 of its weight files."""
    directory = _snapshot_directory(loaded)
    revision = None
    if directory is not None and directory.parent.name == "snapshots":
        revision = directory.name
    return ModelIdentity(reference=loaded.reference, source=loaded.path, revision=revision,
                         weights_sha256=weights_digest(directory) if directory else None)


def model_limits(reference: str) -> tuple[float | None, int | None]:
    """(seconds of audio the feature extractor takes, decoder positions) from the model's
    config files, without loading weights; None where the model does not say."""
    from transformers import AutoConfig, AutoFeatureExtractor  # noqa: PLC0415  transformers: off the light paths

    source, local, options = _source_options(reference)
    try:
        config = AutoConfig.from_pretrained(source, **options)
        extractor = AutoFeatureExtractor.from_pretrained(source, **options)
    except (OSError, ValueError) as exc:
        where = "from the directory" if local else "from the Hugging Face Hub"
        raise AsrbenchError(
            f"could not read model {reference!r} {where}: {first_line(exc)}") from None
    window = getattr(extractor, "chunk_length", None)
    positions = getattr(config, "max_target_positions", None)
    return (float(window) if window else None), (int(positions) if positions else None)
