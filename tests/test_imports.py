"""Imports inside the `qa` package run one way: no module imports, directly or through others, a
module that imports it back. Checked on the source with `ast` (nothing is imported), counting
every `import qa.x` / `from qa.x import y` / `from qa import x` / relative import, at module
level, inside functions (a lazy import still closes a circle when it runs) and inside
`if TYPE_CHECKING:` blocks alike: such a loop never runs, but it still ties two modules
together for whoever reads or changes them (qa.evaluation.render and .runner were such a
pair), and it runs the day an annotation is evaluated (`typing.get_type_hints`).

The scripts in benchmarks/ import each other by bare name (`from harness import log`); the same
check keeps them one way and makes sure each name they import is still defined where they look.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qa"
BENCHMARKS = PACKAGE.parent / "benchmarks"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, at any depth."""
    for child in ast.walk(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The qa module `name` refers to: itself, or the nearest package above it (a.b.c -> a.b)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imported_modules(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The qa modules `module` imports anywhere in its body."""
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


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    """The checker itself: function-level and TYPE_CHECKING imports count."""
    graph = import_graph()
    assert "qa.pipeline" in graph["qa.web_page"]  # `from qa.pipeline import get_engine` inside build_app
    assert "qa.uploads" in graph["qa.web_backend"]  # inside iter_uploads
    assert "qa.indexing" in graph["qa.ray_indexing"]
    assert "qa.ray_indexing" in graph["qa.pipeline"]  # the pipeline hands indexing the Ray preparer
    assert "qa.embedding" in graph["qa.retrieval"]  # only under `if TYPE_CHECKING:`
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_indexing_imports_run_one_way() -> None:
    graph = import_graph()
    assert not {"qa.ray_indexing", "qa.pipeline"} & graph["qa.indexing"]
    assert "qa.pipeline" not in graph["qa.ray_indexing"]
    assert [c for c in cycles(graph) if "qa.indexing" in c] == []


def test_evaluation_report_sits_below_runner_and_render() -> None:
    """The runner writes report.md with `render`; both take `EvalReport` from `report`, which
    imports neither of them (render used to import it from the runner)."""
    graph = import_graph()
    assert "qa.evaluation.runner" not in graph["qa.evaluation.render"]
    assert "qa.evaluation.report" in graph["qa.evaluation.render"] & graph["qa.evaluation.runner"]
    assert not {"qa.evaluation.runner", "qa.evaluation.render"} & graph["qa.evaluation.report"]
    evaluation = {name: {m for m in imports if m.startswith("qa.evaluation")}
                  for name, imports in graph.items() if name.startswith("qa.evaluation")}
    assert cycles(evaluation) == []


def test_no_qa_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def _top_level_names(tree: ast.Module) -> set[str]:
    """What `from this_module import name` can find: top-level definitions, assignments, imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def test_benchmark_scripts_import_what_their_siblings_define() -> None:
    """Nothing in the suite runs benchmarks/, so a name moved or renamed in one script (run.py was
    cut into harness, corpora, report, ...) would break another (scale.py) unseen."""
    trees = {path.stem: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(BENCHMARKS.glob("*.py"))}
    defined = {name: _top_level_names(tree) for name, tree in trees.items()}
    graph: dict[str, set[str]] = {name: set() for name in trees}
    missing: list[str] = []
    for name, tree in trees.items():
        for node in _imports(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module in trees:
                graph[name].add(node.module)
                missing += [f"{name}: {node.module}.{alias.name}" for alias in node.names
                            if alias.name not in defined[node.module]]
            elif isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in trees}
    assert {"harness", "report"} <= graph["scale"] and {"harness", "report"} <= graph["concurrency"]
    assert missing == []
    assert cycles(graph) == []
