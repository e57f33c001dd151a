"""The HTML report (asrbench/render/html.py): what the page holds, that data is escaped, and,
in headless Chromium (Debian's chromium and chromium-driver, driven by Selenium), that the
charts of a history of real runs render with one point per run, the tables hold their rows, no
script error is logged and nothing is fetched. The browser test saves a screenshot to
$ASRBENCH_ARTIFACTS (default reports/artifacts/) as html-report.png, with the page beside it."""

from __future__ import annotations

import json
import os
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from factories import PLANTED_AT, ROOT, make_report_document, run_cli, write_report

from asrbench.errors import AsrbenchError
from asrbench.formats.io import load_report
from asrbench.formats.model import parse_report
from asrbench.gate.baselines import predictions_digest
from asrbench.gate.outcome import gate_report, update_baselines
from asrbench.history.changepoints import report_history
from asrbench.history.store import add_report, open_store
from asrbench.render.html import build_html, html_word_diff, script_json, write_html

HOSTILE = "<img src=x onerror=alert(1)> </script><script>alert(2)</script> & \"quoted\""
CHARTS = ("samples_per_second", "wer", "cer", "compilations")


class Tags(HTMLParser):
    """Every start tag and its attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _parse(text: str) -> Tags:
    parser = Tags()
    parser.feed(text)
    return parser


def _baselines(directory: Path, report, change: dict[str, str] | None = None) -> Path:
    """A baseline directory recorded from `report`, with some predictions changed."""
    update_baselines(report, directory)
    path = directory / "cpu.json"
    document = json.loads(path.read_text())
    for entry in document["entries"].values():
        entry["predictions"].update(change or {})
        entry["predictions_sha256"] = predictions_digest(entry["predictions"])
    path.write_text(json.dumps(document))
    return directory


def _page(report, store, baselines: Path) -> str:
    """The page as `asrbench html` makes it: the report judged against `baselines` (the
    caller runs the gate), then rendered with the store's history."""
    return build_html(report, gate_report(report, baselines, None, "report"),
                      report_history(report, store))


def _figures(text: str) -> dict:
    scripts = _parse(text).scripts
    return json.loads(scripts[0])


def test_everything_from_data_is_escaped(tmp_path):
    document = make_report_document(predictions={"u1": "hello world", "u<2>": "good morning"},
                           hostname="<script>alert('host')</script>")
    report = parse_report(document)
    baselines = _baselines(tmp_path / "baselines", parse_report(make_report_document()),
                           {"u1": HOSTILE})
    url = str(tmp_path / "h.sqlite")
    add_report(url, write_report(tmp_path / "r.json", document), commit="</script><b>x</b>")
    with open_store(url) as store:
        text = _page(report, store, baselines)
    parsed = _parse(text)
    names = [tag for tag, _ in parsed.tags]
    assert names.count("script") == 3  # the figures' JSON, plotly.js, the start-up script
    import plotly.offline

    # the version of the plotly.js inlined, not of the Python package (7.1.0 beside 4.1.1)
    assert f"plotly.js {plotly.offline.get_plotlyjs_version()}\n(inlined" in text
    assert "img" not in names and "b" not in names
    assert not [(t, a) for t, a in parsed.tags for a in a if a.lower().startswith("on")]
    # Nothing is loaded from anywhere: no src or href attribute at all, and a CSP that forbids it.
    assert not [a for _, attrs in parsed.tags for a in attrs if a in ("src", "href")]
    csp = next(a["content"] for t, a in parsed.tags if a.get("http-equiv") ==
               "Content-Security-Policy")
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp
    assert "&lt;img src=x onerror=alert(1)&gt;" in text  # the diff shows the text itself
    assert "&lt;script&gt;alert(&#x27;host&#x27;)&lt;/script&gt;" in text
    assert "u&lt;2&gt;" in text
    figures = parsed.scripts[0]
    assert "<" not in figures and ">" not in figures and "&" not in figures.replace("\\u0026", "")
    labels = json.loads(figures)["chart-0-samples_per_second"]["data"][0]["x"]
    assert labels == ["#1 &lt;/script&gt;&lt;b&gt;"]  # plotly renders HTML in labels: escaped


