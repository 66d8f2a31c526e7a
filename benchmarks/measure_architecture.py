"""The figures the architecture is judged by, read from the source (nothing is imported except
the package boundaries, for the `Any` count).

    python benchmarks/measure_architecture.py

Prints: modules per package, the longest module, function length median / p90, internal imports
at module level and deferred into functions, import cycles, and the share of parameters typed
`Any` at package boundaries (what each package's `__init__` exports).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import statistics
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "core", "suite", "checks", "models", "generation", "backends", "training", "evaluation",
    "run", "store", "plan", "outputs", "cli",
)  # fmt: skip


def sources() -> dict[str, Path]:
    found = {}
    for path in [*(ROOT / "harness").rglob("*.py"), *(ROOT / "backends").glob("*.py")]:
        relative = path.relative_to(ROOT)
        if relative.parts[:2] == ("harness", "backends"):
            continue  # the symlink to backends/, counted once below
        if relative.parts[0] == "backends":
            name = "harness.backends" + ("" if path.stem == "__init__" else f".{path.stem}")
        else:
            parts = list(relative.with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def function_lengths(paths: list[Path]) -> list[int]:
    lengths = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lengths.append(node.end_lineno - node.lineno + 1)  # type: ignore[operator]
    return lengths


def internal_imports(path: Path, known: dict[str, Path]) -> tuple[list[str], list[str]]:
    """(module-level, deferred) harness modules `path` imports; `from package import
    submodule` counts as the submodule."""
    top: list[str] = []
    deferred: list[str] = []

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            now = inside or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("harness"):
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    target = submodule if submodule in known else child.module or ""
                    (deferred if inside else top).append(target)
            visit(child, now)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return top, deferred


def cycles(graph: dict[str, set[str]]) -> list[str]:
    found, state = [], {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    return found


def resolve(name: str, known: dict[str, Path]) -> str:
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def any_share() -> tuple[int, int, int]:
    """(parameters, typed exactly Any or untyped, typed with Any anywhere) at package
    boundaries: the functions, classes and public methods each package exports."""
    total = bare = anywhere = 0
    for package in PACKAGES:
        if package == "cli":
            continue
        module = importlib.import_module(f"harness.{package}")
        for name in getattr(module, "__all__", []):
            item = getattr(module, name)
            callables = [item]
            if inspect.isclass(item):
                callables += [
                    f
                    for key, f in vars(item).items()
                    if inspect.isfunction(f)
                    and not key.startswith("_")
                    and f.__name__ != "<lambda>"
                ]
            for function in callables:
                try:
                    signature = inspect.signature(function)
                except (TypeError, ValueError):
                    continue
                for p in signature.parameters.values():
                    if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                        continue
                    total += 1
                    text = str(p.annotation)
                    if p.annotation is p.empty or re.fullmatch(r"Any( \| None)?", text):
                        bare += 1
                    if p.annotation is p.empty or re.search(r"\bAny\b", text):
                        anywhere += 1
    return total, bare, anywhere


def main() -> None:
    known = sources()
    per_package = Counter(name.split(".")[1] if "." in name else "" for name in known)
    print("modules per package:", ", ".join(f"{p} {per_package[p]}" for p in PACKAGES))
    longest = max(known.items(), key=lambda item: len(item[1].read_text().splitlines()))
    print(f"longest module: {longest[0]} ({len(longest[1].read_text().splitlines())} lines)")
    lengths = sorted(function_lengths(list(known.values())))
    p90 = lengths[int(0.9 * (len(lengths) - 1))]
    print(f"functions: {len(lengths)}, median {statistics.median(lengths):.0f} lines, p90 {p90}")
    graph, top_count, deferred_count, deferred_outside_cli = {}, 0, 0, 0
    for name, path in known.items():
        top, deferred = internal_imports(path, known)
        top_count += len(set(top))
        deferred_count += len(set(deferred))
        if not name.startswith("harness.cli"):
            deferred_outside_cli += len(set(deferred))
        graph[name] = {resolve(t, known) for t in top} - {name}
    print(
        f"internal imports: {top_count} at module level, {deferred_count} deferred "
        f"({deferred_outside_cli} outside the CLI)"
    )
    print(f"import cycles: {len(cycles(graph))}")
    total, bare, anywhere = any_share()
    print(
        f"parameters at package boundaries: {total}; typed Any or untyped: {bare} "
        f"({100 * bare / total:.1f}%); with Any anywhere in the type: {anywhere} "
        f"({100 * anywhere / total:.1f}%)"
    )


if __name__ == "__main__":
    main()
