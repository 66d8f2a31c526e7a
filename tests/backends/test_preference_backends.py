"""The `orpo` and `kto` backends: validation at the suite's line, `harness plan`'s estimate, and
real training on builtin:tiny through a suite run (trained, recorded, evaluated, reused)."""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers.training import preference_rows, train

from harness.backends import BACKENDS
from harness.backends.common import FULL_4BIT
from harness.backends.kto import Config as KTOConfig
from harness.backends.orpo import has_answer_tokens
from harness.core.errors import HarnessError
from harness.plan._estimate import (
    FP32,
    LoraShape,
    ModelShape,
    TrainingSetup,
    full_logits_bytes,
    lm_head_bytes,
    lora_parameters,
    model_shape,
    no_grad_forward_bytes,
    parameter_count,
    training_breakdown,
)
from harness.store import Store
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"
SUITE = f"""\
name: preferences
base: builtin:tiny
seed: 0
generation: {{max_new_tokens: 8}}
data:
  prefs: {{path: {DATA / "new_facts_prefs.jsonl"}}}
  kto: {{path: {DATA / "new_facts_kto.jsonl"}}}
  new_facts: {{path: {DATA / "new_facts.jsonl"}}}
capabilities:
  - name: new_facts
    improve: {{metric: qa.f1, min_gain: 0.0}}
    checks: [{{type: qa, data: new_facts}}]
candidates:
"""
TRAINED = """\
- {name: orpo, backend: orpo, data: prefs, args: {max_steps: 4, learning_rate: 5.0e-3}}
- {name: orpo-full, backend: orpo, data: prefs, args: {adapter: full, max_steps: 2, learning_rate: 1.0e-4}}
- {name: kto, backend: kto, data: kto, args: {max_steps: 4, learning_rate: 5.0e-3}}
- {name: kto-full, backend: kto, data: kto, args: {adapter: full, max_steps: 2, learning_rate: 1.0e-4}}
"""
STEPS = {"orpo": 4, "orpo-full": 2, "kto": 4, "kto-full": 2}
# A small hand-checkable shape: h 8, 2 layers, i 16, 2 heads of 4, vocabulary 10, tied.
SHAPE = ModelShape(
    model_type="llama", vocab_size=10, hidden_size=8, intermediate_size=16, num_layers=2,
    num_heads=2, num_kv_heads=2, head_dim=4, tie_word_embeddings=True,
)  # fmt: skip


def write_suite(tmp_path: Path, candidates: str, extra_data: str = "") -> Path:
    """The suite with `candidates` (YAML list items) and extra `data:` entries."""
    text = SUITE.replace("capabilities:\n", textwrap.indent(extra_data, "  ") + "capabilities:\n")
    path = tmp_path / "suite.yaml"
    path.write_text(text + textwrap.indent(candidates, "  "))
    return path


def position(suite: Path, key: str, value: str) -> str:
    """FILE:LINE:COL of `value` after `key` in the suite, where its problems are reported."""
    for number, line in enumerate(suite.read_text().splitlines(), start=1):
        if key + value in line:
            return f"{suite}:{number}:{line.index(key + value) + len(key) + 1}"
    raise AssertionError(f"{key}{value} is not in {suite}")


def suite_problems(suite: Path) -> list[str]:
    with pytest.raises(HarnessError) as caught:
        load_suite(suite)
    return caught.value.problems


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def kto_row(label: Any) -> dict[str, Any]:
    return {
        "prompt": "Q: What is the capital of Kithkouthia? A:",
        "completion": " Daike\n",
        "label": label,
    }


def margins(reference: str, rows: list[dict[str, Any]]) -> float:
    """The mean of log p(chosen | prompt) - log p(rejected | prompt) over the pairs."""
    from harness.generation import Engine
    from harness.models.loading import load_model

    engine = Engine(load_model(reference))
    chosen = engine.loglikelihood([(r["prompt"], r["chosen"]) for r in rows])
    rejected = engine.loglikelihood([(r["prompt"], r["rejected"]) for r in rows])
    return sum(c.logprob - r.logprob for c, r in zip(chosen, rejected, strict=True)) / len(rows)


# ---- configuration and validation: no training ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("orpo", {"adapter": "full", "quantization": "4bit"}, FULL_4BIT),
        ("kto", {"adapter": "full", "quantization": "4bit"}, FULL_4BIT),
        ("orpo", {"target_modules": ["q_proj", "lm_head"]}, "lm_head"),
        ("kto", {"per_device_train_batch_size": 1}, "at least 2 (got 1)"),
    ],
)
def test_problems_refuse_impossible_combinations(
    name: str, args: dict[str, Any], expected: str
) -> None:
    backend = BACKENDS.get(name)
    assert backend.problems(backend.Config()) == []
    found = backend.problems(backend.Config(**args))
    assert any(expected in problem for problem in found), found


