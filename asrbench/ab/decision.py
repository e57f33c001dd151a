"""The A/B decision rule: is head's throughput DIFFERENT from base's, the SAME, or UNKNOWN yet?

Samples come in rounds: each round measures base and head once, back to back in a random
order, on the same machine (asrbench ab). Load on a shared runner drifts over minutes and
moves both sides of a round alike, so the rule works on the paired per-round log-ratios
d_i = log(head_i / base_i) rather than on the two sides' samples separately: the drift cancels
within a round.

- effect: the ratio head/base = exp(mean d) (ratio of geometric means), and its confidence
  interval from the one-sample t-test on d (scipy.stats.ttest_1samp). The per-round ratios
  of medians-of-passes are close to log-normal here; a load spike in one round widens the
  interval (the rule gets more careful, never more eager).
- DIFFERENT: the interval excludes 1 (the test is significant at the look's level) and does
  not lie inside the equivalence margin [1 - threshold, 1 + threshold]; a change that is
  significant but proven smaller than the threshold is SAME.
- SAME: the interval lies inside [1 - threshold, 1 + threshold]: enough rounds to rule out a
  change as large as the threshold.
- UNKNOWN: neither yet; the caller runs another round, up to its maximum.

The caller looks at the rounds look_rounds() names, from min_rounds to max_rounds, each about
1.5 times the one before (4, 6, 9, 14, 20 for 4..20), and each look uses alpha / looks
(Bonferroni): the chance that identical sides are ever called DIFFERENT stays below alpha.
Looking after every round would split alpha 17 ways over 4..20 instead of 5 and widen every
interval (the simulated detections and SAME rates of both schedules: docs/performance.md, "The
A/B rule in simulation"). tests/test_abstats.py checks the false-alarm rate by simulation, with
the interval's coverage and the decisions on samples with known answers.

Why not a bootstrap interval on the ratio of the two sides' medians: it ignores the pairing, so
a load that moves both sides of a round alike widens it (simulated: docs/performance.md, same
section). The ratio of the two sides' medians is reported beside the paired estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from asrbench.formats.model import AbDecision as Decision

OUTCOMES = ("DIFFERENT", "SAME", "UNKNOWN")


LOOK_GROWTH = 1.5


def look_rounds(min_rounds: int, max_rounds: int) -> list[int]:
    """The rounds after which the caller decides: min_rounds (at least 2, an interval needs
    two rounds), then each about LOOK_GROWTH times the last, and always max_rounds."""
    looks = [max(min_rounds, 2)]
    while looks[-1] < max_rounds:
        looks.append(min(max_rounds, max(looks[-1] + 1, math.ceil(looks[-1] * LOOK_GROWTH))))
    return looks


def look_alpha(alpha: float, min_rounds: int, max_rounds: int) -> float:
    """The level of each look at look_rounds(min_rounds, max_rounds) (Bonferroni over the
    looks)."""
    return alpha / len(look_rounds(min_rounds, max_rounds))


def decide(base: Sequence[float], head: Sequence[float], threshold: float,
           alpha: float = 0.01) -> Decision:
    """Decide from paired samples (base[i], head[i] measured in round i; higher is better or
    not, the rule is symmetric) at level `alpha` for this look."""
    import numpy as np  # noqa: PLC0415  numpy: off the light paths
    from scipy import stats  # noqa: PLC0415  scipy: slow to import, only when judging

    if len(base) != len(head):
        raise ValueError(f"paired rounds need equal counts, got {len(base)} and {len(head)}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if any(not (v > 0 and math.isfinite(v)) for v in (*base, *head)):
        raise ValueError("every sample must be a positive finite number")
    rounds = len(base)
    confidence = 1.0 - alpha
    medians = (float(np.median(head) / np.median(base)) if rounds else None)
    if rounds < 2:
        return Decision(outcome="UNKNOWN", rounds=rounds, confidence=confidence,
                        ratio_of_medians=medians, threshold=threshold)
    d = np.log(np.asarray(head, dtype=float)) - np.log(np.asarray(base, dtype=float))
    mean = float(d.mean())
    if float(np.ptp(d)) <= 1e-12 * max(1.0, abs(mean)):
        # Every round gave exactly the same ratio (synthetic data, or a clock too coarse to
        # see a difference): no spread to test against; the interval is that one point.
        low = high = mean
        p = 1.0 if mean == 0.0 else 0.0
    else:
        result = stats.ttest_1samp(d, 0.0)
        interval = result.confidence_interval(confidence_level=confidence)
        low, high, p = float(interval.low), float(interval.high), float(result.pvalue)
    ratio, ci_low, ci_high = math.exp(mean), math.exp(low), math.exp(high)
    inside = ci_low >= 1.0 - threshold and ci_high <= 1.0 + threshold
    if inside:
        outcome = "SAME"
    elif ci_high < 1.0 or ci_low > 1.0:
        outcome = "DIFFERENT"
    else:
        outcome = "UNKNOWN"
    return Decision(outcome=outcome, rounds=rounds, ratio=ratio, ci_low=ci_low, ci_high=ci_high,
                    confidence=confidence, p_value=p, ratio_of_medians=medians,
                    threshold=threshold)
