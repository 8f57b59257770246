"""The house rules of issue 16 that a reviewer would otherwise check by hand: small files, no `sys.path`
edits, no import cycle inside the package, and the pipelines importable from anywhere once installed."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

MAX_LINES = 300  # STYLE.md: files around 300 lines or less (nanoGPT's lesson)
CODE_DIRS = ("src", "components", "pipelines", "tests", "bench", "scripts")


def _python_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (REPO / d).rglob("*.py") if ".venv" not in p.parts)


def test_no_python_file_is_over_300_lines():
    long = {str(p.relative_to(REPO)): n for p in _python_files() if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these (over {MAX_LINES} lines): {long}"


def test_nothing_edits_sys_path():
    # components/ and pipelines/ are installed with the package (pyproject package-dir): nothing needs a path hack
    edit = re.compile(r"sys\.path\.(insert|append|extend)\(|sys\.path\s*(\+?=|\[[^\]]*\]\s*=)|site\.addsitedir\(")
    found = [f"{p.relative_to(REPO)}:{i}" for p in _python_files()
             for i, line in enumerate(p.read_text("utf-8").splitlines(), 1) if edit.search(line)]
    assert not found, found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO / "src").with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_edges(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of the package that `name` imports when it is imported (module level, not inside functions,
    not under `if TYPE_CHECKING`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, block, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)

    visit(ast.parse(path.read_text("utf-8")).body)
    return edges


def test_no_import_cycle_in_the_package():
    files = {_module_name(p): p for p in (REPO / "src").rglob("*.py")}
    graph = {name: _import_time_edges(path, name, set(files)) for name, path in files.items()}
    # importing a.b.c runs a/__init__ and a.b/__init__ first: a parent package is imported with its child
    for name in files:
        parent = name.rpartition(".")[0]
        while parent:
            graph[name].add(parent)
            parent = parent.rpartition(".")[0]
    cycles, state = [], {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open" and not _package_of(node, nxt):
                cycles.append(" -> ".join([*stack[stack.index(nxt):], node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                walk(nxt, [*stack, node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _package_of(child: str, parent: str) -> bool:
    """A package's __init__ importing its own submodule is not a cycle: Python imports the parent first."""
    return child.startswith(parent + ".") or parent.startswith(child + ".")


@pytest.mark.parametrize("module", ["pipelines.training", "components.train.component", "finegrain.cli"])
def test_installed_modules_import_from_any_directory(module, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
