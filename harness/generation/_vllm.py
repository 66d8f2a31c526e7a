"""Generation through vLLM: the optional engine of `generation: {engine: auto | transformers | vllm}`.

`auto` (the suite default) lets vLLM generate when the `vllm` package is installed, a CUDA device
is visible and vLLM can serve the model (`serving_target`); otherwise transformers generates and
the reason is logged (logger `harness.generation._engine`). `vllm` insists: validation refuses it without the
package, and a model vLLM cannot serve is a run error. Log-likelihood checks always run on the
transformers model, which is then loaded beside vLLM (`start` keeps room for it).

Same scores as transformers under greedy decoding, by construction:

- vLLM is given the prompt token ids harness computes (`harness.generation._engine.encode_prompts`: the same
  tokenizer, chat template, truncation budget, prefix token for an empty prompt), never text;
- the checkpoint dtype transformers loads it in (vLLM's own `auto` would run float32 checkpoints
  in float16), temperature 0, `max_tokens = max_new_tokens`, and the tokenizer's EOS as the only
  stop token (`ignore_eos` plus `stop_token_ids`: the extra EOS ids of generation_config.json,
  which transformers is not given either, are left out; `generation_config="vllm"` keeps that
  file's sampling defaults and output cap away);
- its token ids become text through the same `harness.generation._engine.decode_new` (EOS cut, special tokens
  skipped, cut at the first stop string), never through vLLM's detokenised text. Stop strings are
  also given to vLLM, only so it stops early; a row vLLM stopped on a string that our decoding
  does not find is generated again without them.

What remains are numerical differences between the two libraries' kernels (and batch shapes),
which can flip an argmax between near-tied tokens, in bf16 more than in float32. Sampled
generation (`samples: k`, `temperature > 0`) is seeded per request from (seed, sample, prompt
tokens): reproducible, but not the transformers engine's samples.

LoRA adapters (plain PEFT LoRA on a causal LM: no DoRA, no modules_to_save, rank up to 512) are
served on their base through `LoRARequest`; other adapters, random presets and classifiers are
left to transformers (under `auto`). Outputs are cached under a key that includes `engine: vllm`.

Nothing here imports vllm or torch at module level. The vLLM API used was read from vLLM 0.33.0's
own source (vllm/entrypoints/llm.py, sampling_params.py, inputs/llm.py, lora/request.py,
outputs.py, v1/core/sched/utils.py, v1/engine/core_client.py).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from harness.core.errors import HarnessError
from harness.generation._settings import BatchResult, GenerationSettings
from harness.generation._tokens import _chunks, _max_length, decode_new, encode_prompts
from harness.models.loading import user_facing_errors
from harness.models.references import check_reference, local_directory
from harness.models.tasks import CAUSAL_LM, config_task

if TYPE_CHECKING:
    pass

log = logging.getLogger("harness.generation._engine")

# Prompts per vLLM call: vLLM batches within a call; each call's outputs go to the cache before
# the next starts, so a run killed midway keeps them.
CHUNK = 1024
# vllm.config.lora.MaxLoRARanks (0.33): the ranks vLLM can be started with.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Fraction of the GPU vLLM may take at most; less when memory is already in use.
MEMORY_CAP = 0.9
MEMORY_ENV = "HARNESS_VLLM_GPU_MEMORY_UTILIZATION"  # overrides the computed fraction
INSTALL_HINT = "pip install 'harness[vllm]'"
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
# PEFT initialisations vLLM 0.33 serves as plain LoRA (vllm/lora/peft_helper.py).
VLLM_LORA_INITS = ("gaussian", "eva", "orthogonal", "mica", "lora_ga")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class VllmUnavailable(RuntimeError):
    """`engine: vllm` was asked for, but vLLM cannot generate for this model here."""


class VllmStartError(RuntimeError):
    """vLLM failed before generating anything; under `auto` transformers takes over."""


def vllm_installed() -> bool:
    """Whether the vllm package can be imported (found without importing it)."""
    return importlib.util.find_spec("vllm") is not None


# --- Which engine, and what vLLM would load ------------------------------------------------


@dataclass(frozen=True)
class VllmTarget:
    """What vLLM loads for a model reference."""

    model: str  # a directory or hub id: the model, or an adapter's base
    tokenizer: str  # where harness's tokenizer comes from (an adapter's own, when it has one)
    adapter: str | None = None  # a LoRA adapter directory, served through LoRARequest
    max_lora_rank: int = 0  # the vLLM rank bucket that holds the adapter's largest rank
    weight_bytes: int = 0  # size of the local weight files (room for the transformers copy)


def select_engine(
    requested: str,
    *,
    installed: Callable[[], bool],
    cuda: Callable[[], bool],
    target: Callable[[], VllmTarget | str],
) -> VllmTarget | str:
    """The target vLLM serves, or why transformers generates instead; each condition is looked
    at only when the ones before it hold. Raises VllmUnavailable for an explicit `vllm` that
    cannot be had."""
    if requested == "transformers":
        return "engine: transformers"
    if not installed():
        if requested == "vllm":
            raise VllmUnavailable(f"engine: vllm needs the vllm package ({INSTALL_HINT})")
        return "vllm is not installed"
    if requested == "auto" and not cuda():
        return "vllm is installed, but no CUDA device is visible"
    found = target()
    if isinstance(found, str) and requested == "vllm":
        raise VllmUnavailable(f"engine: vllm cannot serve this model: {found}")
    return found


def serving_target(reference: str, task: str = "causal_lm") -> VllmTarget | str:
    """What vLLM would load for a model reference, or why it cannot serve it; reads the model's
    config files only (no vllm, no weights)."""

    if task != CAUSAL_LM:
        return "it is a sequence classifier (vLLM generation here serves causal LMs)"
    try:
        parsed = check_reference(reference)
    except HarnessError as exc:
        return str(exc)
    kind, name = parsed
    if kind == "random":
        return "a random: preset is built in memory, so there is no checkpoint for vLLM to load"
    if kind == "hub":
        return VllmTarget(name, name)  # vLLM and transformers resolve a hub id the same way
    path = local_directory(parsed)
    if (path / "adapter_config.json").is_file():
        return _adapter_target(path)
    config = _read_json(path / "config.json")
    if config is None:
        return f"no readable config.json in {path}"
    if config_task(config) != CAUSAL_LM:
        return "it is a sequence classifier (vLLM generation here serves causal LMs)"
    return VllmTarget(str(path), str(path), weight_bytes=_weight_bytes(path))


def _adapter_target(path: Path) -> VllmTarget | str:
    config = _read_json(path / "adapter_config.json")
    if config is None:
        return f"adapter at {path}: unreadable adapter_config.json"
    problem = lora_problem(config)
    if problem is not None:
        return f"adapter at {path}: {problem}"
    base_reference = config.get("base_model_name_or_path")
    if not base_reference:
        return f"adapter at {path} does not name its base (base_model_name_or_path)"
    base = serving_target(str(base_reference))
    if isinstance(base, str):
        return f"the base of adapter {path}: {base}"
    if base.adapter is not None:
        return f"adapter at {path} sits on another adapter"
    has_tokenizer = (path / "tokenizer_config.json").is_file()  # as load_adapter decides
    return replace(
        base,
        tokenizer=str(path) if has_tokenizer else base.tokenizer,
        adapter=str(path),
        max_lora_rank=lora_rank_bucket(_largest_rank(config)),
        weight_bytes=base.weight_bytes + _weight_bytes(path),
    )


def lora_problem(config: Mapping[str, Any]) -> str | None:
    """Why vLLM cannot serve this PEFT adapter as PEFT applies it; None when it can."""
    peft_type = config.get("peft_type") or "LORA"
    if peft_type != "LORA":
        return f"a {peft_type} adapter (vLLM serves LoRA adapters)"
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        return f"a {config.get('task_type')} adapter (vLLM generation serves CAUSAL_LM adapters)"
    features = {
        "use_dora": "DoRA",
        "modules_to_save": "modules_to_save",
        "lora_bias": "LoRA bias",
        "layer_replication": "layer_replication",
        "trainable_token_indices": "trainable tokens",
        "use_qalora": "QALoRA",
        "alora_invocation_tokens": "aLoRA",
        "use_bdlora": "BD-LoRA",
    }
    unsupported = [name for key, name in features.items() if config.get(key)]
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in VLLM_LORA_INITS:
        unsupported.append(f"init_lora_weights={init}")
    if unsupported:
        return "vLLM does not serve " + ", ".join(unsupported)
    rank = _largest_rank(config)
    if rank > LORA_RANKS[-1]:
        return f"rank {rank} is above vLLM's largest LoRA rank ({LORA_RANKS[-1]})"
    return None


def lora_rank_bucket(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds `rank`."""
    for bucket in LORA_RANKS:
        if rank <= bucket:
            return bucket
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest ({LORA_RANKS[-1]})")


