"""No test module imports another test module: what tests share lives in tests/support/ (or a
conftest), so running, moving or deleting one test file never changes another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_test_modules(source: str) -> list[str]:
    """The test modules (`tests.….test_*`, or `.test_*` relative) that `source` imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("tests.")]
        elif isinstance(node, ast.ImportFrom) and node.level:
            names = ["." * node.level + (node.module or "")]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if (node.module or "").startswith("tests.") else []
        else:
            continue
        found += [n for n in names if n.rpartition(".")[2].startswith("test_")]
    return found


def test_the_check_catches_a_test_module_import() -> None:
    assert imported_test_modules("from tests.e2e.test_gateway import KEY\nimport tests.unit.test_x as t\n") == [
        "tests.e2e.test_gateway", "tests.unit.test_x"]
    assert imported_test_modules("from .test_network import vpc_request\n") == [".test_network"]
    assert imported_test_modules("from tests.support.gateway import KEY\nfrom tests import servers\n") == []


def test_no_test_module_imports_another() -> None:
    offenders = {str(path.relative_to(TESTS)): found for path in sorted(TESTS.rglob("*.py"))
                 if (found := imported_test_modules(path.read_text()))}
    assert offenders == {}, "move what they share to tests/support/"
