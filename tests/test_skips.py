"""Every skip of the suite goes through `tests.helpers.unavailable`, which fails in CI: a test
that calls `pytest.skip`, `pytest.importorskip` or carries a skip mark would skip silently there
(the conftest turns such a skip into a failure at run time; this finds it before)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

SKIPS = {"skip", "importorskip", "skipif"}


def _on_pytest(node: ast.expr) -> bool:
    """`pytest` or `pytest.mark`."""
    if isinstance(node, ast.Name):
        return node.id == "pytest"
    return (isinstance(node, ast.Attribute) and node.attr == "mark"
            and isinstance(node.value, ast.Name) and node.value.id == "pytest")


def _skips(path: Path, root: Path) -> list[str]:
    """file:line of each pytest skip call or mark in `path`, but the one inside
    `unavailable`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "unavailable":
            allowed |= {n.lineno for n in ast.walk(node) if hasattr(n, "lineno")}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in SKIPS and _on_pytest(node.value)
                and node.lineno not in allowed):
            found.append(f"{path.relative_to(root)}:{node.lineno} ({node.attr})")
    return found


def test_no_skip_bypasses_unavailable() -> None:
    files = sorted([*(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")])
    assert len(files) > 50  # the whole suite was read
    found = [where for path in files for where in _skips(path, REPO)]
    assert found == [], "skips that bypass tests.helpers.unavailable: " + ", ".join(found)


@pytest.mark.parametrize(("source", "count"), [
    ("import pytest\npytest.skip('x')\n", 1),
    ("import pytest\nm = pytest.importorskip('moto')\n", 1),
    ("import pytest\n@pytest.mark.skipif(True, reason='x')\ndef test(): pass\n", 1),
    ("import pytest\ndef unavailable(r):\n    pytest.skip(r)\n", 0),
    ("args.skip = 3\n", 0),
])
def test_the_check_finds_each_kind_of_skip(tmp_path: Path, source: str, count: int) -> None:
    path = tmp_path / "test_probe.py"
    path.write_text(source)
    assert len(_skips(path, tmp_path)) == count
