"""The package's shape: which module may import what, and how long a module may grow.

`studies/` is four layers, spec <- store <- results <- driver, each importing only the ones
before it; Ray is imported only by the driver and the trainables, pyarrow and the object
store's upload calls only by the store.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mtl_tune

pytestmark = pytest.mark.process  # starts Ray or another process

PACKAGE = Path(mtl_tune.__file__).parent
LAYERS = ("spec", "store", "results", "driver")
RAY_ALLOWED = ("mtl_tune.studies.driver", "mtl_tune.trainables")
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["mtl_tune", "studies"] and len(parts) > 2 and parts[2] in LAYERS:
        return parts[2]
    return None


def test_every_module_but_the_driver_and_the_trainables_imports_without_ray() -> None:
    others = [m for m in _modules()
              if not m.startswith(RAY_ALLOWED) and m != "mtl_tune.__main__"]  # runs the CLI
    assert "mtl_tune.studies.results._status" in others and len(others) > 60
    script = (
        "import importlib, sys\n"
        "class NoRay:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ImportError('ray is blocked: ' + name)\n"
        "sys.meta_path.insert(0, NoRay())\n"
        "failed = []\n"
        f"for name in {others!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as err:\n"
        "        failed.append(f'{name}: {err}')\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"modules that need Ray outside the driver:\n{done.stdout}"


def test_ray_is_blocked_by_the_check_above() -> None:
    """The check above can fail: the driver itself does not import without Ray."""
    script = (
        "import importlib, sys\n"
        "class NoRay:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ImportError('ray is blocked')\n"
        "sys.meta_path.insert(0, NoRay())\n"
        "importlib.import_module('mtl_tune.studies.driver')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0 and "ray is blocked" in done.stderr


def test_each_layer_imports_only_the_layers_before_it() -> None:
    wrong = []
    for module, path in _modules().items():
        mine = _layer(module)
        if mine is None:
            continue
        allowed = LAYERS[: LAYERS.index(mine) + 1]
        for imported in _imports(path):
            theirs = _layer(imported)
            if theirs is not None and theirs not in allowed:
                wrong.append(f"{module} -> {imported}")
    assert wrong == []


def test_outside_studies_only_the_public_names_of_studies_are_imported() -> None:
    wrong = [f"{module} -> {imported}"
             for module, path in _modules().items() if not module.startswith("mtl_tune.studies")
             for imported in _imports(path)
             if imported.startswith("mtl_tune.studies.")]
    assert wrong == []


def test_pyarrow_and_the_upload_calls_live_only_in_the_store() -> None:
    forbidden = {"publish", "is_staged", "write_object"}
    wrong = []
    for module, path in _modules().items():
        if module.startswith("mtl_tune.studies.store"):
            continue
        tree = ast.parse(path.read_text())
        wrong += [f"{module} imports {m}" for m in _imports(path) if m.split(".")[0] == "pyarrow"]
        for node in ast.walk(tree):
            named = (node.id if isinstance(node, ast.Name) else
                     node.attr if isinstance(node, ast.Attribute) else
                     node.name if isinstance(node, (ast.FunctionDef, ast.alias)) else None)
            if named in forbidden:
                wrong.append(f"{module}:{node.lineno} names {named}")  # type: ignore[attr-defined]
    assert wrong == []


def test_no_module_is_longer_than_the_limit() -> None:
    lengths = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert max(lengths.values()) > 200  # the count reads real files
    assert {m: n for m, n in lengths.items() if n > MAX_LINES} == {}


def _top_level_imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The package modules `path` imports when it is loaded: its top-level imports (not those
    inside a function or under `if TYPE_CHECKING`), `from X import y` as X.y when that is a
    module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found & known


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Each cycle of load-time imports among `modules` (name -> file), as the modules on it."""
    known = set(modules)
    graph = {m: sorted(_top_level_imports(p, m, known) - {m}) for m, p in modules.items()}
    cycles, done = [], set()
    for start in sorted(graph):
        stack, on_path = [(start, iter(graph[start]))], [start]
        while stack:
            node, edges = stack[-1]
            target = next(edges, None)
            if target is None:
                stack.pop()
                on_path.pop()
                done.add(node)
            elif target in on_path:
                cycle = on_path[on_path.index(target):]
                if sorted(cycle) not in [sorted(c) for c in cycles]:
                    cycles.append(cycle)
            elif target not in done:
                stack.append((target, iter(graph[target])))
                on_path.append(target)
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    assert import_cycles(_modules()) == []


def test_the_cycle_check_finds_a_planted_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "gradients.py").write_text("from pkg.pcgrad import combine_rows\n")
    (package / "pcgrad.py").write_text("from .gradients import SharedGradients\n")
    (package / "lazy.py").write_text("def f():\n    import pkg.gradients\n")
    modules = {"pkg": package / "__init__.py", "pkg.gradients": package / "gradients.py",
               "pkg.pcgrad": package / "pcgrad.py", "pkg.lazy": package / "lazy.py"}
    # the cycle is named by its modules; an import inside a function makes none
    assert import_cycles(modules) == [["pkg.gradients", "pkg.pcgrad"]]
