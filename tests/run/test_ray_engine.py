"""The Ray engine on a Ray instance this module starts (2 CPUs, on this machine): the same weights,
outputs and verdicts as a local run; a worker killed mid-run fails its own candidate only; a rerun
reuses the artifacts and every cached output; what `execution:` needs is checked at its line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.core.errors import HarnessError
from harness.evaluation import RunResult
from harness.run import run_suite
from harness.store import Store
from harness.suite import load_suite
from tests.helpers.training import SUITE, Stages

REPO = Path(__file__).resolve().parents[2]

TWO_CANDIDATES = """\
  - {name: lora, backend: lora, data: train, merge: true, args: {learning_rate: 3.0e-3, max_steps: 8}}
  - {name: full, backend: full, data: train, args: {learning_rate: 1.0e-3, max_steps: 4}}
"""


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A Ray instance of one node with 2 CPUs, started for these tests and stopped after."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "object_store_memory": 200 * 2**20},
    )
    try:
        yield str(cluster.address)
    finally:
        cluster.shutdown()


def write_suite(tmp_path: Path, candidates: str, extra: str = "") -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.replace("candidates:\n", extra + "candidates:\n") + candidates)
    return path


def outcome(result: RunResult) -> dict[str, Any]:
    """Everything a verdict rests on, by model: weights, outputs, scores, gates."""
    found = {}
    for model in [result.base, *result.candidates]:
        found[model.record.name] = {
            "fingerprint": model.record.fingerprint,
            "status": model.record.status,
            "outputs": [
                (c.capability, c.check, c.case_id, c.output, c.scores) for c in model.cases
            ],
            "gates": [(g.capability, g.kind, g.outcome, g.value, g.message) for g in model.gates],
        }
    return found


@pytest.mark.slow  # two candidates trained twice (locally, then on Ray), and a rerun
def test_the_ray_engine_gives_the_local_runs_weights_outputs_and_verdicts(
    tmp_path: Path, ray_address: str, tiny_dir: Path
) -> None:
    path = write_suite(tmp_path, TWO_CANDIDATES)
    local = run_suite(load_suite(path), Store(tmp_path / "local.duckdb"), retrain=True)
    stages = Stages()
    store = Store(tmp_path / "ray.duckdb")
    on_ray = run_suite(load_suite(path).on_ray(ray_address), store, retrain=True, reporter=stages)

    assert outcome(on_ray) == outcome(local)
    assert on_ray.exit_code == local.exit_code
    assert [c.record.name for c in on_ray.candidates] == ["lora", "lora+merged", "full"]
    # trained where Ray placed them, with their progress shown here
    for name in ("lora", "full"):
        assert any(s.startswith("training (Ray node ") for s in stages.stages[name])
        assert stages.steps[name][-1] == (8 if name == "lora" else 4)
    # this process wrote the store: the run reads back as the local one
    stored = store.load_run(on_ray.run_id)
    assert {m.name: m.fingerprint for m in stored.models} == {
        m.record.name: m.record.fingerprint for m in [local.base, *local.candidates]
    }
    assert stored.config["execution"]["engine"] == "ray"

    # a rerun reuses both artifacts and finds every output in the store
    again = run_suite(load_suite(path).on_ray(ray_address), store)
    assert outcome(again) == outcome(local)
    for model in again.candidates:
        info = model.record.info
        assert info["training"]["reused_artifact"] is True
        assert info["requests_cached"] > 0 and info["requests_computed"] == 0


@pytest.mark.slow  # a run on Ray whose worker is killed while it trains, beside a launch
def test_a_killed_worker_fails_its_own_candidate_and_the_others_finish(
    tmp_path: Path, ray_address: str, tiny_dir: Path
) -> None:
    path = write_suite(
        tmp_path,
        """\
  - {name: doomed, backend: lora, data: train, args: {learning_rate: 1.0e-3, max_steps: 100000}}
  - {name: fine, backend: lora, data: train, args: {learning_rate: 3.0e-3, max_steps: 4}}
  - name: launch
    backend: lora
    data: train
    accelerate: {num_processes: 2}
    args: {learning_rate: 3.0e-3, max_steps: 4, per_device_train_batch_size: 4}
