"""Habits a tool checks: every name in tests/conftest.py's slow and heavy registries exists
(a renamed test, fixture or module would otherwise leave the fast tier, or CI, unnoticed), and
`ruff check` (the rules in pyproject.toml's [tool.ruff]) finds nothing.

The registries are checked on the source (ast), without importing or collecting a test module:
a collection of the whole suite imports torch and every test module (tens of seconds on a
2-core machine). Which parameter ids the heavy tier names is checked by collection in
tests/test_scripts.py."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from conftest import HEAVY_TESTS, SLOW_FIXTURES, SLOW_MODULES, SLOW_PARAMS, SLOW_TESTS

ROOT = Path(__file__).resolve().parents[1]
#: where pytest looks for tests and fixtures (pyproject.toml testpaths, and the root conftest)
TEST_FILES = sorted([*(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
                     ROOT / "conftest.py"])


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _functions(path: Path) -> dict[str, ast.FunctionDef]:
    """Every function a test module defines at its top level or in a class, by name."""
    found: dict[str, ast.FunctionDef] = {}
    for node in _tree(path).body:
        bodies = node.body if isinstance(node, ast.ClassDef) else [node]
        for item in bodies:
            if isinstance(item, ast.FunctionDef):
                found[item.name] = item
    return found


def _fixture_call(function: ast.FunctionDef) -> ast.expr | None:
    """The `pytest.fixture` (or `pytest.fixture(...)`) decorator of a function, if any."""
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return decorator
        if isinstance(target, ast.Name) and target.id == "fixture":
            return decorator
    return None


def _keyword(call: ast.expr, name: str) -> ast.expr | None:
    if isinstance(call, ast.Call):
        return next((k.value for k in call.keywords if k.arg == name), None)
    return None


def _fixtures(files: list[Path] = TEST_FILES) -> dict[str, set[object]]:
    """Every fixture the test files define (its name= or its function's name): its literal
    params (empty when it has none or they are computed)."""
    found: dict[str, set[object]] = {}
    for path in files:
        for function in _functions(path).values():
            call = _fixture_call(function)
            if call is None:
                continue
            named = _keyword(call, "name")
            name = named.value if isinstance(named, ast.Constant) else function.name
            params = _keyword(call, "params")
            values = ({e.value for e in params.elts if isinstance(e, ast.Constant)}
                      if isinstance(params, (ast.List, ast.Tuple)) else set())
            found.setdefault(name, set()).update(values)
    return found


def _parametrized(files: list[Path] = TEST_FILES) -> dict[str, set[object]]:
    """Every argument name of a `pytest.mark.parametrize` with literal values: the values."""
    found: dict[str, set[object]] = {}
    for path in files:
        for node in ast.walk(_tree(path)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "parametrize" and len(node.args) >= 2):
                continue
            names, values = node.args[0], node.args[1]
            if not (isinstance(names, ast.Constant) and isinstance(values, (ast.List, ast.Tuple))):
                continue
            argnames = [n.strip() for n in str(names.value).split(",")]
            for value in values.elts:
                row = value.elts if isinstance(value, ast.Tuple) else [value]
                for argname, item in zip(argnames, row):
                    if isinstance(item, ast.Constant):
                        found.setdefault(argname, set()).add(item.value)
    return found


def test_every_slow_and_heavy_registry_name_exists():
    """SLOW_MODULES name test files; SLOW_TESTS and HEAVY_TESTS name test functions of their
    modules; SLOW_FIXTURES name fixtures defined in a test file; SLOW_PARAMS name a fixture or
    parametrized argument that takes those values."""
    missing = []
    for module in SLOW_MODULES:
        if not (ROOT / module).is_file():
            missing.append(f"SLOW_MODULES: no file {module}")
    for module, names in SLOW_TESTS.items():
        defined = _functions(ROOT / module) if (ROOT / module).is_file() else {}
        missing += [f"SLOW_TESTS: no {module}::{name}" for name in sorted(set(names) - set(defined))]
    for test_id in HEAVY_TESTS:
        module, name = test_id.split("::")
        defined = _functions(ROOT / module) if (ROOT / module).is_file() else {}
        if name.split("[")[0] not in defined:
            missing.append(f"HEAVY_TESTS: no {module}::{name.split('[')[0]}")
    fixtures = _fixtures()
    missing += [f"SLOW_FIXTURES: no fixture {name}" for name in sorted(set(SLOW_FIXTURES)
                                                                      - set(fixtures))]
    parametrized = _parametrized()
    for name, values in SLOW_PARAMS.items():
        taken = fixtures.get(name, set()) | parametrized.get(name, set())
        missing += [f"SLOW_PARAMS: {name} never takes {value!r}"
                    for value in sorted(set(values) - taken, key=repr)]
    assert missing == []


def test_the_registry_check_sees_a_renamed_name(tmp_path):
    """The helpers above find what exists and only that (so the test above can fail)."""
    module = tmp_path / "test_x.py"
    module.write_text("import pytest\n\n"
                      "@pytest.fixture(params=['a', 'b'])\ndef letters(request): ...\n\n"
                      "@pytest.fixture(name='renamed')\ndef _hidden(): ...\n\n"
                      "class TestGroup:\n    def test_in_class(self): ...\n\n"
                      "@pytest.mark.parametrize('size, kind', [(1, 'x'), (2, 'y')])\n"
                      "def test_sizes(size, kind): ...\n", encoding="utf-8")
    assert set(_functions(module)) == {"letters", "_hidden", "test_in_class", "test_sizes"}
    assert _fixtures([module]) == {"letters": {"a", "b"}, "renamed": set()}
    assert _parametrized([module]) == {"size": {1, 2}, "kind": {"x", "y"}}


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
