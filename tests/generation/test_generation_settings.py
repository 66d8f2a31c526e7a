"""One generation settings type: the suite's `generation:` block, then a check's override,
merged field by field (None in an override means "not set")."""

from __future__ import annotations

from pathlib import Path

from harness.checks import GenerationOverride
from harness.evaluation import EVALUATION, generation_settings
from harness.generation import GenerationSettings
from harness.suite import GenerationConfig


def test_a_checks_override_replaces_only_what_it_sets() -> None:
    suite = GenerationConfig(max_new_tokens=12, stop=["\n", "."], batch_size=8, engine="auto")
    override = GenerationOverride(max_new_tokens=64, chat_template=True)
    merged = generation_settings(suite, override)
    assert merged == GenerationSettings(
        max_new_tokens=64, stop=("\n", "."), chat_template=True, engine="auto"
    )
    assert generation_settings(suite, None).max_new_tokens == 12


def test_merge_ignores_unset_values_and_keys_that_are_not_settings() -> None:
    base = GenerationSettings(max_new_tokens=5, system_prompt="be brief")
    merged = base.merge({"max_new_tokens": None, "system_prompt": None, "batch_size": 4})
    assert merged == base
    assert base.merge({"stop": ["x"]}).stop == ("x",)  # a list from YAML becomes a tuple


def test_stored_settings_say_log_likelihood_checks_score_raw_text(tmp_path: Path) -> None:
    """choice and perplexity score raw text, as lm-eval does: with the suite's chat template on,
    their recorded settings say `chat_template: false`, and generative checks' say true."""
    from harness.evaluation import evaluate_model
    from harness.models.loading import load_model
    from harness.suite import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(
        "name: chat\nbase: builtin:tiny\ngeneration: {chat_template: true, max_new_tokens: 4}\n"
        "capabilities:\n"
        "  - name: mc\n    checks:\n      - type: choice\n        cases:\n"
        "          - {prompt: 'Q: 2 plus 2? A:', choices: [' 4', ' 5'], answer: 0}\n"
        "  - name: lm\n    checks:\n      - type: perplexity\n        cases: [{text: 'Q: 2 plus 2? A: 4'}]\n"
    )
    evaluation = evaluate_model(load_model("builtin:tiny"), load_suite(path), None)
    recorded = evaluation.model_info[EVALUATION]["generation"]
    assert [r["chat_template"] for r in recorded.values()] == [False, False]
