"""Issue 29, "done when": regressions written outside the project, judged through the real CLI.

benchmarks/tools/out_of_tree.py writes each regression where asrbench cannot see it (a
`sitecustomize.py` plugin on PYTHONPATH that patches transformers' Whisper classes at import),
runs `asrbench run --counters-only` under it in a fresh process and `asrbench compare` against a
baseline recorded from a clean timed run of the same settings; clean counters-only reruns are
compared with the baseline the same way. Here: two of its kinds (a `.tolist()` per decode step,
outputs kept alive) and three clean reruns, on the tiny Whisper (3 clips, batches of 2, a
16-token cap). Slow: seven `asrbench` children (tiny_whisper)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "benchmarks" / "tools" / "out_of_tree.py"
MAX_LENGTH = 16  # the tool's --generation-max-length
PROMPT = 4  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
D_MODEL = 32  # helpers.TINY_WHISPER


def _tool():
    spec = importlib.util.spec_from_file_location("out_of_tree", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_out_of_tree_regressions_fail_compare_naming_them_and_clean_reruns_never_differ(
        tiny_whisper, tmp_path, capsys):
    tool = _tool()
    code = tool.main(["--cases", "tolist-per-decode-step", "outputs-kept-alive",
                      "--reruns", "3", "--model", str(tiny_whisper),
                      "--keep", str(tmp_path / "work")])
    out = capsys.readouterr().out
    assert code == 0, out
    # The tiny Whisper never ends a row before the cap: one decoder call per generated token,
    # MAX_LENGTH - PROMPT of them per batch, each with the plugin's .tolist().
    calls = MAX_LENGTH - PROMPT
    tolist = out.split("CAUGHT: tolist per decode step")[1].split("CAUGHT:")[0]
    assert re.search(r"host reads: Tensor\.tolist @ sitecustomize\.py:trace_tokens\.\S*read_back "
                     rf"\+{calls} \(new\)", tolist), tolist
    assert "result: FAIL" in tolist
    # Kept alive: the hidden states (rows x positions x d_model float32) the decoder layer
    # returned at each call stay alive after the batch: the prompt call's and each step's;
    # in the first batch (2 rows) and in the partial last batch (1 row), each named.
    kept = out.split("CAUGHT: outputs kept alive")[1].split("clean reruns")[0]
    for label, rows in (("", 2), ("batch 2/2 (1 of 1 rows real), ", 1)):
        hidden = rows * PROMPT * D_MODEL * 4 + (calls - 1) * rows * 1 * D_MODEL * 4
        assert f"[{label}bytes still alive after the batch 0 -> {hidden} (+{hidden})" in kept, \
            kept
    assert "result: FAIL" in kept
    assert "3 clean reruns (--counters-only): 0 counter difference(s) from the baseline, " \
           "compare failed 0 time(s)" in out, out
    # The reports are real: each rerun counted the same batches as the baseline, and the
    # counters are not empty.
    work = tmp_path / "work"
    baseline = tool.counters_of(work / "baseline-cpu.json")
    assert baseline["decode_steps"] == calls and baseline["batches_in_pass"] == 2
    for number in range(3):
        assert tool.counters_of(work / f"rerun-{number}.json") == baseline
