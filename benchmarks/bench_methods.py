"""Every fine-tuning method at the harness's defaults: peak memory, trained tokens/s and
trainable parameters, each against full fine-tuning in the same process, and `harness plan`'s
estimate against the measured peak.

    python benchmarks/bench_methods.py [--models random:qwen2.5-0.5b] [--methods full,lora,...]
        [--steps 10] [--batch 8] [--json FILE]
    python benchmarks/bench_methods.py --device cpu --models builtin:tiny --steps 2   # dry run

Each method trains through its harness backend (`BACKENDS.get(name).train`, what a suite runs)
on rows of its own kind made from the same words (prompt/completion, preference pairs, KTO
labels, plain text, prompts with a reward), one after another in this process, at the defaults
of this machine (bf16 + SDPA on a GPU). Peak memory is `torch.cuda.max_memory_allocated()` over
the training (on the CPU, the process RSS: a dry run), tokens/s counts trained tokens over steps
2..N. GRPO, RLOO and RFT generate: their tokens/s is not comparable with the others'.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu_training import (
    Peak,
    StepClock,
    describe_machine,
    estimate,
    make_rows,
    release,
    use_device,
)
from common import print_json

MIB = 2**20

# name shown -> (backend, args beyond the common ones, kind of rows)
METHODS: dict[str, tuple[str, dict[str, Any], str]] = {
    "full": ("full", {}, "sft"),
    "full-top2": ("full", {"freeze": {"train_last_layers": 2}}, "sft"),
    "lora": ("lora", {}, "sft"),
    "rslora": ("lora", {"use_rslora": True}, "sft"),
    "pissa": ("lora", {"init_lora_weights": "pissa"}, "sft"),
    "dora": ("lora", {"use_dora": True}, "sft"),
    "qlora": ("qlora", {}, "sft"),
    "ia3": ("ia3", {}, "sft"),
    "prompt_tuning": ("prompt_tuning", {}, "sft"),
    "llama_adapter": ("llama_adapter", {}, "sft"),
    "pretrain": ("pretrain", {}, "text"),
    "dpo": ("dpo", {}, "pairs"),
    "orpo": ("orpo", {}, "pairs"),
    "kto": ("kto", {}, "kto"),
    "reward_model": ("reward_model", {}, "pairs"),
    "grpo": ("grpo", {"num_generations": 4, "max_completion_length": 64}, "prompts"),
    "rloo": ("rloo", {"num_generations": 4, "max_completion_length": 64}, "prompts"),
    "rft": ("rft", {"samples_per_prompt": 4, "max_completion_length": 64, "threshold": 0.5}, "prompts"),
}  # fmt: skip
LEARNING_RATE = {"full": 1e-5, "pretrain": 1e-5}


@dataclass
class Measured:
    method: str
    model: str
    peak_bytes: float = 0.0
    tokens_per_second: float | None = None
    trainable: int = 0
    total: int = 0
    wall_seconds: float | None = None
    estimate_bytes: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def rows_of(kind: str, count: int) -> list[dict[str, Any]]:
    """The benchmark's rows in the shape a method trains on, all from the same words."""
    base = make_rows(count)
    if kind == "sft":
        return base
    if kind == "text":
        return [{"text": r["prompt"] + r["completion"]} for r in base]
    if kind == "pairs":
        return [
            {
                "prompt": r["prompt"],
                "chosen": r["completion"],
                "rejected": base[i - 1]["completion"],
            }
            for i, r in enumerate(base)
        ]
    if kind == "kto":
        return [r | {"label": i % 2 == 0} for i, r in enumerate(base)]
    return [{"prompt": r["prompt"]} for r in base]


def reward(completions: list[str], rows: list[dict[str, Any]]) -> list[float]:
    """A reward with a spread (so GRPO/RLOO have advantages and RFT keeps some): the share
    of a completion's characters that are vowels, seeded by nothing but the text."""
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) * 2 for c in completions]


def config_for(method: str, options: argparse.Namespace) -> Any:
    from harness.backends import BACKENDS

    backend_name, extra, _ = METHODS[method]
    backend = BACKENDS.get(backend_name)
    fields = backend.Config.model_fields
    args: dict[str, Any] = {
        "max_steps": options.steps,
        "per_device_train_batch_size": options.batch,
        "learning_rate": LEARNING_RATE.get(backend_name, 1e-4),
    }
    if "max_length" in fields:
        args["max_length"] = options.max_length
    return backend.Config.model_validate(args | extra)


