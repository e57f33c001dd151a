"""`asrbench html`: one self-contained HTML file about a report and the history behind it.

Per config of the report: trend charts over the stored history (samples/s with the baseline
value and its allowed band, WER and normalized WER, CER, graph compilations during the timed
passes), the current run highlighted and the change points (history/changepoints.py) marked;
then the verdict table of the gate (the GateOutcome the caller judged, cli/html.py through
gate.outcome.gate_report as `asrbench compare` judges: this module never runs the gate), the
changed transcripts as word diffs, the steps found, the history's reports, and the environment and
commit of the report.

The charts are drawn by plotly.js, inlined whole (about 4.8 MB), with the figures as JSON in the
same file: opening it needs no network, and a Content-Security-Policy forbids every fetch.
Everything that comes from data (ids, transcripts, references, notes, commits, environment
values) is HTML-escaped, in the page and in the chart labels (plotly renders a subset of HTML
in labels); the figures' JSON escapes <, > and & so it can never close its <script> element.
"""

from __future__ import annotations

import difflib
import functools
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asrbench.errors import AsrbenchError, require
from asrbench.formats.io import write_text_atomic
from asrbench.formats.model import Report, Run, dump
from asrbench.formats.redact import redact as redact_secrets
from asrbench.formats.redact import redact_argv
from asrbench.history.changepoints import METRICS, ChangePoint, ReportHistory
from asrbench.history.store import Point
from asrbench.render.text import terminal_safe

if TYPE_CHECKING:  # pragma: no cover
    from asrbench.gate.outcome import GateOutcome

#: chart id suffix -> (title, y axis, metric(s) of the history trace(s))
CHARTS = (
    ("samples_per_second", "samples/s", "samples/s (higher is better)", ("samples_per_second",)),
    ("wer", "WER", "WER (lower is better)", ("wer", "wer_normalized")),
    ("cer", "CER", "CER (lower is better)", ("cer",)),
    ("compilations", "graph compilations in timed passes", "compilations",
     ("compilations_timed",)),
)
TRACE_NAMES = {"samples_per_second": "history", "wer": "history", "cer": "history",
               "compilations_timed": "history", "wer_normalized": "normalized WER"}
CURRENT_TRACE = "current run"
#: charts draw every one of a config's last RECENT_POINTS runs; older runs are thinned to
#: OLDER_BUCKETS buckets that keep their lowest and highest value (and the runs at change
#: points), so a chart of 10,000 runs stays about 1,000 points and the page stays responsive
RECENT_POINTS = 500
OLDER_BUCKETS = 250
#: the History table lists this many of the most recent reports (`asrbench history list` all)
HISTORY_ROWS = 1000
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; "
       "form-action 'none'")
_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                               "\u2028": "\\u2028", "\u2029": "\\u2029"})


def esc(value: Any) -> str:
    """Text from data, safe in HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def script_json(document: Any) -> str:
    """JSON that is safe inside a <script> element: no <, > or & appears literally."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False).translate(_JSON_ESCAPES)


