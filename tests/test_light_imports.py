"""The light paths import no torch and no transformers: the pytest plugin as any repository loads
it, every `--help`, and the commands that only read and write JSON (compare, baseline update,
history, export, html). Each check runs in a fresh interpreter and reads its sys.modules.

Also: an optional dependency that is missing is one line naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
from factories import make_report_document, write_report

import asrbench
from asrbench.cli.common import (
    CANDIDATE_GENERATOR,
    OBJECT_DETECTION_LOSS,
    leave_out_scikit_learn,
    leave_out_scipy,
)
from asrbench.errors import AsrbenchError

HEAVY = ("torch", "transformers")
SUBCOMMANDS = ("run", "compare", "peers", "baseline", "history", "html", "export", "ab", "bisect")
NESTED = (("baseline", "update"), ("history", "add"), ("history", "list"), ("history", "show"),
          ("history", "changes"))


def heavy_after(code: str, cwd: Path, modules: tuple[str, ...] = HEAVY
                ) -> tuple[list[str], subprocess.CompletedProcess]:
    """Run `code` in a fresh interpreter, then report which of `modules` (HEAVY) it imported."""
    printed = ("import json, sys; "
               f"print(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", f"{code}\n{printed}"], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**_env(), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ASRBENCH_")}


def cli(argv: list[str], cwd: Path, modules: tuple[str, ...] = HEAVY
        ) -> tuple[list[str], subprocess.CompletedProcess]:
    """`asrbench ARGV` in a fresh interpreter (as `python -m asrbench`), its exit kept; which
    of `modules` it imported."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['asrbench', *{argv!r}]\n"
            "try:\n"
            "    runpy.run_module('asrbench', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exc:\n"
            "    print('exit', exc.code)\n")
    return heavy_after(code, cwd, modules)


def test_plugin_options_load_no_torch(tmp_path):
    # collection in an empty folder with only this plugin loaded: pytest_addoption and
    # pytest_configure run on pytest's real parser and config
    heavy, done = heavy_after("import pytest\n"
                              "code = pytest.main(['--co', '-q', '-p', 'asrbench.plugin', "
                              "'-p', 'no:cacheprovider'])\n"
                              "assert code == pytest.ExitCode.NO_TESTS_COLLECTED, code",
                              tmp_path)
    assert heavy == [], done.stderr
    assert "no tests collected" in done.stdout


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in SUBCOMMANDS),
                                  *([*pair, "--help"] for pair in NESTED)],
                         ids=lambda argv: " ".join(argv))
def test_help_loads_no_torch(tmp_path, argv):
    heavy, done = cli(argv, tmp_path)
    assert "exit 0" in done.stdout and "usage: asrbench" in done.stdout, done.stderr
    assert heavy == []


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    return write_report(tmp_path / "r.json", make_report_document())


def test_compare_loads_no_torch(tmp_path, report_file):
    (tmp_path / "bl").mkdir()  # a baseline folder that does not exist is refused (issue 28)
    heavy, done = cli(["compare", "--report", str(report_file), "--baseline-dir", "bl",
                       "--allow-missing-baselines"], tmp_path)
    assert "exit 0" in done.stdout, done.stderr
    assert "cfg" in done.stdout  # the report's one config is in the verdict table
    assert heavy == []


def test_baseline_update_loads_no_torch(tmp_path, report_file):
    heavy, done = cli(["baseline", "update", "--report", str(report_file), "--baseline-dir",
                       "bl"], tmp_path)
    assert "exit 0" in done.stdout, done.stderr
    entries = json.loads((tmp_path / "bl" / "cpu.json").read_text(encoding="utf-8"))["entries"]
    assert list(entries) == ["cfg"]
    assert heavy == []


def test_history_add_and_list_load_no_torch(tmp_path, report_file):
    store = str(tmp_path / "h.sqlite")
    heavy, done = cli(["history", "add", "--report", str(report_file), "--history", store],
                      tmp_path)
    assert "exit 0" in done.stdout and heavy == [], done.stderr
    heavy, done = cli(["history", "list", "--history", store], tmp_path)
    assert "exit 0" in done.stdout, done.stderr
    assert "a" * 7 in done.stdout  # the hand-built report's commit, abbreviated
    assert heavy == []