def test_the_page_shows_the_verdicts_it_is_handed_and_judges_nothing(tmp_path):
    """render.html never runs the gate (issue 30): the page shows the outcome its caller
    judged. A report judged against its own baseline passes; handed an outcome that says its
    WER regressed, the page says FAIL with that verdict, whatever the baselines say."""
    from factories import make_verdict

    from asrbench.gate.outcome import GateOutcome
    from asrbench.gate.policy import Policy

    report = parse_report(make_report_document())
    baselines = _baselines(tmp_path / "baselines", report)
    judged = gate_report(report, baselines)
    assert not judged.failed
    alone = report_history(report, None)
    assert 'id="gate-result" class="improved">Gate:\npass' in build_html(report, judged, alone)
    planted = judged.comparisons[0].model_copy(update={"verdicts": [make_verdict(
        "cfg", "wer", "regressed", 0.3, 0.2, 0.1, 0.005, "planted by the caller")]})
    handed = GateOutcome([planted], Policy(), "given.json", baseline_dir="elsewhere")
    page = build_html(report, handed, alone)
    assert 'id="gate-result" class="regressed">Gate:\nFAIL (baselines from elsewhere)' in page
    assert "<td>planted by the caller</td>" in page and "Report given.json" in page


def test_script_json_cannot_close_a_script_element():
    text = script_json({"a": "</script><!-- \u2028 & >"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- \u2028 & >"}


def test_word_diff_marks_removed_and_added_words_escaped():
    assert html_word_diff("the <b>cat</b> sat", "the dog sat down") == \
        "the <del>&lt;b&gt;cat&lt;/b&gt;</del> <ins>dog</ins> sat <ins>down</ins>"
    assert html_word_diff(None, "new") == "<ins>new</ins>"


def test_charts_follow_the_history_and_highlight_the_current_run(tmp_path):
    url = str(tmp_path / "h.sqlite")
    paths = []
    for n, sps in enumerate([10.0, 10.1, 9.9, 10.0, 8.0, 8.1, 7.9]):
        paths.append(write_report(tmp_path / f"r{n}.json", make_report_document(
            commit=f"{n:x}" * 40, sps=sps, per_pass=[sps * 0.995, sps, sps * 1.005],
            created=f"2026-01-0{n + 1}T00:00:00+00:00")))
        add_report(url, paths[-1])
    baselines = _baselines(tmp_path / "baselines", load_report(paths[0]))
    with open_store(url) as store:
        middle = _figures(_page(load_report(paths[5]), store, baselines))
        latest_text = _page(load_report(paths[6]), store, baselines)
        outside = parse_report(make_report_document(commit="e" * 40, sps=7.0))
        appended = _figures(_page(outside, store, baselines))
    alone = _figures(_page(outside, None, baselines))
    sps = middle["chart-0-samples_per_second"]
    history_trace, current = sps["data"][0], sps["data"][1]
    assert history_trace["name"] == "history" and current["name"] == "current run"
    assert len(history_trace["y"]) == 6  # up to the report shown, not the later ones
    assert current["x"] == ["#6 555555555555"] and current["y"] == [8.1]
    shapes = {s["name"]: s for s in sps["layout"]["shapes"]}
    assert shapes["baseline"]["y0"] == 10.0  # recorded from the first report
    assert shapes["baseline band"]["y0"] < 10.0 < shapes["baseline band"]["y1"]
    assert shapes["change point"]["x0"] == 3.5  # the step starts at the 5th run
    latest = _figures(latest_text)
    assert len(latest["chart-0-samples_per_second"]["data"][0]["y"]) == 7
    assert [t["name"] for t in latest["chart-0-wer"]["data"]] == ["history", "normalized WER",
                                                                  "current run"]
    assert latest["chart-0-compilations"]["data"][0]["y"] == [None] * 7  # not counted on CPU
    assert "not counted on this device" in json.dumps(latest["chart-0-compilations"]["layout"])
    appended_x = appended["chart-0-samples_per_second"]["data"][0]["x"]
    assert len(appended_x) == 8 and appended_x[-1] == "current"  # not stored: shown last
    assert alone["chart-0-samples_per_second"]["data"][0]["y"] == [7.0]
    rows = _parse(latest_text)
    assert "change-points" in {a.get("id") for _, a in rows.tags}
    assert "regression" in latest_text and "-20.0%" in latest_text


def test_html_command_writes_the_file_atomically_and_checks_its_input(tmp_path, capsys):
    report = write_report(tmp_path / "r.json", make_report_document())
    out = tmp_path / "out" / "report.html"
    assert run_cli(["html", "--report", str(report), "--out", str(out),
                    "--baseline-dir", str(tmp_path / "none")]) == 0
    assert "self-contained" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left
    with pytest.raises(AsrbenchError, match="is a directory"):
        run_cli(["html", "--report", str(report), "--out", str(tmp_path)])
    with pytest.raises(AsrbenchError, match="not found"):
        run_cli(["html", "--report", str(report), "--out", str(out), "--history",
                 str(tmp_path / "missing.sqlite")])
    with pytest.raises(AsrbenchError, match="report .*no.json not found"):
        run_cli(["html", "--report", str(tmp_path / "no.json"), "--out", str(out)])
    write_html(out, "replaced")  # atomically over the old file
    assert out.read_text(encoding="utf-8") == "replaced"


# -- in a real browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else \
    shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium "
                    "chromium-driver; scripts/setup.sh does as root)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", "--host-resolver-rules=MAP * ~NOTFOUND",
                 "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # The driver is named explicitly: Selenium Manager downloads nothing.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _artifacts() -> Path:
    directory = Path(os.environ.get("ASRBENCH_ARTIFACTS") or ROOT / "reports" / "artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


CHART_STATE = """
return Array.from(document.querySelectorAll('div.chart')).map(function (div) {
  return {id: div.id, metric: div.dataset.metric, expected: Number(div.dataset.points),
          names: (div.data || []).map(function (t) { return t.name; }),
          counts: Array.from(div.querySelectorAll('.scatterlayer .trace')).map(
              function (t) { return t.querySelectorAll('path.point').length; }),
          shapes: ((div.layout || {}).shapes || []).map(function (s) { return s.name; }),
          svgs: div.querySelectorAll('svg.main-svg').length};
});
"""


def test_real_history_renders_in_chromium(real_history, browser, tmp_path):
    """Real runs, their throughput planted (runs 4-6 at half the speed: factories.PLANTED_LEVELS),
    so the regression and the change point do not depend on how busy the machine is."""
    url, reports, commits = real_history
    # The baseline from the three full-speed runs (a multi-process entry: a one-process entry's
    # band is at least 60% and would call the planted halving unchanged).
    baselines = _baselines(tmp_path / "baselines",
                           [load_report(r) for r in reports[:PLANTED_AT]])
    current = load_report(reports[-1])
    first_id = current.runs[0].utterances[0].id
    document = json.loads((baselines / "cpu.json").read_text())  # one changed transcript
    for entry in document["entries"].values():
        entry["predictions"][first_id] = HOSTILE
        entry["predictions_sha256"] = predictions_digest(entry["predictions"])
        # its edit counts were the old prediction's: the gate refuses counts impossible for the
        # new text (gate/accuracy.py check_edits), so the doctored utterance keeps none
        entry.get("edits", {}).pop(first_id, None)
        # the throughput is planted: judged however busy the machine was when the runs ran
        entry["tolerance"]["cpu_share_min"] = 0.0
        # its edit counts were the old prediction's: the gate refuses counts impossible for the
        # new text (gate/accuracy.py check_edits), so the doctored utterance keeps none
        entry.get("edits", {}).pop(first_id, None)
    (baselines / "cpu.json").write_text(json.dumps(document))
    artifacts = _artifacts()
    page = artifacts / "html-report.html"
    assert run_cli(["html", "--report", str(reports[-1]), "--history", url, "--baseline-dir",
                    str(baselines), "--out", str(page)]) == 0

    browser.get(page.resolve().as_uri())
    deadline = time.monotonic() + 60
    while browser.execute_script("return document.body.dataset.chartsRendered") != "4":
        assert time.monotonic() < deadline, "the charts did not finish rendering"
        time.sleep(0.2)

    charts = {c["metric"]: c for c in browser.execute_script(CHART_STATE)}
    assert set(charts) == set(CHARTS)
    for metric in ("samples_per_second", "wer", "cer"):
        chart = charts[metric]
        assert chart["svgs"] >= 1 and chart["expected"] == len(reports) == 6
        assert chart["counts"][chart["names"].index("history")] == 6, chart  # one per run
        assert chart["counts"][chart["names"].index("current run")] == 1, chart
    assert charts["wer"]["counts"][charts["wer"]["names"].index("normalized WER")] == 6
    assert charts["compilations"]["expected"] == 0  # CPU runs count no compilations
    assert sum(charts["compilations"]["counts"]) == 0  # no point drawn, not even the star
    assert {"baseline band", "baseline", "change point"} <= set(
        charts["samples_per_second"]["shapes"])

    def rows(table_id: str) -> list[list[str]]:
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))"
            ".map(function (r) { return Array.from(r.cells).map(function (c) {"
            " return c.textContent; }); });", table_id)

    verdicts = rows("verdicts")
    assert [r[1] for r in verdicts] == ["wer", "wer_normalized", "cer", "samples_per_second",
                                        "counters"]
    assert verdicts[3][6] == "regressed"  # half the planted speed of the baseline (run 1)
    assert verdicts[4][6] == "unchanged"  # same code, same inputs: the same counted work
    assert [r[1] for r in rows("history")] == commits
    steps = rows("change-points")
    assert len(steps) == 1 and steps[0][2] == "samples/s" and steps[0][7] == "regression"
    assert steps[0][3] == f"#{PLANTED_AT + 1} {commits[PLANTED_AT][:12]}"
    changed = rows("transcripts-0")
    assert len(changed) == 1 and changed[0][0] == first_id
    assert HOSTILE.split()[0] in changed[0][1]  # shown as text...
    assert browser.execute_script("return document.querySelectorAll('img, [onerror]').length") == 0
    assert browser.execute_script(  # ...and the diff is marked up
        "return document.querySelectorAll('#transcripts-0 del').length") >= 1
    assert len(rows("environment")) > 10

    # Full-page screenshot for the CI artifacts.
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 100, 12000))
    time.sleep(0.5)
    assert browser.save_screenshot(str(artifacts / "html-report.png"))

    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == [], severe
    fetched = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            fetched.append(message["params"]["request"]["url"])
    assert fetched and all(u.split(":", 1)[0] in ("file", "data", "blob", "about")
                           for u in fetched), fetched