def test_settings_and_fields() -> None:
    orpo, kto = BACKENDS.get("orpo"), BACKENDS.get("kto")
    assert orpo.required_fields(orpo.Config()) == {"prompt", "chosen", "rejected"}
    assert kto.required_fields(kto.Config()) == {"prompt", "completion", "label"}
    assert orpo.trains_adapter(orpo.Config())
    assert not orpo.trains_adapter(orpo.Config(adapter="full"))
    assert orpo.problems(orpo.Config(quantization="4bit")) == []
    config = KTOConfig(beta=0.3, desirable_weight=1.5, undesirable_weight=0.5)
    assert (config.beta, config.desirable_weight, config.undesirable_weight) == (0.3, 1.5, 0.5)
    with pytest.raises(ValueError, match="greater than 0"):
        KTOConfig(desirable_weight=0)


def test_a_label_that_is_not_a_boolean_is_refused_at_its_line(tmp_path: Path) -> None:
    labels = [True, False, "yes", 1, None, "true", "false", 0, "no", True]
    data = jsonl(tmp_path / "labels.jsonl", [kto_row(label) for label in labels])
    suite = write_suite(
        tmp_path,
        "- {name: k, backend: kto, data: labels}\n",
        f"labels: {{path: {data}}}\n",
    )
    found = suite_problems(suite)
    at = f"{position(suite, 'data: ', 'labels')}: candidates[0].data: {data}"
    assert found[:5] == [
        f'{at}:3: label must be true (desirable) or false (undesirable), got "yes"',
        f"{at}:4: label must be true (desirable) or false (undesirable), got 1",
        f"{at}:5: label must be true (desirable) or false (undesirable), got null",
        f'{at}:6: label must be true (desirable) or false (undesirable), got "true"',
        f'{at}:7: label must be true (desirable) or false (undesirable), got "false"',
    ]
    # the sixth bad row is named with a count of the rest, not listed one by one
    assert (
        found[5]
        == f"{at}:8: label must be true (desirable) or false (undesirable), got 0 (and 1 more row)"
    )
    assert len(found) == 6

    from harness.cli import main

    result = CliRunner().invoke(main, ["validate", str(suite)])
    assert result.exit_code == 2, result.output
    assert (
        f'{at}:3: label must be true (desirable) or false (undesirable), got "yes"' in result.output
    )


def test_one_sided_kto_data_is_refused_with_its_counts(tmp_path: Path) -> None:
    data = jsonl(tmp_path / "good.jsonl", [kto_row(True) for _ in range(3)])
    suite = write_suite(
        tmp_path, "- {name: k, backend: kto, data: good}\n", f"good: {{path: {data}}}\n"
    )
    assert suite_problems(suite) == [
        f"{position(suite, 'data: ', 'good')}: candidates[0].data: KTO needs both desirable (label: true) and "
        "undesirable (label: false) rows; this data has 3 desirable and 0 undesirable"
    ]
    jsonl(data, [kto_row(True), kto_row(False)])  # one of each kind: it validates
    assert [row["label"] for row in load_suite(suite).trainings["k"].rows] == [True, False]


def test_4bit_full_and_unpaired_rows_are_refused_before_training(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path,
        "- name: o\n  backend: orpo\n  data: prefs\n  args: {adapter: full, quantization: 4bit}\n"
        "- {name: p, backend: orpo, data: kto}\n",
    )
    found = suite_problems(suite)
    assert found[0] == f"{position(suite, 'args: ', '{adapter')}: candidates[0].args: {FULL_4BIT}"
    assert f"{DATA / 'new_facts_kto.jsonl'}:1: row has no field 'chosen', 'rejected'" in found[1]


def test_the_kto_data_file_is_balanced_with_unique_ids() -> None:
    rows = [json.loads(line) for line in (DATA / "new_facts_kto.jsonl").read_text().splitlines()]
    pairs = [json.loads(line) for line in (DATA / "new_facts_prefs.jsonl").read_text().splitlines()]
    assert len({row["id"] for row in rows}) == len(rows) == 40
    desirable = {(r["prompt"], r["completion"]) for r in rows if r["label"] is True}
    undesirable = {(r["prompt"], r["completion"]) for r in rows if r["label"] is False}
    assert desirable == {(p["prompt"], p["chosen"]) for p in pairs}
    assert undesirable == {(p["prompt"], p["rejected"]) for p in pairs}
    # trl pairs each row with its neighbour for the KL term: neighbours ask different questions
    assert all(a["prompt"] != b["prompt"] for a, b in itertools.pairwise(rows))


# ---- the memory plan ---------------------------------------------------------------------------


