"""How to generate, and what generation and scoring give back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

GenerationEngine = Literal["auto", "transformers", "vllm"]


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate: greedy by default; with a temperature, sample number `sample` of a seed."""

    max_new_tokens: int = 32
    stop: tuple[str, ...] = ("\n",)  # output is cut at the first stop string found
    chat_template: bool = False  # wrap the prompt as a user turn and apply the tokenizer's template
    system_prompt: str | None = None
    temperature: float = 0.0  # 0: greedy
    sample: int = 0  # which of k samples (part of the cache key, and of the sampling seed)
    seed: int = 0
    # Which library generates: "transformers", "vllm", or "auto" (vLLM where it is installed,
    # sees a CUDA device and can serve the model; see harness/vllm_engine.py). Suites default
    # to auto; built here directly, transformers. Only a vLLM generation adds it to the cache key.
    engine: GenerationEngine = "transformers"

    def merge(self, changes: Mapping[str, Any] | None) -> GenerationSettings:
        """These settings with each field `changes` sets replacing this one's: a suite's
        `generation:` block, then a check's override (None values are not set). Keys that are
        not settings (the suite's batch_size) are ignored."""
        known = {f.name for f in fields(self)}
        given = {k: v for k, v in (changes or {}).items() if k in known and v is not None}
        if "stop" in given:
            given["stop"] = tuple(given["stop"])
        return replace(self, **given)

    def as_record(self) -> dict[str, Any]:
        """The settings as stored with a model's evaluation (plain JSON values)."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "stop": list(self.stop),
            "chat_template": self.chat_template,
            "system_prompt": self.system_prompt,
            "temperature": self.temperature,
            "seed": self.seed,
            "engine": self.engine,
        }


@dataclass(frozen=True)
class LogLikelihood:
    """Log-likelihood of a continuation (or of a whole text, for rolling requests)."""

    logprob: float  # sum of log-probs of the continuation tokens
    is_greedy: bool  # every continuation token is the argmax
    n_tokens: int


class ModelTaskError(ValueError):
    """A check asked a model for something its kind cannot do (text from a classifier)."""


# A scoring row: (context tokens, continuation tokens), as lm-eval's `_loglikelihood_tokens` takes.
TokenPair = tuple[list[int], list[int]]


# What a compute function yields per batch: (position among the requests it was given, JSON value).
BatchResult = list[tuple[int, Any]]


def generation_key(settings: GenerationSettings, engine: str = "transformers") -> dict[str, Any]:
    """The settings part of a generation's cache key: transformers keeps the key it always had
    (stored caches stay valid); a vLLM generation adds the engine."""
    key = asdict(settings)
    del key["engine"]
    if engine != "transformers":
        key["engine"] = engine
    if settings.temperature > 0 and engine == "transformers":
        # Samples are drawn per prompt since harness 0.1.0's store schema 5; samples cached
        # before were drawn per batch and are not reused.
        key["sampling"] = "per-prompt"
    return key
