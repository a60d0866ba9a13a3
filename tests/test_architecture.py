"""Import architecture of the package, read from the source with ``ast`` (nothing is imported).

* No import cycles between lorainne modules, counting module-level and function-level imports
  (imports under ``if TYPE_CHECKING:`` are skipped): every module can be read without the modules
  that import it.
* ``cli.py`` uses the public API only: no ``from lorainne.X import _private_name``.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = "lorainne"
ROOT = Path(__file__).resolve().parents[1] / "python" / PACKAGE
MODULE_SUFFIXES = (".py", ".pyi", ".so", ".pyd")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    """Module name -> .py file (a package is its ``__init__.py``)."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def all_module_names() -> set[str]:
    """Source modules, plus stubs and compiled extensions (``_core``): importable names to resolve against."""
    names = set(source_modules())
    for path in ROOT.rglob("*"):
        stem = path.name.split(".")[0]  # _core.cpython-312-x86_64-linux-gnu.so -> _core
        if path.is_file() and path.name.endswith(MODULE_SUFFIXES) and stem != "__init__":
            names.add(".".join((*path.parent.relative_to(ROOT.parent).parts, stem)))
    return names


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(tree: ast.AST):
    """Every Import / ImportFrom node, at any depth (functions, try blocks, ...), except the body
    of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def nearest_module(name: str, known: set[str]) -> str | None:
    """``name`` if it is a module, else its closest enclosing module (an attribute of it)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def resolve(
    node: ast.ImportFrom | ast.Import, importer: str, is_package: bool, known: set[str]
) -> list[tuple[str, str]]:
    """The lorainne modules an import statement loads, each with the name it was imported as.

    ``from . import _xp`` -> the submodule ``<package>._xp`` when it exists, else the package;
    ``from .._backend import core`` -> ``lorainne._backend``; ``import lorainne.tensor`` -> the
    package ``lorainne.tensor`` (its ``__init__``)."""
    out = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                target = nearest_module(alias.name, known)
                if target:
                    out.append((target, alias.name))
        return out
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        if node.level > 1:
            base = base[: len(base) - (node.level - 1)]
        base_name = ".".join(base + ([node.module] if node.module else []))
    else:
        base_name = node.module or ""
    if not (base_name == PACKAGE or base_name.startswith(PACKAGE + ".")):
        return out
    for alias in node.names:
        full = f"{base_name}.{alias.name}"
        target = full if full in known else nearest_module(base_name, known)
        if target:
            out.append((target, alias.name))
    return out


def import_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]]]:
    """Module -> the lorainne modules it imports (self-imports dropped), and where each edge comes from."""
    modules = source_modules()
    known = all_module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    where: dict[tuple[str, str], list[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in import_nodes(tree):
            for target, _ in resolve(node, name, path.name == "__init__.py", known):
                if target == name:
                    continue
                graph[name].add(target)
                locations = where.setdefault((name, target), [])
                location = f"{path.relative_to(ROOT.parent)}:{node.lineno}"
                if location not in locations:
                    locations.append(location)
    return graph, where


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def elementary_cycles(graph: dict[str, set[str]], limit: int = 200) -> list[list[str]]:
    """Every elementary cycle (each listed once, from its smallest module), up to ``limit``."""
    cycles: list[list[str]] = []

    def extend(path: list[str], allowed: set[str]) -> None:
        for w in sorted(graph[path[-1]] & allowed):
            if len(cycles) >= limit:
                return
            if w == path[0]:
                cycles.append([*path, w])
            elif w not in path:
                extend([*path, w], allowed)

    for component in strongly_connected(graph):
        for start in component:
            extend([start], {m for m in component if m >= start})
    return cycles


def test_graph_sees_the_imports():
    """The parser finds the imports it must (module level, inside functions, relative, of packages)."""
    graph, _ = import_graph()
    assert "lorainne.tensor" in graph["lorainne"]  # from .tensor import ... (a package: its __init__)
    assert "lorainne.tensor._cp" in graph["lorainne.tensor"]
    assert "lorainne.tensor._xp" in graph["lorainne.tensor._cp"]  # from . import _xp
    assert "lorainne._backend" in graph["lorainne.tensor._cp"]  # from .._backend import core
    assert "lorainne.randomized" in graph["lorainne.tensor._tucker"]  # inside a function
    assert "lorainne._core" in graph["lorainne._backend"]  # from . import _core (a compiled extension)


def test_no_import_cycles():
    graph, where = import_graph()
    cycles = elementary_cycles(graph)
    if cycles:
        lines = []
        for cycle in cycles:
            lines.append(" -> ".join(cycle))
            for a, b in itertools.pairwise(cycle):
                lines.append(f"    {a} -> {b}: {', '.join(where[(a, b)])}")
        pytest.fail(f"{len(cycles)} import cycle(s) between lorainne modules:\n" + "\n".join(lines))


def test_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"a"}}
    assert elementary_cycles(graph) == [["a", "b", "a"], ["a", "b", "c", "a"]]
    assert elementary_cycles({"a": {"b"}, "b": set()}) == []


def test_cli_imports_no_private_names():
    """cli.py is a client of the public API: it may import private *modules* of the package
    (``from ._progress import Progress``) but no private name from a lorainne module."""
    known = all_module_names()
    path = ROOT / "cli.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    private = []
    for node in import_nodes(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        for target, name in resolve(node, f"{PACKAGE}.cli", False, known):
            is_submodule = target.rsplit(".", 1)[-1] == name  # from . import _demo: a private module, allowed
            if name.startswith("_") and not name.endswith("__") and not is_submodule:
                private.append(f"cli.py:{node.lineno}: from {target} import {name}")
    assert not private, "cli.py imports private names:\n" + "\n".join(private)
