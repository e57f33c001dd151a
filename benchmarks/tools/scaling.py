"""Peak memory and wall time of `asrbench run` as the split grows (issue 24).

Builds a tiny random Whisper (transformers WhisperConfig at toy sizes, with the bundled
model's tokenizer, feature extractor and generation config), writes JSONL manifests of N clips
by repeating the embedded corpus's English clips, and runs `asrbench run` on each in a fresh
process. Prints, per size: the child's peak RSS (os.wait4), the report's
timings.peak_host_rss_bytes (the main process alone), the wall time and the feature-extraction
seconds; then the growth of peak RSS per clip between the smallest and the largest size.
Target: under 0.1 MiB per clip.

    .venv/bin/python benchmarks/tools/scaling.py --sizes 40 400 2000

Research tool, not a test: numbers depend on the machine; docs/performance.md records runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "asrbench" / "corpus" / "commonvoice-mini" / "en"
MIB = 1024 * 1024


def tiny_whisper(directory: Path) -> Path:
    """A randomly initialised Whisper of toy sizes with the bundled model's processor files."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    from asrbench.measure.bundled import ensure_converted

    bundled = ensure_converted(progress=False)
    processor = WhisperProcessor.from_pretrained(bundled)
    source = WhisperConfig.from_pretrained(bundled)
    config = WhisperConfig(
        vocab_size=source.vocab_size, num_mel_bins=source.num_mel_bins, d_model=64,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=source.max_source_positions,
        max_target_positions=source.max_target_positions,
        decoder_start_token_id=source.decoder_start_token_id, eos_token_id=source.eos_token_id,
        pad_token_id=source.pad_token_id, bos_token_id=source.bos_token_id)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig.from_pretrained(bundled)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def manifest(path: Path, clips: int) -> Path:
    """A JSONL manifest of `clips` rows cycling through the corpus's English clips."""
    with open(CORPUS / "test.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    with open(path, "w", encoding="utf-8") as out:
        for number in range(clips):
            row = rows[number % len(rows)]
            out.write(json.dumps({"id": f"clip{number:05d}",
                                  "audio_filepath": str(CORPUS / "clips" / row["path"]),
                                  "text": row["sentence"]}) + "\n")
    return path


def run_once(model: Path, data: Path, report: Path, passes: int) -> dict:
    """One `asrbench run` in a fresh process: its peak RSS, wall time and report timings."""
    command = [sys.executable, "-m", "asrbench", "run", "--model", str(model), "--dataset",
               str(data), "--device", "cpu", "--language", "en", "--passes", str(passes),
               "--generation-max-length", "16", "--reference-utterances", "0",
               "--no-progress", "--report", str(report)]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest yet
    wall = time.perf_counter() - start
    stderr = child.stderr.read() if child.stderr else ""
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"asrbench run failed ({child.returncode}):\n{stderr[-3000:]}")
    timings = json.loads(report.read_text())["runs"][0]["timings"]
    return {"peak_rss_mib": usage.ru_maxrss / 1024, "wall_s": wall,
            "main_rss_mib": (timings.get("peak_host_rss_bytes") or 0) / MIB,
            "features_s": timings.get("feature_extraction_seconds") or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 400, 2000])
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asrbench-scaling-") as tmp:
        work = Path(tmp)
        model = tiny_whisper(work / "tiny-whisper")
        results = {}
        print(f"{'clips':>6} {'peak RSS MiB':>13} {'main RSS MiB':>13} {'wall s':>8} "
              f"{'features s':>11}", flush=True)
        for size in args.sizes:
            data = manifest(work / f"clips-{size}.jsonl", size)
            got = results[size] = run_once(model, data, work / f"report-{size}.json",
                                           args.passes)
            print(f"{size:>6} {got['peak_rss_mib']:>13.1f} {got['main_rss_mib']:>13.1f} "
                  f"{got['wall_s']:>8.1f} {got['features_s']:>11.1f}", flush=True)
    small, large = min(results), max(results)
    if large > small:
        growth = ((results[large]["peak_rss_mib"] - results[small]["peak_rss_mib"])
                  / (large - small))
        print(f"growth: {growth:.3f} MiB per clip between {small} and {large} clips "
              f"(target < 0.1)")


if __name__ == "__main__":
    main()
