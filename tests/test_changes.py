"""Change points (asrbench/history/changepoints.py): synthetic series with known steps (and
none), and a history of real runs of the embedded default whose later half has half the
(planted) throughput."""

from __future__ import annotations

import numpy as np
import pytest
from factories import PLANTED_AT

from asrbench.history.changepoints import detect, find_changes, series_changes
from asrbench.history.store import Point, open_store
from asrbench.render.history import change_line


def _noisy(levels: list[float], each: int, noise: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [level * (1.0 + rng.normal(0.0, noise)) for level in levels for _ in range(each)]


def _points(values: list[float], metric: str = "samples_per_second", rsd: float = 0.01
            ) -> list[Point]:
    out = []
    for n, value in enumerate(values):
        numbers = {"wer": 0.2, "wer_normalized": 0.2, "cer": 0.1, "samples_per_second": 10.0}
        numbers[metric] = value
        out.append(Point(n + 1, 0, "cfg", "cpu", numbers["wer"], numbers["wer_normalized"],
                         numbers["cer"], numbers["samples_per_second"], rsd, 3, 8, None,
                         [numbers["samples_per_second"]] * 3, None, f"{n + 1:040x}"))
    return out


def test_a_step_is_found_where_it_starts_with_its_size():
    values = _noisy([10.0, 9.0], each=10, noise=0.01, seed=1)
    steps = detect(values, relative=True, min_change=0.02)
    assert [s.index for s in steps] == [10]
    assert steps[0].before == pytest.approx(10.0, rel=0.02)
    assert steps[0].after == pytest.approx(9.0, rel=0.02)
    assert steps[0].relative == pytest.approx(-0.1, abs=0.02)
    assert (steps[0].points_before, steps[0].points_after) == (10, 10)


@pytest.mark.parametrize("seed", range(20))
def test_no_step_no_change_point(seed):
    assert detect(_noisy([10.0], each=30, noise=0.01, seed=seed), relative=True,
                  min_change=0.02) == []


def test_a_big_step_is_found_through_heavy_noise():
    values = _noisy([10.0, 8.5], each=15, noise=0.03, seed=4)  # 15% step, 3% noise
    assert [s.index for s in detect(values, relative=True, min_change=0.02)] == [15]


def test_creeping_regression_each_step_under_the_per_pr_band_is_found():
    # Three 3% slowdowns (the per-PR band is 5%: each passed the gate), 8 runs apart.
    values = _noisy([10.0, 9.7, 9.409, 9.127], each=8, noise=0.005, seed=3)
    steps = detect(values, relative=True, min_change=0.02)
    assert [s.index for s in steps] == [8, 16, 24]
    assert all(-0.045 < s.relative < -0.015 for s in steps)


def test_a_step_needs_runs_that_confirm_it():
    wer = [0.1] * 6
    assert detect(wer + [0.12]) == []  # one odd run at the end is not a new level (yet)
    confirmed = detect(wer + [0.12, 0.12])
    assert [(s.index, s.before, s.after) for s in confirmed] == [(6, 0.1, 0.12)]
    assert detect(wer + [0.12, 0.12], min_size=3) == []
    assert detect([0.1, 0.12]) == []  # too short for any step


def test_error_rate_steps_are_absolute_and_missing_values_are_skipped():
    values = [0.30, None, 0.30, 0.30, 0.30, 0.35, 0.35, None, 0.35]
    steps = detect(values)
    assert [(s.index, s.before, s.after) for s in steps] == [(5, 0.30, 0.35)]
    assert detect([0.3] * 4 + [0.3005] * 4, min_change=0.001) == []  # below the minimum


def test_series_changes_name_the_commit_and_the_direction():
    slower = series_changes(_points([10.0, 10.1, 9.9, 10.0, 8.0, 8.1, 7.9, 8.0]),
                            "samples_per_second")
    assert len(slower) == 1
    change = slower[0]
    assert (change.index, change.report_id, change.commit) == (4, 5, f"{5:040x}")
    assert change.direction == "regression" and change.relative == pytest.approx(-0.2, abs=0.01)
    assert "REGRESSION" in change_line(change) and "-20.0%" in change_line(change)
    better = series_changes(_points([0.3] * 4 + [0.25] * 4, "wer"), "wer")
    assert [(c.index, c.direction) for c in better] == [(4, "improvement")]
    assert series_changes(_points([0.3] * 4 + [0.25] * 4, "wer"), "cer") == []


def test_find_changes_scans_every_config_and_metric():
    series = {("cpu", "a"): _points([10.0] * 4 + [12.0] * 4),
              ("cpu", "b"): _points([0.2] * 4 + [0.3] * 4, "cer")}
    found = find_changes(series)
    assert {(c.config_id, c.metric, c.direction) for c in found} == {
        ("cfg", "samples_per_second", "improvement"), ("cfg", "cer", "regression")}


def test_real_runs_planted_slowdown_is_found_at_its_commit(real_history):
    """Real runs whose throughput is planted (factories.PLANTED_LEVELS: runs 4-6 at half the
    samples/s of runs 1-3, passes within +-1%), so the step is the same on a busy machine as on
    a quiet one: exactly one change point, at run 4's commit, of the planted size."""
    url, reports, commits = real_history
    with open_store(url) as store:
        series = store.series()
    (points,) = series.values()
    found = find_changes(series)
    throughput = [c for c in found if c.metric == "samples_per_second"]
    assert len(throughput) == 1, [change_line(c) for c in found]
    step = throughput[0]
    assert step.index == PLANTED_AT == 3 and step.commit == commits[3]
    assert step.direction == "regression"
    # the medians of each side: 10 samples/s x median(0.99, 1.01) before, half of it after
    assert step.before == pytest.approx(10.0) and step.after == pytest.approx(5.0)
    assert step.relative == pytest.approx(-0.5)
    assert [p.samples_per_second for p in points] == pytest.approx([10.0] * 3 + [5.0] * 3)
    # The six reports hold one real run's transcripts: no error-rate step.
    assert len({(p.wer, p.cer) for p in points}) == 1
    assert [c for c in found if c.metric != "samples_per_second"] == []


def _planted(n: int, seed: int = 5) -> list[float]:
    """n runs of samples/s: 10 until 30% of them, then 5% slower, 4% faster from 70%; 1% noise."""
    rng = np.random.default_rng(seed)
    return [10.0 * (0.95 if i >= 0.3 * n else 1.0) * (1.04 if i >= 0.7 * n else 1.0)
            * (1.0 + rng.normal(0.0, 0.01)) for i in range(n)]


def test_long_series_take_linear_work_and_keep_their_steps(monkeypatch):
    """PELT is quadratic in the points it is given: a long series is never given to it whole
    (each exact pass sees at most a window), and the work (sum of squared lengths) doubles,
    not quadruples, when the series does. Counted, not timed."""
    from asrbench.history import changepoints

    seen: list[int] = []
    exact = changepoints.pelt

    def counting(signal, min_size, penalty):
        seen.append(len(signal))
        return exact(signal, min_size, penalty)

    monkeypatch.setattr(changepoints, "pelt", counting)
    work = {}
    for n in (10_000, 20_000):
        seen.clear()
        steps = detect(_planted(n), relative=True, min_change=0.02)
        assert len(steps) == 2  # where they start, give or take a noisy run or two
        assert [s.index for s in steps] == pytest.approx([3 * n // 10, 7 * n // 10], abs=2)
        assert steps[0].relative == pytest.approx(-0.05, abs=0.005)
        assert steps[1].relative == pytest.approx(0.04, abs=0.005)
        assert max(seen) <= max(changepoints.WINDOW_POINTS, changepoints.COARSE_POINTS)
        work[n] = sum(length ** 2 for length in seen)
    assert work[20_000] <= 2.2 * work[10_000]


def test_windowed_segmentation_equals_one_exact_pass():
    import math

    import ruptures

    from asrbench.history.changepoints import EXACT_POINTS, segment

    rng = np.random.default_rng(7)
    n = EXACT_POINTS + 1500
    levels = np.repeat([0.0, 2.0, 1.2, 3.0, 0.4], n // 5 + 1)[:n]
    signal = (levels + rng.normal(0.0, 1.0, n)).reshape(-1, 1)
    penalty = 6.0 * math.log(n)
    one_pass = ruptures.KernelCPD(kernel="linear", min_size=2).fit(signal).predict(pen=penalty)
    assert segment(signal, 2, penalty) == [int(e) for e in one_pass[:-1]]
    assert len(one_pass) == 5  # the four planted steps


@pytest.mark.parametrize("seed", range(5))
def test_best_partition_over_every_point_is_rupturess_pelt(seed):
    import math

    import ruptures

    from asrbench.history.changepoints import best_partition

    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, 120) + np.repeat([0.0, 3.0, -1.0], 40)
    penalty = 6.0 * math.log(120)
    expected = ruptures.Pelt(model="l2", min_size=2, jump=1).fit(
        values.reshape(-1, 1)).predict(pen=penalty)[:-1]
    assert best_partition(values, list(range(1, 120)), 2, penalty) == expected
