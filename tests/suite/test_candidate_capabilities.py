"""`capabilities:` on a candidate: evaluated and gated on those alone. A classifier candidate (a
reward model) is refused at validation when a check it would meet needs a causal LM."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.training import DATA, problems, write

from harness.core.errors import HarnessError
from harness.suite import load_suite

PAIRS = f"  heldout: {{path: {DATA / 'known_facts_prefs.jsonl'}}}\n"
RANKING = """\
  - name: ranking
    threshold: {metric: preference.accuracy, min: 0.5}
    checks: [{type: preference, data: heldout}]
"""


def with_ranking(tmp_path: Path, candidates: str) -> Path:
    path = write(tmp_path, candidates)
    text = path.read_text().replace("data:\n", "data:\n" + PAIRS, 1)
    text = text.replace("candidates:\n", RANKING + "candidates:\n", 1)
    path.write_text(text)
    return path


RM = "- {name: rm, backend: reward_model, data: prefs, args: {max_steps: 2}}\n"


def test_a_reward_model_needs_checks_that_score_classifiers(tmp_path: Path) -> None:
    with_ranking(tmp_path, RM)
    found = problems_of(tmp_path)
    assert len(found) == 1, found
    assert "rm trains a classifier" in found[0]
    assert "new_facts · qa" in found[0] and "arithmetic · exact" in found[0]
    assert "give it capabilities: [ranking]" in found[0]


def test_capabilities_narrow_what_a_candidate_is_evaluated_on(tmp_path: Path) -> None:
    path = with_ranking(tmp_path, RM.replace("args:", "capabilities: [ranking], args:"))
    suite = load_suite(path)
    view = suite.only(["ranking"])
    assert [c.name for c in view.spec.capabilities] == ["ranking"]
    assert {p.capability for p in view.checks} == {"ranking"}
    assert suite.only(None) is suite


def test_unknown_capability_names_are_refused_at_their_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "- {name: m, model: builtin:tiny, capabilities: [new_fact]}\n")
    assert any(
        "candidates[0].capabilities[0]" in p and 'no capability "new_fact"' in p for p in found
    ), found


def problems_of(tmp_path: Path) -> list[str]:
    with pytest.raises(HarnessError) as caught:
        load_suite(tmp_path / "suite.yaml")
    return caught.value.problems