def html_word_diff(before: str | None, after: str | None) -> str:
    """A word diff as HTML: removed words in <del>, added words in <ins>, all escaped."""
    a, b = (before or "").split(), (after or "").split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(esc(" ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{esc(' '.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{esc(' '.join(b[j1:j2]))}</ins>")
    return " ".join(out)


def _number(value: float | None, digits: str = ".4f") -> str:
    return "–" if value is None else format(value, digits)


@dataclass
class ConfigView:
    """What the page shows for one config of the report."""

    run: Run
    points: list[Point]
    current: int  # index of the current run in points
    changes: list[ChangePoint] = field(default_factory=list)
    comparison: Any = None  # compare.Comparison


def _safe(label: str) -> str:
    """A label from the store (its commit can hold anything) as the terminal shows it:
    control characters as escapes (then HTML-escaped where it is placed)."""
    return terminal_safe(label, newlines=False)


def _label(point: Point) -> str:
    return _safe(point.label) if point.report_id else "current"


# -- charts ------------------------------------------------------------------------------------

def shown(view: ConfigView, metrics: tuple[str, ...]) -> list[int]:
    """Indexes of view.points a chart of `metrics` draws, in order: all of the last
    RECENT_POINTS, the current run, both sides of each change point, and of the older runs in
    each of OLDER_BUCKETS buckets the lowest and the highest value of each metric."""
    count = len(view.points)
    older = count - RECENT_POINTS
    if older <= 2 * OLDER_BUCKETS:  # thinning would keep about as many points
        return list(range(count))
    keep = set(range(older, count)) | {view.current}
    keep |= {i for c in view.changes for i in (c.index - 1, c.index) if 0 <= i < count}
    for b in range(OLDER_BUCKETS):
        bucket = range(b * older // OLDER_BUCKETS, (b + 1) * older // OLDER_BUCKETS)
        for metric in metrics:
            valued = [(v, i) for i in bucket
                      if (v := view.points[i].value(metric)) is not None]
            if valued:
                keep |= {min(valued)[1], max(valued)[1]}
            else:
                keep.add(bucket[0])
    return sorted(keep)


def _figure(view: ConfigView, chart: tuple[str, str, str, tuple[str, ...]]) -> dict[str, Any]:
    """One plotly figure (validated by plotly, returned as plain JSON-ready data)."""
    go = require("plotly.graph_objects", "history", "asrbench html")
    pio = require("plotly.io", "history", "asrbench html")

    key, title, axis, metrics = chart
    indexes = shown(view, metrics)
    at = {i: n for n, i in enumerate(indexes)}  # index into view.points -> x position
    points = [view.points[i] for i in indexes]
    labels = [esc(_label(p)) for p in points]
    fig = go.Figure()
    for metric in metrics:
        values = [p.value(metric) for p in points]
        hover = [f"{esc(_label(p))}<br>{esc(p.created or '')}<br>{esc(metric)}: "
                 f"{'–' if v is None else format(v, '.4g')}"
                 for p, v in zip(points, values)]
        fig.add_trace(go.Scatter(
            x=labels, y=values, mode="lines+markers", name=TRACE_NAMES[metric],
            text=hover, hoverinfo="text", connectgaps=False,
            line={"dash": "dot"} if metric == "wer_normalized" else {}))
    current = view.points[view.current]
    first = current.value(metrics[0])
    fig.add_trace(go.Scatter(
        x=[labels[at[view.current]]] if first is not None else [],
        y=[first] if first is not None else [], mode="markers", name=CURRENT_TRACE,
        marker={"size": 16, "symbol": "star", "color": "#d62728",
                "line": {"width": 1, "color": "#000"}},
        hoverinfo="text", text=[f"current run {esc(_label(current))}"]))
    shapes, annotations = [], []
    verdict = None
    if key == "samples_per_second" and view.comparison is not None and view.comparison.has_entry:
        verdict = next((v for v in view.comparison.verdicts
                        if v.metric == "samples_per_second"), None)
    if verdict is not None and verdict.baseline is not None and verdict.verdict != "not-judged":
        allowed = verdict.allowed or 0.0
        shapes.append({"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y",
                       "y0": verdict.baseline - allowed, "y1": verdict.baseline + allowed,
                       "fillcolor": "rgba(44,160,44,0.15)", "line": {"width": 0},
                       "layer": "below", "name": "baseline band"})
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y",
                       "y0": verdict.baseline, "y1": verdict.baseline,
                       "line": {"color": "rgba(44,160,44,0.9)", "dash": "dash", "width": 1},
                       "name": "baseline"})
        annotations.append({"xref": "paper", "x": 0, "xanchor": "left", "yref": "y",
                            "y": verdict.baseline + allowed, "yanchor": "bottom",
                            "showarrow": False, "font": {"size": 10, "color": "#2ca02c"},
                            "text": f"baseline {verdict.baseline:.4g} ± {allowed:.3g}"})
    for change in view.changes:
        if change.metric not in metrics:
            continue
        x = at[change.index] - 0.5
        colour = "#d62728" if change.direction == "regression" else "#1f77b4"
        shapes.append({"type": "line", "xref": "x", "x0": x, "x1": x, "yref": "paper",
                       "y0": 0, "y1": 1, "line": {"color": colour, "dash": "dot", "width": 2},
                       "name": "change point"})
        size = (f"{change.relative:+.1%}" if change.relative is not None
                and METRICS[change.metric][3] else f"{change.delta:+.4f}")
        annotations.append({"xref": "x", "x": x, "yref": "paper", "y": 1, "yanchor": "bottom",
                            "showarrow": False, "font": {"size": 10, "color": colour},
                            "text": esc(f"step {size}")})
    if all(p.value(metrics[0]) is None for p in points):
        annotations.append({"xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                            "showarrow": False, "text": "not counted on this device"})
    fig.update_layout(
        title={"text": esc(title), "font": {"size": 14}},
        height=320, margin={"l": 60, "r": 20, "t": 50, "b": 90}, showlegend=True,
        legend={"orientation": "h", "y": -0.35}, shapes=shapes, annotations=annotations,
        xaxis={"type": "category", "categoryorder": "array", "categoryarray": labels,
               "tickangle": -30},
        # Error rates and counts are never negative: no axis below zero around a flat line.
        yaxis={"title": {"text": esc(axis)}, "rangemode": "normal" if key == "samples_per_second"
               else "nonnegative"})
    figure: dict[str, Any] = json.loads(pio.to_json(fig, validate=True, engine="json"))
    # The template goes in as JSON: plotly deep-copies a template object into every figure
    # (the cost per figure: docs/performance.md, "History at 10,000 reports").
    figure["layout"]["template"] = _template_json()
    return figure


@functools.lru_cache(maxsize=1)
def _template_json() -> dict[str, Any]:
    """The charts' plotly template ("plotly_white") as plain JSON, converted once."""
    go = require("plotly.graph_objects", "history", "asrbench html")
    pio = require("plotly.io", "history", "asrbench html")
    empty = go.Figure(layout={"template": "plotly_white"})
    template: dict[str, Any] = json.loads(pio.to_json(empty, validate=True,
                                                      engine="json"))["layout"]["template"]
    return template


# -- the page ----------------------------------------------------------------------------------

def _table(table_id: str, header: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """An HTML table; cells are escaped unless `raw` (then they are already HTML)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else esc(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _verdict_rows(comparisons: list[Any]) -> list[list[str]]:
    rows = []
    for comparison in comparisons:
        if comparison.not_judged:  # a refused or unreadable baseline: a failing row, no numbers
            rows.append([comparison.config_id, "–", "–", "–", "–", "–", "could not judge",
                         comparison.not_judged])
        for v in comparison.verdicts:
            digits = ".4g" if v.metric == "samples_per_second" else ".4f"
            rows.append([comparison.config_id, v.metric, _number(v.baseline, digits),
                         _number(v.value, digits),
                         "–" if v.delta is None else format(v.delta, "+" + digits),
                         "–" if v.allowed is None else f"±{v.allowed:{digits}}", v.verdict,
                         v.note])
    return rows


def _flatten(prefix: str, value: Any, out: list[list[str]]) -> None:
    if isinstance(value, dict):
        for key in value:
            _flatten(f"{prefix}.{key}" if prefix else str(key), value[key], out)
    elif isinstance(value, list) and prefix == "argv":
        out.append([prefix, " ".join(redact_argv(value))])
    else:
        # a report from before argv was redacted at capture, or a URL elsewhere: the page is
        # uploaded as an artifact, no password goes into it
        out.append([prefix, redact_secrets("" if value is None else json.dumps(
            value, ensure_ascii=False) if not isinstance(value, str) else value)])


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:15px;word-break:break-all}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4} td{overflow-wrap:break-word;max-width:640px}
.charts{display:grid;grid-template-columns:repeat(2,minmax(420px,1fr));gap:8px}
.chart{min-height:320px;border:1px solid #eee}
.regressed{background:#fde0e0} .improved{background:#e0f4e0}
del{background:#fdd;text-decoration:line-through} ins{background:#dfd;text-decoration:none}
.meta{color:#555;font-size:13px}
"""

SCRIPT = """
(function () {
  var figures = JSON.parse(document.getElementById('asrbench-figures').textContent);
  var done = 0;
  Object.keys(figures).forEach(function (id) {
    var f = figures[id];
    Plotly.newPlot(id, f.data, f.layout, {displaylogo: false, responsive: true})
      .then(function () {
        done += 1;
        if (done === Object.keys(figures).length) {
          document.body.setAttribute('data-charts-rendered', String(done));
        }
      });
  });
  if (Object.keys(figures).length === 0) {
    document.body.setAttribute('data-charts-rendered', '0');
  }
})();
"""


def build_html(report: Report, outcome: GateOutcome, history: ReportHistory) -> str:
    """The whole page as text, from data its caller gathered (cli/html.py): the report, the
    gate's `outcome` of it (its verdicts, the baseline folder and report path it judged) and
    what the store holds about it (history.changepoints.report_history; with no store, each
    run alone)."""
    plotly = require("plotly", "history", "asrbench html")
    require("plotly.offline", "history", "asrbench html")

    stored, listing = history.stored, history.listing
    baseline_dir = outcome.baseline_dir
    report_path = outcome.report_path
    by_id = {c.config_id: c for c in outcome.comparisons}
    views = [ConfigView(h.run, h.points, h.current, h.changes, by_id.get(h.run.config.id))
             for h in history.runs]

    figures: dict[str, Any] = {}
    sections = []
    for n, view in enumerate(views):
        run = view.run
        charts = []
        for chart in CHARTS:
            chart_id = f"chart-{n}-{chart[0]}"
            figures[chart_id] = _figure(view, chart)
            history_points = sum(1 for i in shown(view, chart[3])  # the points drawn
                                 if view.points[i].value(chart[3][0]) is not None)
            charts.append(f'<div class="chart" id="{chart_id}" data-metric="{chart[0]}" '
                          f'data-points="{history_points}"></div>')
        thinned = ""
        if len(shown(view, CHARTS[0][3])) < len(view.points):
            thinned = (f'<p class="meta thinned">{len(view.points)} runs: the charts draw '
                       f"every one of the last {RECENT_POINTS}; the older ones are thinned to "
                       f"the lowest and highest value of each of {OLDER_BUCKETS} stretches "
                       "(and the runs at each change point). The steps below are found on "
                       "every run.</p>")
        m = run.metrics
        summary = _table(f"run-{n}", ["device class", "WER", "normalized WER", "CER",
                                      "samples/s", "RSD", "passes", "history points"],
                         [[run.device.class_, _number(m.wer), _number(m.wer_normalized),
                           _number(m.cer), _number(m.samples_per_second, ".4g"),
                           "not measured" if run.throughput is None
                           else f"{run.throughput.samples_per_second_rsd:.1%}",
                           "0 (counters-only)" if run.throughput is None
                           else str(len(run.throughput.samples_per_second_per_pass)),
                           str(len(view.points))]])
        sections.append(f'<section class="config" data-config-index="{n}">'
                        f"<h3>{esc(run.config.id)}</h3>{summary}{thinned}"
                        f'<div class="charts">{"".join(charts)}</div></section>')

    changes = [c for view in views for c in view.changes]
    change_rows = [[c.config_id, c.device_class, METRICS[c.metric][0], _safe(c.label),
                    _number(c.before, ".4g"), _number(c.after, ".4g"),
                    (f"{c.relative:+.1%}" if c.relative is not None and METRICS[c.metric][3]
                     else f"{c.delta:+.4f}"), c.direction,
                    f"{c.points_before} / {c.points_after}"] for c in changes]
    transcripts = []
    for n, comparison in enumerate(c for c in outcome.comparisons if c.transcripts):
        rows = [[esc(t.id), html_word_diff(t.baseline, t.current)]
                for t in comparison.transcripts]
        transcripts.append(f"<h3>{esc(comparison.config_id)}: {len(rows)} changed</h3>"
                           + _table(f"transcripts-{n}", ["utterance", "baseline → current"],
                                    rows, raw=True))
    environment_rows: list[list[str]] = []
    _flatten("", dump(report)["environment"], environment_rows)
    history_rows = [[str(r.id), r.commit or "–", r.branch or "–", r.device_class or "–",
                     r.created or "–", r.added, str(r.runs),
                     "current" if stored is not None and r.id == stored.id else ""]
                    for r in listing[-HISTORY_ROWS:]]
    older_reports = ("" if len(listing) <= HISTORY_ROWS else
                     f'<p class="meta" id="history-older">The {HISTORY_ROWS} most recent of '
                     f"{len(listing)} reports; <code>asrbench history list</code> lists them "
                     "all.</p>")
    git = report.environment.git or {}
    commit = git.get("commit")
    verdict_rows = _verdict_rows(outcome.comparisons)
    failed = outcome.failed
    where = ("" if history.name is None else
             f" History: {esc(history.name)}, {len(listing)} report(s)"
             + (f"; this report is {esc(_safe(stored.label))}." if stored else
                "; this report is not in it (shown last, as “current”)."))
    body = f"""
<h1>asrbench report</h1>
<p class="meta">Report {esc(report_path)} · commit {esc(commit or 'unknown')}
{'(with local changes)' if git.get('dirty') else ''} · created
{esc((report.environment.model_extra or {}).get('created') or 'unknown')} · {len(report.runs)}
run(s).{where}</p>
<p id="gate-result" class="{'regressed' if failed else 'improved'}">Gate:
{'FAIL' if failed else 'pass'} (baselines from {esc(baseline_dir)})</p>
<h2>Trends per config</h2>
{''.join(sections)}
<h2>Verdicts</h2>
{_table("verdicts", ["config", "metric", "baseline", "current", "Δ", "allowed", "verdict",
                     "note"], verdict_rows)}
<h2>Persistent steps (change points)</h2>
<p class="meta">PELT over each config's history (asrbench history changes); marked with dotted
lines on the charts.</p>
{_table("change-points", ["config", "device class", "metric", "from", "before", "after", "size",
                          "direction", "runs before / after"], change_rows)}
<h2>Changed transcripts</h2>
{''.join(transcripts) or '<p id="no-transcripts">No transcript changed against the baseline.</p>'}
<h2>History</h2>
{older_reports}
{_table("history", ["id", "commit", "branch", "device class", "created", "added", "runs", ""],
        history_rows)}
<h2>Environment</h2>
{_table("environment", ["key", "value"], environment_rows)}
<p class="meta">Made by asrbench with plotly.js {esc(plotly.offline.get_plotlyjs_version())}
(inlined; no network needed).</p>
"""
    bundle = plotly.offline.get_plotlyjs()
    if "</script" in bundle.lower():  # pragma: no cover - would end the inline script early
        raise AsrbenchError("the installed plotly.js bundle cannot be inlined safely")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>asrbench report {esc((commit or '')[:12])}</title>"
            f"<style>{STYLE}</style></head><body>{body}"
            f'<script type="application/json" id="asrbench-figures">{script_json(figures)}'
            "</script>"
            f"<script>{bundle}</script><script>{SCRIPT}</script></body></html>\n")


def write_html(path: str | Path, text: str) -> None:
    """Write the page atomically (temp file in the same directory, then rename)."""
    path = Path(path)
    if path.is_dir():
        raise AsrbenchError(f"--out {path} is a directory: name a file, e.g. "
                            f"{path / 'report.html'}")
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise AsrbenchError(f"--out {path}: cannot be written ({exc.strerror or exc})") from None
