"""The code's shape, as the redesign left it (issue 12), checked on every run.

- edgemail/ has at most 16 entries at its top level;
- no import cycles between modules of edgemail and link, counting every
  import (top level, inside functions, and under TYPE_CHECKING);
- no module over 400 lines and no function over 40 (docstring included);
- link never imports edgemail; cores import no I/O module.

KNOWN lists the debts still open; each entry is removed when it is paid, and
an entry that no longer applies fails the test too, so the lists only shrink.
"""

from __future__ import annotations

import ast

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("edgemail", "link")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40

KNOWN_CYCLES: set[frozenset[str]] = set()
KNOWN_LONG_MODULES: set[str] = set()
KNOWN_LONG_FUNCTIONS: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every edgemail/link module NAME imports, wherever the import statement is."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_top_level_of_edgemail_has_at_most_16_entries():
    entries = sorted(p.name for p in (ROOT / "edgemail").iterdir() if p.name != "__pycache__")
    assert len(entries) <= 16, f"got {len(entries)} entries: {entries}"


def test_no_import_cycles():
    assert _cycles() == KNOWN_CYCLES


def test_link_never_imports_edgemail():
    bad = {f"{m} -> {t}" for m, targets in GRAPH.items() if m.startswith("link") for t in targets
           if t.startswith("edgemail")}
    assert not bad


def test_module_and_function_sizes():
    long_modules, long_functions = set(), set()
    for name, path in MODULES.items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.add(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long_functions.add(f"{name}.{node.name}")
    assert long_modules == KNOWN_LONG_MODULES
    assert long_functions == KNOWN_LONG_FUNCTIONS


def test_test_file_names_are_unique_across_folders():
    """pytest (rootdir imports, no packages) refuses two test files of one
    name in a run: the whole suite would stop at collection."""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, list[str]] = {}
    for f in tests.rglob("test_*.py"):
        seen.setdefault(f.name, []).append(str(f.relative_to(tests)))
    assert {n: p for n, p in seen.items() if len(p) > 1} == {}


def test_no_tracked_symlink_points_outside_the_tree():
    """A symlink into a developer's own folders (a worktree's .cache) works
    on that machine and breaks a fresh clone's make test (mkdir: File exists)."""
    import subprocess
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-s"], capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    outside = []
    for line in listed.stdout.splitlines():
        mode, _, rest = line.partition(" ")
        if mode == "120000":
            path = ROOT / rest.split("\t", 1)[1]
            target = (path.parent / Path(path.readlink() if path.is_symlink() else "")).resolve()
            if not target.is_relative_to(ROOT) or not path.exists():
                outside.append(str(path.relative_to(ROOT)))
    assert outside == []