def test_long_histories_are_thinned_keeping_recent_runs_extremes_and_steps():
    """3,000 runs: every one of the last 500 is drawn; the 2,500 older ones are thinned to each
    bucket's lowest and highest value, with both runs around a change point and the current
    run kept (so a spike and a step still show); short histories are drawn whole."""
    from asrbench.history.changepoints import series_changes
    from asrbench.history.store import Point
    from asrbench.render.html import OLDER_BUCKETS, RECENT_POINTS, ConfigView, shown

    run = parse_report(make_report_document()).runs[0]
    values = [10.0 + 0.01 * (i % 7) for i in range(3000)]
    values[123] = 30.0  # a spike among the older runs
    values[1500:] = [8.0 + 0.01 * (i % 7) for i in range(1500)]  # a step at run 1500
    points = [Point(i + 1, 0, "cfg", "cpu", 0.2, 0.2, 0.1, v, 0.01, 3, 8, None, [v] * 3)
              for i, v in enumerate(values)]
    view = ConfigView(run, points, current=200,
                      changes=series_changes(points, "samples_per_second"))
    assert [c.index for c in view.changes] == [1500]
    kept = shown(view, ("samples_per_second",))
    assert kept == sorted(set(kept)) and kept[-RECENT_POINTS:] == list(range(2500, 3000))
    assert len(kept) <= RECENT_POINTS + 2 * OLDER_BUCKETS + 3
    assert {123, 1499, 1500, 200} <= set(kept)
    assert min(values[i] for i in kept) == min(values) and max(values[i] for i in kept) == 30.0
    short = ConfigView(run, points[:900], current=899)
    assert shown(short, ("samples_per_second",)) == list(range(900))
