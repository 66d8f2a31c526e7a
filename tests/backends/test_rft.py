"""The `rft` backend: validation, the selection of sampled completions, sampling as evaluation
prompts, and real runs on builtin:tiny (sampling, the reward, fine-tuning on what was kept)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers.training import problems, train
from pydantic import ValidationError

from harness.backends import BACKENDS, Checkpoint, CheckpointHook, TrainProgress, TrainRequest
from harness.backends.rft import (
    KEPT_FILE,
    Config,
    Sample,
    Scored,
    sample_completions,
    sampling_prompt,
    select,
    with_kept_file,
)
from harness.store import Store
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"


def facts(name: str, n: int | None = None) -> list[dict[str, Any]]:
    lines = (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines][:n]


# ---- configuration ---------------------------------------------------------------------------


def test_rft_is_registered_and_needs_a_reward() -> None:
    rft = BACKENDS.get("rft")
    assert rft.needs_reward and rft.required_fields(rft.Config()) == {"prompt"}
    assert rft.problems(rft.Config()) == []
    assert rft.trains_adapter(rft.Config()) and not rft.trains_adapter(Config(adapter="full"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"samples_per_prompt": 0}, "samples_per_prompt"),
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": 0}, "temperature"),
        ({"max_per_prompt": 0}, "max_per_prompt"),
        ({"threshold": float("nan")}, "threshold"),
        ({"generation_batch_size": 0}, "generation_batch_size"),
    ],
)
def test_config_refuses_out_of_range_settings(args: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        Config(**args)


def test_problems_refuse_settings_that_cannot_work() -> None:
    found = Config(samples_per_prompt=2, max_per_prompt=3, stop=["\n", ""])
    messages = BACKENDS.get("rft").problems(found)
    assert any("max_per_prompt (3) is above samples_per_prompt (2)" in m for m in messages)
    assert any("empty stop string" in m for m in messages)
    lm_head = Config(target_modules=["q_proj", "lm_head"])
    assert any("lm_head" in m for m in BACKENDS.get("rft").problems(lm_head))


def test_validate_reports_rft_settings_at_their_line(tmp_path: Path) -> None:
    bad = "- {name: r, backend: rft, data: new_facts, reward: {check: new_facts}, args: {samples_per_prompt: 0}}\n"
    found = problems(tmp_path, bad)
    lines = (tmp_path / "suite.yaml").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "samples_per_prompt: 0" in text)
    column = lines[line - 1].index("samples_per_prompt: 0") + len("samples_per_prompt: ") + 1
    assert len(found) == 1 and f"suite.yaml:{line}:{column}:" in found[0]
    assert "candidates[0].args.samples_per_prompt" in found[0]
    cap = "- {name: r, backend: rft, data: new_facts, reward: {check: new_facts}, args: {max_per_prompt: 9}}\n"
    assert "max_per_prompt (9) is above samples_per_prompt (4)" in problems(tmp_path, cap)[0]
    no_reward = problems(tmp_path, "- {name: r, backend: rft, data: new_facts}\n")
    assert "needs a `reward:`" in no_reward[0]


# ---- selection -------------------------------------------------------------------------------


def scored(*items: tuple[int, str, float]) -> list[Scored]:
    return [Scored(Sample(row, text), reward) for row, text, reward in items]


def test_select_keeps_what_reaches_the_threshold_once_per_text() -> None:
    samples = scored((0, " a", 1.0), (0, " a", 1.0), (0, " b", 0.5), (1, " c", 0.99), (1, " d", 1))
    kept = select(samples, Config(threshold=1.0))
    assert [(k.sample.row, k.sample.completion) for k in kept] == [(0, " a"), (1, " d")]
    with_duplicates = select(samples, Config(threshold=1.0, deduplicate=False))
    assert [k.sample.completion for k in with_duplicates] == [" a", " a", " d"]
    assert len(select(samples, Config(threshold=0.5))) == 4  # at the threshold is kept


def test_select_caps_each_prompt_keeping_the_best_rewarded() -> None:
    samples = scored((0, " x", 0.6), (0, " y", 0.9), (0, " z", 0.9), (1, " w", 0.7))
    kept = select(samples, Config(threshold=0.5, max_per_prompt=1))
    assert [(k.sample.row, k.sample.completion) for k in kept] == [(0, " y"), (1, " w")]


def test_checkpoint_saves_carry_the_kept_rows(tmp_path: Path) -> None:
    kept = tmp_path / KEPT_FILE
    kept.write_text('{"row": 0}\n')
    saved: list[Path] = []

    def evaluate(checkpoint: Checkpoint) -> bool:
        checkpoint.save(tmp_path / "best")
        return False

    def save_weights(out_dir: Path) -> None:
        out_dir.mkdir()
        (out_dir / "model.safetensors").write_bytes(b"w")
        saved.append(out_dir)

    hook = with_kept_file(CheckpointHook(2, evaluate), kept)
    assert hook is not None and hook.every == 2
    assert hook.evaluate(Checkpoint(2, 4, None, None, save_weights)) is False
    assert saved == [tmp_path / "best"]
    assert (tmp_path / "best" / KEPT_FILE).read_text() == '{"row": 0}\n'


# ---- sampling --------------------------------------------------------------------------------


@pytest.mark.parametrize("chat", [False, True])
def test_samples_are_drawn_from_the_prompt_evaluation_gives(tiny_dir: Path, chat: bool) -> None:
    from harness.backends.common import load_tokenizer
    from harness.generation import GenerationSettings
    from harness.generation._tokens import encode_prompt

    tokenizer = load_tokenizer(tiny_dir)
    row = facts("known_facts", 1)[0]
    text = sampling_prompt(row, chat, "Be brief." if chat else None, tokenizer)
    ids = tokenizer(text, add_special_tokens=not chat)["input_ids"]
    settings = GenerationSettings(chat_template=chat, system_prompt="Be brief." if chat else None)
    assert ids == encode_prompt(tokenizer, row["prompt"], settings)


def test_sampling_is_seeded_and_reports_its_batches(tiny_dir: Path, tmp_path: Path) -> None:
    from harness.backends.common import load_tokenizer, plan_acceleration
    from harness.core.device import pick_device

    config = Config(samples_per_prompt=3, generation_batch_size=8, max_completion_length=6)

    def draw(seed: int, progress: Any = lambda _: None) -> list[Sample]:
        request = TrainRequest(tiny_dir, facts("new_facts", 6), config, seed, tmp_path, progress)
        tokenizer = load_tokenizer(tiny_dir)
        tokenizer.padding_side = "left"
        plan = plan_acceleration(config, request, pick_device())
        return sample_completions(request, config, tokenizer, plan)

    seen: list[TrainProgress] = []
    first = draw(0, seen.append)
    assert [s.row for s in first] == [i for i in range(6) for _ in range(3)]
    assert all("\n" not in s.completion for s in first)  # cut at the stop string
    assert seen == [TrainProgress(n, 3, phase="sampling") for n in range(4)]  # 18, batches of 8
    assert draw(0) == first
    assert draw(1) != first


# ---- training --------------------------------------------------------------------------------


@pytest.mark.slow
def test_rft_fine_tunes_on_the_kept_completions_only(tiny_dir: Path, tmp_path: Path) -> None:
    rows = facts("known_facts", 12)

    def reward(completions: list[str], batch: list[dict[str, Any]]) -> list[float]:
        return [
            float(c.strip() == r["answers"][0]) for c, r in zip(completions, batch, strict=True)
        ]

    seen: list[TrainProgress] = []
    result = train(
        "rft", tiny_dir, tmp_path, rows, reward=reward, progress=seen.append,
        adapter="full", samples_per_prompt=3, max_per_prompt=1, deduplicate=False,
        generation_batch_size=12, max_completion_length=8, max_steps=2, learning_rate=1e-4,
        per_device_train_batch_size=4,
    )  # fmt: skip
    details = result.details
    kept = [json.loads(line) for line in (tmp_path / KEPT_FILE).read_text().splitlines()]
    assert details["sampled"] == 36 and details["prompts"] == 12
    assert details["kept"] == len(kept) == details["prompts_kept"]  # at most one per prompt
    assert details["kept"] <= details["passed"] <= 36 and details["kept"] > 6
    assert len({k["row"] for k in kept}) == len(kept)
    for record in kept:
        assert record["prompt"] == rows[record["row"]]["prompt"] and record["reward"] == 1.0
        assert record["completion"].strip() == rows[record["row"]]["answers"][0]
    assert not result.is_adapter and result.trainable_parameters == result.total_parameters
    assert [step for step, _ in result.loss_curve] == [1, 2]
    sampling = [p for p in seen if p.phase == "sampling"]  # 36 completions in batches of 12
    assert all(p.total_steps == 3 for p in sampling)
    assert [p.step for p in sampling] == [0, 1, 2, 3] and seen[: len(sampling)] == sampling
    assert seen[len(sampling)] == TrainProgress(0, 2) and seen[-1].step == 2  # then the SFT


RFT_SUITE = f"""\
name: rft-test
base: builtin:tiny
generation: {{max_new_tokens: 8}}
data:
  known: {{path: known.jsonl}}
  new_facts: {{path: {DATA / "new_facts.jsonl"}}}
