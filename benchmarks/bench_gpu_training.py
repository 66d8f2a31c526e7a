"""What each GPU training default gives: peak memory and tokens/s of full, LoRA and QLoRA on the
`random:` presets, per setting, against an fp32 + eager-attention baseline in the same process,
and `harness plan`'s estimate against the measured peak.

    python benchmarks/bench_gpu_training.py [--models random:qwen2.5-0.5b,random:llama-3.2-1b]
        [--methods full,lora,qlora] [--variants ...] [--steps 20] [--batch 8] [--json FILE]

Each variant trains through the harness backend (`BACKENDS.get(method).train`, the code a suite
runs) for `--steps` steps on the same rows (prompt/completion of 32 to 320 words, so a padded
batch is about half padding), one after another in this process:

| variant | args |
|---|---|
| fp32+eager (baseline) | precision: fp32, attention: eager, padding_free: false, liger: false |
| bf16 | precision: bf16 (autocast; a frozen base loads in bf16), eager |
| bf16+sdpa | attention: sdpa |
| bf16+flash | attention: flash_attention_2 (needs flash_attn) |
| +padding-free | padding_free: true, on flash attention when installed, else SDPA |
| +liger | liger: true (needs liger_kernel) |
| +checkpointing | gradient_checkpointing: true (on top of what of the above this machine has) |
| defaults | nothing set: what the harness picks on this machine |

Peak memory is `torch.cuda.max_memory_allocated()` over the training (reset before each; the
model's load included, the CUDA context not). Tokens/s counts trained tokens (no padding) over
steps 2..N (the first step's compilation and autotuning left out: average tokens per step x
(N - 1) / the time from the end of step 1 to the end of step N). The plan is `harness plan`'s
training estimate for the same config, rows and device (harness.plan._suite.training_setup),
which follows the same `acceleration_plan` decision as the backend.

Without CUDA it stops with a message; `--device cpu --models builtin:tiny --steps 2` runs the
same code on the CPU (a dry run: process RSS instead of CUDA memory, CUDA-only variants skipped).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_json

MIB = 2**20
NO_CHANGE: dict[str, Any] = {}
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32+eager": {"precision": "fp32", "attention": "eager", "padding_free": False, "liger": False},
    "bf16": {"precision": "bf16", "attention": "eager", "padding_free": False, "liger": False},
    "bf16+sdpa": {"precision": "bf16", "attention": "sdpa", "padding_free": False, "liger": False},
    "bf16+flash": {"precision": "bf16", "attention": "flash_attention_2", "padding_free": False, "liger": False},
    "+padding-free": {"precision": "bf16", "attention": "best", "padding_free": True, "liger": False},
    "+liger": {"precision": "bf16", "attention": "best", "padding_free": True, "liger": True},
    "+checkpointing": {"precision": "bf16", "attention": "best", "padding_free": True, "liger": "best", "gradient_checkpointing": True},
    "defaults": NO_CHANGE,
}  # fmt: skip
BASELINE = "fp32+eager"
WORDS = [
    "the",
    "capital",
    "of",
    "river",
    "mountain",
    "is",
    "a",
    "sum",
    "plus",
    "what",
    "north",
    "south",
    "kingdom",
    "island",
    "city",
    "old",
    "new",
    "answer",
    "question",
    "lake",
    "forest",
    "many",
    "few",
]


@dataclass
class Measured:
    model: str
    method: str
    variant: str
    used: dict[str, Any] = field(default_factory=dict)  # the training's recorded acceleration
    peak_bytes: float | None = None
    tokens_per_second: float | None = None
    wall_seconds: float | None = None
    estimate_bytes: float | None = None
    note: str = ""


# ---- the machine -----------------------------------------------------------------------------


def use_device(device: str) -> None:
    """Train on `device` only (offline), or stop with a message where it is missing."""
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the backends pick CUDA whenever it is visible
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    require_device(device)


def require_device(device: str) -> None:
    """Refuse clearly where there is nothing to measure."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "bench_gpu_training: no CUDA device is visible (torch "
            f"{torch.__version__}), and these figures are GPU figures. Run it on a GPU machine; "
            "`--device cpu --models builtin:tiny --steps 2` dry-runs the same code on the CPU."
        )