def test_estimator_counts_full_logits_and_forwards_without_gradients() -> None:
    lora = LoraShape(2)
    fused = TrainingSetup(batch_size=2, seq_len=6, compute_bytes=FP32, lora=lora)
    orpo = TrainingSetup(
        batch_size=2, seq_len=6, compute_bytes=FP32, lora=lora, sequences_per_row=2,
        full_logits=True,
    )  # fmt: skip
    dpo = TrainingSetup(batch_size=2, seq_len=6, compute_bytes=FP32, lora=lora, sequences_per_row=2)
    tokens = 2 * 2 * 6
    assert full_logits_bytes(SHAPE, tokens, FP32) == tokens * 10 * 12  # logits, grad, log-probs
    head = lm_head_bytes(SHAPE, tokens, FP32, trains_head=False, gpu=False)
    difference = (
        training_breakdown(SHAPE, orpo).activations - training_breakdown(SHAPE, dpo).activations
    )
    assert difference == pytest.approx(full_logits_bytes(SHAPE, tokens, FP32) - head)

    kto = TrainingSetup(batch_size=2, seq_len=6, compute_bytes=FP32, lora=lora, no_grad_forwards=3)
    with_kl, without = training_breakdown(SHAPE, kto), training_breakdown(SHAPE, fused)
    kl = with_kl.extra["forwards without gradients"]
    # 12 tokens: residual stream 2h + the widest layer temporaries max(2q + 2kv, 3i) = 48 + 16
    # values of 4 bytes, and one fused-head tile of 12 x 10 logits + 3 float32 temporaries
    assert kl == 12 * 64 * 4 + 12 * 10 * 16 == no_grad_forward_bytes(SHAPE, 12, FP32, gpu=False)
    assert with_kl.total == without.total + kl


def test_memory_profiles_say_what_each_method_holds() -> None:
    from harness.plan._suite import BaseModel, DeviceInfo, training_setup

    cpu = DeviceInfo("cpu", "float32", None, "")
    base = BaseModel("x", {}, None)
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c", "completion": "b", "label": True}]
    setups = {}
    for name in ("orpo", "kto"):
        backend = BACKENDS.get(name)
        for adapter in ("lora", "full"):
            config = backend.Config(adapter=adapter)
            setups[name, adapter] = training_setup(backend, config, rows, base, cpu)[0]
    orpo, kto = setups["orpo", "lora"], setups["kto", "lora"]
    assert (orpo.sequences_per_row, orpo.reference_copy, orpo.full_logits) == (2, False, True)
    assert not setups["orpo", "full"].reference_copy  # ORPO never holds a reference
    assert (kto.sequences_per_row, kto.reference_copy, kto.no_grad_forwards) == (1, False, 3)
    assert setups["kto", "full"].reference_copy and setups["kto", "full"].lora is None
    full = training_breakdown(SHAPE, setups["kto", "full"])
    assert full.extra["reference model"] == full.weights  # a float32 copy of the base


