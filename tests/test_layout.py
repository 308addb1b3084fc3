"""The package's shape, as docs/architecture.md draws it: every import of the package's own
modules at the top of its module, no import circle longer than two modules, no module too long
to read in one sitting, and nothing below ``router/web/`` importing the HTTP layer."""

from __future__ import annotations

import ast
from pathlib import Path

from support import REPO

PACKAGE = Path(REPO) / "router"
MAX_LINES = 400
# Modules that need an optional dependency (an extra) are imported where they are used, so a
# config that does not use them runs without the dependency installed.
OPTIONAL = {"router.backends.store.postgres", "router.spool.redis", "router.stats.postgres"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[ast.stmt, str, bool]]:
    """(node, imported module of the package, whether it sits inside a function)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
             for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from . import x` names a module when x is one.
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module
                       for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for target in targets:
            if target == "router" or target.startswith("router."):
                found.append((node, target, id(node) in inner))
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def test_every_import_of_the_package_sits_at_the_top_of_its_module():
    inside = [f"{MODULES[name].relative_to(REPO)}:{node.lineno} imports {target}"
              for name, found in IMPORTS.items() for node, target, nested in found
              if nested and target not in OPTIONAL]
    assert inside == [], "imports inside functions (a cycle to break, not to hide):\n" + \
        "\n".join(inside)


def test_no_import_circle_spans_more_than_two_modules():
    graph = {name: {t for _, t, _ in found if t in MODULES and t != name}
             for name, found in IMPORTS.items()}
    circles = [c for c in _strongly_connected(graph) if len(c) > 2]
    assert circles == [], f"import circles: {circles}"


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(REPO)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_nothing_below_the_web_layer_imports_it():
    above = ("router.web", "router.serve", "router.cli")
    wrong = [f"{name} imports {target}" for name, found in IMPORTS.items()
             if not name.startswith(above) for _, target, _ in found
             if target.startswith("router.web")]
    assert wrong == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the graph's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
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
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components