capabilities:
  - name: known_facts
    forgetting: {{metric: qa.em, max_drop: 1.0}}
    checks: [{{type: qa, data: known}}]
candidates:
  - name: rft
    backend: rft
    data: known
    reward: {{check: known_facts}}
    args: {{samples_per_prompt: 2, max_completion_length: 8, max_steps: 2,
            per_device_train_batch_size: 8, learning_rate: 0.0001}}
  - name: unreachable
    backend: rft
    data: new_facts
    reward: {{check: known_facts}}
    args: {{samples_per_prompt: 2, max_completion_length: 8, threshold: 1.5, max_steps: 1}}
"""


@pytest.mark.slow
def test_rft_in_a_suite_records_what_it_kept_and_reruns_reuse_it(tmp_path: Path) -> None:
    from harness.run import run_suite
    from harness.training._train import build_reward

    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(RFT_SUITE))
    known = [json.dumps(row) for row in facts("known_facts", 20)]  # 20 questions: quick
    (tmp_path / "known.jsonl").write_text("\n".join(known) + "\n")
    suite = load_suite(path)
    store = Store(tmp_path / "h.duckdb")
    first = run_suite(suite, store, retrain=True)
    assert first.exit_code == 3  # the unreachable candidate is an error; the run finishes
    verdicts = {c.record.name: c.verdict for c in first.candidates}
    assert verdicts["unreachable"] == "error" and verdicts["rft"] != "error"
    error = store.load_run(first.run_id).model("unreachable").error or ""
    assert "NothingKept: no sampled completion reached the threshold 1.5" in error
    assert "0 of 40 kept (20 prompts)" in error

    rft = next(c for c in first.candidates if c.record.name == "rft")
    training = rft.record.info["training"]
    method = training["method"]
    assert training["reused_artifact"] is False
    assert len(store.load_run(first.run_id).loss_curves["rft"]) == 2  # it trained, 2 steps
    assert method["sampled"] == 40 and method["prompts"] == 20 and method["threshold"] == 1.0
    kept_path = Path(training["artifact"]) / "model" / method["kept_file"]
    kept = [json.loads(line) for line in kept_path.read_text(encoding="utf-8").splitlines()]
    assert method["kept"] == len(kept) <= method["passed"] <= method["sampled"]
    assert method["prompts_kept"] == len({k["row"] for k in kept}) > 10  # the base knows these
    assert len({(k["row"], k["completion"]) for k in kept}) == len(kept)  # deduplicated
    plan = suite.trainings["rft"]
    reward = build_reward(suite, plan)
    assert reward is not None
    rows = [plan.rows[k["row"]] for k in kept]
    rescored = reward([k["completion"] for k in kept], rows)
    assert rescored == [k["reward"] for k in kept] and min(rescored) >= 1.0
    assert all(k["prompt"] == row["prompt"] for k, row in zip(kept, rows, strict=True))

    second = run_suite(suite, store)
    again = next(c for c in second.candidates if c.record.name == "rft").record.info["training"]
    assert again["reused_artifact"] is True and again["method"] == method
    assert second.exit_code == 3
