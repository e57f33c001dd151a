"""One failure policy for both front doors: what in a comparison fails the gate, warns, or passes.

compare.py says how each metric moved (verdicts); this module says what that means for a pull
request. The pytest tests (one per check) and `asrbench compare` (all checks) ask the same
Policy, with the same options, so they cannot disagree:

- a regression of any metric fails (throughput beyond its noise-aware band, an error rate
  beyond tolerance, a compilation in a timed pass, agreement with the reference lost);
- an error rate that improved beyond tolerance fails too (the baseline is out of date: refresh
  it), unless improvements are allowed;
- changed transcripts fail, or only warn with transcripts="warn";
- a throughput regression fails, or only warns with throughput="warn" (a shared runner whose
  load no stored number can know: the counters still judge the work exactly); a failing one
  says how to act on a noisy runner (render.text.THROUGHPUT_HINT);
- throughput that was not judged (verdict not-judged: a starved run, an emulated device, a
  counters-only run) is a warning that says so, never a pass: the other checks still gate;
- counters not compared because the baseline entry has none is a warning too;
- with wer_significance, an error rate beyond its tolerance fails only when the paired
  bootstrap's interval of its change (gate/accuracy.py) excludes 0; otherwise it warns;
- a config without a baseline entry fails, unless missing entries are allowed;
- a config that could not be judged (Comparison.not_judged: a refused or unreadable baseline,
  a set-up error) fails, always: no option turns it into a pass (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from asrbench.errors import AsrbenchError
from asrbench.formats.model import Verdict
from asrbench.gate.compare import Comparison
from asrbench.gate.counters import COUNTER_METRICS

#: the checks, each one pytest test; `asrbench compare` applies them all
CHECKS = ("wer", "cer", "throughput", "transcripts", "compilations", "agreement", "counters",
          "missing", "judging")
#: metrics each check looks at
CHECK_METRICS = {
    # the error rates, and the utterances they are of: one the baseline scored that the run
    # dropped (gate/compare.py) changes what they measure
    "wer": ("wer", "wer_normalized", "utterances"),
    "cer": ("cer",),
    "throughput": ("samples_per_second",),
    "compilations": ("compilations_in_timed_passes",),
    "agreement": ("reference_agreement",),
    "counters": COUNTER_METRICS,
}
ERROR_RATES = ("wer", "wer_normalized", "cer")
#: metrics whose improvement beyond tolerance also fails (the baseline is out of date)
IMPROVEMENT_FAILS = ERROR_RATES + COUNTER_METRICS
TRANSCRIPT_MODES = ("fail", "warn")
THROUGHPUT_MODES = ("fail", "warn")


@dataclass(frozen=True)
class Interval:
    """An error rate's paired-bootstrap interval of its change that includes 0 (with
    --wer-significance: its move beyond tolerance only warns)."""

    confidence: float
    low: float
    high: float


@dataclass(frozen=True)
class Finding:
    """One thing the policy says about a config: it fails the gate, or it is a warning; what
    it is about, as data (render.text.finding_text says it):

    - `not_judged`: why the config could not be judged (check "judging");
    - `verdict`: a metric's verdict that fails or warns (regressed, improved beyond tolerance,
      or throughput not judged), with `interval` when it is not significant and `warn_only`
      for a throughput regression under --throughput warn;
    - `transcripts`: how many transcripts differ from the baseline (check "transcripts");
    - none of these: no baseline entry (check "missing")."""

    config_id: str
    check: str  # one of CHECKS
    fails: bool
    verdict: Verdict | None = None
    interval: Interval | None = None
    warn_only: bool = False
    not_judged: str | None = None
    transcripts: int = 0


@dataclass(frozen=True)
class Policy:
    """What fails a gate (the same options on both doors)."""

    allow_improvements: bool = False  # error rates better than the baseline beyond tolerance pass
    transcripts: str = "fail"  # changed transcripts: "fail" or "warn"
    allow_missing: bool = False  # a config without a baseline entry passes (reported as new)
    wer_significance: bool = False  # error rates beyond tolerance fail only if significant
    throughput: str = "fail"  # a throughput regression: "fail" or "warn"

    def __post_init__(self) -> None:
        if self.transcripts not in TRANSCRIPT_MODES:
            raise AsrbenchError(f"transcripts must be one of {', '.join(TRANSCRIPT_MODES)}, "
                                f"got {self.transcripts!r}")
        if self.throughput not in THROUGHPUT_MODES:
            raise AsrbenchError(f"throughput must be one of {', '.join(THROUGHPUT_MODES)}, "
                                f"got {self.throughput!r}")

    def findings(self, comparison: Comparison, checks: Iterable[str] = CHECKS) -> list[Finding]:
        """What fails or warns for one config, limited to `checks`."""
        wanted = set(checks)
        unknown = wanted - set(CHECKS)
        if unknown:
            raise ValueError(f"unknown checks {sorted(unknown)}")
        out: list[Finding] = []
        config_id = comparison.config_id
        if "judging" in wanted and comparison.not_judged is not None:
            out.append(Finding(config_id, "judging", True, not_judged=comparison.not_judged))
        for check, metrics in CHECK_METRICS.items():
            if check not in wanted:
                continue
            for verdict in comparison.verdicts:
                if verdict.metric in metrics:
                    finding = self.verdict_finding(comparison, verdict, check)
                    if finding is not None:
                        out.append(finding)
        if "transcripts" in wanted and comparison.transcripts:
            out.append(Finding(config_id, "transcripts", self.transcripts == "fail",
                               transcripts=len(comparison.transcripts)))
        if "missing" in wanted and not comparison.has_entry:
            out.append(Finding(config_id, "missing", not self.allow_missing))
        return out

    def verdict_finding(self, comparison: Comparison, verdict: Verdict,
                        check: str | None = None) -> Finding | None:
        """What the policy says about one verdict (fails, warns), or None (nothing to say)."""
        check = check or next((c for c, metrics in CHECK_METRICS.items()
                               if verdict.metric in metrics), None)
        if check is None:
            return None
        noise = self._not_significant(comparison, verdict.metric)
        if verdict.verdict == "regressed":
            warn_only = check == "throughput" and self.throughput == "warn"
            return Finding(comparison.config_id, check, noise is None and not warn_only,
                           verdict, noise, warn_only)
        if verdict.verdict == "not-judged" and check == "throughput":
            # a warning in every mode: not a pass claim, not a regression
            return Finding(comparison.config_id, check, False, verdict)
        if verdict.verdict == "new" and check == "counters" and comparison.has_entry:
            # counted, but the entry has no counters to compare with: a warning, never a pass
            # claim (a counters-only pre-screen against it gates nothing but transcripts)
            return Finding(comparison.config_id, check, False, verdict)
        if verdict.verdict == "improved" and verdict.metric in IMPROVEMENT_FAILS:
            return Finding(comparison.config_id, check,
                           not self.allow_improvements and noise is None, verdict, noise)
        return None

    def _not_significant(self, comparison: Comparison, metric: str) -> Interval | None:
        """With wer_significance: why an error rate's move is only a warning (its interval
        includes 0), or None (it counts: significant, no interval known, or the option off)."""
        if not self.wer_significance or metric not in ERROR_RATES or comparison.accuracy is None:
            return None
        change = comparison.accuracy.change(metric)
        if change is None or change.significant:
            return None
        if change.low is None or change.high is None:  # too few units: the tolerance decides
            return None
        return Interval(comparison.accuracy.confidence, change.low, change.high)

    def fails(self, comparisons: Iterable[Comparison]) -> bool:
        """Whether any of these configs fails the gate."""
        return any(f.fails for c in comparisons for f in self.findings(c))
