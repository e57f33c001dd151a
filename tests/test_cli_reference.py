"""docs/cli.md is the parser's help, current; every --help starts without the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from asrbench.cli.reference import render

ROOT = Path(__file__).resolve().parent.parent


def test_docs_cli_md_is_generated_from_the_current_parser():
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == render(), ("docs/cli.md is out of date: run "
                                 "`python -m asrbench.cli.reference > docs/cli.md`")


def test_the_reference_holds_every_command_and_a_shared_option_of_each():
    text = render()
    for command in ("asrbench run", "asrbench compare", "asrbench peers",
                    "asrbench baseline update", "asrbench history add", "asrbench history list",
                    "asrbench history show", "asrbench history changes", "asrbench html",
                    "asrbench export", "asrbench ab"):
        assert f"\n## {command}\n" in text, command
    # --report defaults to the one path settings.py defines, in every command that reads one
    assert text.count("(default reports/latest.json)") >= 5


HELP_IMPORTS = """
import json, sys
from asrbench.cli.main import main
for argv in %s:
    try:
        main(argv + ["--help"])
    except SystemExit as exc:
        assert exc.code == 0, argv
heavy = sorted(m for m in ("torch", "transformers", "numpy", "plotly", "ruptures")
               if m in sys.modules)
sys.stderr.write(json.dumps(heavy))
"""


def test_help_of_every_command_imports_no_heavy_library():
    commands = [[], ["run"], ["compare"], ["peers"], ["baseline", "update"], ["history", "add"],
                ["history", "changes"], ["html"], ["export"], ["ab"], ["bisect"]]
    out = subprocess.run([sys.executable, "-c", HELP_IMPORTS % json.dumps(commands)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []


def test_what_next_after_a_run_names_commands_that_parse_with_the_report(tmp_path):
    import shlex

    from asrbench.cli.main import parse
    from asrbench.render.doors import what_next

    report = tmp_path / "my run" / "r.json"
    lines = what_next(report).splitlines()
    assert lines[0] == "next:" and len(lines) == 4
    commands = [shlex.split(line.split("  #")[0])[1:] for line in lines[1:]]
    parsed = [parse(argv) for argv in commands]
    assert [a.command for a in parsed] == ["compare", "baseline", "html"]
    assert parsed[0].report == report and parsed[1].report == [report]
    assert parsed[2].report == report and parsed[2].out == report.with_suffix(".html")