def _largest_rank(config: Mapping[str, Any]) -> int:
    ranks = [
        int(config.get("r") or 8),
        *(int(r) for r in (config.get("rank_pattern") or {}).values()),
    ]
    return max(ranks)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _weight_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix in WEIGHT_SUFFIXES)


# --- Pure pieces of a vLLM call (tested without vLLM) ---------------------------------------


def checkpoint_dtype(config: Mapping[str, Any], on_gpu: bool = True) -> str:
    """The dtype transformers loads this checkpoint in, for vLLM's `dtype`: on a GPU the
    config's own (harness loads with dtype="auto"), float32 off it (as `resolve_dtype`)."""
    if not on_gpu:
        return "float32"
    for holder in (config, config.get("text_config") or {}):
        value = holder.get("dtype") or holder.get("torch_dtype")
        name = str(value).removeprefix("torch.") if value is not None else None
        if name in FLOAT_DTYPES:
            return name
    return "auto"  # not stated: vLLM decides, and may not match transformers


def request_seed(seed: int, sample: int, prompt: Sequence[int]) -> int:
    """A sampled request's seed: the same seed, sample number and prompt give the same text,
    whatever else is in the batch."""
    payload = json.dumps([seed, sample, list(prompt)]).encode()
    return int.from_bytes(hashlib.sha256(payload).digest()[:4], "big") & 0x7FFFFFFF