def test_export_loads_no_torch(tmp_path, report_file):
    heavy, done = cli(["export", "--report", str(report_file), "--format", "pytest-benchmark",
                       "--out", "e.json"], tmp_path)
    assert "exit 0" in done.stdout, done.stderr
    exported = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))
    assert [b["name"] for b in exported["benchmarks"]] == ["cfg"]
    assert heavy == []


def test_html_loads_no_torch(tmp_path, report_file):
    store = str(tmp_path / "h.sqlite")
    assert "exit 0" in cli(["history", "add", "--report", str(report_file), "--history", store],
                           tmp_path)[1].stdout
    heavy, done = cli(["html", "--report", str(report_file), "--history", store,
                       "--out", "x.html"], tmp_path)
    assert "exit 0" in done.stdout, done.stderr
    assert (tmp_path / "x.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert heavy == []


# -- what a measuring command leaves out ---------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None
                    or importlib.util.find_spec("scipy") is None,
                    reason="scikit-learn or scipy is not installed: transformers cannot "
                           "import it")
def test_a_run_loads_transformers_generation_and_losses_but_no_scikit_learn_or_scipy(
        tmp_path, tiny_whisper):
    """`asrbench run` of a Whisper model keeps transformers from importing scikit-learn
    (cli/common.py leave_out_scikit_learn: about 1 s of a counters-only run) and scipy
    (leave_out_scipy: about 0.3 s), though transformers' generation module and its
    object-detection losses, which import them wherever they are installed, are loaded."""
    generation, losses = CANDIDATE_GENERATOR, OBJECT_DETECTION_LOSS
    loaded, done = cli(["run", "--model", str(tiny_whisper), "--device", "cpu",
                        "--dataset-config", "en", "--language", "english", "--limit", "2",
                        "--generation-max-length", "8", "--counters-only", "--report",
                        "r.json", "--no-progress"], tmp_path,
                       modules=("sklearn", "scipy", generation, losses))
    assert "exit 0" in done.stdout, done.stderr[-3000:]
    assert loaded == sorted([generation, losses])


@pytest.fixture
def scipy_flag(monkeypatch):
    """transformers' scipy flag as a fresh process has it: set, the losses not loaded yet."""
    import transformers.utils.import_utils as import_utils

    monkeypatch.delitem(sys.modules, OBJECT_DETECTION_LOSS, raising=False)
    monkeypatch.setattr(import_utils, "_scipy_available", True)
    return import_utils