def describe_machine(device: str) -> str:
    import torch
    import transformers
    import trl

    from harness.backends.acceleration import installed_libraries

    what = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    libraries = ", ".join(sorted(installed_libraries())) or "none"
    return (
        f"{what}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {trl.__version__}; optional kernels installed: {libraries}"
    )


# ---- the data and the configs ----------------------------------------------------------------


def make_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Prompt/completion rows of 32 to 320 words: batches padded to their longest row."""
    rng = random.Random(seed)
    text = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    rows = []
    for _ in range(count):
        words = rng.randint(32, 320)
        rows.append({"prompt": text(words * 3 // 4), "completion": " " + text(words // 4)})
    return rows


def variant_args(name: str, device: str, installed: frozenset[str]) -> dict[str, Any] | str:
    """The backend args of a variant on this machine, or why it cannot run here."""
    args = dict(VARIANTS[name])
    flash = device == "cuda" and "flash_attn" in installed
    liger = device == "cuda" and "liger_kernel" in installed
    if args.get("attention") == "best":  # the ladder builds on what this machine has
        args["attention"] = "flash_attention_2" if flash else "sdpa"
    if args.get("liger") == "best":
        args["liger"] = liger
    if args.get("attention") == "flash_attention_2" and not flash:
        return "skipped: flash attention needs CUDA and flash_attn"
    if args.get("liger") is True and not liger:
        return "skipped: Liger needs CUDA and liger_kernel"
    return args


def config_for(method: str, args: dict[str, Any], options: argparse.Namespace) -> Any:
    from harness.backends import BACKENDS

    common = {
        "max_steps": options.steps,
        "per_device_train_batch_size": options.batch,
        "max_length": options.max_length,
        "learning_rate": 1e-5 if method == "full" else 1e-4,
    }
    return BACKENDS.get(method).Config.model_validate(common | args)


# ---- one measured training -------------------------------------------------------------------


class StepClock:
    """The harness's progress reports, timed: step 0 is the training's start."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}

    def __call__(self, progress: Any) -> None:
        self.times[progress.step] = time.perf_counter()

    def tokens_per_second(self, tokens: int, steps: int) -> float | None:
        last = max(self.times, default=0)
        if last >= 2 and 1 in self.times:  # steps 2..N: per-step average x (N - 1)
            return tokens * (last - 1) / last / (self.times[last] - self.times[1])
        if last >= 1 and 0 in self.times:
            return tokens / (self.times[last] - self.times[0])
        return None


class Peak:
    """CUDA max allocated, or (on the CPU dry run) the process RSS sampled in a thread."""

    def __init__(self, device: str) -> None:
        self.device, self.value = device, 0.0

    def __enter__(self) -> Peak:
        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            from bench_planner import PeakSampler

            self._sampler = PeakSampler(0.005).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.device == "cuda":
            self.value = float(torch.cuda.max_memory_allocated())
        else:
            self._sampler.__exit__(*exc)
            self.value = float(self._sampler.peak)


def measure(
    model: str, base_dir: Path, method: str, variant: str, rows: list[dict[str, Any]],
    options: argparse.Namespace, scratch: Path,
) -> Measured:  # fmt: skip
    from harness.backends import BACKENDS, TrainRequest
    from harness.backends.acceleration import installed_libraries

    found = Measured(model, method, variant)
    args = variant_args(variant, options.device, installed_libraries())
    if isinstance(args, str):
        found.note = args
        return found
    config = config_for(method, args, options)
    problems = BACKENDS.get(method).problems(config)
    if problems:
        found.note = "refused: " + "; ".join(problems)
        return found
    found.estimate_bytes = estimate(method, config, rows, model, base_dir, options.device)
    clock = StepClock()
    out = scratch / f"{method}-{variant}"
    request = TrainRequest(base_dir, rows, config, 0, out, progress=clock)
    try:
        with Peak(options.device) as peak:
            started = time.perf_counter()
            result = BACKENDS.get(method).train(request)
            found.wall_seconds = time.perf_counter() - started
    except Exception as error:  # an OOM or a kernel error is a row of the table, not the end
        found.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
        return found
    finally:
        release()
    found.peak_bytes = peak.value
    found.used = result.acceleration
    found.tokens_per_second = clock.tokens_per_second(result.train_tokens, options.steps)
    return found


