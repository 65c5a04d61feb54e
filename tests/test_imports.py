"""No import cycles among the modules of src/structvpr, read with `ast` (nothing is imported).

What counts as an import of module B by module A: every `import` / `from ... import` statement
anywhere in A's file: at module level, inside functions (lazy imports), and under
`if TYPE_CHECKING:`. A lazy or type-only import is still a dependency a reader has to follow, and
two modules that each need the other are one job split in two, whether or not Python happens to
load them without an error. The edge goes to the module named (`from structvpr.a import b` names
`structvpr.a.b` when that is a module, else `structvpr.a`), not to its parent packages: a package's
`__init__.py` is a module of its own, and re-exporting its submodules there is not a cycle.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterator
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "src" / "structvpr"

# Cycles that exist today and are being removed by their owner; each entry is the set of modules
# of one strongly connected component. A cycle found must lie inside one entry (the list can only
# shrink). An entry that no longer matches any cycle raises a warning naming it, so that helpers
# landing their fix in parallel do not fail the suite; delete the entry when you see it.
KNOWN_CYCLES: dict[str, frozenset[str]] = {
    # issue 14, "method" helper: the demo becomes a `demo/` package.
    "demo <-> demo_stages": frozenset({"structvpr.demo", "structvpr.demo_stages"}),
    # issue 14, "method" helper: partition split into its own modules.
    "train.partition <-> train.stage2": frozenset({"structvpr.train.partition", "structvpr.train.stage2"}),
}


def module_name(path: Path) -> str:
    """src/structvpr/a/b.py -> structvpr.a.b; src/structvpr/a/__init__.py -> structvpr.a."""
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imported_modules(path: Path, module: str, modules: set[str]) -> set[str]:
    """The package modules `module` imports anywhere in its file (relative imports made absolute):
    `from x import y` names module `x.y` when that is a module, else module `x`."""
    is_package = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                keep = len(anchor) - node.level + (1 if is_package else 0)
                base = ".".join(anchor[:keep] + ([base] if base else []))
            names += [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return {name for name in names if name in modules and name != module}


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (edges to itself dropped)."""
    modules = package_modules()
    return {module: imported_modules(path, module, set(modules)) for module, path in modules.items()}


def strongly_connected_components(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm, iterative; returns only the components with more than one module."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[frozenset[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index_of:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index_of[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index_of:
                    index_of[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index_of[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(frozenset(component))
    return components


def describe_cycle(component: frozenset[str], graph: dict[str, set[str]]) -> str:
    """One line per module of the component: what it imports inside the component."""
    return "\n".join(f"  {module} -> {', '.join(sorted(graph[module] & component))}" for module in sorted(component))


def test_graph_sees_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 50
    assert "structvpr.model.backbones" in graph["structvpr.model.vpr_net"]
    # relative and lazy imports are read too (structvpr/__init__ imports api inside a function)
    assert "structvpr.api" in graph["structvpr"]


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected_components(graph) == [frozenset({"a", "b", "c"})]


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = strongly_connected_components(graph)
    new = [c for c in found if not any(c <= known for known in KNOWN_CYCLES.values())]
    fixed = [name for name, known in KNOWN_CYCLES.items() if not any(c <= known for c in found)]
    for name in fixed:
        warnings.warn(f"known import cycle {name!r} is gone: delete it from KNOWN_CYCLES", stacklevel=1)
    problems = [f"import cycle among {len(c)} modules:\n{describe_cycle(c, graph)}" for c in new]
    assert not problems, "\n".join(problems)
