"""One generation settings type: the suite's `generation:` block, then a check's override,
merged field by field (None in an override means "not set")."""

from __future__ import annotations

from harness.checks import GenerationOverride
from harness.evaluation import generation_settings
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
