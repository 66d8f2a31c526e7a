"""harness's modules and their imports, read from the source with `ast` (nothing is imported):
what `tests/test_architecture.py` enforces and `benchmarks/measure_architecture.py` counts.
`if TYPE_CHECKING:` imports are annotations and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

Imports = list[tuple[str, int]]  # (module, line)


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "backends":
        return "harness.backends" + ("" if relative.stem == "__init__" else f".{relative.stem}")
    parts = list(relative.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package(module: str) -> str:
    """`harness.evaluation._gates` -> `evaluation`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def sources() -> dict[str, Path]:
    """Module name -> file: harness/ and backends/ (reached once, not again through the
    harness/backends link)."""
    found = [p for p in (ROOT / "harness").rglob("*.py") if "backends" not in p.parts]
    found += (ROOT / "backends").glob("*.py")
    return {module_name(p): p for p in found if p.name != "__main__.py"}


def imports(path: Path, known: dict[str, Path]) -> tuple[Imports, Imports]:
    """(module-level harness imports, deferred ones inside functions); `from package import
    submodule` counts as the submodule."""
    top: Imports = []
    deferred: Imports = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            names: list[str] = []
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [
                    f"{child.module}.{a.name}"
                    if f"{child.module}.{a.name}" in known
                    else child.module
                    for a in child.names
                ]
            elif isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            for name in names:
                if name == "harness" or name.startswith("harness."):
                    (deferred if in_function else top).append((name, child.lineno))
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return top, deferred


def resolve(name: str, known: dict[str, Path]) -> str:
    """The module an import names (`from harness.x import y` of a non-module y counts as x)."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def module_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules it imports at module level."""
    return {m: {resolve(n, known) for n, _ in imports(p, known)[0]} - {m} for m, p in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every import cycle found by a depth-first walk, as "a -> b -> a"."""
    found: list[str] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                found.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    return found
