"""The product's modules import each other one way: no circles, and the layers point down (issue 19).

Every module of ``acrvpc/`` (the sandbox included), ``flows/``, ``tasks/`` and ``deployments/`` is parsed
with :mod:`ast`; every import statement counts, at any level (a function-level import still runs the
imported module first: a circle through a lazy import is still a circle), ``if TYPE_CHECKING:`` imports
too (two modules that need each other's types lean on each other: name what you use as a protocol). Relative imports are
resolved; ``from a import b`` is an edge to the module ``a.b`` when it is one, else to ``a``; an edge to
a package is an edge to its ``__init__``. Importing ``a.b.c`` also runs ``a/__init__`` and
``a/b/__init__``, but a package importing its own submodules is how packages are built, so those
implicit parent edges are left out. Circles are found as the strongly connected components of the
graph (Tarjan), each named with one concrete cycle through it.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("acrvpc", "flows", "tasks", "deployments")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the scanned packages."""
    found: dict[str, Path] = {}
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """``(dotted name, line)`` for every name an import statement of ``module`` brings in, resolved.

    ``import a.b`` gives ``a.b``; ``from a import b, c`` gives ``a.b`` and ``a.c`` (the caller falls
    back to ``a`` when those are not modules); relative imports are resolved against the package;
    ``importlib.import_module("a.b")`` gives ``a.b``, and a package's ``import_module(f"{__name__}.{x}")``
    gives each of its submodules.
    """
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else list(package)
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names.extend((f"{stem}.{alias.name}" if alias.name != "*" else stem, node.lineno) for alias in node.names)
        elif isinstance(node, ast.Call) and _called(node) == "import_module" and node.args:
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                names.append((target.value, node.lineno))
            elif is_package and _is_submodule_pattern(target):  # f"{__name__}.{name}": every submodule
                names.extend(
                    (f"{module}.{child.stem}", node.lineno)
                    for child in sorted(path.parent.glob("*.py"))
                    if child.name != "__init__.py"
                )
    return names


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _is_submodule_pattern(node: ast.expr) -> bool:
    """``f"{__name__}.{...}"``: a package importing its own submodules by name (``pkgutil`` discovery)."""
    return (
        isinstance(node, ast.JoinedStr)
        and len(node.values) >= 2
        and isinstance(node.values[0], ast.FormattedValue)
        and isinstance(node.values[0].value, ast.Name)
        and node.values[0].value.id == "__name__"
        and isinstance(node.values[1], ast.Constant)
        and str(node.values[1].value).startswith(".")
    )


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Module -> {imported project module: first line}, only edges between scanned modules."""
    files = module_files(root)
    graph: dict[str, dict[str, int]] = {m: {} for m in files}
    for module, path in files.items():
        for name, line in imported_names(module, path):
            target = name
            while target and target not in files:  # `from a import obj`: the edge is to `a`
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].setdefault(target, line)
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def one_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first, inside the component)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node]):
                if succ not in members:
                    continue
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if succ not in previous:
                    previous[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")  # pragma: no cover


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    files = module_files()
    hops = [f"{a} (line {graph[a][b]} of {files[a].relative_to(ROOT)})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join([*hops, cycle[-1]])


# Layers: upper -> the lower layers that must never import it (flows -> tasks -> cloud -> domain; the CLI on
# top). The sandbox, the test double, imports none of the product's layers above the domain (DESIGN: shared code
# would make the fidelity tests circular).
FORBIDDEN = {
    "acrvpc.cli": ("tasks", "flows", "deployments", "acrvpc.domain", "acrvpc.cloud", "acrvpc.sandbox"),
    "flows": ("tasks", "acrvpc.domain", "acrvpc.cloud", "acrvpc.sandbox"),
    "tasks": ("acrvpc.domain", "acrvpc.cloud", "acrvpc.sandbox"),
    "deployments": ("acrvpc.domain", "acrvpc.cloud", "acrvpc.sandbox"),
    "acrvpc.cloud": ("acrvpc.domain", "acrvpc.sandbox"),
}


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


class TestGraphBuilder:
    def test_resolves_relative_lazy_and_package_imports(self, tmp_path):
        """Given a toy tree with a relative, a function-level and a package import, the graph sees all three."""
        pkg = tmp_path / "acrvpc" / "sub"
        pkg.mkdir(parents=True)
        (tmp_path / "acrvpc" / "__init__.py").write_text("")
        (pkg / "__init__.py").write_text("from .a import thing\n")
        (pkg / "a.py").write_text("def f():\n    from ..top import x\n")
        (tmp_path / "acrvpc" / "top.py").write_text("import acrvpc.sub\nfrom acrvpc import sub\n")
        for other in SCANNED[1:]:
            (tmp_path / other).mkdir()
        graph = import_graph(tmp_path)
        assert graph["acrvpc.sub"] == {"acrvpc.sub.a": 1}
        assert graph["acrvpc.sub.a"] == {"acrvpc.top": 2}
        assert graph["acrvpc.top"] == {"acrvpc.sub": 1}
        components = strongly_connected(graph)
        assert components == [["acrvpc.sub", "acrvpc.sub.a", "acrvpc.top"]]
        assert one_cycle(graph, components[0]) == ["acrvpc.sub", "acrvpc.sub.a", "acrvpc.top", "acrvpc.sub"]

    def test_sees_a_package_that_imports_its_submodules_by_name(self, tmp_path):
        """Given commands loaded with ``import_module(f"{__name__}.{name}")`` that import the app back, a circle."""
        cmds = tmp_path / "acrvpc" / "cmds"
        cmds.mkdir(parents=True)
        (tmp_path / "acrvpc" / "__init__.py").write_text("")
        (tmp_path / "acrvpc" / "app.py").write_text("from acrvpc import cmds\ncmds.load_all()\n")
        (cmds / "__init__.py").write_text(
            "import importlib\ndef load_all():\n    importlib.import_module(f'{__name__}.{\"one\"}')\n"
        )
        (cmds / "one.py").write_text("from acrvpc.app import app\n")
        for other in SCANNED[1:]:
            (tmp_path / other).mkdir()
        graph = import_graph(tmp_path)
        assert graph["acrvpc.cmds"] == {"acrvpc.cmds.one": 3}
        assert strongly_connected(graph) == [["acrvpc.app", "acrvpc.cmds", "acrvpc.cmds.one"]]


class TestImportGraph:
    def test_no_import_circles(self):
        """Given every module of the product and the sandbox, when their imports are graphed, then no circle."""
        graph = import_graph()
        cycles = [
            describe(graph, one_cycle(graph, c)) + (f"  [circle of {len(c)}: {', '.join(c)}]" if len(c) > 2 else "")
            for c in strongly_connected(graph)
        ]
        assert not cycles, "import circles (break each one way):\n" + "\n".join(cycles)

    @pytest.mark.parametrize("upper", sorted(FORBIDDEN))
    def test_lower_layers_do_not_import_upper_ones(self, upper):
        """Given the layers, no lower one imports an upper one (e.g. no stage imports the command line)."""
        graph = import_graph()
        files = module_files()
        bad = [
            f"{files[m].relative_to(ROOT)}:{line} imports {target}"
            for m, targets in sorted(graph.items())
            for target, line in sorted(targets.items())
            if _under(target, upper) and any(_under(m, low) for low in FORBIDDEN[upper])
        ]
        assert not bad, f"a lower layer imports {upper}:\n" + "\n".join(bad)
