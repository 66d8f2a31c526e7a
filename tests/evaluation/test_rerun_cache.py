"""A rerun of an unchanged suite is served from the output cache with a few store opens.

Real DuckDB files and the built-in tiny model; opens are counted by `Store.opens`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from harness.evaluation import ModelResult, RunResult
from harness.generation._cache import ModelCache
from harness.run import run_suite
from harness.store import Store
from harness.suite import load_suite

DATA = Path(__file__).resolve().parents[2] / "suites" / "data"

# One capability per check, so each check adds its own requests (generate, loglikelihood, rolling).
CHECKS = [
    ("sums", "{type: exact, data: sums}"),
    ("number", "{type: regex, name: number, data: sums, pattern: '^\\s*\\d+\\s*$'}"),
    ("known", "{type: qa, data: known_facts}"),
    ("new", "{type: qa, data: new_facts}"),
    ("choice", "{type: choice, data: facts_choice}"),
    ("texts", "{type: perplexity, data: fact_texts}"),
]


def write_suite(path: Path, checks: int, candidate: Path) -> Path:
    data = "".join(
        f"  {name}: {{path: {DATA / name}.jsonl}}\n"
        for name in ("sums", "known_facts", "new_facts", "facts_choice", "fact_texts")
    )
    # A gate on the first capability, so the candidate's remembered evidence is read too.
    gate = "    forgetting: {metric: exact.acc, max_drop: 0.5}\n"
    capabilities = "".join(
        f"  - name: {name}\n{gate if index == 0 else ''}    checks: [{check}]\n"
        for index, (name, check) in enumerate(CHECKS[:checks])
    )
    path.write_text(
        "name: rerun\nbase: builtin:tiny\n"
        "generation: {max_new_tokens: 6, batch_size: 16}\n"
        f"data:\n{data}capabilities:\n{capabilities}"
        f"candidates:\n  - {{name: same, model: {candidate}}}\n",
        encoding="utf-8",
    )
    return path


def models(result: RunResult) -> list[ModelResult]:
    return [result.base, *result.candidates]


def test_a_rerun_computes_nothing_and_opens_the_store_as_often_for_any_number_of_checks(
    tmp_path: Path, tiny_dir: Path
) -> None:
    opens: dict[int, int] = {}
    for checks in (1, len(CHECKS)):
        suite = load_suite(write_suite(tmp_path / f"suite{checks}.yaml", checks, tiny_dir))
        store = Store(tmp_path / f"h{checks}.duckdb")
        first = run_suite(suite, store)
        before = store.opens
        second = run_suite(suite, store)
        opens[checks] = store.opens - before
        assert [m.metrics for m in models(first)] == [m.metrics for m in models(second)]
        for model in (second.base, *second.candidates):
            assert model.record.info["requests_computed"] == 0
            assert model.record.info["requests_cached"] > 0
            assert model.record.info["loaded"] is False
        assert [g.outcome for g in second.candidates[0].gates] == ["pass"]
    # Begin the run, record each model (base, candidate), finish: what each model reads (its
    # cached outputs, a candidate's remembered gate evidence) rides on the open before it.
    assert opens == {1: 4, len(CHECKS): 4}
    # A new process's rerun: the store's migrations ride on the run's first open too.
    fresh = Store(tmp_path / f"h{len(CHECKS)}.duckdb")
    run_suite(suite, fresh)
    assert fresh.opens == 4


def test_cached_outputs_written_without_a_scope_are_still_reused(
    tmp_path: Path, tiny_dir: Path
) -> None:
    suite = load_suite(write_suite(tmp_path / "suite.yaml", 3, tiny_dir))
    db = tmp_path / "h.duckdb"
    store = Store(db)
    run_suite(suite, store)
    with duckdb.connect(str(db)) as con:  # as rows written before schema 4 look
        con.execute("UPDATE output_cache SET scope = NULL")
    rerun = run_suite(suite, store)
    for model in (rerun.base, *rerun.candidates):
        assert model.record.info["requests_computed"] == 0


def test_model_cache_reads_the_store_once_then_asks_only_for_what_it_lacks(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    other = Store(tmp_path / "h.duckdb")  # another writer of the same file
    store.put_many("generate", {"a": "A", "b": ["B", 1, None]}, scope="model-1")
    store.put_many("generate", {"z": "Z"}, scope="model-2")
    cache = ModelCache(store, "model-1")
    opens = store.opens

    assert cache.get_many("generate", ["a"]) == {"a": "A"}
    assert cache.get_many("generate", ["a", "b"]) == {"a": "A", "b": ["B", 1, None]}
    assert store.opens == opens + 1  # the scope read once; the second lookup from memory

    other.put_many("generate", {"c": "C"})  # after that read, and under no scope
    found = cache.get_many("generate", ["a", "c", "z", "missing"])
    assert found == {"a": "A", "c": "C", "z": "Z"}
    assert store.opens == opens + 2  # one keyed read for the three it lacked

    cache.put_many("loglikelihood", {"k": {"logprob": -1.5}})
    assert store.get_scope("model-1")[("loglikelihood", "k")] == '{"logprob": -1.5}'
    opens = store.opens
    assert cache.get_many("loglikelihood", ["k"]) == {"k": {"logprob": -1.5}}
    assert cache.get_many("generate", ["c"]) == {"c": "C"}
    assert store.opens == opens  # what it wrote or fetched is served from memory


def test_an_adapter_is_lazy_once_remembered_and_a_changed_base_is_not_trusted(
    tiny_dir: Path, tmp_path: Path
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.models import LazyModel, LoadedModel
    from harness.models.loading import open_model

    base_dir = tmp_path / "base"
    shutil.copytree(tiny_dir, base_dir)
    open_model(str(base_dir))  # remembers the base's fingerprint, as a run's base does
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    adapter = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(
        adapter
    )

    first = open_model(str(adapter))
    assert isinstance(first, LoadedModel)  # nothing remembered yet: loaded, then remembered
    second = open_model(str(adapter))
    assert isinstance(second, LazyModel) and second.fingerprint == first.fingerprint
    assert second.load().fingerprint == first.fingerprint

    changed = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        changed.model.layers[0].self_attn.q_proj.weight += 0.1
    changed.save_pretrained(base_dir)
    assert isinstance(open_model(str(adapter)), LoadedModel)  # the base's files changed
    open_model(str(base_dir))  # the new base remembered: the adapter's memo is for the old one
    third = open_model(str(adapter))
    assert isinstance(third, LoadedModel) and third.fingerprint != first.fingerprint
    fourth = open_model(str(adapter))
    assert isinstance(fourth, LazyModel) and fourth.fingerprint == third.fingerprint


def test_evidence_shared_by_two_candidates_is_found_for_both(tmp_path: Path) -> None:
    """Two candidates whose cases give the same numbers share an evidence key; the store keeps it
    once, under the scope of the one written last, and the other must still find it (else every
    rerun recomputes it, importing scipy)."""
    from harness.evaluation._evidence import Evidence, EvidenceCache

    store = Store(tmp_path / "h.duckdb")
    evidence = Evidence("exact_binomial", 1.0, 0.95, 1.0, 0.001, 1.0, 60, True, False)
    for scope in ("evidence:first", "evidence:second"):
        cache = EvidenceCache(store, scope)
        cache.put("same-cases", evidence)
        cache.flush()
    for scope in ("evidence:first", "evidence:second"):
        assert EvidenceCache(store, scope).get("same-cases") == evidence
