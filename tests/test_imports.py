"""Imports inside the `qa` package run one way: no module imports, directly or through others, a
module that imports it back. Checked on the source with `ast` (nothing is imported), counting
every `import qa.x` / `from qa.x import y` / `from qa import x` / relative import, at module
level and inside functions alike (a lazy import still closes a circle when it runs), and
leaving out only `if TYPE_CHECKING:` blocks, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qa"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, skipping the bodies of `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _imports(other)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _imports(child)


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The qa module `name` refers to: itself, or the nearest package above it (a.b.c -> a.b)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imported_modules(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The qa modules `module` imports anywhere in its body (TYPE_CHECKING blocks aside)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from qa import models` imports the module qa.models; `from qa.x import f`, qa.x.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        found |= {target for name in targets if (target := _resolve(name, known)) and target != module}
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_lazy_imports() -> None:
    """The checker itself: a function-level import counts, a TYPE_CHECKING one does not."""
    graph = import_graph()
    assert "qa.pipeline" in graph["qa.web"]  # `from qa.pipeline import get_engine` inside build_app
    assert "qa.uploads" in graph["qa.web"]  # inside add_uploads
    assert "qa.indexing" in graph["qa.ray_indexing"]
    assert "qa.ray_indexing" in graph["qa.pipeline"]  # the pipeline hands indexing the Ray preparer
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_indexing_imports_run_one_way() -> None:
    graph = import_graph()
    assert not {"qa.ray_indexing", "qa.pipeline"} & graph["qa.indexing"]
    assert "qa.pipeline" not in graph["qa.ray_indexing"]
    assert [c for c in cycles(graph) if "qa.indexing" in c] == []


def test_no_qa_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []
