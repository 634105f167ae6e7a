"""The import structure, read from the source (nothing is imported): no two of the project's modules
import each other, directly or round a longer loop, and `runtime` imports no front end (`serve`,
`pipecat_service`, `commands`) and not the build toolchain (`export`).

Imports inside functions count: a lazy import still ties the two modules together, and still
breaks when the module it names moves. An import of `qwen3_tts_trt.runtime.x` names runtime/x.py.
"""

from __future__ import annotations

import ast
from collections import deque
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Installed package -> folder in the repository (pyproject.toml's package-dir).
PACKAGES = {
    "qwen3_tts_trt": "qwen3_tts_trt",
    "qwen3_tts_trt.runtime": "runtime",
    "qwen3_tts_trt.export": "export",
    "qwen3_tts_trt.serve": "serve",
    "qwen3_tts_trt.pipecat_service": "pipecat_service",
    "qwen3_tts_trt.commands": "commands",
}
RUNTIME = "qwen3_tts_trt.runtime"
OUTSIDE_RUNTIME = ("qwen3_tts_trt.serve", "qwen3_tts_trt.pipecat_service", "qwen3_tts_trt.commands",
                   "qwen3_tts_trt.export")


def find_modules(root: Path, packages: dict[str, str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> its file, for every .py under the packages' folders."""
    found = {}
    for package, folder in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _imported(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import of `name` loads: itself, or the module that holds it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_edges(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {project module it imports: line of the first such import}."""
    edges: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - (node.level - 1)] + ([base] if base else []))
                # `from pkg import name`: the submodule pkg.name if there is one, else pkg itself
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in node.names]
            else:
                continue
            for name in names:
                target = _imported(name, modules)
                if target is not None and target != module:
                    edges[module].setdefault(target, node.lineno)
    return edges


def import_cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One loop per group of modules that import each other: [a, b, ..., a]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_shortest_loop(min(group), set(group), edges) for group in groups]


def _shortest_loop(start: str, group: set[str], edges: dict[str, dict[str, int]]) -> list[str]:
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(edges[v]):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start] if v != start else [start, start]
            if w in group and w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"no loop through {start}")  # a strongly connected group always has one


def describe(loop: list[str], edges: dict[str, dict[str, int]], modules: dict[str, Path], root: Path) -> str:
    arrows = [f"{a} -> {b} ({modules[a].relative_to(root)}:{edges[a][b]})" for a, b in pairwise(loop)]
    return " -> ".join(loop) + "\n      " + "\n      ".join(arrows)


def runtime_arrows(edges: dict[str, dict[str, int]], modules: dict[str, Path], root: Path) -> list[str]:
    """Imports from runtime/ of a front end or the build toolchain."""
    return [f"{m} -> {t} ({modules[m].relative_to(root)}:{line})"
            for m, targets in sorted(edges.items()) if m == RUNTIME or m.startswith(RUNTIME + ".")
            for t, line in sorted(targets.items()) if any(t == o or t.startswith(o + ".") for o in OUTSIDE_RUNTIME)]


# -- the project ----------------------------------------------------------------------------------
def test_the_project_has_no_import_cycle():
    modules = find_modules(ROOT)
    assert f"{RUNTIME}.stream" in modules and "qwen3_tts_trt.commands.main" in modules, sorted(modules)
    edges = import_edges(modules)
    loops = import_cycles(edges)
    assert not loops, "modules that import each other (move what both need into one of them, or a third):\n  " + \
        "\n  ".join(describe(loop, edges, modules, ROOT) for loop in loops)


def test_runtime_imports_no_front_end_and_not_the_build_toolchain():
    modules = find_modules(ROOT)
    arrows = runtime_arrows(import_edges(modules), modules, ROOT)
    assert not arrows, "runtime/ must not import serve, pipecat_service, commands or export:\n  " + "\n  ".join(arrows)


# -- the checker itself ---------------------------------------------------------------------------
def test_the_checker_finds_a_lazy_cycle_and_a_runtime_arrow(tmp_path):
    files = {
        "runtime/__init__.py": "from .a import A\n",
        "runtime/a.py": "from .b import B\nA = 1\n",
        "runtime/b.py": "B = 2\n\ndef late():\n    from qwen3_tts_trt.runtime import a\n"
                        "    import qwen3_tts_trt.serve.app\n",
        "runtime/sub/__init__.py": "",
        "runtime/sub/c.py": "from .. import b\nfrom ..a import A\nimport torch\n",
        "serve/__init__.py": "",
        "serve/app.py": "from qwen3_tts_trt.runtime.sub.c import A\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    packages = {"qwen3_tts_trt.runtime": "runtime", "qwen3_tts_trt.serve": "serve"}
    modules = find_modules(tmp_path, packages)
    edges = import_edges(modules)
    r = "qwen3_tts_trt.runtime"
    assert edges[f"{r}.sub.c"] == {f"{r}.b": 1, f"{r}.a": 2}  # relative, two levels up; torch is not ours
    loops = import_cycles(edges)
    assert loops == [[f"{r}.a", f"{r}.b", f"{r}.a"]]  # one group (a, b, c, serve.app), named by its shortest loop
    assert "runtime/b.py:4" in describe(loops[0], edges, modules, tmp_path)
    assert runtime_arrows(edges, modules, tmp_path) == [f"{r}.b -> qwen3_tts_trt.serve.app (runtime/b.py:5)"]


def test_the_synthesizer_stays_a_facade():
    """`runtime/stream.py` opens, closes and starts streams; planning, frames and audio live in
    modules of their own (request_plan, frame_source, audio_stream): it stays about 250 lines."""
    lines = (ROOT / "runtime" / "stream.py").read_text().count("\n")
    assert lines <= 260, f"runtime/stream.py has {lines} lines: move a job out of the facade"
