"""The import graph of the whole tree: no circles, and `tasks`, `policies`, `curricula` free of Ray
and of `orchestrator`. Imports inside functions count too (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "tasks", "policies", "curricula", "benchmarks")
RAY_FREE = ("tasks", "policies", "curricula")


def imported_modules(path: Path, root: Path) -> list[str]:
    """Every module a file imports (absolute dotted names; relative imports resolved)."""
    package = list(path.relative_to(root).with_suffix("").parts)[:-1]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` imports the submodule `pkg.sub` where one exists, else names in `pkg`
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.append(sub if module_file(sub, root) is not None else base)
    return names


def module_file(name: str, root: Path) -> Path | None:
    """The file of a module of this tree (a package's __init__.py), or None for anything else."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    as_module = root.joinpath(*parts).with_suffix(".py")
    if as_module.is_file():
        return as_module
    as_package = root.joinpath(*parts, "__init__.py")
    return as_package if as_package.is_file() else None


def import_graph(root: Path) -> dict[Path, set[Path]]:
    """File -> files of this tree it imports."""
    files = [p for pkg in PACKAGES if (root / pkg).is_dir() for p in sorted((root / pkg).rglob("*.py"))]
    graph: dict[Path, set[Path]] = {}
    for path in files:
        targets = {module_file(name, root) for name in imported_modules(path, root)}
        graph[path] = {t for t in targets if t is not None and t != path}
    return graph


def find_cycle(graph: dict[Path, set[Path]]) -> list[Path] | None:
    """One import circle as a list of files (first == last), or None."""
    state: dict[Path, int] = {}  # 1: on the current path, 2: done
    stack: list[Path] = []

    def visit(node: Path) -> list[Path] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle_anywhere_in_the_tree():
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, "import circle: " + " -> ".join(str(p.relative_to(ROOT)) for p in cycle)


@pytest.mark.parametrize("package", RAY_FREE)
def test_tasks_policies_curricula_never_import_ray_or_orchestrator(package):
    offending = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_modules(path, ROOT):
            if name.split(".")[0] in ("ray", "orchestrator"):
                offending.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offending, offending


def test_orchestrator_top_holds_only_cli_config_and_subpackages():
    top = sorted(p.name for p in (ROOT / "orchestrator").glob("*.py"))
    assert top == ["__init__.py", "cli.py", "config.py", "config_docs.py"]
    for sub in ("runs", "rl", "supervised", "offline", "tune"):
        doc = ast.get_docstring(ast.parse((ROOT / "orchestrator" / sub / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"orchestrator/{sub} says what it owns in its docstring"


def test_runs_imports_no_kind_of_run():
    graph = import_graph(ROOT)
    kinds = [ROOT / "orchestrator" / k for k in ("rl", "supervised", "offline", "tune")]
    for path, targets in graph.items():
        if (ROOT / "orchestrator" / "runs") in path.parents:
            bad = [t for t in targets if any(k in t.parents for k in kinds)]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_checker_finds_a_circle_and_a_forbidden_import(tmp_path):
    pkg = tmp_path / "orchestrator"
    (pkg / "rl").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "rl" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from orchestrator.rl import b\n")
    (pkg / "rl" / "b.py").write_text("from ..c import x\n")
    (pkg / "c.py").write_text("import orchestrator.a\n")
    cycle = find_cycle(import_graph(tmp_path))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {p.name for p in cycle} == {"a.py", "b.py", "c.py"}
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "env.py").write_text("def g():\n    import ray.rllib\n")
    assert "ray.rllib" in imported_modules(tmp_path / "tasks" / "env.py", tmp_path)
