"""Does the static-shape decoder with a compiled decoder step close the gap to CTranslate2 on
long Hindi decodes on CPU? (asrbench's CPU decoder was 0.72x CTranslate2 there.)

Runs, interleaved in one process on the same clips (asrbench.measure.peers.run_peers):
  ctranslate2       CTranslate2 Whisper, batched greedy (faster-whisper's engine)
  asrbench          the CPU default: asrbench/measure/decoding.py GreedyDecoder (finished rows
                    dropped)
  static            StaticGreedyDecoder, eager (static KV cache, fixed batch)
  static-compiled   StaticGreedyDecoder with its decoder step under torch.compile (inductor)
and prints samples/s, the ratio of each to CTranslate2 and to asrbench's default, and whether
the transcripts are identical.

    python benchmarks/tools/cpu_static_compile.py [--dataset-config hi] [--limit 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import numpy as np
import torch

from asrbench.config.settings import build_configs
from asrbench.devices import get_device
from asrbench.measure.data import SAMPLE_RATE
from asrbench.measure.decoding import StaticGreedyDecoder, _Step, whisper_prompt
from asrbench.measure.engine import cut_after_eos
from asrbench.measure.models import load
from asrbench.measure.peers import PEERS, Peer, run_peers
from asrbench.measure.session import Session, quiet_transformers


class StaticPeer(Peer):
    """The static decoder on the CPU, eager."""

    name = "static"
    compile_step = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        model = self.prepared.model
        self.prompt = whisper_prompt(model.generation_config, self.config.language,
                                     self.config.task)
        graph = None
        if self.compile_step:
            def graph(module: torch.nn.Module) -> torch.nn.Module:
                # Only the decoder step: the question is the per-token cost of long decodes.
                if isinstance(module, _Step):
                    module.forward = torch.compile(module.forward)
                return module

            self.detail["compile"] = "torch.compile (inductor, default mode) on the decoder step"
        self.decoder = StaticGreedyDecoder(model, self.prompt, self.config.generation_max_length,
                                           self.config.batch_size, graph=graph)
        self.eos = model.generation_config.eos_token_id

    def transcribe(self, audio: list[np.ndarray], references: list[str]) -> list[str]:
        extractor = self.loaded.processor.feature_extractor
        tokenizer = self.loaded.processor.tokenizer
        size = self.config.batch_size
        rows: list[list[int]] = []
        for start in range(0, len(audio), size):
            chunk = audio[start:start + size]
            count = len(chunk)
            chunk = chunk + [chunk[-1]] * (size - count)  # static shapes: a full batch
            features = extractor(chunk, sampling_rate=SAMPLE_RATE,
                                 return_tensors="pt").input_features
            with torch.inference_mode(), self.autocast():
                out = self.decoder(features)
            rows += [cut_after_eos(r, len(self.prompt), self.eos) for r in out.tolist()[:count]]
        return [t.strip() for t in tokenizer.batch_decode(rows, skip_special_tokens=True)]


class CompiledStaticPeer(StaticPeer):
    """The static decoder with its decoder step compiled."""

    name = "static-compiled"
    compile_step = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-config", default="hi")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the rounds and ratios here")
    args = parser.parse_args(argv)
    quiet_transformers()
    PEERS.update({"static": StaticPeer, "static-compiled": CompiledStaticPeer})
    config = build_configs({"device": "cpu", "dataset_config": args.dataset_config,
                            "limit": args.limit}, [])[0]
    device = get_device("cpu")
    split = Session(progress=False).split(config)
    loaded = load(config.model)
    names = ("ctranslate2", "asrbench", "static", "static-compiled")
    results = run_peers(config, split, loaded, device, names, args.rounds,
                        progress=lambda m: print(f"  {m}", flush=True))
    rate = {r.name: len(split.utterances) / statistics.median(r.seconds)
            for r in results if not r.skipped}
    base = {r.name: r.predictions for r in results if not r.skipped}
    print(f"\n{config.id}: {len(split.utterances)} clips, {args.rounds} interleaved rounds, "
          f"{torch.get_num_threads()} threads")
    print(f"{'peer':<16} {'samples/s':>10} {'vs ctranslate2':>15} {'vs asrbench':>12}  transcripts")
    for r in results:
        if r.skipped:
            print(f"{r.name:<16} skipped: {r.skipped}")
            continue
        same = "identical" if base[r.name] == base["asrbench"] else "DIFFER"
        ct2 = rate[r.name] / rate["ctranslate2"] if "ctranslate2" in rate else float("nan")
        print(f"{r.name:<16} {rate[r.name]:>10.3f} {ct2:>14.2f}x "
              f"{rate[r.name] / rate['asrbench']:>11.2f}x"
              f"  {same}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"config": config.id, "rounds": {r.name: r.seconds for r in results},
                       "samples_per_second": rate, "detail": {r.name: r.detail for r in results}},
                      fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
