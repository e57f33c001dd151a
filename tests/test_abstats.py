"""The A/B decision rule (asrbench/ab/decision.py) on synthetic samples with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asrbench.ab.decision import decide, look_alpha, look_rounds


def _rounds(rng, n, ratio, noise=0.03, drift=0.0):
    """n paired rounds: base ~ 10 * load * noise, head ~ ratio * 10 * load * noise, where the
    load moves both sides of a round alike (a shared runner) by `drift`."""
    load = rng.lognormal(0.0, drift, n) if drift else np.ones(n)
    base = 10.0 * load * rng.lognormal(0.0, noise, n)
    head = ratio * 10.0 * load * rng.lognormal(0.0, noise, n)
    return list(base), list(head)


def test_a_clear_slowdown_is_different_and_slower():
    base, head = _rounds(np.random.default_rng(1), 8, 0.80)
    decision = decide(base, head, threshold=0.05, alpha=0.01)
    assert decision.outcome == "DIFFERENT" and decision.slower
    assert decision.ci_high < 1.0 and decision.ci_low < 0.95
    assert decision.ratio == pytest.approx(0.80, abs=0.04)
    assert decision.p_value < 0.01


def test_a_clear_speed_up_is_different_and_faster():
    base, head = _rounds(np.random.default_rng(2), 8, 1.25)
    decision = decide(base, head, threshold=0.05, alpha=0.01)
    assert decision.outcome == "DIFFERENT" and not decision.slower and decision.ci_low > 1.0


def test_identical_sides_with_enough_rounds_are_same():
    base, head = _rounds(np.random.default_rng(3), 12, 1.0, noise=0.01)
    decision = decide(base, head, threshold=0.05, alpha=0.01)
    assert decision.outcome == "SAME"
    assert 0.95 <= decision.ci_low <= 1.0 <= decision.ci_high <= 1.05


def test_too_few_or_too_noisy_rounds_are_unknown():
    assert decide([10.0], [9.0], threshold=0.05).outcome == "UNKNOWN"
    assert decide([], [], threshold=0.05).ratio is None
    base, head = _rounds(np.random.default_rng(4), 3, 1.0, noise=0.10)
    decision = decide(base, head, threshold=0.05, alpha=0.01)
    assert decision.outcome == "UNKNOWN"
    assert decision.ci_low < 0.95 or decision.ci_high > 1.05


def test_a_significant_change_smaller_than_the_threshold_is_same():
    # 2% slower, measured very precisely: real, but below a 5% threshold
    base, head = _rounds(np.random.default_rng(5), 12, 0.98, noise=0.002)
    decision = decide(base, head, threshold=0.05, alpha=0.01)
    assert decision.ci_high < 1.0  # significant...
    assert decision.outcome == "SAME"  # ...and proven smaller than the threshold
    assert "smaller than the threshold" in decision.describe()


def test_pairing_cancels_load_that_moves_both_sides_of_a_round():
    # 10% slower under a load that swings 15% from round to round: the paired rule sees it
    base, head = _rounds(np.random.default_rng(6), 8, 0.90, noise=0.01, drift=0.15)
    assert decide(base, head, threshold=0.05, alpha=0.01).outcome == "DIFFERENT"


def test_exactly_constant_ratios_are_decided_without_spread():
    assert decide([10.0, 11.0], [10.0, 11.0], threshold=0.05).outcome == "SAME"
    assert decide([10.0, 11.0], [8.0, 8.8], threshold=0.05).outcome == "DIFFERENT"


@pytest.mark.parametrize("n", [4, 8])
def test_interval_covers_the_true_ratio_at_its_level(n):
    rng = np.random.default_rng(7 + n)
    level, trials, covered = 0.9, 2000, 0
    for _ in range(trials):
        base, head = _rounds(rng, n, 0.93, noise=0.04, drift=0.1)
        d = decide(base, head, threshold=0.05, alpha=1 - level)
        covered += d.ci_low <= 0.93 <= d.ci_high
    # binomial sd at 2000 trials is 0.0067: 0.9 +- 0.025 is beyond 3.5 sd
    assert abs(covered / trials - level) < 0.025


def test_sequential_looks_keep_identical_sides_below_alpha():
    """The whole adaptive procedure (the default looks, rounds 4..20) on identical sides: the
    share of A/Bs that ever say DIFFERENT stays below alpha."""
    rng = np.random.default_rng(11)
    alpha, min_rounds, max_rounds, trials = 0.05, 4, 20, 1500
    per_look = look_alpha(alpha, min_rounds, max_rounds)
    assert per_look == pytest.approx(alpha / 5)
    alarms = 0
    for _ in range(trials):
        base, head = _rounds(rng, max_rounds, 1.0, noise=0.05, drift=0.1)
        for n in look_rounds(min_rounds, max_rounds):
            outcome = decide(base[:n], head[:n], threshold=0.05, alpha=per_look).outcome
            if outcome == "DIFFERENT":
                alarms += 1
            if outcome != "UNKNOWN":
                break
    assert alarms / trials < alpha


def test_power_for_a_ten_percent_slowdown_at_the_noise_measured_here():
    """At the process-to-process spread measured on this 2-core VM (6% a process), the
    default rule (threshold 5%, alpha 0.05, looks at rounds 4, 6, 9, 14, 20) finds a 10%
    slowdown in at least 9 A/Bs out of 10."""
    rng = np.random.default_rng(12)
    per_look = look_alpha(0.05, 4, 20)
    found = 0
    for _ in range(500):
        base, head = _rounds(rng, 20, 0.90, noise=0.06, drift=0.1)
        for n in look_rounds(4, 20):
            outcome = decide(base[:n], head[:n], threshold=0.05, alpha=per_look).outcome
            if outcome != "UNKNOWN":
                found += outcome == "DIFFERENT"
                break
    assert found / 500 > 0.9


@pytest.mark.parametrize("base,head,threshold,alpha,message", [
    ([1.0, 2.0], [1.0], 0.05, 0.05, "paired"),
    ([1.0, 2.0], [1.0, 2.0], 0.0, 0.05, "threshold"),
    ([1.0, 2.0], [1.0, 2.0], 0.05, 1.5, "alpha"),
    ([1.0, -2.0], [1.0, 2.0], 0.05, 0.05, "positive"),
    ([1.0, math.nan], [1.0, 2.0], 0.05, 0.05, "positive"),
])
def test_bad_input_is_refused(base, head, threshold, alpha, message):
    with pytest.raises(ValueError, match=message):
        decide(base, head, threshold, alpha)


def test_looks_grow_by_half_and_end_at_the_maximum():
    assert look_rounds(4, 20) == [4, 6, 9, 14, 20]
    assert look_rounds(4, 12) == [4, 6, 9, 12]
    assert look_rounds(4, 4) == [4]
    assert look_rounds(2, 3) == [2, 3]
    assert look_rounds(1, 3) == [2, 3]  # no look before 2 rounds
    assert look_rounds(3, 10) == [3, 5, 8, 10]


def test_look_alpha_is_bonferroni_over_the_looks():
    assert look_alpha(0.05, 4, 4) == pytest.approx(0.05)
    assert look_alpha(0.05, 4, 20) == pytest.approx(0.01)
    assert look_alpha(0.05, 4, 13) == pytest.approx(0.0125)  # rounds 4, 6, 9, 13
    assert look_alpha(0.05, 1, 3) == pytest.approx(0.025)
