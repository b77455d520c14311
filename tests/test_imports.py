"""The import graph of senet/: no circles (imports inside functions count), and the core
never imports the analysis package (only the CLI, senet/commands and senet/cli.py, may)."""

from __future__ import annotations

import ast
from pathlib import Path

SENET = Path(__file__).resolve().parent.parent / "senet"



def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SENET.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SENET.rglob("*.py"))}


def _imported(path: Path, name: str, modules: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Every module named by an import statement anywhere in the file (top level, in
    functions, in classes), as dotted names. `from a import b` names a.b when that is a
    module in ``modules``, else a. (Parent packages imported implicitly are not edges.)"""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return found


def import_graph() -> dict[str, set[str]]:
    """senet module -> the senet modules it imports."""
    modules = _modules()
    return {
        name: {m for m in _imported(path, name, set(modules)) if m in modules} - {name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    # worker.py imports senet.train inside a method: the graph must contain that edge.
    assert "senet.engine.train" in graph["senet.worker.loop"]
    assert "senet.tracking.store" in graph["senet.queue.tickets"]
    assert "senet.urls" in graph["senet.tracking.store"]


def test_no_import_circles_in_senet():
    assert _cycles(import_graph()) == []


def test_a_circle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_analysis():
    offenders = set()
    for name, path in _modules().items():
        if name.startswith("senet.commands") or name == "senet.cli":
            continue
        if any(m == "analysis" or m.startswith("analysis.") for m in _imported(path, name)):
            offenders.add(name)
    assert offenders == set()
