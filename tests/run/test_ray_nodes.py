"""The Ray engine over two nodes started by this test on this machine: a head without CPUs, so
every model runs on the other node, whose $HARNESS_HOME is its own. Adapters come back to the
run's $HARNESS_HOME; full weights go to the shared `artifacts:` location and stay there; a
reward model reaches the candidate it rewards; a rerun reuses everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.home import harness_home
from harness.run import run_suite
from harness.store import Store
from harness.suite import load_suite
from tests.helpers.training import DATA

SUITE = f"""\
name: two-nodes
base: builtin:tiny
generation: {{max_new_tokens: 8}}
execution: {{engine: ray, artifacts: shared}}
data:
  train: {{path: {DATA / "new_facts_train.jsonl"}}}
  prefs: {{path: {DATA / "new_facts_prefs.jsonl"}}}
  held_out_pairs: {{path: {DATA / "known_facts_prefs.jsonl"}}}
  new_facts: {{path: {DATA / "new_facts.jsonl"}}}
capabilities:
  - name: new_facts
    forgetting: {{metric: qa.f1, max_drop: 1.0, mode: point}}
    checks: [{{type: qa, data: new_facts}}]
  - name: ranking
    threshold: {{metric: preference.accuracy, min: 0.0, mode: point}}
    checks: [{{type: preference, data: held_out_pairs}}]
candidates:
  - {{name: lora, backend: lora, data: train, args: {{learning_rate: 3.0e-3, max_steps: 4}}}}
  - {{name: full, backend: full, data: train, args: {{learning_rate: 1.0e-3, max_steps: 2}}}}
  - name: rm
    backend: reward_model
    data: prefs
    capabilities: [ranking]
    args: {{learning_rate: 5.0e-3, max_steps: 2}}
  - name: rloo
    backend: rloo
    data: new_facts
    reward: {{model: rm}}
    args: {{learning_rate: 1.0e-3, max_steps: 1, num_generations: 2, max_completion_length: 4}}
"""


@pytest.mark.slow  # a two-node Ray cluster, four candidates trained on the second node, a rerun
def test_artifacts_come_back_from_another_node_or_stay_at_the_shared_location(
    tmp_path: Path, tiny_dir: Path
) -> None:
    from ray.cluster_utils import Cluster

    node_home = tmp_path / "node-home"
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 150 * 2**20}
    )
    try:
        cluster.add_node(
            num_cpus=2, object_store_memory=150 * 2**20, env_vars={"HARNESS_HOME": str(node_home)}
        )
        path = tmp_path / "suite.yaml"
        path.write_text(SUITE)
        suite = load_suite(path).on_ray(str(cluster.address))
        store = Store(tmp_path / "h.duckdb")
        result = run_suite(suite, store, retrain=True)
        again = run_suite(suite, store)
    finally:
        cluster.shutdown()

    by_name = {c.record.name: c.record for c in result.candidates}
    assert all(r.status != "error" for r in by_name.values()), {
        n: r.error for n, r in by_name.items()
    }
    trained = {n: r.info["training"] for n, r in by_name.items()}
    names = {n: Path(t["artifact"]).name for n, t in trained.items() if n != "full"}

    # every artifact was built on the other node, in its own home
    built = {p.name for p in (node_home / "artifacts").iterdir() if not p.name.startswith(".")}
    assert set(names.values()) < built and len(built) == 4
    # adapters came back here whole; full weights stayed at the shared location only
    here = harness_home() / "artifacts"
    for name in names.values():
        assert (here / name / "training.json").is_file() and (here / name / "model").is_dir()
    shared = trained["full"]["shared_artifact"]
    full = Path(shared).name
    assert shared == str(tmp_path / "shared" / full)
    assert (tmp_path / "shared" / full / ".complete").is_file()
    assert not (here / full).exists()
    assert {p.name for p in (tmp_path / "shared").iterdir()} == built  # all written there

    # the rerun reuses every artifact and every output
    for candidate in again.candidates:
        info = candidate.record.info
        assert info["training"]["reused_artifact"] is True, candidate.record.name
        assert info["requests_computed"] == 0, candidate.record.name
    assert [c.record.fingerprint for c in again.candidates] == [
        c.record.fingerprint for c in result.candidates
    ]
