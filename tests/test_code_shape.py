"""The shape of the source tree (issue 18's bars), read from the code with ``ast``.

- no import circles between the modules of ``src/decrappify``, counting the imports inside
  functions as well as those at module level (a function-level import that dodges a circle
  hides a wrong boundary; import-linter's layers see only the packages, not the modules
  within one);
- the napari plugin reaches the core only through ``decrappify.api`` (and config, io,
  errors, events), function-level imports included;

Imports under ``if TYPE_CHECKING:`` count too: a module that needs another's types to be
read sits above it.
"""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "decrappify"

#: What ``decrappify._napari`` must not import: the core is reached through ``api``.
NAPARI_FORBIDDEN = ("predict", "train", "metrics", "crappify", "models", "data")


def module_names(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    names = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_names(path: Path, module: str, modules: dict[str, Path]) -> set[tuple[str, int]]:
    """The package's modules that ``module`` imports anywhere in its file, with the line.

    ``from a import b`` counts as an import of ``a.b`` when that is a module, else of ``a``;
    relative imports are resolved against ``module``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # ``import a.b.c`` of a name that is not a module: its deepest module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add((target, node.lineno))
    return found


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    """Module -> {imported module: first line that imports it}, over the whole package."""
    modules = module_names(src, package)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in sorted(imported_names(path, name, modules)):
            edges.setdefault(target, line)
        graph[name] = edges
    return graph


def import_components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The groups of modules that import each other (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """A shortest cycle through each group of modules that import each other."""
    return [shortest_cycle(graph, component) for component in import_components(graph)]


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = component[0]
    members = set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node]):
            if target == start:
                return paths[node] + [start]
            if target in members and target not in paths:
                paths[target] = paths[node] + [target]
                queue.append(target)
    raise AssertionError(f"{component} is not a cycle")


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    """``a (line 3) -> b (line 9) -> a`` for a message."""
    steps = [f"{a} (line {graph[a][b]})" for a, b in pairwise(cycle)]
    return " -> ".join(steps + [cycle[-1]])


# -- the checks on the package ------------------------------------------------------------


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    found = [
        f"{describe(graph, shortest_cycle(graph, group))}  [group: {', '.join(group)}]"
        for group in import_components(graph)
    ]
    assert not found, "import cycles (function-level imports included):\n" + "\n".join(found)


def test_the_napari_plugin_imports_the_core_only_through_api():
    graph = import_graph()
    forbidden = tuple(f"{PACKAGE}.{name}" for name in NAPARI_FORBIDDEN)
    found = [
        f"{module} (line {line}) imports {target}"
        for module, edges in graph.items()
        if module.startswith(f"{PACKAGE}._napari")
        for target, line in edges.items()
        if target in forbidden or target.startswith(tuple(f"{name}." for name in forbidden))
    ]
    assert not found, "\n".join(found)


# -- the checks themselves, on a small package --------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    src = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import f\n",
            "pkg/b.py": "def f():\n    from pkg import c\n",
            "pkg/c.py": "from . import a\n",
            "pkg/d.py": "import pkg.a\n",
        },
    )
    graph = import_graph(src, "pkg")
    assert graph["pkg.b"] == {"pkg.c": 2}
    assert graph["pkg.c"] == {"pkg.a": 1}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert describe(graph, ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]) == (
        "pkg.a (line 1) -> pkg.b (line 2) -> pkg.c (line 1) -> pkg.a"
    )


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # a name from a package is an import of the package (its __init__)
        ({"pkg/sub/__init__.py": "from .x import f\n", "pkg/sub/x.py": "def f(): ..."}, {}),
        # relative imports from a package's __init__ start at the package itself
        ({"pkg/sub/__init__.py": "from . import x\n", "pkg/sub/x.py": ""}, {"pkg.sub.x": 1}),
        # ``import a.b.name`` where name is not a module resolves to a.b
        ({"pkg/sub/__init__.py": "import pkg.x.f\n", "pkg/x.py": ""}, {"pkg.x": 1}),
    ],
)
def test_imports_resolve_to_modules(tmp_path, files, expected):
    src = write(tmp_path, {"pkg/__init__.py": "", **files})
    graph = import_graph(src, "pkg")
    if expected:
        assert graph["pkg.sub"] == expected
    else:
        assert graph["pkg.sub"] == {"pkg.sub.x": 1}
    assert import_cycles(graph) == []
