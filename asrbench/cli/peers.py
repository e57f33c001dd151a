"""`asrbench peers`: time the asrbench engine against the loops users would otherwise run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from asrbench.cli import common
from asrbench.cli.common import say
from asrbench.config.options import run_overrides
from asrbench.config.resolve import resolve
from asrbench.config.settings import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, PRECISIONS
from asrbench.devices import DEVICE_CHOICES, get_device
from asrbench.errors import AsrbenchError
from asrbench.formats.environment import environment
from asrbench.formats.io import write_json_atomic
from asrbench.formats.model import dump
from asrbench.render.peers import markdown, table

HELP = """\
Time the asrbench engine against the evaluation loops users would otherwise run, on the same
model, clips, precision and greedy settings, interleaved in one process:
  trainer      transformers Seq2SeqTrainer.predict(predict_with_generate) (the seed's loop)
  pipeline     transformers pipeline("automatic-speech-recognition", batch_size=...)
  ctranslate2  CTranslate2 Whisper (faster-whisper's engine), batched greedy
  asrbench     this engine
Each is timed from decoded audio to transcripts (features and detokenizing included), after
one warm-up batch; the median of --rounds rounds counts. Prints samples/s, RTFx, WER, the
speed-up of asrbench over each peer and whether its transcripts equal asrbench's.
"""

#: what `peers` runs unless told otherwise, below the flags (asrbench.config.resolve)
PEERS_DEFAULTS = {"device": "cpu", "dataset_config": "en"}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "peers", help="time asrbench against Trainer, pipeline and CTranslate2 on the same clips",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model reference (default {DEFAULT_MODEL})")
    p.add_argument("--device", choices=DEVICE_CHOICES,
                   help="cpu (default) or cuda; HPU is not a peer platform")
    p.add_argument("--dataset", help="dataset as for `run` (default: the embedded corpus)")
    p.add_argument("--dataset-config", default=None,
                   help="locale / Hub config (default en for the embedded corpus)")
    p.add_argument("--language", help="forced decoder language (default: the locale)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 (default), bf16")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"batch size for every peer (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--generation-max-length", type=int,
                   help="decoder length cap, prompt included (default 225)")
    p.add_argument("--limit", type=int, help="only the first N clips")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per peer (default 3)")
    p.add_argument("--peers", metavar="NAMES",
                   help="comma-separated subset of the peers above (default all; asrbench "
                        "always runs)")
    common.add_json(p, "the comparison")
    common.add_markdown(p, "the table as Markdown", step_summary=False)
    common.add_no_progress(p)
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """One interleaved run of every peer; table, optional JSON and Markdown."""
    common.leave_out_scikit_learn()  # before transformers' generation is loaded
    from asrbench.measure.models import load  # noqa: PLC0415  loads numpy (measure.models)
    from asrbench.measure.peers import PEER_NAMES, run_peers, summarize  # noqa: PLC0415  loads numpy and torch (measure.peers)
    from asrbench.measure.session import Session, quiet_transformers  # noqa: PLC0415  loads numpy and torch (measure.session)

    names = (PEER_NAMES if args.peers is None
             else tuple(n.strip() for n in args.peers.split(",") if n.strip()))
    unknown = [n for n in names if n not in PEER_NAMES]
    if unknown:
        raise AsrbenchError(f"unknown peer(s) {', '.join(unknown)}: choose from "
                            f"{', '.join(PEER_NAMES)}")
    if args.device not in (None, "cpu", "cuda"):
        raise AsrbenchError("asrbench peers runs on cpu or cuda (the peers have no HPU path)")
    if args.rounds < 1:
        raise AsrbenchError(f"--rounds must be >= 1, got {args.rounds}")
    config = resolve(run_overrides(args), defaults=PEERS_DEFAULTS).configs[0]
    quiet_transformers()
    device = get_device(config.device)
    split = Session(progress=not args.no_progress).split(config)
    loaded = load(config.model)

    def progress(message: str) -> None:
        if not args.no_progress:
            print(f"peers: {message}", file=sys.stderr, flush=True)

    results = run_peers(config, split, loaded, device, names, args.rounds, progress=progress)
    document = dump(summarize(config, split, loaded, results,
                              environment({"kind": device.kind, "class": device.device_class(),
                                           "name": device.description()})))
    say(table(document))
    if args.json:
        write_json_atomic(args.json, document)
        say(f"written to {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(document), encoding="utf-8")
        say(f"written to {args.markdown}")
    return 0
