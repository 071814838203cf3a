"""The code's shape, checked (docs/cluster.md, "The code"): every module says in its first line what
it owns; no module of the cluster core is over 400 lines; no two modules import each other at run time
(a circle, however long); the cluster core imports nothing of the product, and the product nothing of
the cluster core. Imports under ``if TYPE_CHECKING:`` are for type checkers only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "talentnest"
MAX_CLUSTER_LINES = 400
PRODUCT = ("talentnest.api", "talentnest.services")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for statement in node.body for child in ast.walk(statement))
    return skip


def imports(name: str) -> set[str]:
    """The talentnest modules ``name`` imports when it runs (anywhere in it, functions included)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_circle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_as_they_run():
    assert "talentnest.cluster.lifecycle" in imports("talentnest.cluster.node")
    assert "talentnest.cluster.node" not in imports("talentnest.cluster.lifecycle"), "a TYPE_CHECKING import"


def test_no_import_circle_anywhere():
    graph = {name: imports(name) for name in MODULES}
    assert circles(graph) == []


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith("talentnest.cluster")])
def test_each_cluster_module_is_at_most_400_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_CLUSTER_LINES, f"{MODULES[name]} has {lines} lines"


@pytest.mark.parametrize("name", [n for n, p in MODULES.items() if p.stat().st_size])
def test_each_module_says_first_what_it_owns(name):
    docstring = ast.get_docstring(ast.parse(MODULES[name].read_text()))
    assert docstring and len(docstring.split()) >= 3, f"{MODULES[name]} has no docstring saying what it owns"


def test_the_cluster_core_and_the_product_know_nothing_of_each_other():
    cluster = [n for n in MODULES if n.startswith("talentnest.cluster")]
    product = [n for n in MODULES if n.startswith(PRODUCT)]
    assert [(n, sorted(m for m in imports(n) if m.startswith(PRODUCT))) for n in cluster if imports(n) & set(product)] == []
    assert [
        (n, sorted(m for m in imports(n) if m.startswith("talentnest.cluster")))
        for n in product
        if any(m.startswith("talentnest.cluster") for m in imports(n))
    ] == []
