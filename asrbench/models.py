"""Load a sequence-to-sequence speech model and its processor from a model reference.

A reference is a Hub id (openai/whisper-small), a local transformers directory, or
`bundled:<name>` (the embedded default, converted once into the user cache by bundled.py).
Remote code stays off and only safetensors weights are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asrbench.bundled import BUNDLED_PREFIX, ensure_converted
from asrbench.errors import AsrbenchError, first_line


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
        return str(path), True
    if path.is_absolute() or reference.startswith((".", "~")) or reference.count("/") > 1:
        raise AsrbenchError(f"model directory {reference} does not exist")
    return reference, False


def load(reference: str) -> LoadedModel:
    """Load model (fp32 weights, eval mode, on CPU) and processor; the device moves it."""
    import torch
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    source, local = resolve(reference)
    # Remote code stays off: a model repository's Python never runs here.
    options = dict(local_files_only=local, trust_remote_code=False)
    try:
        processor = AutoProcessor.from_pretrained(source, **options)
        model = AutoModelForSpeechSeq2Seq.from_pretrained(
            source, torch_dtype=torch.float32, use_safetensors=True, **options)
    except (OSError, ValueError, EnvironmentError) as exc:
        where = "from the directory" if local else "from the Hugging Face Hub"
        raise AsrbenchError(
            f"could not load model {reference!r} {where}: {first_line(exc)}"
            + ("" if local else ". Offline? Use a local directory or bundled:whisper-base."))
    model.eval()
    return LoadedModel(model=model, processor=processor, reference=reference, path=source)
