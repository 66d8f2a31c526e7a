"""The preference check: pairwise accuracy and margin, by a reward model's head or a causal LM's
log-likelihood, each against the same numbers computed with transformers directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checks import CHECKS, Case, EvalContext, Outcome
from harness.checks.preference import PreferenceParams
from harness.evaluation import estimate
from harness.generation import Engine, GenerationSettings
from harness.generation._cache import DictCache
from harness.models import LazyModel, LoadedModel
from harness.models.loading import load_model

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"


def pairs(name: str, count: int) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:count]]


# Held-out pairs the base knows, and training pairs it does not: both outcomes occur.
ROWS = pairs("known_facts_prefs.jsonl", 12) + pairs("new_facts_prefs.jsonl", 12)


def run_check(
    engine: Any, rows: list[dict[str, Any]], settings: GenerationSettings | None = None
) -> list[Outcome]:
    check = CHECKS.get("preference")
    spec = PreferenceParams(data="d")
    cases = [Case(str(i), check.prompt_for(r, spec), r, f"t:{i}") for i, r in enumerate(rows)]
    return check.run(cases, spec, EvalContext(engine, settings or GenerationSettings()))


def classifier_dir(tiny_dir: Path, out: Path, labels: int) -> Path:
    """builtin:tiny with a fresh seeded head of `labels` outputs, saved as a full classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_dir, num_labels=labels)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def reward_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return classifier_dir(tiny_dir, tmp_path_factory.mktemp("reward"), labels=1)


# ---- a causal LM: log-likelihood ------------------------------------------------------------


def direct_logprob(model: Any, tokenizer: Any, prompt: str, answer: str) -> float:
    """Summed log-probability of the answer's tokens after the prompt, one row at a time."""
    import torch

    context = tokenizer(prompt)["input_ids"]
    whole = tokenizer(prompt + answer)["input_ids"]
    with torch.inference_mode():
        logprobs = model(torch.tensor([whole])).logits[0].log_softmax(-1)
    return float(sum(logprobs[i - 1, whole[i]] for i in range(len(context), len(whole))))


def test_causal_lm_prefers_by_loglikelihood_as_transformers_computes_it(tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    outcomes = run_check(Engine(load_model("builtin:tiny"), batch_size=5), ROWS)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    margins = [
        direct_logprob(model, tokenizer, r["prompt"], r["chosen"])
        - direct_logprob(model, tokenizer, r["prompt"], r["rejected"])
        for r in ROWS
    ]
    assert [o.scores["margin"] for o in outcomes] == pytest.approx(margins, abs=1e-4)
    assert [o.passed for o in outcomes] == [m > 0 for m in margins]
    assert {o.details["scorer"] for o in outcomes} == {"loglikelihood"}
    # The base knows the held-out facts and not the new ones: the check tells them apart.
    assert all(o.passed for o in outcomes[:12]) and not all(o.passed for o in outcomes[12:])
    accuracy = estimate(outcomes, CHECKS.get("preference").aggregator("accuracy"))
    assert accuracy.value == pytest.approx(sum(m > 0 for m in margins) / len(margins))
    assert 0.0 <= accuracy.ci_low < accuracy.value <= accuracy.ci_high <= 1.0


def test_chat_template_scores_the_answer_after_the_templated_prompt(tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = GenerationSettings(chat_template=True, system_prompt="Answer briefly.")
    rows = ROWS[:4]
    outcomes = run_check(Engine(load_model("builtin:tiny")), rows, settings)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)

    def templated(prompt: str) -> str:
        turns = [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": prompt},
        ]
        return str(tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False))

    margins = [
        direct_logprob(model, tokenizer, templated(r["prompt"]), r["chosen"])
        - direct_logprob(model, tokenizer, templated(r["prompt"]), r["rejected"])
        for r in rows
    ]
    assert [o.scores["margin"] for o in outcomes] == pytest.approx(margins, abs=1e-4)


# ---- a reward model: its one-output head ----------------------------------------------------


def direct_reward(model: Any, ids: list[int]) -> float:
    """The head's value on one unpadded row."""
    import torch

    with torch.inference_mode():
        return float(model(input_ids=torch.tensor([ids])).logits[0, 0])


def plain_ids(tokenizer: Any, prompt: str, answer: str) -> list[int]:
    """RewardTrainer's text for an explicit-prompt row: prompt + answer + eos."""
    return list(tokenizer(prompt + answer + tokenizer.eos_token)["input_ids"])


