"""The layers of the code: no import cycles, no private names across packages, the layering rules.

Every ``import`` counts, including those inside functions (a lazy import is still a dependency):
the graph of ``textgen`` and ``cli`` modules must be acyclic, so each module can be read and tested
below the ones that use it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    found = {}
    for base, package in ((ROOT / "textgen", "textgen"), (ROOT / "cli", "textgen.cli")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        nodes.append(node)
        todo += list(ast.iter_child_nodes(node))
    return nodes


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import the file runs."""
    is_package = path.name == "__init__.py"
    out = []
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            # `from package import module` imports the module
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            out += [(s, []) for s in subs]
            out.append((target, [n for n in names if f"{target}.{n}" not in modules]))
    return [(t, n) for t, n in out if t in modules]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _ in _imports(name, path, modules):
            if target != name:
                graph[name].add(target)
    return graph


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_cycles():
    graph = _graph()
    # A package's __init__ that re-exports its modules is not a cycle with them.
    edges = {m: {t for t in ts if not (_is_within(m, t) and t != m)} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_packages():
    modules = _modules()
    offenders = []
    for name, path in modules.items():
        own = name.rsplit(".", 1)[0] if path.name != "__init__.py" else name
        for target, names in _imports(name, path, modules):
            target_pkg = target.rsplit(".", 1)[0] if modules[target].name != "__init__.py" else target
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target_pkg != own:
                    offenders.append(f"{name} imports {target}.{n}")
    assert not offenders, "\n".join(offenders)


def test_layers():
    """The library never imports the command line; models know nothing of decoding or tasks;
    decoding knows nothing of tasks."""
    graph = _graph()
    rules = [("textgen", "textgen.cli"), ("textgen.models", "textgen.decoding"), ("textgen.models", "textgen.tasks"),
             ("textgen.decoding", "textgen.tasks"), ("textgen.models", "textgen.runner")]
    broken = []
    for lower, upper in rules:
        for module, targets in graph.items():
            if _is_within(module, lower) and not _is_within(module, upper):
                broken += [f"{module} imports {t}" for t in targets if _is_within(t, upper)]
    assert not broken, "\n".join(broken)


def test_the_checker_sees_a_cycle(tmp_path, monkeypatch):
    """The cycle finder is not vacuous: two modules importing each other are reported."""
    pkg = tmp_path / "textgen"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from textgen import b\n")
    (pkg / "b.py").write_text("def f():\n    from textgen.a import x\n")
    (tmp_path / "cli").mkdir()
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    try:
        test_no_import_cycles()
    except AssertionError as exc:
        assert "textgen.a -> textgen.b -> textgen.a" in str(exc) or "textgen.b -> textgen.a -> textgen.b" in str(exc)
    else:
        raise AssertionError("the cycle was not found")
