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


def _imports(path: Path, module: str = "") -> set[str]:
    """Every module `path` (the file of `module`) imports, at the top or inside a function:
    relative imports resolved, and `from X import y` also as X.y (y may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _layer(module: str, root: str) -> str | None:
    parts, top = module.split("."), root.split(".")
    if parts[: len(top)] == top and len(parts) > len(top) and parts[len(top)] in LAYERS:
        return parts[len(top)]
    return None


def layer_violations(modules: dict[str, Path], root: str = "mtl_tune.studies") -> list[str]:
    """Each import that breaks the layers of `root` (a layer importing a later one, or the
    package itself, which loads them all), and each private module of `root` imported from
    outside it: as "module -> imported"."""
    wrong = []
    for module, path in modules.items():
        mine = _layer(module, root)
        for imported in sorted(_imports(path, module)):
            if mine is not None:
                theirs = _layer(imported, root)
                later = theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine)
                if later or imported == root:
                    wrong.append(f"{module} -> {imported}")
            elif not module.startswith(root) and imported.startswith(f"{root}.") and any(
                    part.startswith("_") for part in imported[len(root) + 1:].split(".")):
                wrong.append(f"{module} -> {imported}")
    return wrong


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


def test_each_layer_imports_only_the_layers_before_it_and_others_only_public_names() -> None:
    modules = _modules()
    assert sum(_layer(m, "mtl_tune.studies") is not None for m in modules) > 30
    assert layer_violations(modules) == []


def test_the_layer_check_finds_planted_imports(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/studies/__init__.py": "from pkg.studies.results import best\n",
        "pkg/studies/spec/__init__.py": "",
        "pkg/studies/spec/_spec.py": "from pkg.studies.store import folder\n",  # later layer
        "pkg/studies/store/__init__.py": "",
        "pkg/studies/store/_folder.py": "from ..spec import _spec\n",  # earlier: allowed
        "pkg/studies/results/__init__.py": "",
        "pkg/studies/results/_best.py": "def f():\n    from .. import driver\n",  # relative
        "pkg/studies/driver/__init__.py": "",
        "pkg/studies/driver/_run.py": "from pkg.studies.spec import _spec\n",
        "pkg/studies/store/_lean.py": "import pkg.studies\n",  # the package loads every layer
        "pkg/cli.py": "from pkg.studies import spec\nfrom pkg.studies.results._best import f\n",
    }
    modules = {}
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        parts = Path(name).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    # every planted one, and nothing else (the earlier layer, the public `spec`, and the
    # package's own imports pass)
    assert sorted(layer_violations(modules, root="pkg.studies")) == [
        "pkg.cli -> pkg.studies.results._best",
        "pkg.cli -> pkg.studies.results._best.f",
        "pkg.studies.results._best -> pkg.studies",
        "pkg.studies.results._best -> pkg.studies.driver",
        "pkg.studies.spec._spec -> pkg.studies.store",
        "pkg.studies.spec._spec -> pkg.studies.store.folder",
        "pkg.studies.store._lean -> pkg.studies",
    ]


def test_pyarrow_and_the_upload_calls_live_only_in_the_store() -> None:
    wrong = []
    for module, path in _modules().items():
        if module.startswith("mtl_tune.studies.store"):
            continue
        forbidden = {"publish", "is_staged", "write_object", "delete_remote"}
        if module.startswith("mtl_tune.studies"):  # the driver hands Tune's storage to the store
            forbidden.add("storage_filesystem")
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
