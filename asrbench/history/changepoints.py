"""Change points: the commits where a config's samples/s or error rates stepped and stayed.

The per-PR gate compares one run with a baseline inside a noise band, so a series of small
slowdowns, each inside the band, passes every time. Looking at the whole history finds them:
each (device class, config) series of samples/s, WER, normalized WER and CER is segmented
into stretches of constant level, and every boundary between two stretches is a step, listed
with the commit it starts at, the medians before and after, and its size.

The segmentation is PELT (Killick et al., 2012, optimal partitioning with pruning) on an L2
cost, from `ruptures` (PyPI, maintained, wheels for every supported Python, numpy and scipy
only). It was chosen over apache-otava (a whole CLI/service with its own configuration and
data importers, more than a library call) and MongoDB's signal-processing-algorithms
E-divisive (a permutation test per candidate: random and slow on short series): PELT is exact
and deterministic for a given penalty, which makes the result reproducible run after run.

How a series is read (`detect`):
- samples/s is compared on a relative scale (each value divided by the series' median), error
  rates on their own (absolute) scale;
- the noise sigma is estimated from the series itself, robustly (the median absolute
  difference of consecutive points, /(sqrt(2) * 0.6745)), and never below a floor: for
  samples/s the larger of 0.5% and the median within-run RSD of the points, for error rates
  1e-4 (they are deterministic on one device class, so any real change is far above it);
- PELT runs on the series in sigma units with penalty PENALTY_FACTOR * ln(n) (a BIC-like
  penalty, stricter than BIC's 2 ln(n)), and every stretch must hold at least `min_size`
  points: a step is "persistent" only once `min_size` runs after it agree. A step at the very
  last run is therefore reported only after the next run confirms it;
- the PELT is ruptures' KernelCPD with the linear kernel: the same L2 cost and the same optimum
  as `Pelt(model="l2")`, computed in C with O(1) segment costs. PELT's pruning barely prunes
  when a series has few steps (the usual history), so it is quadratic in the series' length:
  series of up to EXACT_POINTS points are segmented in one pass (exact). Longer ones take two
  linear-time scans whose steps are the only candidates of one final optimal partitioning of
  the whole series (same cost and penalty, with PELT's pruning): exact PELT in overlapping
  windows of WINDOW_POINTS points (half a window apart), and exact PELT of the series averaged
  in blocks down to COARSE_POINTS points (small steps between long stretches, each refined to
  the run). On 60 random series of 2,100-6,000 points this gave the one-pass result every time;
  it can differ from it only by a step near the penalty's threshold;
- a step is kept only when it is at least the minimum change (default 2% for samples/s, 0.001
  absolute for error rates) and persistent: on each side, at least `min_size` points (and at
  least half of that stretch) lie on their own side of the midpoint between the two levels.
  Other steps are dropped, smallest first, and their neighbouring stretches merge.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from asrbench.errors import require
from asrbench.formats.model import Report, Run
from asrbench.history.store import Point, Store, StoredReport, digest_of, run_point

#: metric -> (label, unit, higher is better, relative scale)
METRICS: dict[str, tuple[str, str, bool, bool]] = {
    "samples_per_second": ("samples/s", "samples/s", True, True),
    "wer": ("WER", "", False, False),
    "wer_normalized": ("normalized WER", "", False, False),
    "cer": ("CER", "", False, False),
}
DEFAULT_MIN_SIZE = 2
DEFAULT_MIN_CHANGE = {"samples_per_second": 0.02, "wer": 0.001, "wer_normalized": 0.001,
                      "cer": 0.001}
PENALTY_FACTOR = 6.0
#: series up to this long are segmented exactly in one pass (its time: docs/performance.md)
EXACT_POINTS = 2000
#: longer series: exact segmentations of windows this long, half a window apart, and of the
#: series averaged in blocks down to COARSE_POINTS points
WINDOW_POINTS = 500
COARSE_POINTS = 1000
RELATIVE_NOISE_FLOOR = 0.005
ABSOLUTE_NOISE_FLOOR = 1e-4
_MAD_TO_SIGMA = 1.0 / (math.sqrt(2.0) * 0.6745)


@dataclass(frozen=True)
class Step:
    """A boundary between two stretches of one series (indexes into the series)."""

    index: int  # first point of the new level
    before: float  # median of the stretch before
    after: float  # median of the stretch after
    points_before: int
    points_after: int

    @property
    def delta(self) -> float:
        return self.after - self.before

    @property
    def relative(self) -> float | None:
        return self.delta / self.before if self.before else None


@dataclass(frozen=True)
class ChangePoint:
    """A persistent step in one config's history, at the commit where it starts."""

    device_class: str
    config_id: str
    metric: str
    index: int
    report_id: int
    commit: str | None
    label: str
    before: float
    after: float
    delta: float
    relative: float | None
    direction: str  # "regression" or "improvement"
    points_before: int
    points_after: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def noise_sigma(values: Sequence[float], floor: float) -> float:
    """Robust sigma of a series' point-to-point noise (steps barely move it), at least floor."""
    diffs = [abs(b - a) for a, b in zip(values, values[1:])]
    estimate = statistics.median(diffs) * _MAD_TO_SIGMA if diffs else 0.0
    return max(estimate, floor)