def sampling_kwargs(
    settings: GenerationSettings,
    eos_token_id: int | None,
    prompt: Sequence[int],
    *,
    stop_strings: bool = True,
) -> dict[str, Any]:
    """`SamplingParams` arguments matching the transformers engine's generation config."""
    stop = [s for s in settings.stop if s] if stop_strings else []
    # An empty stop string is found in any text: transformers stops after one token.
    max_tokens = 1 if "" in settings.stop else settings.max_new_tokens
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": max_tokens,
        "temperature": 0.0,  # greedy
        "top_p": 1.0,  # top_k left at its default: no truncation in any vLLM version
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        # Stop at the tokenizer's EOS only, as transformers is told (eos_token_id=...).
        "ignore_eos": True,
        "stop_token_ids": [eos_token_id] if eos_token_id is not None else [],
        # Stop strings only let vLLM stop early; the text comes from our own decoding.
        "stop": stop,
        "detokenize": bool(stop),  # vLLM needs its text only to find stop strings
        "skip_special_tokens": True,
    }
    if settings.temperature > 0:  # plain temperature sampling, nothing truncated, seeded
        kwargs["temperature"] = settings.temperature
        kwargs["seed"] = request_seed(settings.seed, settings.sample, prompt)
    return kwargs


def stopped_early(stop_reason: object, text: str, stop: Sequence[str]) -> bool:
    """vLLM stopped on a stop string that our decoding of its tokens (`text`, uncut) does not
    contain: its detokenisation saw text ours does not, so the row must run without stops."""
    return isinstance(stop_reason, str) and not any(s and s in text for s in stop)


def memory_fraction(free: int, total: int, reserve: int = 0, cap: float = MEMORY_CAP) -> float:
    """vLLM's `gpu_memory_utilization` (a fraction of the whole GPU that must be free at start):
    what is free now, less 5% slack and `reserve` bytes kept for the transformers model."""
    fraction = min(cap, (free * 0.95 - reserve) / total)
    if fraction < 0.05:
        raise VllmStartError(
            f"too little free GPU memory for vLLM: {free / 2**30:.1f} GiB free of "
            f"{total / 2**30:.1f} GiB, {reserve / 2**30:.1f} GiB kept for the transformers model"
        )
    return round(fraction, 4)


