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
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the source graph the architecture test reads

from helpers.source_graph import cycles, imports, module_graph, sources  # noqa: E402

PACKAGES = (
    "core", "suite", "checks", "models", "generation", "backends", "training", "evaluation",
    "run", "store", "plan", "outputs", "cli",
)  # fmt: skip


def function_lengths(paths: list[Path]) -> list[int]:
    lengths = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lengths.append(node.end_lineno - node.lineno + 1)  # type: ignore[operator]
    return lengths


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
    top_count = deferred_count = deferred_outside_cli = 0
    for name, path in known.items():
        top, deferred = ({m for m, _ in found} for found in imports(path, known))
        top_count += len(top)
        deferred_count += len(deferred)
        if not name.startswith("harness.cli"):
            deferred_outside_cli += len(deferred)
    print(
        f"internal imports: {top_count} at module level, {deferred_count} deferred "
        f"({deferred_outside_cli} outside the CLI)"
    )
    print(f"import cycles: {len(cycles(module_graph(known)))}")
    total, bare, anywhere = any_share()
    print(
        f"parameters at package boundaries: {total}; typed Any or untyped: {bare} "
        f"({100 * bare / total:.1f}%); with Any anywhere in the type: {anywhere} "
        f"({100 * anywhere / total:.1f}%)"
    )


if __name__ == "__main__":
    main()
