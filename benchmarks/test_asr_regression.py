"""The regression gate: per config, error rates, throughput and transcripts vs the baseline,
no graph compilation while timed, and agreement with the stock fp32 CPU reference.

Parametrized by the asrbench plugin from benchmarks/matrix.toml (or --model/--dataset); the
six tests of a config share one evaluation. The last two need no baseline entry and apply the
same verdict functions as `asrbench compare`.
"""

import warnings

import pytest

from asrbench.compare import agreement_verdict, compilation_verdict
from asrbench.plugin import describe

pytestmark = pytest.mark.asrbench


def _check_error_rates(comparison, metrics):
    moved = [v for v in comparison.verdicts if v.metric in metrics and v.verdict != "unchanged"]
    if moved:
        pytest.fail("error rate moved beyond tolerance (refresh the baseline if intended):\n  "
                    + "\n  ".join(describe(v) for v in moved), pytrace=False)


def test_wer(bench_comparison):
    """Raw and normalized WER equal to the baseline within its absolute tolerance."""
    _check_error_rates(bench_comparison, ("wer", "wer_normalized"))


def test_cer(bench_comparison):
    """CER equal to the baseline within its absolute tolerance."""
    _check_error_rates(bench_comparison, ("cer",))


def test_throughput(bench_comparison):
    """samples/s not significantly below the baseline beyond the noise-aware band."""
    verdict = bench_comparison.verdict("samples_per_second")
    if verdict.verdict == "regressed":
        pytest.fail("throughput regressed: " + describe(verdict), pytrace=False)


def test_transcripts(request, bench_comparison):
    """Predictions identical to the baseline's; lists each changed utterance as a word diff."""
    changes = bench_comparison.transcripts
    if not changes:
        return
    listing = "\n".join(f"  {c.id}: {c.diff}" for c in changes[:50])
    message = f"{len(changes)} transcript(s) differ from the baseline:\n{listing}"
    if request.config.option.transcripts == "warn":
        warnings.warn(message)
        return
    pytest.fail(message, pytrace=False)


def test_no_recompilation(bench_run):
    """No graph compilation or capture during any timed pass (an exact count: warm-up must
    have captured every graph the passes replay)."""
    verdict = compilation_verdict(bench_run)
    if verdict is None:
        pytest.skip(f"{bench_run['device']['kind']}: nothing is compiled or captured on this "
                    "backend and setting, so there is no compilation count to check")
    if verdict.verdict == "regressed":
        pytest.fail(f"{int(verdict.value)} graph compilation(s) during timed passes: "
                    f"{verdict.note}", pytrace=False)


def test_reference_agreement(bench_run, bench_tolerance):
    """Transcripts agree with stock transformers generate() in fp32 on CPU on the first N
    utterances (share identical and WER against the reference within the section's limits)."""
    verdict = agreement_verdict(bench_run, bench_tolerance)
    if verdict is None:
        pytest.skip("this run is the reference setup itself (CPU, fp32, no static decoder) or "
                    "the check is off (reference_utterances = 0)")
    if verdict.verdict == "regressed":
        differing = bench_run["reference"].get("differing", [])[:10]
        listing = "\n".join(f"  {d['id']}: reference {d['reference_transcript']!r} / run "
                            f"{d['run_transcript']!r}" for d in differing)
        pytest.fail(f"agreement with the stock reference collapsed: {verdict.note}\n{listing}",
                    pytrace=False)
