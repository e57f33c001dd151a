"""Habits a tool checks: every name in tests/conftest.py's slow and heavy registries exists
(a renamed test, fixture or module would otherwise leave the fast tier, or CI, unnoticed), and
`ruff check` (the rules in pyproject.toml's [tool.ruff]) and `mypy` (its [tool.mypy]) find
nothing.

The registries are checked against the tests pytest collects (their ids, fixtures and
parameters): the session's own collection when it collected every test module (CI, the fast
tier), otherwise a `pytest --collect-only` child's (tens of seconds on a 2-core machine)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    COLLECTED,
    COLLECTED_JSON_VARIABLE,
    HEAVY_TESTS,
    SLOW_FIXTURES,
    SLOW_MODULES,
    SLOW_PARAMS,
    SLOW_TESTS,
)

ROOT = Path(__file__).resolve().parents[1]
#: the test modules pytest collects (pyproject.toml testpaths)
TEST_MODULES = sorted(p.relative_to(ROOT).as_posix()
                      for p in [*(ROOT / "tests").glob("test_*.py"),
                                *(ROOT / "benchmarks").glob("test_*.py")])


def _collected(config: pytest.Config) -> list[dict[str, Any]]:
    """Every test of the suite as conftest.py records it: this session's records when it
    collected every test module whole, else those of a `pytest --collect-only` child."""
    records = config.stash.get(COLLECTED, [])
    whole = not any("::" in str(arg) for arg in config.args)
    if whole and set(TEST_MODULES) <= {r["module"] for r in records}:
        return records
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "collected.json"
        env = {**os.environ, COLLECTED_JSON_VARIABLE: str(out)}
        done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                               "-p", "no:cacheprovider", "--asrbench-report",
                               str(Path(scratch) / "latest.json")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert out.is_file(), done.stdout[-2000:] + done.stderr[-2000:]
        child: list[dict[str, Any]] = json.loads(out.read_text(encoding="utf-8"))
        return child


def registry_misses(collected: list[dict[str, Any]], slow_modules: dict[str, str],
                    slow_tests: dict[str, set[str]], slow_fixtures: dict[str, str],
                    slow_params: dict[str, set[object]], heavy_tests: dict[str, str]) -> list[str]:
    """Each registry name that matches no collected test: a SLOW_MODULES module with no test,
    a SLOW_TESTS function no test of its module runs, a SLOW_FIXTURES fixture no test uses, a
    SLOW_PARAMS value no test takes, a HEAVY_TESTS id that is no test's id."""
    modules = {r["module"] for r in collected}
    functions = {(r["module"], r["name"]) for r in collected}
    fixtures = {f for r in collected for f in r["fixtures"]}
    ids = {r["id"] for r in collected}
    misses = [f"SLOW_MODULES: no test in {m}" for m in sorted(set(slow_modules) - modules)]
    misses += [f"SLOW_TESTS: no test {m}::{n}" for m, names in sorted(slow_tests.items())
               for n in sorted(names) if (m, n) not in functions]
    misses += [f"SLOW_FIXTURES: no test uses {f}" for f in sorted(set(slow_fixtures) - fixtures)]
    misses += [f"SLOW_PARAMS: no test takes {k}={v!r}" for k, values in sorted(slow_params.items())
               for v in sorted(values, key=repr)
               if not any(r["params"].get(k, object()) == v for r in collected)]
    misses += [f"HEAVY_TESTS: no test {i}" for i in sorted(set(heavy_tests) - ids)]
    return misses


def test_every_slow_and_heavy_registry_name_matches_a_collected_test(request):
    """SLOW_MODULES, SLOW_TESTS, SLOW_FIXTURES, SLOW_PARAMS and HEAVY_TESTS each name something
    pytest collects: a renamed test, fixture, parameter or module would otherwise leave the
    slow tier (and run in the fast one) or slip back into CI, unnoticed."""
    collected = _collected(request.config)
    assert registry_misses(collected, SLOW_MODULES, SLOW_TESTS, SLOW_FIXTURES, SLOW_PARAMS,
                           HEAVY_TESTS) == []