""",
    )
    # it trains for far longer than this test: killed 2 s after its actor appears
    exit_code, summary = run_killing(path, ray_address, ":doomed", after_s=2.0, restart=False)
    assert exit_code == 3, summary
    models = {m["name"]: m for m in summary["candidates"]}
    assert models["doomed"]["status"] == "error"
    assert "training failed: HarnessError: its Ray worker died" in models["doomed"]["error"]
    assert models["fine"]["status"] != "error", models["fine"]["error"]
    # a launch is one actor holding a CPU per process (both of the instance's, so it waited for
    # the others or they for it), trained there over two gloo processes
    assert models["launch"]["status"] != "error", models["launch"]["error"]
    assert models["launch"]["info"]["training"]["processes"] == 2


@pytest.mark.slow  # a run on Ray whose worker is killed once, and restarted by Ray
def test_with_retries_a_worker_killed_once_is_restarted_and_its_candidate_finishes(
    tmp_path: Path, ray_address: str, tiny_dir: Path
) -> None:
    path = write_suite(
        tmp_path,
        "  - {name: preempted, backend: lora, data: train, args: {max_steps: 40}}\n",
        extra="execution: {engine: ray, retries: 1}\n",
    )
    # killed as a preemption would: Ray may restart it
    exit_code, summary = run_killing(path, ray_address, ":preempted", after_s=0.0, restart=True)
    assert exit_code in (0, 1), summary  # a verdict, not an error
    (model,) = summary["candidates"]
    assert model["status"] != "error" and model["info"]["training"]["data_rows"] > 0


def run_killing(
    path: Path, ray_address: str, suffix: str, *, after_s: float, restart: bool
) -> tuple[int, dict[str, Any]]:
    """`harness run --ray` of `path` while this process kills the run's actor named `*suffix`
    `after_s` seconds after it appears; the exit code and the run's JSON summary."""
    import ray

    summary = path.parent / "run.json"
    command = [sys.executable, "-m", "harness.cli", "run", str(path), "--ray", ray_address]
    command += ["--db", str(path.parent / "h.duckdb"), "--json", str(summary), "--retrain"]
    with subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True) as running:
        ray.init(address=ray_address, logging_level="ERROR")
        try:
            actor = wait_for_actor(suffix, running)
            time.sleep(after_s)
            ray.kill(actor, no_restart=not restart)
        finally:
            ray.shutdown()
        _, stderr = running.communicate(timeout=600)
    assert summary.is_file(), stderr[-3000:]
    return running.returncode, json.loads(summary.read_text())


def wait_for_actor(suffix: str, running: subprocess.Popen[str]) -> Any:
    """The run's Ray actor whose name ends with `suffix`, once it exists."""
    import ray

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert running.poll() is None, "the run ended before its worker could be killed"
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == "harness" and actor["name"].endswith(suffix):
                return ray.get_actor(actor["name"], namespace="harness")
        time.sleep(0.5)
    raise AssertionError(f"no actor named *{suffix} appeared")


# --- what `execution:` needs ---------------------------------------------------------------


def problems_of(tmp_path: Path, extra: str) -> list[str]:
    with pytest.raises(HarnessError) as caught:
        load_suite(write_suite(tmp_path, TWO_CANDIDATES, extra))
    return typing.cast(list[str], caught.value.problems)


def test_ray_settings_without_the_ray_engine_are_refused_at_their_line(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "execution: {address: auto}\n")
    assert any(":16:12: execution: address: only with engine: ray" in p for p in found), found


def test_an_artifact_location_nothing_can_write_is_refused_at_its_line(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "execution:\n  engine: ray\n  artifacts: nope://bucket/x\n")
    assert any(
        ":18:14: execution.artifacts: nope:// is not a filesystem fsspec knows" in p for p in found
    ), found


def test_the_ray_engine_without_ray_installed_is_refused_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(  # this machine has ray: hide it, as a machine without the extra would
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a)
    )
    found = problems_of(tmp_path, "execution: {engine: ray}\n")
    assert any(
        ":16:21: execution.engine: engine ray needs the ray package" in p
        and "pip install 'harness[ray]'" in p
        for p in found
    ), found


def test_an_unreachable_cluster_is_an_error_before_anything_is_recorded(tmp_path: Path) -> None:
    path = write_suite(tmp_path, TWO_CANDIDATES)
    store = Store(tmp_path / "h.duckdb")
    with pytest.raises(HarnessError, match=r"could not join the Ray cluster at 127\.0\.0\.1:9"):
        run_suite(load_suite(path).on_ray("127.0.0.1:9"), store)
    assert store.list_runs() == []


def test_a_workers_posts_are_handled_in_the_order_it_sent_them() -> None:
    """Ray runs an async actor's calls in any order: the run puts each worker's posts back in
    its own numbering, line by line (a restarted worker is a new line)."""
    from harness.run._ray import InOrder

    order = InOrder()
    assert order.add("a", 2, "a2") == []  # held until a1 comes
    assert order.add("b", 1, "b1") == ["b1"]  # another line is not held up
    assert order.add("a", 3, "a3") == []
    assert order.add("a", 1, "a1") == ["a1", "a2", "a3"]
    assert order.add("a", 4, "a4") == ["a4"]
    assert order.add("a-restarted", 1, "r1") == ["r1"]
