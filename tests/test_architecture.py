"""The layout holds: no import cycles, packages import only what their layer allows, and an
import deferred into a function says why (a heavy third-party library, or the CLI's start-up).

Read from the source with `ast` (no import runs); `if TYPE_CHECKING:` imports are annotations and
do not count.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import heavy_imports
from helpers.source_graph import ROOT, cycles, imports, module_graph, package, resolve, sources

from harness.store import Store

# What each package may import at module level, besides itself (README: ARCHITECTURE.md).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "checks": {"core", "models", "generation"},
    "models": {"core"},
    "generation": {"core", "models"},
    "backends": {"core", "models"},
    "suite": {"core", "checks", "models", "generation", "backends"},
    "training": {"core", "checks", "models", "backends", "suite"},
    "evaluation": {"core", "checks", "models", "generation", "suite", "store"},
    "store": {"core"},
    "run": {
        "core", "checks", "models", "generation", "suite", "training", "evaluation", "store",
        "plan",
    },
    "plan": {"core", "models", "backends", "suite"},
    "outputs": {"core", "checks", "evaluation", "store"},
    "cli": {
        "core", "checks", "models", "generation", "backends", "suite", "training", "evaluation",
        "store", "run", "plan", "outputs",
    },
}  # fmt: skip
DEFERRED = re.compile(r"#\s*deferred:")
SOURCES = sources()


def test_the_layout_is_read() -> None:
    assert len(SOURCES) > 60 and {package(m) for m in SOURCES} >= set(ALLOWED)


def test_no_module_imports_itself_round_a_cycle() -> None:
    assert cycles(module_graph(SOURCES)) == []


def test_packages_import_only_their_lower_layers() -> None:
    wrong = []
    for module, path in SOURCES.items():
        mine = package(module)
        for name, line in imports(path, SOURCES)[0]:
            theirs = package(resolve(name, SOURCES))
            if theirs and theirs != mine and theirs not in ALLOWED.get(mine, set()):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {theirs}")
    assert wrong == []


# Modules that must not import a package their layer would allow: statistics are about numbers,
# not about the checks that produce them.
FORBIDDEN = {
    "harness.evaluation._stats": "checks",
    "harness.evaluation._evidence": "checks",
}


def test_statistics_never_import_checks() -> None:
    for module, package_name in FORBIDDEN.items():
        imported = {
            package(resolve(name, SOURCES)) for name, _ in imports(SOURCES[module], SOURCES)[0]
        }
        assert package_name not in imported, module


def test_a_deferred_import_says_why() -> None:
    silent = []
    for module, path in SOURCES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for name, line in imports(path, SOURCES)[1]:
            said = DEFERRED.search(lines[line - 1]) or (
                line > 1 and DEFERRED.search(lines[line - 2])
            )
            if package(module) != "cli" and not said:
                silent.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert silent == []


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["validate", "suites/gate.yaml"],
        ["schema"],
        ["runs", "--db", "{db}"],
        ["show", "last", "--db", "{db}"],
    ],
    ids=["help", "validate", "schema", "runs", "show"],
)
def test_commands_that_run_no_model_never_import_torch(command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    store = Store(db)
    run_id = store.begin_run(
        suite_name="s", suite_path="s", suite_text="", suite_hash="", config={}
    )
    store.finish_run(run_id, status="passed", exit_code=0)
    argv = [part.replace("{db}", str(db)) for part in command]
    assert heavy_imports(argv, ROOT) == []


@pytest.mark.slow
def test_a_fully_cached_rerun_never_imports_torch(tmp_path: Path) -> None:
    db = str(tmp_path / "h.duckdb")
    first = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "suites/gate.yaml", "--db", db],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    assert heavy_imports(["run", "suites/gate.yaml", "--db", db], ROOT) == []
