"""The test suite's own rules (issue 20), read from its source: no test module imports another
(shared helpers are fixtures in a conftest or live in a kit module), and no test names a path
that exists only on one machine (a home or a checkout's location)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
MODULES = sorted(TESTS.rglob("*.py"))
MACHINE_PATH = re.compile(r"^/(home|root|work|Users)(/|$)")


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_test_module_imports_another():
    offenders = {
        str(path.relative_to(TESTS)): sorted(
            name for name in imported_names(path) if name.split(".")[-1].startswith("test_")
        )
        for path in MODULES
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_no_test_names_a_machine_specific_path():
    found = [
        f"{path.relative_to(TESTS)}:{node.lineno}: {node.value!r}"
        for path in MODULES
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and MACHINE_PATH.match(node.value)
    ]
    assert not found
