"""`rft`: rejection-sampling fine-tuning. The base samples `samples_per_prompt` completions per
training prompt, the suite's reward scores them (`request.reward(completions, rows)`), and those
scoring at least `threshold` become the prompt/completion rows of a supervised fine-tuning
(`train_sft`: a LoRA adapter by default, `adapter: full` for all weights).

The kept rows are written beside the weights (`kept.jsonl` in the model directory), so what the
candidate was trained on can be audited; the counts go to `TrainResult.details`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.backends import (
    Checkpoint,
    CheckpointHook,
    MemoryProfile,
    TrainProgress,
    TrainRequest,
    TrainResult,
)
from harness.backends.acceleration import Acceleration, acceleration_problems
from harness.backends.common import (
    AdapterArgs,
    SFTArgs,
    TrainerBackend,
    adapter_problems,
    adapter_shape,
    load_tokenizer,
    model_init_kwargs,
    plan_acceleration,
    quiet,
    train_sft,
    trains_lora,
    user_turn,
    uses_chat,
)
from harness.core.device import pick_device

KEPT_FILE = "kept.jsonl"  # in the model directory: the rows the fine-tuning trained on


class Config(SFTArgs, AdapterArgs):
    learning_rate: float = Field(2e-4, gt=0, description="2e-4 suits LoRA; lower it for full")
    samples_per_prompt: int = Field(4, ge=1, description="Completions sampled per prompt")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling (1: off)")
    max_completion_length: int = Field(32, ge=1, description="New tokens per sampled completion")
    stop: list[str] = Field(
        ["\n"],
        description="A completion ends at the first of these (as evaluation cuts its outputs)",
    )
    threshold: float = Field(1.0, description="Keep completions whose reward is at least this")
    max_per_prompt: int | None = Field(
        None, ge=1, description="Keep at most this many per prompt (the best rewarded first)"
    )
    deduplicate: bool = Field(True, description="Keep a prompt's identical completions once")
    generation_batch_size: int = Field(32, ge=1, description="Completions generated at once")


def required_fields(config: Config) -> set[str]:
    return {"prompt"}  # and whatever the reward's check reads (validated with the reward)


def problems(config: Config) -> list[str]:
    found = adapter_problems(config, reference=False)
    if any(not stop for stop in config.stop):
        found.append("stop: an empty stop string would cut every completion to nothing")
    cap = config.max_per_prompt
    if cap is not None and cap > config.samples_per_prompt:
        found.append(
            f"max_per_prompt ({cap}) is above samples_per_prompt ({config.samples_per_prompt}): "
            "it would never limit anything; lower it or remove it"
        )
    return found + acceleration_problems(config)


def memory_profile(config: Config) -> MemoryProfile:
    """The larger of the two phases, which never coexist (the sampling model is freed first).
    Counted: the sampling phase's KV cache, `generation_batch_size` sequences of prompt +
    `max_completion_length` tokens, against the fine-tuning's gradients and activations on rows
    of the same length. Over-counted: the optimizer states (held only by the fine-tuning) are
    added to the KV cache too. Under-counted: the fine-tuning's LM head is sized for the
    completion tokens, while SFT runs it over the prompt as well (one 4096-token tile at most),
    and sampling's prefill temporaries (one layer's, over the batch's prompts) and last-token
    logits are left out, as for GRPO: the estimator has no term for them."""
    return MemoryProfile(
        adapter=adapter_shape(config) if trains_lora(config) else None,
        answer_fields=(),
        generated_sequences=config.generation_batch_size,
        completion_tokens=config.max_completion_length,
    )


# ---- sampling --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    row: int  # index into request.rows
    completion: str


@dataclass(frozen=True)
class Scored:
    sample: Sample
    reward: float


def sampling_prompt(
    row: dict[str, Any], chat: bool, system_prompt: str | None, tokenizer: Any
) -> str:
    """The prompt's text as the fine-tuning will see it: the chat template's user turn (after the
    system prompt) and the assistant's opening when `chat`, the plain prompt otherwise."""
    turn = user_turn(str(row["prompt"]), chat, system_prompt)
    if not chat:
        return str(turn)
    return str(tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False))


def batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sampling_device() -> str:
    """This process's GPU (under `accelerate launch`, its LOCAL_RANK), else the CPU."""
    if pick_device().name != "cuda":
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def load_sampler(request: TrainRequest, plan: Acceleration) -> Any:
    """The base for generation: bf16 when the plan trains under bf16 autocast, else float32; its
    own generation_config is replaced, so only this candidate's settings decide the samples."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    kwargs = model_init_kwargs(plan)
    kwargs["dtype"] = torch.bfloat16 if plan.precision == "bf16" else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(str(request.base_dir), **kwargs)
    model.generation_config = GenerationConfig()
    return model.to(sampling_device()).eval()


def generation_config(config: Config, tokenizer: Any) -> Any:
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=0,  # transformers' default would be 50: sample from the whole distribution
        max_new_tokens=config.max_completion_length,
        stop_strings=list(config.stop) or None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def completion_text(tokens: list[int], tokenizer: Any, stop: Sequence[str]) -> str:
    """New tokens to text: up to the first end-of-text, special tokens skipped, cut at the first
    stop string (generation stops after it; the reward and the training never see it)."""
    eos = tokenizer.eos_token_id
    if eos is not None and eos in tokens:
        tokens = tokens[: tokens.index(eos)]
    text = str(tokenizer.decode(tokens, skip_special_tokens=True))
    cuts = [text.find(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text


def sample_completions(
    request: TrainRequest, config: Config, tokenizer: Any, plan: Acceleration
) -> list[Sample]:
    """`samples_per_prompt` completions of every row, in batches of `generation_batch_size`
    (left-padded), seeded by the request's seed; each batch is reported as a progress step.
    The sampling model lives only in `generate_samples`, and its memory is returned here."""
    samples = generate_samples(request, config, tokenizer, plan)
    release_memory()
    return samples


def generate_samples(
    request: TrainRequest, config: Config, tokenizer: Any, plan: Acceleration
) -> list[Sample]:
    import torch
    from transformers import set_seed

    chat = uses_chat(request, tokenizer)
    prompts = [sampling_prompt(r, chat, request.system_prompt, tokenizer) for r in request.rows]
    jobs = [i for i in range(len(prompts)) for _ in range(config.samples_per_prompt)]
    chunks = list(batches(jobs, config.generation_batch_size))
    settings = generation_config(config, tokenizer)
    model = load_sampler(request, plan)
    set_seed(request.seed)
    samples: list[Sample] = []
    request.progress(TrainProgress(0, len(chunks), phase="sampling"))
    for done, chunk in enumerate(chunks, start=1):
        # A chat template carries its own special tokens; a plain prompt gets the tokenizer's.
        encoded = tokenizer(
            [prompts[i] for i in chunk],
            return_tensors="pt",
            padding=True,
            add_special_tokens=not chat,
        ).to(model.device)
        with torch.inference_mode():
            out = model.generate(**encoded, generation_config=settings, tokenizer=tokenizer)
        new = out[:, encoded["input_ids"].shape[1] :].tolist()
        samples += [
            Sample(i, completion_text(t, tokenizer, config.stop))
            for i, t in zip(chunk, new, strict=True)
        ]
        request.progress(TrainProgress(done, len(chunks), phase="sampling"))
    return samples


def release_memory() -> None:
    """Collect the dropped sampling model and hand its GPU memory back before the
    fine-tuning loads its own copy of the base."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- selection -------------------------------------------------------------------------------


class NothingKept(RuntimeError):
    """No sampled completion reached the threshold: there is nothing to fine-tune on."""


def score(request: TrainRequest, samples: list[Sample]) -> list[Scored]:
    if request.reward is None:
        raise ValueError("the rft backend needs a reward (the suite's `reward:`)")
    rows = [dict(request.rows[s.row]) for s in samples]
    rewards = request.reward([s.completion for s in samples], rows)
    if len(rewards) != len(samples):
        raise ValueError(f"the reward gave {len(rewards)} scores for {len(samples)} completions")
    return [Scored(s, float(r)) for s, r in zip(samples, rewards, strict=True)]