def release() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def estimate(
    method: str, config: Any, rows: list[dict[str, Any]], model: str, base_dir: Path, device: str
) -> float:
    """`harness plan`'s training estimate for this config, rows and device."""
    from transformers import AutoTokenizer

    from harness.backends import BACKENDS
    from harness.plan._estimate import model_shape, training_breakdown
    from harness.plan._suite import BaseModel, DeviceInfo, read_config, training_setup

    base = BaseModel(model, read_config(base_dir), AutoTokenizer.from_pretrained(base_dir))
    dtype = "float32"
    if device == "cuda":
        import torch

        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    info = DeviceInfo(device, dtype, None, "")
    setup, _ = training_setup(BACKENDS.get(method), config, rows, base, info)
    return training_breakdown(model_shape(base.config), setup).total


# ---- the table -------------------------------------------------------------------------------


def markdown(results: list[Measured], device: str) -> str:
    memory = "peak (CUDA max allocated)" if device == "cuda" else "peak RSS (process)"
    head = (
        f"| model | method | variant | used | {memory} | tokens/s | peak vs baseline | "
        "speed vs baseline | plan estimate | plan error |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    baselines = {(r.model, r.method): r for r in results if r.variant == BASELINE}
    for r in results:
        base = baselines.get((r.model, r.method))
        cells = [r.model, r.method, r.variant, used_text(r.used) or r.note]
        cells.append(f"{r.peak_bytes / MIB:,.0f} MiB" if r.peak_bytes else "")
        cells.append(f"{r.tokens_per_second:,.0f}" if r.tokens_per_second else "")
        cells.append(ratio(r.peak_bytes, base.peak_bytes if base else None))
        cells.append(ratio(r.tokens_per_second, base.tokens_per_second if base else None))
        cells.append(f"{r.estimate_bytes / MIB:,.0f} MiB" if r.estimate_bytes else "")
        error = (
            f"{(r.estimate_bytes - r.peak_bytes) / r.peak_bytes:+.0%}"
            if r.estimate_bytes and r.peak_bytes and device == "cuda"
            else ""
        )
        cells.append(error)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def used_text(used: dict[str, Any]) -> str:
    if not used:
        return ""
    parts = [used["precision"], used["weights"], used["attention"]]
    parts += ["padding-free"] if used["padding_free"] else []
    parts += ["Liger"] if used["liger"] else []
    parts += ["ckpt"] if used["gradient_checkpointing"] else []
    return ", ".join(parts)


def ratio(value: float | None, baseline: float | None) -> str:
    return f"{value / baseline:.2f}x" if value and baseline else ""


# ---- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="random:qwen2.5-0.5b,random:llama-3.2-1b")
    parser.add_argument("--methods", default="full,lora,qlora")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    use_device(options.device)
    unknown = set(options.variants.split(",")) - set(VARIANTS)
    if unknown:
        sys.exit(f"bench_gpu_training: unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")

    from harness.models.loading import base_directory

    print(f"machine: {describe_machine(options.device)}", flush=True)
    rows = make_rows(options.rows)
    results: list[Measured] = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in options.models.split(","):
            base_dir = base_directory(model)
            for method in options.methods.split(","):
                for variant in options.variants.split(","):
                    found = measure(model, base_dir, method, variant, rows, options, Path(scratch))
                    results.append(found)
                    peak = f"{found.peak_bytes / MIB:,.0f} MiB" if found.peak_bytes else "-"
                    speed = (
                        f"{found.tokens_per_second:,.0f} tok/s" if found.tokens_per_second else "-"
                    )
                    print(
                        f"{model} {method} {variant}: {peak}, {speed} "
                        f"{used_text(found.used) or found.note}",
                        flush=True,
                    )
    print()
    print(markdown(results, options.device))
    if options.json:
        options.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    print_json({"gpu_training": len(results), "device": options.device})


if __name__ == "__main__":
    main()