def llm_kwargs(
    target: VllmTarget,
    *,
    dtype: str,
    max_length: int,
    memory: float,
    trust_remote_code: bool,
) -> dict[str, Any]:
    """`vllm.LLM` arguments for a target."""
    kwargs: dict[str, Any] = {
        "model": target.model,
        "tokenizer": target.tokenizer,  # vLLM's detokeniser (stop strings) reads the same one
        "dtype": dtype,
        "max_model_len": max_length,  # the context harness truncates prompts to
        "gpu_memory_utilization": memory,
        "trust_remote_code": trust_remote_code,
        "seed": 0,
        # No sampling defaults and no output cap from the model's generation_config.json.
        "generation_config": "vllm",
    }
    if target.adapter is not None:
        kwargs |= {"enable_lora": True, "max_lora_rank": target.max_lora_rank, "max_loras": 1}
    return kwargs


# --- Serving one model -----------------------------------------------------------------------


class VllmServing:
    """vLLM for the model of one `Engine`: whether it generates, its generator, started on the
    first cache miss and shut down with the engine (`close`)."""

    def __init__(self, source: Any, *, hf_loaded: Callable[[], bool]) -> None:
        self.source = source  # the engine's LazyModel or LoadedModel
        self.hf_loaded = hf_loaded  # whether the transformers weights are in memory now
        self.failed: str | None = None  # why vLLM is out of the picture after a failed start
        self._generator: VllmGenerator | None = None
        self._said: set[str] = set()

    @property
    def reference(self) -> str:
        return str(self.source.reference)

    def generator(self, requested: str) -> VllmGenerator | None:
        """The generator when vLLM is to generate for `requested` ("auto" or "vllm"); None when
        transformers is (said once, in the log). VllmUnavailable for an impossible `vllm`."""
        if self.failed is not None:
            if requested == "vllm":
                raise VllmUnavailable(f"{self.reference}: {self.failed}")
            self._say(self.failed, logging.INFO)
            return None
        found = select_engine(
            requested,
            installed=vllm_installed,
            cuda=lambda: self._on_gpu,
            target=lambda: self._target,
        )
        if isinstance(found, str):
            quiet = found in ("engine: transformers", "vllm is not installed")
            self._say(found, logging.DEBUG if quiet else logging.INFO)
            return None
        if self._generator is None:
            self._generator = VllmGenerator(
                found,
                trust_remote_code=_trust_remote_code(self.source),
                on_gpu=self._on_gpu,
                hf_loaded=self.hf_loaded,
            )
            log.info("%s: vLLM generates (%s)", self.reference, found.adapter or found.model)
        return self._generator

    def give_up(self, error: BaseException) -> None:
        """vLLM failed to start: transformers generates for this model from now on."""
        self.failed = f"vLLM failed to start: {error}"
        log.warning("%s: %s; transformers generates instead", self.reference, self.failed)
        self.close()

    def close(self) -> None:
        generator, self._generator = self._generator, None
        if generator is not None:
            generator.close()

    @cached_property
    def _on_gpu(self) -> bool:
        import torch

        return bool(torch.cuda.is_available())

    @cached_property
    def _target(self) -> VllmTarget | str:
        return serving_target(self.reference, str(getattr(self.source, "task", "causal_lm")))

    def _say(self, reason: str, level: int) -> None:
        if reason not in self._said:
            self._said.add(reason)
            log.log(level, "%s: transformers generates (%s)", self.reference, reason)


def _trust_remote_code(source: Any) -> bool:
    """The suite's trust_remote_code, as the model was opened with it (`open_model` builds a
    LazyModel's loader with it; a loaded model that needed custom code has an auto_map)."""
    keywords = getattr(getattr(source, "load", None), "keywords", None) or {}
    if "trust_remote_code" in keywords:
        return bool(keywords["trust_remote_code"])
    config = getattr(getattr(source, "model", None), "config", None)
    return bool(getattr(config, "auto_map", None))


