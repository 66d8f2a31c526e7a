"""`harness plan`'s estimate vs the measured CPU peak of a short real training.

    python benchmarks/bench_planner.py [--cases tiny-full,small-full,...] [--steps 4] [--json FILE]

Each case trains through the harness backend (`BACKENDS.get(name).train`) in a fresh child
process, and the child reports its peak resident memory above a baseline:

- the child first imports torch/transformers/trl/peft/datasets and trains the same case for one
  step (so lazily imported modules, tokenizer and `datasets` caches, thread pools are resident),
  then takes the baseline RSS, then trains `--steps` steps while a thread samples RSS every 2 ms;
- it runs with MALLOC_MMAP_THRESHOLD_=65536: glibc then serves every tensor above 64 KiB by mmap
  and returns it on free, so RSS follows live tensors instead of keeping freed heap (with the
  default dynamic threshold, the warm-up's freed blocks would be reused unseen).

So `measured = peak RSS - baseline RSS`: the model's memory, not the Python/torch runtime. The
estimate is harness.plan._estimate's training breakdown for the same config and rows (float32 on CPU).

Cases: `tiny-*` train builtin:tiny on the qa suite's 20 new facts; `small-*` a random Llama
(8 layers, 512 wide, vocabulary 8192, 29M parameters) on 16 rows of about 200 tokens.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, print_json

CASES: dict[str, dict[str, Any]] = {
    "tiny-full": {"model": "tiny", "backend": "full", "args": {}},
    "tiny-lora": {"model": "tiny", "backend": "lora", "args": {"r": 8}},
    "small-full": {"model": "small", "backend": "full", "args": {}},
    "small-full-ckpt": {
        "model": "small",
        "backend": "full",
        "args": {"gradient_checkpointing": True},
    },
    "small-lora": {"model": "small", "backend": "lora", "args": {"r": 16}},
    "small-dpo": {"model": "small", "backend": "dpo", "args": {"r": 16}},
}
SMALL = {
    "vocab_size": 8192, "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8,
    "num_attention_heads": 8, "num_key_value_heads": 8, "max_position_embeddings": 512,
}  # fmt: skip
BATCH = 8


def model_dir(kind: str, scratch: Path) -> Path:
    """builtin:tiny's directory, or the small random Llama saved once with the builtin tokenizer."""
    if kind == "tiny":
        from harness.models.builtin import ensure_builtin

        return ensure_builtin("tiny")
    target = scratch / "small-llama"
    if not target.is_dir():
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from harness.models.tinylm import train_tokenizer

        tokenizer = train_tokenizer(vocab_size=400)
        torch.manual_seed(0)
        config = LlamaConfig(
            **SMALL, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None, tie_word_embeddings=False,
        )  # fmt: skip
        LlamaForCausalLM(config).save_pretrained(target)
        tokenizer.save_pretrained(target)
    return target


def rows(kind: str, backend: str) -> list[dict[str, Any]]:
    if kind == "tiny":
        path = REPO_ROOT / "suites" / "data" / "new_facts_train.jsonl"
        data = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        rng = random.Random(0)
        words = ["the", "capital", "of", "river", "mountain", "is", "a", "sum", "plus", "what"]
        text = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
        data = [{"prompt": text(60), "completion": " " + text(25)} for _ in range(16)]
    if backend == "dpo":
        data = [
            {"prompt": r["prompt"], "chosen": r["completion"], "rejected": r["completion"][::-1]}
            for r in data
        ]
    return data


def config_for(case: dict[str, Any], steps: int) -> Any:
    from harness.backends import BACKENDS

    args = {
        "per_device_train_batch_size": BATCH,
        "max_steps": steps,
        "learning_rate": 1e-4,
        **case["args"],
    }
    return BACKENDS.get(case["backend"]).Config.model_validate(args)


def estimate(name: str, directory: Path) -> dict[str, Any]:
    """harness.plan._estimate's breakdown for the case, as `harness plan` computes it on the CPU."""
    from transformers import AutoTokenizer

    from harness.backends import BACKENDS
    from harness.plan._estimate import model_shape, training_breakdown
    from harness.plan._suite import BaseModel, device_info, read_config, training_setup

    case = CASES[name]
    base = BaseModel(
        str(directory), read_config(directory), AutoTokenizer.from_pretrained(directory)
    )
    config = config_for(case, 1)
    setup, _ = training_setup(
        BACKENDS.get(case["backend"]),
        config,
        rows(case["model"], case["backend"]),
        base,
        device_info("cpu", "float32", "1GiB"),
    )
    return {
        **training_breakdown(model_shape(base.config), setup).as_dict(),
        "seq_len": setup.seq_len,
    }


# ---- the child: one measured training ---------------------------------------------------------


def rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class PeakSampler:
    """Samples this process's RSS in a thread; `peak` is the largest seen."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak, self._stop = interval, rss(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def train_once(name: str, directory: Path, steps: int, out: Path) -> None:
    from harness.backends import BACKENDS, TrainRequest

    case = CASES[name]
    request = TrainRequest(
        base_dir=directory, rows=rows(case["model"], case["backend"]), config=config_for(case, steps),
        seed=0, output_dir=out, reward=None,
    )  # fmt: skip
    BACKENDS.get(case["backend"]).train(request)


def child(name: str, directory: Path, steps: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # steadier on a shared 2-core box; memory does not depend on it
    with tempfile.TemporaryDirectory() as scratch:
        train_once(name, directory, 1, Path(scratch) / "warm-up")
        gc.collect()
        time.sleep(0.2)
        baseline = rss()
        with PeakSampler() as sampler:
            train_once(name, directory, steps, Path(scratch) / "run")
    return {"baseline_rss": baseline, "peak_rss": sampler.peak, "measured": sampler.peak - baseline}


def measure(name: str, directory: Path, steps: int) -> dict[str, Any]:
    """Run the child for one case and return its report."""
    env = {
        **os.environ,
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--dir",
        str(directory),
        "--steps",
        str(steps),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def compare(name: str, steps: int, scratch: Path) -> dict[str, Any]:
    directory = model_dir(CASES[name]["model"], scratch)
    estimated = estimate(name, directory)
    measured = measure(name, directory, steps)
    error = (estimated["total"] - measured["measured"]) / measured["measured"]
    return {"case": name, "estimate": estimated, **measured, "relative_error": error}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(child(options.child, options.dir, options.steps)))
        return
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in options.cases.split(","):
            result = compare(name, options.steps, Path(scratch))
            results.append(result)
            mib = 2**20
            print(
                f"{name:<16} estimate {result['estimate']['total'] / mib:8.1f} MiB   measured "
                f"{result['measured'] / mib:8.1f} MiB (baseline {result['baseline_rss'] / mib:.0f} MiB)   "
                f"error {result['relative_error']:+.0%}   seq {result['estimate']['seq_len']}",
                flush=True,
            )
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    print_json(
        {"planner": [{"case": r["case"], "relative_error": r["relative_error"]} for r in results]}
    )


if __name__ == "__main__":
    main()