def test_the_registry_check_sees_each_kind_of_renamed_name():
    """registry_misses finds what matches and only that (so the test above can fail)."""
    collected = [
        {"id": "tests/test_x.py::test_sizes[1-x]", "module": "tests/test_x.py",
         "name": "test_sizes", "fixtures": ["tmp_path", "letters"],
         "params": {"size": 1, "kind": "x"}},
        {"id": "tests/test_y.py::test_in_class", "module": "tests/test_y.py",
         "name": "test_in_class", "fixtures": [], "params": {}},
    ]
    assert registry_misses(collected, {"tests/test_y.py": ""},
                           {"tests/test_x.py": {"test_sizes"}}, {"letters": ""},
                           {"kind": {"x"}}, {"tests/test_x.py::test_sizes[1-x]": ""}) == []
    assert registry_misses(collected, {"tests/test_z.py": ""},
                           {"tests/test_x.py": {"test_size", "test_sizes"},
                            "tests/test_y.py": {"test_sizes"}},
                           {"numbers": "", "letters": ""}, {"kind": {"x", "y"}, "size": {2}},
                           {"tests/test_x.py::test_sizes[2-x]": "",
                            "tests/test_x.py::test_sizes": ""}) == [
        "SLOW_MODULES: no test in tests/test_z.py",
        "SLOW_TESTS: no test tests/test_x.py::test_size",
        "SLOW_TESTS: no test tests/test_y.py::test_sizes",
        "SLOW_FIXTURES: no test uses numbers",
        "SLOW_PARAMS: no test takes kind='y'",
        "SLOW_PARAMS: no test takes size=2",
        "HEAVY_TESTS: no test tests/test_x.py::test_sizes",
        "HEAVY_TESTS: no test tests/test_x.py::test_sizes[2-x]",
    ]


def _ruff() -> str:
    beside = Path(sys.executable).parent / "ruff"
    found = str(beside) if beside.exists() else shutil.which("ruff")
    assert found, "ruff (the dev extra) is missing: pip install -e '.[dev]'"
    return found


