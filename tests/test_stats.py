"""Mann-Whitney U, exact and approximate, on hand-worked samples (asrbench/gate/stats.py)."""

from __future__ import annotations

import pytest

from asrbench.gate.stats import mann_whitney_greater, minimum_p_value


def test_mann_whitney_exact_p_values():
    # complete separation, 3 vs 3: 1 of C(6,3) = 20 arrangements is as extreme -> p = 0.05
    assert mann_whitney_greater([4, 5, 6], [1, 2, 3]) == pytest.approx(1 / 20)
    assert mann_whitney_greater([1, 2, 3], [4, 5, 6]) == pytest.approx(1.0)
    # U([4,5,2] > [1,3,6]) = 5; arrangements with U >= 5 among 20: 10 -> p = 0.5
    assert mann_whitney_greater([4, 5, 2], [1, 3, 6]) == pytest.approx(0.5)
    assert minimum_p_value(3, 3) == pytest.approx(0.05)
    assert minimum_p_value(1, 3) == pytest.approx(0.25)


def test_mann_whitney_normal_approximation_for_large_samples():
    x = [float(v) for v in range(100, 120)]
    y = [float(v) for v in range(0, 20)]
    assert mann_whitney_greater(x, y) < 1e-6
    assert mann_whitney_greater(y, x) > 0.999
