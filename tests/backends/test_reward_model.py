"""The reward_model backend: trl's RewardTrainer on builtin:tiny, the saved model loaded back as a
one-output classifier, and `reward_scorer` scoring text exactly as training saw it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import harness
from helpers.training import problems, train

from harness.backends import BACKENDS, Checkpoint, CheckpointHook, TrainRequest, TrainResult
from harness.backends.reward_model import BACKEND, FORMAT_FILE, RewardFormat, reward_scorer
from harness.models.loading import load_model
from harness.models.tasks import HEAD_CONFIG

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"
TRAINING = dict(max_steps=6, learning_rate=5e-3, per_device_train_batch_size=20)


def rows_of(name: str) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def pairwise_accuracy(score: Any, rows: list[dict[str, Any]]) -> float:
    prompts = [r["prompt"] for r in rows]
    chosen = score(prompts, [r["chosen"] for r in rows])
    rejected = score(prompts, [r["rejected"] for r in rows])
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(rows)


# ---- configuration: no training --------------------------------------------------------------


def test_registered_as_a_reward_model_trainer() -> None:
    backend = BACKENDS.get("reward_model")
    config = backend.Config()
    assert backend is BACKEND and BACKEND.trains_reward_model
    assert BACKEND.reward_scorer is reward_scorer  # what `reward: {model: NAME}` calls
    assert backend.required_fields(config) == {"prompt", "chosen", "rejected"}
    assert backend.problems(config) == []
    assert backend.trains_adapter(config) and not backend.trains_adapter(
        backend.Config(adapter="full")
    )
    profile = backend.memory_profile(config)
    assert profile.answer_fields == ("chosen", "rejected") and not profile.reference_copy
    assert backend.memory_profile(backend.Config(adapter="full")).adapter is None


def test_impossible_settings_are_refused_at_their_line(tmp_path: Path) -> None:
    assert BACKENDS.get("reward_model").problems(
        BACKENDS.get("reward_model").Config(target_modules=["q_proj", "lm_head"])
    ) == ["target_modules: an adapter on lm_head is never trained by trl; remove lm_head"]
    found = problems(tmp_path, "- {name: rm, backend: reward_model, data: train}\n")
    assert len(found) == 1
    assert "suite.yaml:17:45: candidates[0].data:" in found[0]
    assert "row has no field 'chosen', 'rejected' needed by the reward_model backend" in found[0]
    found = problems(tmp_path, "- {name: rm, backend: reward_model, data: prefs, args: {r: 0}}\n")
    assert found and "candidates[0].args.r" in found[0]


# ---- training --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_model(
    tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, list[Path]]:
    """A LoRA reward model on the 20 training pairs; its checkpoint every 3 steps saved too."""
    out, scratch = tmp_path_factory.mktemp("rm"), tmp_path_factory.mktemp("checkpoints")
    saved: list[Path] = []

    def save_checkpoint(checkpoint: Checkpoint) -> bool:
        saved.append(scratch / str(checkpoint.step))
        checkpoint.save(saved[-1])
        return False

    backend = BACKENDS.get("reward_model")
    request = TrainRequest(
        base_dir=tiny_dir,
        rows=rows_of("new_facts_prefs.jsonl"),
        config=backend.Config(**TRAINING),
        seed=0,
        output_dir=out,
        checkpoints=CheckpointHook(3, save_checkpoint),
    )
    return backend.train(request), saved


@pytest.mark.slow
def test_lora_reward_model_ranks_the_training_pairs(
    lora_model: tuple[TrainResult, list[Path]],
) -> None:
    result, _ = lora_model
    assert result.is_adapter and 0 < result.trainable_parameters < result.total_parameters
    assert result.details["pairs"] == 20 and result.details["pairs_longer_than_max_length"] == 0
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]
    loaded = load_model(str(result.model_dir))
    assert loaded.task == "classification" and loaded.model.config.num_labels == 1
    score = reward_scorer(result.model_dir)
    assert pairwise_accuracy(score, rows_of("new_facts_prefs.jsonl")) >= 0.8


@pytest.mark.slow
def test_scorer_and_preference_check_give_the_same_rewards(
    lora_model: tuple[TrainResult, list[Path]],
) -> None:
    from harness.checks import CHECKS, Case, EvalContext
    from harness.checks.preference import PreferenceParams
    from harness.generation import Engine, GenerationSettings

    result, _ = lora_model
    rows = rows_of("known_facts_prefs.jsonl")[:10]
    check, spec = CHECKS.get("preference"), PreferenceParams(data="d")
    cases = [Case(str(i), r["prompt"], r, "") for i, r in enumerate(rows)]
    engine = Engine(load_model(str(result.model_dir)))
    outcomes = check.run(cases, spec, EvalContext(engine, GenerationSettings()))
    scored = reward_scorer(result.model_dir)(
        [r["prompt"] for r in rows], [r["chosen"] for r in rows]
    )
    assert [o.details["chosen"] for o in outcomes] == pytest.approx(scored, abs=1e-5)


@pytest.mark.slow
def test_every_checkpoint_is_saved_loadable(lora_model: tuple[TrainResult, list[Path]]) -> None:
    """The run may keep a checkpoint as the model: it needs the head and format files too."""
    result, saved = lora_model
    assert [p.name for p in saved] == ["3", "6"]
    for directory in saved:
        assert (directory / HEAD_CONFIG).is_file() and (directory / FORMAT_FILE).is_file()
    final = reward_scorer(result.model_dir)(["Q: x? A:"], [" y\n"])
    assert reward_scorer(saved[-1])(["Q: x? A:"], [" y\n"]) == pytest.approx(final, abs=1e-6)


@pytest.mark.slow
def test_full_reward_model_is_a_sequence_classifier(tiny_dir: Path, tmp_path: Path) -> None:
    result = train(
        "reward_model", tiny_dir, tmp_path, rows_of("new_facts_prefs.jsonl"), adapter="full",
        max_steps=2, learning_rate=1e-4,
    )  # fmt: skip
    assert not result.is_adapter and result.trainable_parameters == result.total_parameters
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["pad_token_id"] is not None and not (tmp_path / HEAD_CONFIG).exists()
    assert load_model(str(tmp_path)).task == "classification"
    rewards = reward_scorer(tmp_path)(["Q: a? A:", "Q: b? A:"], [" x\n", " y\n"])
    assert len(rewards) == 2 and rewards[0] != rewards[1]


def test_a_causal_lm_is_not_a_reward_model(tiny_dir: Path) -> None:
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="not a reward model"):
        reward_scorer(tiny_dir)


# ---- what training saw -----------------------------------------------------------------------


@pytest.mark.parametrize("chat", [False, True])
def test_scorer_tokenizes_as_reward_trainer_does(
    tiny_dir: Path, tmp_path: Path, chat: bool
) -> None:
    """trl 1.16's own dataset preparation, against the format the scorer applies."""
    from trl import RewardConfig, RewardTrainer

    from harness.backends.common import build_dataset, load_tokenizer

    tokenizer = load_tokenizer(tiny_dir)
    rows = rows_of("new_facts_prefs.jsonl")[:4]
    system = "Answer briefly." if chat else None
    dataset = build_dataset(rows, ["prompt"], ["chosen", "rejected"], chat, system)
    args = RewardConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    prepared = RewardTrainer._prepare_dataset(None, dataset, tokenizer, args, "train")  # type: ignore[arg-type]
    saved_format = RewardFormat(chat, system)
    for row, example in zip(rows, prepared, strict=True):
        assert (
            saved_format.token_ids(tokenizer, row["prompt"], row["chosen"]) == example["chosen_ids"]
        )
        assert (
            saved_format.token_ids(tokenizer, row["prompt"], row["rejected"])
            == example["rejected_ids"]
        )


