"""The benchmark scripts are not run by the tests (they take minutes and measure time), but what
they import from mixc must exist: a renamed stage or reader would otherwise rot them silently.
Every `from mixc... import NAME` in benchmarks/, at module level or inside a function, resolves."""

from __future__ import annotations

import ast
import importlib

import pytest

from tests.conftest import REPO

SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))


def mixc_imports(path) -> list[tuple[str, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("mixc", "runtime"):
            found += [(node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_what_a_benchmark_imports_exists(script):
    missing = []
    for module, name in mixc_imports(script):
        imported = importlib.import_module(module)
        if not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{script.name} imports names mixc no longer has: {missing}"
