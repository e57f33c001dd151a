"""The layers written in pyproject.toml ([tool.importlinter]) hold: `lint-imports` keeps them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    # the venv's own executable first (this interpreter's bin/), then PATH
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert found, "import-linter (the dev extra) is missing: pip install -e '.[dev]'"
    return found


def test_import_contracts_are_kept():
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _cycles(package: str) -> list[list[str]]:
    """Import cycles among the package's modules, lazy imports (inside functions) included and
    imports under `if TYPE_CHECKING:` left out: for each direct import a -> b that b leads
    back from, the shortest chain b -> ... -> a, closed (each cycle once, from its first
    module in sorted order)."""
    import grimp

    graph = grimp.build_graph(package, exclude_type_checking_imports=True, cache_dir=None)
    found: set[tuple[str, ...]] = set()
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is None:
                continue
            ring = [importer, *back[:-1]]  # importer -> imported -> ... -> (importer)
            first = ring.index(min(ring))
            found.add(tuple(ring[first:] + ring[:first]))
    return [[*ring, ring[0]] for ring in sorted(found)]


def test_no_import_cycle_lazy_imports_included():
    """No module of asrbench reaches itself through imports, counting those inside functions
    (a lazy import is still a dependency: it only hides the cycle until first use)."""
    assert _cycles("asrbench") == []


def test_the_cycle_check_sees_a_lazy_cycle(tmp_path, monkeypatch):
    package = tmp_path / "cyclic_pkg_for_test"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "a.py").write_text("from cyclic_pkg_for_test import b\n", encoding="utf-8")
    (package / "b.py").write_text("def f():\n    from cyclic_pkg_for_test import a\n",
                                  encoding="utf-8")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from cyclic_pkg_for_test import d\n", encoding="utf-8")
    (package / "d.py").write_text("from cyclic_pkg_for_test import c\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles("cyclic_pkg_for_test") == [
        ["cyclic_pkg_for_test.a", "cyclic_pkg_for_test.b", "cyclic_pkg_for_test.a"]]


ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: package data, not modules of asrbench: the emulated Gaudi's stub habana_frameworks
STUBS = Path("asrbench") / "devices" / "emulation" / "stubs"


def _modules() -> set[str]:
    """Every module file of the package, as its path from the repository root; a package's
    __init__.py also answers to the package's folder (`asrbench/cli/`)."""
    return {path.relative_to(ROOT).as_posix() for path in (ROOT / "asrbench").rglob("*.py")
            if STUBS not in path.relative_to(ROOT).parents}


def _named(text: str) -> set[str]:
    """The module paths and package folders a page names in backticks."""
    return set(re.findall(r"`(asrbench/(?:[\w]+/)*(?:[\w]+\.py)?)`", text))


def test_the_map_names_every_module_and_no_other():
    """docs/architecture.md names every module file of asrbench/ (a package's __init__.py by
    its path or by its folder), and every module or package it names exists: a module added
    later fails here until the map has its line."""
    named = _named(ARCHITECTURE.read_text(encoding="utf-8"))
    modules = _modules()
    missing = sorted(m for m in modules if m not in named
                     and not (m.endswith("/__init__.py") and m[:-len("__init__.py")] in named))
    assert missing == [], "docs/architecture.md does not name these modules"
    stale = sorted(n for n in named if not (ROOT / n).exists())
    assert stale == [], "docs/architecture.md names modules that do not exist"


def test_the_map_quotes_the_layers_the_contract_enforces():
    """The layers block of docs/architecture.md is the layers contract of pyproject.toml, in
    its order."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = [c["layers"] for c in contracts["tool"]["importlinter"]["contracts"]
                 if c["type"] == "layers"]
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text[text.index("## Layers"):]
    block = section[section.index("```\n") + 4:]
    assert block[:block.index("```")].splitlines() == layers


def test_the_map_check_reads_paths_and_folders():
    assert _named("`asrbench/cli/run.py` and `asrbench/measure/data/`, not asrbench/x.py "
                  "nor `asrbench.gate`") == {"asrbench/cli/run.py", "asrbench/measure/data/"}


def test_every_module_path_a_page_names_exists():
    """README.md and docs/*.md name only module files that exist (a module moved or renamed
    leaves no stale path behind in the pages)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stale = sorted({f"{page.name}: {path}" for page in pages
                    for path in re.findall(r"(?<![\w/])asrbench/(?:\w+/)*\w+\.py",
                                           page.read_text(encoding="utf-8"))
                    if not (ROOT / path).is_file()})
    assert stale == []


#: the packages that return data (verdicts, baseline changes, stored rows, change points, the
#: peers document, the A/B result): render/ makes the text from it (issue 30)
DATA_PACKAGES = ("ab", "config", "devices", "formats", "gate", "history", "measure")
#: Markdown tables (a row or the rule under the header), headings, bold, HTML elements
_MARKUP = re.compile(r"\|\s*:?-{3}|^\s*\|.*\|\s*$|<(?:table|tr|td|th|details|summary|br|h[1-6])\b"
                     r"|^#{2,6} |\*\*[^*\s]")
#: a format spec that pads to a column: `{name:<20}`, `{value:>10.3f}`, `{x:^8}`
_COLUMN = re.compile(r"^.?[<>^=]\d")


def _table_making(source: str) -> list[str]:
    """Where a module's code pads columns (str.ljust/rjust/center, an aligned format spec) or
    writes Markdown or HTML markup in a string (docstrings are prose, not output)."""
    import ast

    tree = ast.parse(source)
    prose = {id(node.body[0].value) for node in ast.walk(tree)
             if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef,
                                  ast.ClassDef))
             and node.body and isinstance(node.body[0], ast.Expr)
             and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("ljust", "rjust", "center")):
            found.append(f"{node.lineno}: .{node.func.attr}()")
        elif isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            spec = "".join(v.value for v in node.format_spec.values
                           if isinstance(v, ast.Constant))
            if _COLUMN.match(spec):
                found.append(f"{node.lineno}: column {{:{spec}}}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in prose):
            found += [f"{node.lineno}: markup {line.strip()[:40]!r}"
                      for line in node.value.splitlines() if _MARKUP.search(line)]
    return found


def test_text_is_made_in_render_only():
    """The gate, history, measure, ab (and the layers below) return data; tables, Markdown and
    HTML are made in asrbench/render/. On 64ba4a1 this found the baseline change table
    (gate/baselines.py), the change points' lines (history/changepoints.py) and the peers
    tables (measure/peers.py). One-line phrases for notes, findings and errors are data."""
    found = [f"{path.relative_to(ROOT).as_posix()}:{where}"
             for package in DATA_PACKAGES
             for path in sorted((ROOT / "asrbench" / package).rglob("*.py"))
             if STUBS not in path.relative_to(ROOT).parents
             for where in _table_making(path.read_text(encoding="utf-8"))]
    assert found == []


def test_the_table_check_sees_padding_and_markup():
    source = ('"""A | b | c |"""\n'
              'def table(rows):\n'
              '    """| not | output |"""\n'
              '    lines = ["| peer | rate |", "|---|---:|"]\n'
              '    lines += [f"{r.name:<12} {r.rate:>8.2f}" for r in rows]\n'
              '    return "\\n".join(lines + [r.name.ljust(4) for r in rows])\n'
              'NOTE = f"{1:.4f} -> {2:+.1%}"  # numbers, not columns\n')
    assert _table_making(source) == ["4: markup '| peer | rate |'", "4: markup '|---|---:|'",
                                     "5: column {:<12}", "5: column {:>8.2f}", "6: .ljust()"]
