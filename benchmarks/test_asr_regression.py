"""The regression gate: per config, error rates, throughput and transcripts vs the baseline.

Parametrized by the asrbench plugin from benchmarks/matrix.toml (or --model/--dataset); the
four tests of a config share one evaluation.
"""

import warnings

import pytest

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