def select(scored: list[Scored], config: Config) -> list[Scored]:
    """Completions at or above the threshold; per prompt the best rewarded first (sampling
    order among equals), each text once when deduplicating, at most `max_per_prompt`."""
    passed = sorted(
        (s for s in scored if s.reward >= config.threshold),
        key=lambda s: (s.sample.row, -s.reward),
    )
    kept: list[Scored] = []
    seen: set[tuple[int, str]] = set()
    per_prompt: dict[int, int] = {}
    for item in passed:
        key = (item.sample.row, item.sample.completion)
        if config.deduplicate and key in seen:
            continue
        if config.max_per_prompt is not None and per_prompt.get(key[0], 0) >= config.max_per_prompt:
            continue
        seen.add(key)
        per_prompt[key[0]] = per_prompt.get(key[0], 0) + 1
        kept.append(item)
    return kept


def details(scored: list[Scored], kept: list[Scored], config: Config) -> dict[str, Any]:
    """What the candidate records of its sampling (training.method)."""
    rewards = [s.reward for s in scored]
    return {
        "sampled": len(scored),
        "passed": sum(r >= config.threshold for r in rewards),  # before deduplication and cap
        "kept": len(kept),
        "prompts": len({s.sample.row for s in scored}),
        "prompts_kept": len({s.sample.row for s in kept}),
        "threshold": config.threshold,
        "mean_reward": round(sum(rewards) / len(rewards), 6) if rewards else None,
        "kept_file": KEPT_FILE,
    }


def nothing_kept(summary: dict[str, Any], scored: list[Scored]) -> NothingKept:
    best = max((s.reward for s in scored), default=None)
    return NothingKept(
        f"no sampled completion reached the threshold {summary['threshold']:g}: 0 of "
        f"{summary['sampled']} kept ({summary['prompts']} prompts), mean reward "
        f"{summary['mean_reward']}, best {best}; lower `threshold`, raise `samples_per_prompt` "
        "or `temperature`, or check that the reward can be earned"
    )


def kept_record(item: Scored, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    row = rows[item.sample.row]
    return {
        "row": item.sample.row,  # index into the candidate's training rows
        **({"id": row["id"]} if "id" in row else {}),
        "prompt": row["prompt"],
        "completion": item.sample.completion,
        "reward": item.reward,
    }


def write_kept(records: list[dict[str, Any]], model_dir: Path) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    (model_dir / KEPT_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def with_kept_file(hook: CheckpointHook | None, kept: Path) -> CheckpointHook | None:
    """Checkpoint saves carry kept.jsonl too: a selected checkpoint replaces the model
    directory, and the artifact should still say what it was trained on."""
    if hook is None:
        return None
    import shutil

    def evaluate(checkpoint: Checkpoint) -> bool:
        def save(out_dir: Path) -> None:
            checkpoint.save(out_dir)
            if kept.is_file():  # only the main process of a launch writes it
                shutil.copyfile(kept, out_dir / KEPT_FILE)

        return hook.evaluate(dataclasses.replace(checkpoint, save=save))

    return CheckpointHook(hook.every, evaluate)


# ---- training --------------------------------------------------------------------------------


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"  # under `accelerate launch` one process writes


def train(request: TrainRequest) -> TrainResult:
    config: Config = request.config
    if request.reward is None:  # before any sampling
        raise ValueError("the rft backend needs a reward (the suite's `reward:`)")
    plan = plan_acceleration(config, request, pick_device())
    tokenizer = load_tokenizer(request.base_dir)
    tokenizer.padding_side = "left"  # generation continues each prompt at the right edge
    with quiet():
        samples = sample_completions(request, config, tokenizer, plan)
    scored = score(request, samples)
    kept = select(scored, config)
    summary = details(scored, kept, config)
    if not kept:
        raise nothing_kept(summary, scored)
    records = [kept_record(item, request.rows) for item in kept]
    if is_main_process():
        write_kept(records, request.output_dir)
    sft_request = dataclasses.replace(
        request,
        rows=[{"prompt": r["prompt"], "completion": r["completion"]} for r in records],
        checkpoints=with_kept_file(request.checkpoints, request.output_dir / KEPT_FILE),
    )
    lora = config if trains_lora(config) else None
    result = train_sft(sft_request, config, lora=lora, quantize=False)
    return dataclasses.replace(result, details={**result.details, **summary})


BACKEND = TrainerBackend(
    "rft", Config, required_fields, problems, train, trains_lora, memory_profile,
    needs_reward=True,
)  # fmt: skip