def test_scipy_is_left_out_only_where_every_model_is_known_to_do_without_it(
        scipy_flag, tmp_path, tiny_whisper, monkeypatch):
    """A run whose models include one that may need scipy (Pop2Piano's feature extractor asks
    transformers' flag), one whose type cannot be read, or a Hub model not in the local cache
    keeps scipy; so does one where the losses are loaded already or the flag does not exist."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "no-hub"))
    piano = tmp_path / "piano"
    piano.mkdir()
    (piano / "config.json").write_text('{"model_type": "pop2piano"}', encoding="utf-8")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("[1, 2", encoding="utf-8")
    for models in ([str(tiny_whisper), str(piano)], [str(broken)], ["openai/whisper-small"],
                   ["bundled:whisper-base", "openai/whisper-small"]):
        assert leave_out_scipy(models) is False, models
        assert scipy_flag._scipy_available is True
    monkeypatch.setitem(sys.modules, OBJECT_DETECTION_LOSS, object())
    assert leave_out_scipy([str(tiny_whisper)]) is False  # losses loaded already
    monkeypatch.delitem(sys.modules, OBJECT_DETECTION_LOSS)
    assert scipy_flag._scipy_available is True
    assert leave_out_scipy(["bundled:whisper-base", str(tiny_whisper)]) is True
    assert scipy_flag._scipy_available is False
    monkeypatch.delattr(scipy_flag, "_scipy_available")  # a transformers without the flag
    assert leave_out_scipy([str(tiny_whisper)]) is False
    assert not hasattr(scipy_flag, "_scipy_available")


def test_a_model_type_is_read_without_loading_the_model(tmp_path, tiny_whisper, monkeypatch):
    """stated_model_type: a bundled model is Whisper; a folder's or a cached Hub model's
    config.json says its type; anything else is unknown (None), never an error."""
    from asrbench.measure.models import stated_model_type

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert stated_model_type("bundled:whisper-base") == "whisper"
    assert stated_model_type(str(tiny_whisper)) == "whisper"
    assert stated_model_type("openai/whisper-small") is None  # not in the cache
    snapshot = tmp_path / "hub" / "models--org--speech" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40, encoding="utf-8")
    (snapshot / "config.json").write_text('{"model_type": "speech_to_text"}', encoding="utf-8")
    assert stated_model_type("org/speech") == "speech_to_text"
    for text in ('["whisper"]', '{"model_type": 7}', "{", ""):
        (snapshot / "config.json").write_text(text, encoding="utf-8")
        assert stated_model_type("org/speech") is None, text
    assert stated_model_type("not a valid id!") is None


def test_leaving_out_scikit_learn_is_transformers_flag_set_before_generation_loads(monkeypatch):
    """The flag is set only where it exists and transformers' generation is not loaded yet (after
    that it would change nothing that asrbench runs); never elsewhere."""
    import transformers.utils.import_utils as import_utils

    monkeypatch.delitem(sys.modules, CANDIDATE_GENERATOR, raising=False)
    monkeypatch.setattr(import_utils, "_sklearn_available", True)
    assert leave_out_scikit_learn() is True
    assert import_utils._sklearn_available is False
    monkeypatch.setattr(import_utils, "_sklearn_available", True)
    monkeypatch.setitem(sys.modules, CANDIDATE_GENERATOR, object())
    assert leave_out_scikit_learn() is False  # generation loaded already: left as it is
    assert import_utils._sklearn_available is True
    monkeypatch.delitem(sys.modules, CANDIDATE_GENERATOR)
    monkeypatch.delattr(import_utils, "_sklearn_available")  # a transformers without the flag
    assert leave_out_scikit_learn() is False
    assert not hasattr(import_utils, "_sklearn_available")


def test_the_plugin_leaves_transformers_flag_alone():
    """Only asrbench's own command processes change transformers' flag: never the pytest
    plugin, which runs inside users' sessions (nor the pipeline both doors share)."""
    for module in ("plugin.py", "flow.py"):
        source = (Path(asrbench.__file__).parent / module).read_text(encoding="utf-8")
        for name in ("leave_out_scikit_learn", "_sklearn_available", "leave_out_scipy",
                     "_scipy_available"):
            assert name not in source, (module, name)


# -- the history extra, missing -----------------------------------------------------------------

MISSING_HISTORY = "needs the 'history' extra: pip install 'asrbench[history]'"


def test_change_points_without_ruptures_say_which_extra(monkeypatch):
    from asrbench.history.changepoints import detect

    monkeypatch.setitem(sys.modules, "ruptures", None)
    with pytest.raises(AsrbenchError) as raised:
        detect([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    assert str(raised.value) == "asrbench history " + MISSING_HISTORY


def test_postgresql_store_without_psycopg_says_which_extra(monkeypatch):
    from asrbench.history.store import Store

    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(AsrbenchError) as raised:
        Store("postgresql://nobody@127.0.0.1:9/nothing")
    assert str(raised.value) == "asrbench history " + MISSING_HISTORY


def test_html_without_plotly_says_which_extra(monkeypatch):
    from asrbench.formats.model import parse_report
    from asrbench.gate.outcome import GateOutcome
    from asrbench.history.changepoints import report_history
    from asrbench.render.html import build_html

    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(AsrbenchError) as raised:
        report = parse_report(make_report_document())
        build_html(report, GateOutcome([]), report_history(report, None))
    assert str(raised.value) == "asrbench html " + MISSING_HISTORY