def test_ruff_finds_nothing():
    """The rules selected in pyproject.toml's [tool.ruff] hold over the code, tests,
    benchmarks and scripts (pyflakes: unused imports and names, undefined names; bugbear)."""
    done = subprocess.run([_ruff(), "check", "--no-cache", "asrbench", "tests", "benchmarks",
                           "scripts", "conftest.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing():
    """mypy with pyproject.toml's [tool.mypy]: every module of asrbench type-checked (bodies of
    unannotated functions included), formats/, gate/, config/, history/ and render/ strictly.
    Its cache is .mypy_cache (gitignored): about 25 s of CPU cold on a 2-core machine, under
    1 s warm."""
    beside = Path(sys.executable).parent / "mypy"
    found = str(beside) if beside.exists() else shutil.which("mypy")
    assert found, "mypy (the dev extra) is missing: pip install -e '.[dev]'"
    done = subprocess.run([found], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


#: `# noqa: <codes>  <why>`: the codes, then the reason
NOQA = re.compile(r"#\s*noqa:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)(?P<why>.*)$")


def _unexplained_lazy_imports(paths: list[Path]) -> list[str]:
    """Lines of `paths` that keep an import inside a function (ruff's PLC0415 silenced)
    without saying why after the codes."""
    found = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = NOQA.search(line)
            if match and "PLC0415" in match["codes"] and not match["why"].strip(" ;,()"):
                found.append(f"{path}:{number}: {line.strip()}")
    return found


def test_every_kept_lazy_import_says_why(tmp_path):
    """ruff's PLC0415 (pyproject.toml) allows an import inside a function only with a noqa;
    each such line in asrbench says why (torch, transformers, an optional extra...)."""
    assert _unexplained_lazy_imports(sorted((ROOT / "asrbench").rglob("*.py"))) == []
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    import torch  # noqa: PLC0415\n"
                      "def g():\n    import torch  # noqa: PLC0415  torch: heavy\n"
                      "def h():\n    import json  # noqa: F401, PLC0415\n", encoding="utf-8")
    assert [line.split(": ", 1)[1] for line in _unexplained_lazy_imports([sample])] == [
        "import torch  # noqa: PLC0415", "import json  # noqa: F401, PLC0415"]


#: what an import may stay inside a function for: torch, transformers and the packages that are
#: slow to import or optional (extras, the Gaudi's); torch._dynamo (the compiler) even where
#: torch is loaded
HEAVY = {"torch", "torch._dynamo", "transformers", "numpy", "scipy", "jiwer", "datasets",
         "soundfile", "soxr", "tqdm", "huggingface_hub", "ctranslate2", "accelerate", "optimum",
         "habana_frameworks", "plotly", "ruptures", "psycopg"}


def _module_imports(tree: ast.Module, name: str, is_package: bool
                    ) -> tuple[set[str], list[tuple[int, set[str]]]]:
    """The modules a module imports at its top (not under `if TYPE_CHECKING:`), and each
    import inside a function: (line, modules). `from a import b` names a and a.b (b may be a
    submodule); relative imports are resolved against `name`."""
    def targets(node: ast.Import | ast.ImportFrom) -> set[str]:
        if isinstance(node, ast.Import):
            return {alias.name for alias in node.names}
        base = node.module or ""
        if node.level:
            parts = name.split(".")[:None if is_package else -1]
            parts = parts[:len(parts) - (node.level - 1)]
            base = ".".join(parts) + (f".{base}" if base else "")
        return {base} | {f"{base}.{alias.name}" for alias in node.names}

    top: set[str] = set()
    lazy: list[tuple[int, set[str]]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if in_function:
                    lazy.append((child.lineno, targets(child)))
                else:
                    top.update(targets(child))
            visit(child, in_function or isinstance(child, (ast.FunctionDef,
                                                           ast.AsyncFunctionDef)))
    visit(tree, False)
    return top, lazy


def _heavy_lazy_imports(root: Path, package: str = "asrbench") -> dict[str, set[str]]:
    """For each import inside a function of `package` (under root), `path:line` -> the heavy
    packages (HEAVY) it loads that its module does not already load at its top; asrbench
    modules are followed through their top-level imports (and their packages' __init__)."""
    modules: dict[str, tuple[Path, ast.Module]] = {}
    for path in sorted((root / package).rglob("*.py")):
        if "stubs" in path.parts:
            continue
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = (path, ast.parse(path.read_text(encoding="utf-8")))
    imports = {name: _module_imports(tree, name, path.name == "__init__.py")
               for name, (path, tree) in modules.items()}

    def loads(target: str, seen: set[str]) -> set[str]:
        found: set[str] = set()
        parts = target.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            if prefix in seen:
                continue
            seen.add(prefix)
            if parts[0] != package:
                found |= {".".join(parts[:n]) for n in range(1, len(parts) + 1)} & HEAVY
                break
            for imported in imports.get(prefix, (set(), []))[0]:
                found |= loads(imported, seen)
        return found

    result = {}
    for name, (path, _) in modules.items():
        top, lazy = imports[name]
        own = set().union(*(loads(t, set()) for t in top)) if top else set()
        for line, targets in lazy:
            extra = set().union(*(loads(t, set()) for t in targets)) - own
            result[f"{path.relative_to(root)}:{line}"] = extra
    return result


def test_every_kept_lazy_import_loads_something_heavy(tmp_path):
    """The why of each kept lazy import is true: it loads torch, transformers or another
    HEAVY package that its module does not load already (else it belongs at the top)."""
    light = sorted(where for where, extra in _heavy_lazy_imports(ROOT).items() if not extra)
    assert light == []
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "heavy.py").write_text("import numpy\n", encoding="utf-8")
    (package / "a.py").write_text("def f():\n    import json\n"
                                  "def g():\n    from pkg import heavy\n"
                                  "def h():\n    import torch._dynamo.utils\n", encoding="utf-8")
    found = _heavy_lazy_imports(tmp_path, "pkg")
    assert found == {"pkg/a.py:2": set(), "pkg/a.py:4": {"numpy"},
                     "pkg/a.py:6": {"torch", "torch._dynamo"}}