def test_reward_model_prefers_by_its_head_as_transformers_computes_it(reward_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    engine = Engine(load_model(str(reward_dir)), batch_size=7)  # batches of ragged lengths
    assert engine.task == "classification"
    outcomes = run_check(engine, ROWS)
    model = AutoModelForSequenceClassification.from_pretrained(reward_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(reward_dir)
    chosen = [direct_reward(model, plain_ids(tokenizer, r["prompt"], r["chosen"])) for r in ROWS]
    rejected = [
        direct_reward(model, plain_ids(tokenizer, r["prompt"], r["rejected"])) for r in ROWS
    ]
    assert [o.details["chosen"] for o in outcomes] == pytest.approx(chosen, abs=1e-5)
    assert [o.details["rejected"] for o in outcomes] == pytest.approx(rejected, abs=1e-5)
    assert [o.passed for o in outcomes] == [c > r for c, r in zip(chosen, rejected, strict=True)]
    assert [o.output for o in outcomes] == [
        r["chosen"] if c > x else r["rejected"]
        for r, c, x in zip(ROWS, chosen, rejected, strict=True)
    ]
    assert {o.details["scorer"] for o in outcomes} == {"reward"}


def test_reward_model_with_the_chat_template_scores_the_conversation(reward_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    settings = GenerationSettings(chat_template=True, system_prompt="Answer briefly.")
    rows = ROWS[:4]
    outcomes = run_check(Engine(load_model(str(reward_dir))), rows, settings)
    model = AutoModelForSequenceClassification.from_pretrained(reward_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(reward_dir)

    def conversation(prompt: str, answer: str) -> list[int]:
        messages = [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": answer},
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    chosen = [direct_reward(model, conversation(r["prompt"], r["chosen"])) for r in rows]
    assert [o.details["chosen"] for o in outcomes] == pytest.approx(chosen, abs=1e-5)


def test_rewards_are_served_from_the_cache_without_loading_the_model(reward_dir: Path) -> None:
    cache = DictCache()
    loaded = load_model(str(reward_dir))
    first = run_check(Engine(loaded, cache), ROWS)

    def must_not_load() -> LoadedModel:
        raise AssertionError("the model was loaded although every reward was cached")

    lazy = LazyModel(str(reward_dir), loaded.fingerprint, None, must_not_load, "classification")
    engine = Engine(lazy, cache)
    again = run_check(engine, ROWS)
    assert [o.scores for o in again] == [o.scores for o in first]
    assert (engine.requests_cached, engine.requests_computed) == (2 * len(ROWS), 0)
    # Another chat setting is another text: not served from these entries.
    other = Engine(loaded, cache)
    run_check(other, ROWS[:2], GenerationSettings(chat_template=True))
    assert other.requests_computed == 4


def test_a_classifier_with_several_outputs_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    two_labels = classifier_dir(tiny_dir, tmp_path / "two", labels=2)
    with pytest.raises(ValueError, match=r"reward model .* has 2 outputs"):
        run_check(Engine(load_model(str(two_labels))), ROWS[:2])


# ---- validation -----------------------------------------------------------------------------


def test_unscorable_pairs_are_reported_at_their_line(tmp_path: Path) -> None:
    from harness.core.errors import HarnessError
    from harness.suite import load_suite

    rows = [
        {"prompt": "Q: a? A:", "chosen": " x", "rejected": " y"},
        {"prompt": "Q: b? A:", "chosen": " same", "rejected": " same"},
        {"prompt": "Q: c? A:", "chosen": " x", "rejected": ""},
    ]
    (tmp_path / "prefs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: p\nbase: builtin:tiny\ndata: {prefs: {path: prefs.jsonl}}\n"
        "capabilities:\n  - name: c\n    checks: [{type: preference, data: prefs}]\n"
    )
    with pytest.raises(HarnessError) as info:
        load_suite(suite)
    found = "\n".join(info.value.problems)
    assert "prefs.jsonl:2: `chosen` and `rejected` are the same text" in found
    assert "prefs.jsonl:3: `rejected` must be a non-empty string" in found


def test_missing_fields_and_their_names_are_validated(tmp_path: Path) -> None:
    from harness.core.errors import HarnessError
    from harness.suite import load_suite

    (tmp_path / "prefs.jsonl").write_text(json.dumps({"prompt": "Q", "good": " a", "bad": " b"}))
    suite = tmp_path / "s.yaml"
    body = "name: p\nbase: builtin:tiny\ndata: {prefs: {path: prefs.jsonl}}\ncapabilities:\n"
    suite.write_text(body + "  - name: c\n    checks: [{type: preference, data: prefs}]\n")
    with pytest.raises(HarnessError) as info:
        load_suite(suite)
    assert "chosen" in "\n".join(info.value.problems)
    suite.write_text(
        body + "  - name: c\n    checks:\n      - {type: preference, data: prefs, "
        "chosen_field: good, rejected_field: bad}\n"
    )
    planned = load_suite(suite).checks[0]
    assert planned.check.metrics == ("accuracy", "margin")
    assert planned.check.value_range("margin") is None
