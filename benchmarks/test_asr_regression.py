"""The regression gate: per config, one test per check of the failure policy
(asrbench/gate/policy.py), the same policy `asrbench compare` applies to the same report.

Parametrized by the asrbench plugin from benchmarks/matrix.toml (or the --asrbench-* options);
the tests of a config share one evaluation. test_wer, test_cer, test_throughput,
test_transcripts and test_counters compare with the baseline entry; test_no_recompilation and
test_reference_agreement need none.
"""

import pytest

from asrbench.gate.compare import Comparison, run_checks
from asrbench.gate.counters import not_gated
from asrbench.plugin import apply_policy, change_listing
from asrbench.render.text import terminal_safe

pytestmark = pytest.mark.asrbench


def _skip_not_judged(comparison: Comparison, *metrics: str) -> None:
    """Skip, saying why, a check whose metrics were not judged (a counters-only run's
    throughput; bf16 transcripts of a CPU with other bf16 arithmetic than the baseline's)."""
    for verdict in comparison.verdicts:
        if verdict.metric in metrics and verdict.verdict == "not-judged":
            pytest.skip(verdict.note)


def test_wer(request, bench_comparison):
    """Raw and normalized WER within tolerance of the baseline, in either direction (better
    than the baseline means it is out of date), unless improvements are allowed."""
    _skip_not_judged(bench_comparison, "wer", "wer_normalized")
    apply_policy(request.config, bench_comparison, "wer", change_listing(bench_comparison, 0))


def test_cer(request, bench_comparison):
    """CER within tolerance of the baseline, in either direction."""
    _skip_not_judged(bench_comparison, "cer")
    apply_policy(request.config, bench_comparison, "cer", change_listing(bench_comparison, 0))


def test_throughput(request, bench_comparison):
    """samples/s not significantly below the baseline beyond the noise-aware band (skipped in a
    counters-only run: nothing was timed)."""
    _skip_not_judged(bench_comparison, "samples_per_second")
    apply_policy(request.config, bench_comparison, "throughput")


def test_transcripts(request, bench_comparison):
    """Predictions identical to the baseline's; lists each changed utterance as a word diff
    (they fail, or only warn with --asrbench-transcripts warn)."""
    _skip_not_judged(bench_comparison, "transcripts")
    apply_policy(request.config, bench_comparison, "transcripts", change_listing(bench_comparison))


def test_counters(request, bench_comparison):
    """Work counters equal the baseline's exactly: ops per encoder call and per decode step by
    name and dtype, FLOPs per utterance, host syncs per token, graph compilations
    (docs/counters.md). Skipped, saying why, when the run was not counted or the baseline entry
    has no counters."""
    reason = not_gated(bench_comparison.verdicts)
    if reason:
        pytest.skip(terminal_safe(reason, newlines=False))
    apply_policy(request.config, bench_comparison, "counters")


def _baseline_free(bench_run, bench_tolerance) -> Comparison:
    return Comparison(config_id=bench_run.config.id,
                      verdicts=run_checks(bench_run, bench_tolerance))


def test_no_recompilation(request, bench_run, bench_tolerance):
    """No graph compilation or capture during any timed pass (an exact count: warm-up must
    have captured every graph the passes replay)."""
    comparison = _baseline_free(bench_run, bench_tolerance)
    if bench_run.counters_only:
        pytest.skip("counters-only: no timed pass; graph captures are gated exactly by "
                    "test_counters (counters.compilations)")
    if not any(v.metric == "compilations_in_timed_passes" for v in comparison.verdicts):
        pytest.skip(f"{bench_run.device.kind}: nothing is compiled or captured on this "
                    "backend and setting, so there is no compilation count to check")
    apply_policy(request.config, comparison, "compilations")


def test_reference_agreement(request, bench_run, bench_tolerance):
    """Transcripts agree with stock transformers generate() in fp32 on CPU on the first N
    utterances (share identical and WER against the reference within the section's limits)."""
    comparison = _baseline_free(bench_run, bench_tolerance)
    if not any(v.metric == "reference_agreement" for v in comparison.verdicts):
        pytest.skip("this run is the reference setup itself (CPU, fp32, no static decoder) or "
                    "the check is off (reference_utterances = 0)")
    differing = bench_run.reference.differing[:10]
    listing = "\n".join(f"  {d.id}: reference {d.reference_transcript!r} / run "
                        f"{d.run_transcript!r}" for d in differing)
    apply_policy(request.config, comparison, "agreement", listing)
