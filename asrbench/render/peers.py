"""The text of `asrbench peers`: the peer rows (measure.peers.summarize's document) as a
fixed-width table for the terminal and as a Markdown table (docs/performance.md is assembled
from these). measure/ measures and returns the document; the tables are made here."""

from __future__ import annotations

from typing import Any


def spread_and_agreement(row: dict[str, Any]) -> tuple[str, str]:
    """A row's round RSD and its transcript agreement with asrbench, as table cells."""
    rsd = "-" if row["round_rsd"] is None else f"{100 * row['round_rsd']:.1f}%"
    same = ("identical" if row["transcripts_equal_to_asrbench"]
            else f"{len(row['transcripts_differing'])} differ")
    return rsd, same


def table(document: dict[str, Any]) -> str:
    """The peer rows as a fixed-width text table."""
    lines = [f"{document['utterances']} clips, {document['audio_seconds']:.1f} s of audio, "
             f"{document['precision']}, batch {document['batch_size']}, "
             f"{document['rounds']} timed rounds (median)",
             f"{'peer':<12} {'samples/s':>10} {'RTFx':>7} {'WER':>7} {'round RSD':>9} "
             f"{'asrbench x':>10}  transcripts vs asrbench"]
    for row in document["peers"]:
        if "skipped" in row:
            lines.append(f"{row['name']:<12} skipped: {row['skipped']}")
            continue
        rsd, same = spread_and_agreement(row)
        note = row.get("detail", {}).get("note")
        lines.append(f"{row['name']:<12} {row['samples_per_second']:>10.3f} {row['rtfx']:>7.2f} "
                     f"{row['wer']:>7.4f} {rsd:>9} {row['asrbench_speedup']:>9.2f}x  {same}"
                     + (f" ({note})" if note else ""))
    return "\n".join(lines)


def markdown(document: dict[str, Any]) -> str:
    """The peer rows as a Markdown table (docs/performance.md is assembled from these)."""
    lines = ["| peer | samples/s | RTFx | WER | round RSD | asrbench speed-up | transcripts |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for row in document["peers"]:
        if "skipped" in row:
            lines.append(f"| {row['name']} | skipped: {row['skipped']} | | | | | |")
            continue
        rsd, same = spread_and_agreement(row)
        compute = row.get("detail", {}).get("compute_type")
        name = f"{row['name']} ({compute})" if compute else row["name"]
        lines.append(f"| {name} | {row['samples_per_second']:.3f} | {row['rtfx']:.2f} | "
                     f"{row['wer']:.4f} | {rsd} | {row['asrbench_speedup']:.2f}x | {same} |")
    return "\n".join(lines) + "\n"