def measure(
    model: str, base_dir: Path, method: str, options: argparse.Namespace, scratch: Path
) -> Measured:
    from harness.backends import BACKENDS, TrainRequest

    found = Measured(method, model)
    backend_name, _, kind = METHODS[method]
    backend = BACKENDS.get(backend_name)
    try:
        config = config_for(method, options)
    except Exception as error:  # a method this harness version lacks is a row, not the end
        found.note = f"not configurable: {str(error).splitlines()[0][:160]}"
        return found
    if problems := backend.problems(config):
        found.note = "refused: " + "; ".join(problems)
        return found
    rows = rows_of(kind, options.rows)
    try:
        found.estimate_bytes = estimate(backend_name, config, rows, model, base_dir, options.device)
    except Exception as error:
        found.note = f"no estimate ({type(error).__name__}: {error}); "
    clock = StepClock()
    out = scratch / method
    request = TrainRequest(
        base_dir, rows, config, 0, out, progress=clock,
        reward=reward if backend.needs_reward else None,
    )  # fmt: skip
    try:
        with Peak(options.device) as peak:
            started = time.perf_counter()
            result = backend.train(request)
            found.wall_seconds = time.perf_counter() - started
    except Exception as error:  # an OOM or a library refusal is a row of the table
        found.note += f"failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
        return found
    finally:
        release()
    found.peak_bytes = peak.value
    found.trainable, found.total = result.trainable_parameters, result.total_parameters
    found.tokens_per_second = clock.tokens_per_second(result.train_tokens, options.steps)
    found.details = dict(result.details)
    return found


def markdown(results: list[Measured], device: str) -> str:
    memory = "peak (CUDA max allocated)" if device == "cuda" else "peak RSS (process)"
    lines = [
        f"| model | method | {memory} | vs full | tokens/s | trainable / total | train s | "
        "plan estimate | plan error | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    full = {r.model: r for r in results if r.method == "full"}
    for r in results:
        reference = full.get(r.model)
        cells = [r.model, r.method]
        cells.append(f"{r.peak_bytes / MIB:,.0f} MiB" if r.peak_bytes else "")
        ratio = reference.peak_bytes if reference else 0
        cells.append(f"{r.peak_bytes / ratio:.2f}x" if r.peak_bytes and ratio else "")
        cells.append(f"{r.tokens_per_second:,.0f}" if r.tokens_per_second else "")
        share = f" ({r.trainable / r.total:.2%})" if r.total else ""
        cells.append(f"{r.trainable:,} / {r.total:,}{share}" if r.total else "")
        cells.append(f"{r.wall_seconds:.1f}" if r.wall_seconds else "")
        cells.append(f"{r.estimate_bytes / MIB:,.0f} MiB" if r.estimate_bytes else "")
        error = (
            f"{(r.estimate_bytes - r.peak_bytes) / r.peak_bytes:+.0%}"
            if r.estimate_bytes and r.peak_bytes and device == "cuda"
            else ""
        )
        cells.append(error)
        cells.append(r.note.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="random:qwen2.5-0.5b")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    use_device(options.device)
    unknown = set(options.methods.split(",")) - set(METHODS)
    if unknown:
        sys.exit(f"bench_methods: unknown methods {sorted(unknown)}; known: {list(METHODS)}")
    random.seed(0)

    from harness.models.loading import base_directory

    print(f"machine: {describe_machine(options.device)}", flush=True)
    results: list[Measured] = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in options.models.split(","):
            base_dir = base_directory(model)
            for method in options.methods.split(","):
                found = measure(model, base_dir, method, options, Path(scratch))
                results.append(found)
                peak = f"{found.peak_bytes / MIB:,.0f} MiB" if found.peak_bytes else "-"
                print(f"{model} {method}: {peak} {found.note}", flush=True)
    print()
    print(markdown(results, options.device))
    if options.json:
        options.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    print_json({"methods": len(results), "device": options.device})


if __name__ == "__main__":
    main()