def pelt(signal: Any, min_size: int, penalty: float) -> list[int]:
    """Exact PELT of a (n, 1) signal with the L2 cost: the starts of new stretches."""
    ruptures = require("ruptures", "history")

    ends = ruptures.KernelCPD(kernel="linear", min_size=min_size).fit(signal).predict(pen=penalty)
    return [int(e) for e in ends if 0 < e < len(signal)]


def segment(signal: Any, min_size: int, penalty: float) -> list[int]:
    """The starts of new stretches of a (n, 1) signal: exact PELT up to EXACT_POINTS points,
    else the candidates of one final partitioning come from two linear-time scans: windows of
    WINDOW_POINTS (steps between short stretches), and the series averaged in blocks down to
    COARSE_POINTS points (small steps between long stretches; each refined to the point)."""
    import numpy as np  # noqa: PLC0415  numpy: off the light paths

    n = len(signal)
    if n <= EXACT_POINTS:
        return pelt(signal, min_size, penalty)
    # Blocks of m points, their means times sqrt(m): the L2 cost of stretches made of whole
    # blocks is the within-block cost (the same for every partition) plus this signal's cost.
    m = -(-n // COARSE_POINTS)
    blocks = np.asarray(signal[:n // m * m, 0]).reshape(-1, m).mean(axis=1) * math.sqrt(m)
    candidates: set[int] = set()
    for b in pelt(blocks.reshape(-1, 1), max(1, -(-min_size // m)), penalty):
        candidates.update(range(max(1, (b - 2) * m), min(n, (b + 2) * m + 1)))
    start, stride = 0, WINDOW_POINTS // 2
    while True:
        stop = min(start + WINDOW_POINTS, n)
        candidates.update(start + b for b in pelt(signal[start:stop], min_size, penalty))
        if stop == n:
            break
        start += stride
    return best_partition(signal[:, 0], sorted(candidates), min_size, penalty)


def best_partition(values: Any, candidates: list[int], min_size: int, penalty: float
                   ) -> list[int]:
    """Optimal partitioning of `values` (L2 cost + penalty per stretch) whose steps are among
    `candidates`, with PELT's pruning; O(1) segment costs from cumulative sums."""
    import numpy as np  # noqa: PLC0415  numpy: off the light paths

    n = len(values)
    # centred: smaller cumulative sums, less rounding in their differences
    centred = np.asarray(values, dtype=float) - float(np.mean(values))
    sums: list[float] = np.concatenate(([0.0], np.cumsum(centred))).tolist()
    squares: list[float] = np.concatenate(([0.0], np.cumsum(centred * centred))).tolist()

    def cost(a: int, b: int) -> float:
        return squares[b] - squares[a] - (sums[b] - sums[a]) ** 2 / (b - a)

    best, previous = {0: 0.0}, {0: 0}
    admissible = [0]
    for t in [c for c in candidates if 0 < c < n] + [n]:
        options = [(best[s] + cost(s, t), s) for s in admissible if t - s >= min_size]
        if not options:
            continue
        total, start = min(options)
        best[t], previous[t] = total + penalty, start
        kept = {s for value, s in options if value <= best[t]}  # else pruned
        admissible = [s for s in admissible if t - s < min_size or s in kept] + [t]
    if n not in previous:
        return []
    cuts, t = [], n
    while t > 0:
        t = previous[t]
        if t > 0:
            cuts.append(t)
    return sorted(cuts)


def detect(values: Sequence[float | None], relative: bool = False,
           min_size: int = DEFAULT_MIN_SIZE, min_change: float = 0.0,
           noise_floor: float | None = None, penalty_factor: float = PENALTY_FACTOR
           ) -> list[Step]:
    """Persistent steps of one series (None values are skipped; indexes stay the series').

    `relative`: compare on a relative scale (samples/s), and `min_change` is relative;
    otherwise absolute. `noise_floor`: the smallest noise sigma assumed (same scale)."""
    import numpy as np  # noqa: PLC0415  numpy: off the light paths

    if min_size < 1:
        raise ValueError("min_size must be >= 1")
    kept = [(i, float(v)) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    n = len(kept)
    if n < 2 * min_size:
        return []
    raw = [v for _, v in kept]
    scale = statistics.median(raw) if relative else 1.0
    if relative and scale <= 0:
        return []
    scaled = [v / scale for v in raw]
    floor = noise_floor if noise_floor is not None else (
        RELATIVE_NOISE_FLOOR if relative else ABSOLUTE_NOISE_FLOOR)
    sigma = noise_sigma(scaled, floor)
    signal = np.asarray(scaled, dtype=float).reshape(-1, 1) / sigma
    penalty = penalty_factor * math.log(n)
    bounds = segment(signal, min_size, penalty)  # starts of new stretches (kept-point indexes)

    def steps_of(cuts: list[int]) -> list[tuple[int, float, float, int, int]]:
        edges = [0] + cuts + [n]
        out = []
        for k, cut in enumerate(cuts):
            left = raw[edges[k]:cut]
            right = raw[cut:edges[k + 2]]
            out.append((cut, statistics.median(left), statistics.median(right), len(left),
                        len(right)))
        return out

    def size(step: tuple[int, float, float, int, int]) -> float:
        _, before, after, _, _ = step
        if relative:
            return abs(after - before) / before if before else math.inf
        return abs(after - before)

    def persistent(step: tuple[int, float, float, int, int]) -> bool:
        # Most points on each side sit on their own side of the midpoint between the levels,
        # and at least min_size of them: one odd run at the end is not a new level.
        cut, before, after, nb, na = step
        k = bounds.index(cut)
        edges = [0] + bounds + [n]
        middle = (before + after) / 2.0
        left, right = raw[edges[k]:cut], raw[cut:edges[k + 2]]
        up = after > before
        agree_right = sum((v > middle) if up else (v < middle) for v in right)
        agree_left = sum((v < middle) if up else (v > middle) for v in left)
        return (agree_right >= max(min_size, (na + 1) // 2)
                and agree_left >= max(min_size, (nb + 1) // 2))

    while bounds:  # drop steps too small or not persistent, smallest first (stretches merge)
        found = steps_of(bounds)
        invalid = [f for f in found if size(f) < min_change or not persistent(f)]
        if not invalid:
            break
        bounds.remove(min(invalid, key=size)[0])
    return [Step(kept[cut][0], before, after, nb, na)
            for cut, before, after, nb, na in steps_of(bounds)]


def series_changes(points: Sequence[Any], metric: str, min_size: int = DEFAULT_MIN_SIZE,
                   min_change: float | None = None) -> list[ChangePoint]:
    """Change points of one config's history (history.Point objects, in order) for a metric."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    _, _, higher_is_better, relative = METRICS[metric]
    values = [p.value(metric) for p in points]
    floor = None
    if relative:
        rsds = [p.rsd for p in points if p.rsd is not None]
        floor = max(RELATIVE_NOISE_FLOOR, statistics.median(rsds) if rsds else 0.0)
    threshold = DEFAULT_MIN_CHANGE[metric] if min_change is None else min_change
    out = []
    for step in detect(values, relative=relative, min_size=min_size, min_change=threshold,
                       noise_floor=floor):
        point = points[step.index]
        worse = step.after < step.before if higher_is_better else step.after > step.before
        out.append(ChangePoint(point.device_class, point.config_id, metric, step.index,
                               point.report_id, point.commit, point.label, step.before,
                               step.after, step.delta, step.relative,
                               "regression" if worse else "improvement", step.points_before,
                               step.points_after))
    return out


def find_changes(series: dict[tuple[str, str], list[Any]],
                 metrics: Iterable[str] = tuple(METRICS), min_size: int = DEFAULT_MIN_SIZE,
                 min_change: dict[str, float] | None = None) -> list[ChangePoint]:
    """Change points of every series of a store (Store.series()), config by config."""
    out = []
    for key in sorted(series):
        for metric in metrics:
            out += series_changes(series[key], metric, min_size,
                                  (min_change or {}).get(metric))
    return out


@dataclass
class RunHistory:
    """One run of a report in its config's history: the series' points (the run among them,
    at `current`) and the change points found over them."""

    run: Run
    points: list[Point]
    current: int  # index of the run in points
    changes: list[ChangePoint] = field(default_factory=list)


@dataclass
class ReportHistory:
    """What the store holds about a report (the HTML report shows it): each run's history,
    the report's own row (None when it is not stored), the reports up to it, the store's name
    (None: no store, each run is a series of one)."""

    runs: list[RunHistory]
    stored: StoredReport | None = None
    listing: list[StoredReport] = field(default_factory=list)
    name: str | None = None


def report_history(report: Report, store: Store | None) -> ReportHistory:
    """Each run's history (up to the report when it is stored; the report appended, as the
    current point, when not) with its change points."""
    stored = store.find_digest(digest_of(report)) if store is not None else None
    series = store.series(up_to=stored.id if stored else None) if store is not None else {}
    listing = store.reports() if store is not None else []
    if stored is not None:
        listing = [r for r in listing if r.id <= stored.id]
    git = report.environment.git or {}
    created = (report.environment.model_extra or {}).get("created")
    runs = []
    for position, run in enumerate(report.runs):
        points = list(series.get((run.device.class_, run.config.id), []))
        current = None
        if stored is not None:
            current = next((i for i, p in enumerate(points)
                            if p.report_id == stored.id and p.position == position), None)
        if current is None:  # not in the store: shown last, labelled `current`
            points.append(run_point(run, position, git.get("commit"), created))
            current = len(points) - 1
        changes = [c for metric in METRICS for c in series_changes(points, metric)]
        runs.append(RunHistory(run, points, current, changes))
    return ReportHistory(runs, stored, listing, store.name if store is not None else None)