@pytest.mark.slow
def test_a_chat_trained_reward_model_scores_conversations(tiny_dir: Path, tmp_path: Path) -> None:
    from harness.checks import CHECKS, Case, EvalContext
    from harness.checks.preference import PreferenceParams
    from harness.generation import Engine, GenerationSettings

    rows = rows_of("new_facts_prefs.jsonl")
    result = train("reward_model", tiny_dir, tmp_path, rows, chat_template=True, max_steps=1)
    assert RewardFormat.read(result.model_dir) == RewardFormat(chat_template=True)
    scored = reward_scorer(result.model_dir)(
        [r["prompt"] for r in rows], [r["chosen"] for r in rows]
    )
    cases = [Case(str(i), r["prompt"], r, "") for i, r in enumerate(rows)]
    engine = Engine(load_model(str(result.model_dir)))
    settings = GenerationSettings(chat_template=True)
    outcomes = CHECKS.get("preference").run(
        cases, PreferenceParams(data="d"), EvalContext(engine, settings)
    )
    assert [o.details["chosen"] for o in outcomes] == pytest.approx(scored, abs=1e-5)
    # The same model scoring plain text gives other rewards: the format matters.
    plain = GenerationSettings()
    outcomes = CHECKS.get("preference").run(
        cases, PreferenceParams(data="d"), EvalContext(engine, plain)
    )
    assert [o.details["chosen"] for o in outcomes] != pytest.approx(scored, abs=1e-3)


# ---- in a suite ------------------------------------------------------------------------------

SUITE = f"""\
name: reward-model
base: builtin:tiny
generation: {{max_new_tokens: 8}}
data:
  prefs: {{path: {DATA / "new_facts_prefs.jsonl"}}}
  heldout: {{path: {DATA / "known_facts_prefs.jsonl"}}}
capabilities:
  - name: trained_pairs
    threshold: {{metric: preference.accuracy, min: 0.8}}
    checks: [{{type: preference, data: prefs}}]
  - name: heldout_pairs
    checks: [{{type: preference, data: heldout}}]
candidates:
  - name: rm
    backend: reward_model
    data: prefs
    args: {{max_steps: 6, learning_rate: 5.0e-3, per_device_train_batch_size: 20}}
"""


@pytest.mark.slow
def test_a_reward_model_candidate_runs_and_records_in_a_suite(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    summary = tmp_path / "s.json"
    db = str(tmp_path / "h.duckdb")
    result = harness("run", str(suite), "--db", db, "--json", str(summary), "--retrain")
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(summary.read_text())
    rm = run["candidates"][0]
    assert rm["status"] == "passed" and rm["training"]["backend"] == "reward_model"
    assert rm["info"]["training"]["method"]["pairs"] == 20
    metrics = {(m["capability"], m["metric"]): m["value"] for m in rm["metrics"]}
    assert metrics[("trained_pairs", "preference.accuracy")] >= 0.8
    base = {(m["capability"], m["metric"]): m["value"] for m in run["base"]["metrics"]}
    # The base, a causal LM, is measured on the same pairs by its likelihoods.
    assert base[("heldout_pairs", "preference.accuracy")] > 0.9