class VllmGenerator:
    """Generates through one `vllm.LLM` (started on first use) from harness's token ids."""

    def __init__(
        self,
        target: VllmTarget,
        *,
        trust_remote_code: bool,
        on_gpu: bool,
        hf_loaded: Callable[[], bool],
    ) -> None:
        self.target = target
        self.trust_remote_code = trust_remote_code
        self.on_gpu = on_gpu
        self.hf_loaded = hf_loaded
        self.llm: Any = None
        self.lora_request: Any = None

    @cached_property
    def tokenizer(self) -> Any:
        """The tokenizer transformers would load with the model (no weights)."""
        from transformers import AutoTokenizer

        with user_facing_errors(self.target.tokenizer):
            return AutoTokenizer.from_pretrained(self.target.tokenizer, **self._hub_options)

    @cached_property
    def config(self) -> Any:
        from transformers import AutoConfig

        with user_facing_errors(self.target.model):
            return AutoConfig.from_pretrained(self.target.model, **self._hub_options)

    @cached_property
    def max_length(self) -> int:
        """The context length the transformers engine would use (lm-eval's resolution)."""
        return _max_length(SimpleNamespace(config=self.config), self.tokenizer)

    @property
    def _hub_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            options["local_files_only"] = True
        return options

    def batches(self, prompts: list[str], settings: GenerationSettings) -> Iterator[BatchResult]:
        """An `Engine` compute function: outputs in chunks, each cached before the next runs.
        VllmStartError, before any output, when the tokenizer, config or vLLM cannot be had."""
        try:
            tokenizer, max_length = self.tokenizer, self.max_length
        except Exception as exc:
            raise VllmStartError(f"{type(exc).__name__}: {exc}") from exc
        encoded = encode_prompts(tokenizer, prompts, settings, max_length)
        self.start()
        for chunk in _chunks(list(range(len(prompts))), CHUNK):
            texts = self.generate_rows([encoded[i] for i in chunk], settings)
            yield list(zip(chunk, texts, strict=True))

    def start(self) -> None:
        if self.llm is not None:
            return
        try:
            kwargs = llm_kwargs(
                self.target,
                dtype=checkpoint_dtype(self.config.to_dict(), self.on_gpu),
                max_length=self.max_length,
                memory=self._memory(),
                trust_remote_code=self.trust_remote_code,
            )
            from vllm import LLM

            self.llm = LLM(**kwargs)
            if self.target.adapter is not None:
                from vllm.lora.request import LoRARequest

                self.lora_request = LoRARequest("adapter", 1, self.target.adapter)
        except VllmStartError:
            raise
        except Exception as exc:  # a vLLM that cannot start is not a run error under auto
            raise VllmStartError(f"{type(exc).__name__}: {exc}") from exc

    def _memory(self) -> float:
        configured = os.environ.get(MEMORY_ENV)
        if configured:
            return float(configured)
        if not self.on_gpu:
            return MEMORY_CAP
        import torch

        free, total = torch.cuda.mem_get_info()
        # Log-likelihood checks load the transformers weights later: keep room for them.
        reserve = 0 if self.hf_loaded() else self.target.weight_bytes
        return memory_fraction(free, total, reserve)

    def generate_rows(self, rows: list[list[int]], settings: GenerationSettings) -> list[str]:
        """Texts for prompt token ids, decoded exactly as the transformers engine decodes."""
        tokens = self._generate_tokens(rows, settings, stop_strings=True)
        early = [
            i
            for i, (ids, reason) in enumerate(tokens)
            if isinstance(reason, str)  # stopped on a string: does our decoding see it too?
            and stopped_early(reason, decode_new(self.tokenizer, ids, ()), settings.stop)
        ]
        if early:
            again = self._generate_tokens([rows[i] for i in early], settings, stop_strings=False)
            for i, redone in zip(early, again, strict=True):
                tokens[i] = redone
        return [decode_new(self.tokenizer, ids, settings.stop) for ids, _ in tokens]

    def _generate_tokens(
        self, rows: list[list[int]], settings: GenerationSettings, *, stop_strings: bool
    ) -> list[tuple[list[int], object]]:
        """(generated token ids, vLLM's stop reason) per row, in the order given."""
        from vllm import SamplingParams, TokensPrompt

        eos = self.tokenizer.eos_token_id
        prompts = [TokensPrompt(prompt_token_ids=row) for row in rows]
        params = [
            SamplingParams(**sampling_kwargs(settings, eos, row, stop_strings=stop_strings))
            for row in rows
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora_request)
        completions = [output.outputs[0] for output in outputs]
        return [(list(c.token_ids), c.stop_reason) for c in completions]

    def close(self) -> None:
        """Shut vLLM down and give its GPU memory back (its engine runs in a child process)."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        with contextlib.suppress(Exception):
            shutdown = getattr(llm, "shutdown", None)
            if callable(shutdown):
                shutdown()
            else:  # vLLM 0.33: the engine-core client owns the process holding the GPU memory
                core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
                if core is not None:
                    core.shutdown()
        del llm
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
