"""The packages' import graph, parsed from the source (every import, those inside functions and
``TYPE_CHECKING`` blocks included): no circles between modules, and no edge from a package to one
above it in its layer order (:data:`LAYERS`). A new module at a package's top level, or a new
subpackage, must be placed in :data:`LAYERS`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# Lowest first: a unit may import units of its own layer or below, never above.
LAYERS = {
    "elmo_model": [
        {"errors", "precision_modes"},
        {"model"},
        {"formats"},
        {"infer"},
        {"train"},
        {"eval"},
        {"testing"},
    ],
    "pipelines": [
        {"cli_logging", "fault_injection", "ray_noise", "ray_watchdog", "sigterm"},
        {"io"},
        {"ray_support", "config", "submit"},
        {"ingest"},
        {"embed", "train", "vocab_job"},
        {"demo"},
        {"commands"},
        {"cli"},
    ],
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(package: str) -> dict[str, set[str]]:
    """Every module of ``package`` → the modules of ``package`` it imports."""
    modules = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == package}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == package:
                for alias in node.names:  # ``from pkg import module`` is an edge to that module
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import; write the absolute one")
        graph[name] = {m for m in found if m != name and m != package}  # the package's lazy __init__
    return graph


def unit(package: str, module: str) -> str:
    """The layer unit of a module: its subpackage, or its own name at the package's top level."""
    return module.split(".")[1] if "." in module else module


def layer_of(package: str, module: str) -> int:
    name = unit(package, module)
    for k, units in enumerate(LAYERS[package]):
        if name in units:
            return k
    raise AssertionError(f"{module}: not placed in LAYERS[{package!r}] of {__file__}")


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_import_circles(package):
    assert circles(imports(package)) == []


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_only_go_down_the_layers(package):
    upward = [f"{a} → {b}" for a, deps in sorted(imports(package).items()) for b in sorted(deps)
              if a != package and layer_of(package, b) > layer_of(package, a)]
    assert upward == []


def test_the_checks_can_fail():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    with pytest.raises(AssertionError, match="not placed"):
        layer_of("pipelines", "pipelines.somewhere_new")