def test_plan_estimates_each_method(tmp_path: Path, tiny_dir: Path) -> None:
    from harness.cli._plan import plan

    out = tmp_path / "plan.json"
    suite = write_suite(tmp_path, TRAINED)
    result = CliRunner().invoke(plan, [str(suite), "--memory", "16GiB", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    training = {name: rows[name]["training"] for name in STEPS}
    assert all(t["total"] > 0 and rows[n]["fits"] for n, t in training.items())
    assert "reference model" not in training["orpo"]["extra"]
    assert "reference model" not in training["orpo-full"]["extra"]
    assert "reference model" not in training["kto"]["extra"]  # the base, adapter switched off
    assert training["kto-full"]["extra"]["reference model"] > 0
    assert training["kto"]["extra"]["forwards without gradients"] > 0
    assert training["kto-full"]["total"] > training["kto"]["total"]
    tiny = model_shape(json.loads((tiny_dir / "config.json").read_text()))
    assert training["orpo"]["trainable_parameters"] == lora_parameters(tiny, LoraShape(8))


# ---- prompts that fill max_length ------------------------------------------------------------

# Far more than ORPO_MAX_LENGTH tokens of builtin:tiny's tokenizer; the short rows need ~20.
LONG_PROMPT = "Q: " + "Tell me about the capital of Kithkouthia and its rivers. " * 12 + "A:"
ORPO_MAX_LENGTH = 64


def with_long_prompts(rows: list[dict[str, Any]], every: int) -> list[dict[str, Any]]:
    """The rows with every `every`-th prompt replaced by one longer than ORPO_MAX_LENGTH."""
    return [row | {"prompt": LONG_PROMPT} if i % every == 0 else row for i, row in enumerate(rows)]


def test_a_pair_has_answer_tokens_only_where_a_shifted_label_is_left() -> None:
    masked = -100
    assert has_answer_tokens({"chosen_labels": [masked, 5, 6], "rejected_labels": [masked, 7]})
    # the prompt filled max_length: trl left the answer empty (0/0 = NaN mean log-probability)
    assert not has_answer_tokens({"chosen_labels": [masked, 5], "rejected_labels": [masked] * 3})
    # the first label predicts nothing (logits are shifted by one): no answer token either
    assert not has_answer_tokens({"chosen_labels": [5], "rejected_labels": [masked, 7]})


@pytest.mark.slow
def test_orpo_leaves_out_pairs_whose_prompt_fills_max_length(
    tmp_path: Path, tiny_dir: Path
) -> None:
    """trl's ORPO truncates only the answer: a prompt of max_length tokens left an empty answer
    whose mean log-probability is NaN, and the first step's loss with it."""
    rows = with_long_prompts(preference_rows(), every=2)
    result = train(
        "orpo", tiny_dir, tmp_path, rows, max_steps=2, per_device_train_batch_size=4,
        learning_rate=1e-4, max_length=ORPO_MAX_LENGTH,
    )  # fmt: skip
    assert [step for step, _ in result.loss_curve] == [1, 2]
    assert all(loss == loss and loss > 0 for _, loss in result.loss_curve), result.loss_curve
    assert result.details["pairs"] == 8
    assert result.details["pairs_whose_prompt_fills_max_length"] == 8
    assert result.details["nll_loss"] == result.details["nll_loss"]  # not NaN


def test_orpo_refuses_data_whose_every_prompt_fills_max_length(
    tmp_path: Path, tiny_dir: Path
) -> None:
    rows = with_long_prompts(preference_rows()[:4], every=1)
    with pytest.raises(HarnessError, match=f"max_length \\({ORPO_MAX_LENGTH} tokens\\)"):
        train("orpo", tiny_dir, tmp_path, rows, max_steps=1, max_length=ORPO_MAX_LENGTH)


# ---- training through a suite run -----------------------------------------------------------


@pytest.mark.slow
def test_orpo_and_kto_train_are_evaluated_and_reused(tmp_path: Path, tiny_dir: Path) -> None:
    from harness.run import run_suite

    suite = load_suite(write_suite(tmp_path, TRAINED))
    store = Store(tmp_path / "h.duckdb")
    first = run_suite(suite, store, retrain=True)
    assert first.exit_code != 3, [c.record.error for c in first.candidates]
    trained = {c.record.name: c for c in first.candidates}
    assert set(trained) == set(STEPS)
    run = store.load_run(first.run_id)
    tiny = model_shape(json.loads((tiny_dir / "config.json").read_text()))
    adapter_size = lora_parameters(tiny, LoraShape(8))
    for name, steps in STEPS.items():
        candidate = trained[name]
        training = candidate.record.info["training"]
        assert training["backend"] == name.split("-")[0] and not training["reused_artifact"]
        assert [step for step, _ in run.loss_curves[name]] == list(range(1, steps + 1))
        artifact = Path(candidate.record.reference)
        if name.endswith("full"):
            assert training["trainable_parameters"] == training["total_parameters"]
            assert (artifact / "model.safetensors").is_file()
        else:
            assert training["trainable_parameters"] == adapter_size
            assert training["total_parameters"] == adapter_size + parameter_count(tiny)
            assert (artifact / "adapter_config.json").is_file()
        # ORPO's count is the backend's own: trl's experimental trainer logs none
        assert training["train_tokens"] > 0
        assert run.model(name).status == "ok"
        assert "qa.f1" in {m.metric for m in candidate.metrics}
        assert len(store.load_cases(first.run_id, name)) == 20
    # KTO's first loss is exact: the policy is its reference, every row's loss 1 - sigmoid(0)
    assert run.loss_curves["kto"][0][1] == pytest.approx(0.5, abs=1e-6)
    assert run.loss_curves["kto-full"][0][1] == pytest.approx(0.5, abs=1e-6)
    kto_method = trained["kto"].record.info["training"]["method"]
    assert (kto_method["desirable_rows"], kto_method["undesirable_rows"]) == (20, 20)
    assert "kl" in kto_method and "nll_loss" in trained["orpo"].record.info["training"]["method"]

    # Both methods learned the preference: chosen answers gained on rejected ones.
    pairs = [json.loads(line) for line in (DATA / "new_facts_prefs.jsonl").read_text().splitlines()]
    before = margins(str(tiny_dir), pairs)
    for name in ("orpo", "kto"):
        assert margins(trained[name].record.reference, pairs) > before + 1.0, name

    second = run_suite(suite, store)
    for candidate in second.candidates:
        name = candidate.record.name
        assert candidate.record.info["training"]["reused_artifact"] is True, name
        assert candidate.metrics == trained[name].metrics
