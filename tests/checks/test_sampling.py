"""`samples: k` checks: per-case pass rate, pass@k and flaky cases, reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.checks._sampling import pass_at_k
from harness.core.errors import HarnessError
from harness.suite import load_suite


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 10) == 1.0
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - (4 * 3) / (5 * 4))


SUITE = """\
name: sampled
base: builtin:tiny
seed: 3
capabilities:
  - name: sums
    checks:
      - type: exact
        samples: 6
        temperature: 1.5
        generation: {max_new_tokens: 6}
        cases:
          - {prompt: "Q: What is 22 plus 39? A:", expected: "61"}
          - {prompt: "Q: What is 25 plus 14? A:", expected: "39"}
          - {prompt: "Q: What is 47 plus 48? A:", expected: "95"}
          - {prompt: "Q: What is the capital of Nowhere? A:", expected: "Somewhere"}
"""


def test_sampled_check_reports_pass_rate_pass_at_k_and_flaky_cases(tmp_path: Path) -> None:
    from harness.evaluation import evaluate_model
    from harness.models.loading import load_model

    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    suite = load_suite(path)
    lm = load_model("builtin:tiny")
    first = evaluate_model(lm, suite, None)
    second = evaluate_model(lm, suite, None)
    assert [c.details for c in first.cases] == [c.details for c in second.cases]  # seeded
    metrics = {m.metric: m.value for m in first.metrics}
    assert set(metrics) == {"exact.acc", "exact.pass@6", "exact.flaky"}
    for case in first.cases:
        passes = case.details["passes"]
        assert len(case.details["outputs"]) == 6
        assert case.scores["acc"] == pytest.approx(passes / 6)
        assert case.scores["pass@6"] == float(passes > 0)
        assert case.details["flaky"] == (0 < passes < 6)
    assert first.cases[3].details["passes"] == 0  # never right about an unknown fact
    assert len({o for c in first.cases for o in c.details["outputs"]}) > 4  # it really sampled


def test_samples_need_a_temperature_and_a_generating_check(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.replace("        temperature: 1.5\n", ""))
    with pytest.raises(HarnessError) as no_temperature:
        load_suite(path)
    assert "needs a `temperature`" in no_temperature.value.problems[0]
    path.write_text(
        "name: s\nbase: builtin:tiny\ncapabilities:\n  - name: c\n    checks:\n"
        "      - {type: choice, samples: 3, temperature: 1.0, cases: [{prompt: p, choices: [a, b], answer: a}]}\n"
    )
    with pytest.raises(HarnessError) as caught:
        load_suite(path)
    assert "`samples` needs a check that generates text" in caught.value.problems[0]


def test_each_prompt_samples_the_same_text_whatever_else_is_in_its_batch(tmp_path: Path) -> None:
    """A fresh run, a resumed run (some outputs cached) and a cached rerun sample alike: each
    prompt's samples are seeded by (seed, prompt, sample), not by its batch."""
    from harness.generation import Engine, GenerationSettings
    from harness.generation._cache import DictCache
    from harness.models.loading import load_model

    lm = load_model("builtin:tiny")
    prompts = [f"Q: What is {a} plus {b}? A:" for a, b in ((22, 39), (25, 14), (47, 48), (3, 9))]
    settings = GenerationSettings(max_new_tokens=6, temperature=1.5, sample=2, seed=3)
    together = Engine(lm, DictCache(), batch_size=4).generate(prompts, settings)
    resumed_cache = DictCache()
    Engine(lm, resumed_cache, batch_size=4).generate(prompts[1:3], settings)  # killed after these
    resumed = Engine(lm, resumed_cache, batch_size=4).generate(prompts, settings)
    one_by_one = [Engine(lm, DictCache(), batch_size=1).generate([p], settings)[0] for p in prompts]
    assert together == resumed == one_by_one
    other_sample = Engine(lm, DictCache(), batch_size=4).generate(
        prompts, GenerationSettings(max_new_tokens=6, temperature=1.5, sample=3, seed=3)
    )
    assert other_sample != together  # sample numbers draw differently
