"""The shape of the source tree (issue 18's bars), read from the code with ``ast``.

- no import circles between the modules of ``src/decrappify``, counting the imports inside
  functions as well as those at module level (a function-level import that dodges a circle
  hides a wrong boundary; import-linter's layers see only the packages, not the modules
  within one);
- the napari plugin reaches the core only through ``decrappify.api`` (and config, io,
  errors, events), function-level imports included;
- no function longer than 100 lines (its whole span: decorators, signature, docstring, body).

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

#: Longest function allowed, in lines (decorators, signature, docstring and body).
MAX_FUNCTION_LINES = 100

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


def forbidden_imports(
    graph: dict[str, dict[str, int]], source: str, forbidden: tuple[str, ...]
) -> list[str]:
    """``module (line n) imports target`` for each import from ``source`` of a ``forbidden``.

    ``source`` is a package (its modules count) and ``forbidden`` names packages below
    the root package (their modules count too).
    """
    root = source.split(".")[0]
    banned = tuple(f"{root}.{name}" for name in forbidden)
    return [
        f"{module} (line {line}) imports {target}"
        for module, edges in graph.items()
        if module == source or module.startswith(f"{source}.")
        for target, line in edges.items()
        if target in banned or target.startswith(tuple(f"{name}." for name in banned))
    ]


def long_functions(src: Path = SRC, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function or method longer than ``limit``."""
    found = []
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - first + 1
                if lines > limit:
                    where = path.relative_to(src.parent)
                    found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


# -- the checks on the package ------------------------------------------------------------


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    found = [
        f"{describe(graph, shortest_cycle(graph, group))}  [group: {', '.join(group)}]"
        for group in import_components(graph)
    ]
    assert not found, "import cycles (function-level imports included):\n" + "\n".join(found)


def test_the_napari_plugin_imports_the_core_only_through_api():
    found = forbidden_imports(import_graph(), f"{PACKAGE}._napari", NAPARI_FORBIDDEN)
    assert not found, "\n".join(found)


def test_no_function_is_longer_than_the_limit():
    found = long_functions()
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


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
    ("init", "expected"),
    [
        # relative imports from a package's __init__ start at the package itself
        ("from .x import f\n", {"pkg.sub.x": 1}),
        ("from . import x\n", {"pkg.sub.x": 1}),
        # a name (not a module) from a package is an import of the package's __init__
        ("\n\nfrom pkg import thing\n", {"pkg": 3}),
        # ``import a.b.name`` where name is not a module resolves to a.b
        ("def f():\n    import pkg.sub.x.f\n", {"pkg.sub.x": 2}),
    ],
)
def test_imports_resolve_to_modules(tmp_path, init, expected):
    src = write(
        tmp_path,
        {"pkg/__init__.py": "thing = 1\n", "pkg/sub/__init__.py": init, "pkg/sub/x.py": ""},
    )
    graph = import_graph(src, "pkg")
    assert graph["pkg.sub"] == expected
    assert import_cycles(graph) == []


def test_a_forbidden_import_inside_a_function_is_found(tmp_path):
    src = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/api.py": "from pkg.core import run\n",
            "pkg/core/__init__.py": "def run(): ...\n",
            "pkg/core/engine.py": "",
            "pkg/core_extra.py": "",
            "pkg/shell/__init__.py": "from pkg import api\n",
            "pkg/shell/jobs.py": (
                "import pkg.core_extra\n\ndef job():\n    from pkg.core import engine\n"
            ),
        },
    )
    graph = import_graph(src, "pkg")
    assert forbidden_imports(graph, "pkg.shell", ("core",)) == [
        "pkg.shell.jobs (line 4) imports pkg.core.engine"
    ]
    assert forbidden_imports(graph, "pkg.shell", ("api",)) == ["pkg.shell (line 1) imports pkg.api"]


def test_a_function_is_measured_from_its_decorators_to_its_last_line(tmp_path):
    body = "    x = 1\n" * 97
    src = write(
        tmp_path,
        {
            "pkg/long.py": f"@decorator\ndef f():\n    '''Doc.'''\n{body}",
            "pkg/short.py": f"def g():\n    '''Doc.'''\n{body}",
        },
    )
    where = tmp_path.name
    assert long_functions(src) == []
    assert long_functions(src, limit=99) == [f"{where}/pkg/long.py:2 f (100 lines)"]
    assert long_functions(src, limit=98) == [
        f"{where}/pkg/long.py:2 f (100 lines)",
        f"{where}/pkg/short.py:1 g (99 lines)",
    ]
