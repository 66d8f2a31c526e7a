"""The harness `lora` backend vs a plain trl script: same LoRA config, data and steps.

    python benchmarks/bench_training_overhead.py [--model builtin:tiny|builtin:smollm2-135m-instruct|random|DIR]
        [--steps 30] [--repeats 3] [--threads N]

Both sides build the trainer from the model path, train, and save the adapter and tokenizer, in
one process, alternating (after one warm-up of each) so machine noise shows in both medians.
Target: harness overhead <= 5% of the plain script's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    REPO_ROOT,
    apply_threads,
    build_random_tiny,
    common_arguments,
    print_json,
    print_table,
    timed,
)

TARGET_PERCENT = 5.0
LORA: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "target_modules": "all-linear",
}
TRAINING: dict[str, Any] = {
    "learning_rate": 1e-3,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_length": 512,
}


def model_dir(reference: str) -> Path:
    if reference == "random":
        directory = Path(tempfile.mkdtemp(prefix="bench-random-"))
        build_random_tiny(directory)
        return directory
    from harness.models.loading import base_directory

    return base_directory(reference)  # builtin (trained or packaged GGUF), .gguf, directory


def rows() -> list[dict[str, str]]:
    path = REPO_ROOT / "harness" / "models" / "corpus" / "update_facts.jsonl"
    facts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [{"prompt": f["question"], "completion": " " + f["answer"]} for f in facts]


def harness_run(base: Path, data: list[dict[str, str]], steps: int, out: Path) -> Any:
    from harness.backends import BACKENDS, TrainRequest

    backend = BACKENDS.get("lora")
    config = backend.Config(max_steps=steps, **LORA, **TRAINING)
    return backend.train(TrainRequest(base, data, config, seed=0, output_dir=out))


def plain_trl_run(base: Path, data: list[dict[str, str]], steps: int, out: Path) -> Any:
    """What a user would write with trl directly, with the same settings as the backend."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    args = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        learning_rate=TRAINING["learning_rate"],
        per_device_train_batch_size=TRAINING["per_device_train_batch_size"],
        gradient_accumulation_steps=TRAINING["gradient_accumulation_steps"],
        max_length=TRAINING["max_length"],
        activation_checkpointing=False,
        bf16=False,
        use_cpu=True,
        seed=0,
        data_seed=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        model_init_kwargs={"dtype": "float32"},
    )
    trainer: Any = SFTTrainer(
        model=str(base),
        args=args,
        train_dataset=Dataset.from_list(data),
        processing_class=tokenizer,
        peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA),
    )
    trainer.remove_callback(PrinterCallback)  # as the backend does: no per-step printing
    trainer.train()
    trainer.model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import datasets
    import torch

    datasets.disable_progress_bars()  # the plain script's map bars; the backend hides its own
    threads = apply_threads(args.threads)
    if torch.cuda.is_available():
        sys.exit("this benchmark compares CPU runs (the plain script sets use_cpu=True)")
    base, data = model_dir(args.model), rows()
    scratch = Path(tempfile.mkdtemp(prefix="bench-train-"))
    sides = {"harness": harness_run, "plain trl": plain_trl_run}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(args.repeats + 1):  # round 0 warms up imports and allocators
        for name, run in sides.items():
            out = scratch / f"{name.replace(' ', '-')}-{repeat}"
            _, seconds = timed(partial(run, base, data, args.steps, out))
            if repeat:
                times[name].append(seconds)

    harness_s, plain_s = (statistics.median(times[name]) for name in sides)
    overhead = 100 * (harness_s / plain_s - 1)
    print_table(
        [
            ("model", str(args.model)),
            ("steps x batch", f"{args.steps} x {TRAINING['per_device_train_batch_size']}"),
            ("torch threads", str(threads)),
            ("harness runs (s)", ", ".join(f"{t:.2f}" for t in times["harness"])),
            ("plain trl runs (s)", ", ".join(f"{t:.2f}" for t in times["plain trl"])),
            ("harness median (s)", f"{harness_s:.3f}"),
            ("plain trl median (s)", f"{plain_s:.3f}"),
            ("overhead", f"{overhead:+.1f}% (target <= {TARGET_PERCENT:.0f}%)"),
        ]
    )
    print_json(
        {
            "benchmark": "training_overhead",
            "model": args.model,
            "steps": args.steps,
            "repeats": args.repeats,
            "threads": threads,
            "harness_s": times["harness"],
            "plain_trl_s": times["plain trl"],
            "harness_median_s": harness_s,
            "plain_trl_median_s": plain_s,
            "overhead_percent": overhead,
            "target_percent": TARGET_PERCENT,
            "passed": overhead <= TARGET_PERCENT,
        }
    )


if __name__ == "__main__":
    main()
