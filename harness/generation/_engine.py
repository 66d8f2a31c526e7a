"""The evaluation engine: batched greedy generation and lm-eval-exact log-likelihoods, cached.

Every check that needs model outputs goes through `Engine`. Log-likelihoods follow lm-eval's HFLM
(`lm_eval/models/huggingface.py`, `lm_eval/api/model.py`, v0.4.13) token for token, so a `choice` or
`perplexity` check here gives the number an lm-eval user would get.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import harness

if TYPE_CHECKING:
    import torch

    from harness.generation._vllm import VllmServing
    from harness.models import LazyModel, LoadedModel

_T = TypeVar("_T")

# lm-eval's fallback when neither the config nor the tokenizer states a context length.
DEFAULT_MAX_LENGTH = 2048
# transformers' "no limit" sentinel for tokenizer.model_max_length.
_TOKENIZER_INFINITY = 1000000000000000019884624838656

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


class OutputCache(Protocol):
    """Where computed outputs persist; the DuckDB store implements this structurally."""

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]: ...  # only the hits

    def put_many(self, kind: str, items: dict[str, Any]) -> None: ...  # JSON-serialisable values


@runtime_checkable
class ScopedCache(Protocol):
    """An `OutputCache` that files entries under a scope (a model) and reads a scope at once:
    the DuckDB store, whose every read opens its file (~13 ms)."""

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]: ...

    def put_many(self, kind: str, items: dict[str, Any], *, scope: str | None = None) -> None: ...

    def get_scope(self, scope: str) -> dict[tuple[str, str], str]: ...  # JSON text by (kind, key)


class ModelCache:
    """One model's view of a `ScopedCache`: its entries read once, lookups served from memory.

    So an evaluation reads the store once per model instead of once per check. Keys not found
    there are still asked of the store, so entries written without this scope (before schema 4,
    or for another model: a judge's verdict on the same output) or by another process since are
    reused too; that costs a read only when something was missing.
    """

    def __init__(self, store: ScopedCache, scope: str) -> None:
        self.store = store
        self.scope = scope
        self._stored: dict[tuple[str, str], str] | None = None  # read on the first lookup
        self._known: dict[tuple[str, str], Any] = {}  # decoded, or written by this model

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]:
        found = {k: v for k in keys if (v := self._lookup(kind, k)) is not _MISSING}
        missing = [k for k in keys if k not in found]
        if missing:
            fetched = self.store.get_many(kind, missing)
            self._known.update({(kind, k): v for k, v in fetched.items()})
            found.update(fetched)
        return found

    def put_many(self, kind: str, items: dict[str, Any]) -> None:
        self.store.put_many(kind, items, scope=self.scope)
        self._known.update({(kind, k): v for k, v in items.items()})

    def _lookup(self, kind: str, key: str) -> Any:
        if (kind, key) in self._known:
            return self._known[(kind, key)]
        if self._stored is None:
            self._stored = self.store.get_scope(self.scope)
        text = self._stored.get((kind, key))
        if text is None:
            return _MISSING
        value = self._known[(kind, key)] = json.loads(text)
        return value


_MISSING = object()


class DictCache:
    """In-memory `OutputCache`, for tests and benchmarks; counts lookups and writes."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], Any] = {}
        self.gets = 0
        self.puts = 0

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]:
        self.gets += 1
        return {k: self.data[(kind, k)] for k in keys if (kind, k) in self.data}

    def put_many(self, kind: str, items: dict[str, Any]) -> None:
        self.puts += 1
        self.data.update({(kind, k): v for k, v in items.items()})


# A scoring row: (context tokens, continuation tokens), as lm-eval's `_loglikelihood_tokens` takes.
TokenPair = tuple[list[int], list[int]]
# What a compute function yields per batch: (position among the requests it was given, JSON value).
BatchResult = list[tuple[int, Any]]


class Engine:
    """Runs a model over many requests in batches, reusing cached outputs.

    Given a `LazyModel`, the weights load only when some request is not in the cache.
    """

    def __init__(
        self,
        lm: LoadedModel | LazyModel,
        cache: OutputCache | None = None,
        *,
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.source = lm
        self.fingerprint = lm.fingerprint
        self.cache = self._model_cache(cache)
        self.batch_size = batch_size
        self.progress = progress
        # Unique requests served from the cache vs run through the model: shows what a rerun reused.
        self.requests_cached = 0
        self.requests_computed = 0
        self._engines_used: set[str] = set()  # "transformers" and/or "vllm", as they generate

    # The model is needed only when a request misses the cache; a LazyModel loads then.
    @cached_property
    def lm(self) -> LoadedModel:
        from harness.models import LazyModel

        return self.source.load() if isinstance(self.source, LazyModel) else self.source

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (given loaded, or a LazyModel that had to load)."""
        from harness.models import LazyModel

        return "lm" in self.__dict__ or not isinstance(self.source, LazyModel)

    @property
    def tokenizer_identity(self) -> dict[str, str | None] | None:
        """The tokenizer's and chat template's hashes (harness.evaluation._comparability); remembered with
        the fingerprint when the model was not loaded, None when unknown."""
        if self.loaded:
            from harness.models.fingerprint import tokenizer_identity

            return tokenizer_identity(self.tokenizer)
        return getattr(self.source, "tokenizer", None)

    @property
    def task(self) -> str:
        """ "causal_lm" or "classification", known without loading the weights."""
        return str(getattr(self.source, "task", "causal_lm"))

    def require_causal_lm(self, purpose: str) -> None:
        """Refuse, in words, to use a sequence classifier for what only a causal LM can do:
        the evaluation of this model then fails with this message (a run error, exit 3)."""
        if self.task == "causal_lm":
            return
        raise ModelTaskError(
            f"{purpose} needs a causal language model, but {self.source.reference} is a "
            "sequence-classification model (an encoder with a classifier head); evaluate it "
            "with `glue` checks (head: classifier or auto) only"
        )

    @cached_property
    def model(self) -> Any:
        return self.lm.model.eval()  # lm-eval does the same: no dropout when scoring

    @cached_property
    def tokenizer(self) -> Any:
        return self.lm.tokenizer

    @cached_property
    def max_length(self) -> int:
        return _max_length(self.model, self.tokenizer)

    @cached_property
    def prefix_token_id(self) -> int:
        return _prefix_token_id(self.tokenizer)

    @cached_property
    def _prefix_text(self) -> str:
        return str(self.tokenizer.decode(self.prefix_token_id))

    # ---- public API ------------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        """Greedy continuations of `prompts` (prompt excluded), cut at the first stop string;
        generated by transformers or, per `settings.engine`, by vLLM (harness/vllm_engine.py)."""
        self.require_causal_lm("generating text")
        requests = list(prompts)
        if settings.engine != "transformers":
            served = self._generate_with_vllm(requests, settings)
            if served is not None:
                return served
        compute = partial(self._generate_batches, settings=settings)
        outputs = self._cached("generate", requests, generation_key(settings), compute)
        self._engines_used.add("transformers")
        return outputs

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[LogLikelihood]:
        """Log-likelihood of each continuation given its context, exactly as lm-eval's HFLM."""
        self.require_causal_lm("scoring log-likelihoods")
        items = [[context, continuation] for context, continuation in requests]
        values = self._cached("loglikelihood", items, None, self._loglikelihood_batches)
        return [LogLikelihood(**v) for v in values]

    def rolling_loglikelihood(self, texts: Sequence[str]) -> list[LogLikelihood]:
        """Whole-text log-likelihood in max-length windows (lm-eval's `loglikelihood_rolling`)."""
        self.require_causal_lm("scoring perplexity")
        values = self._cached("rolling", list(texts), None, self._rolling_batches)
        return [LogLikelihood(**v) for v in values]

    # ---- caching ---------------------------------------------------------------------------

    def _model_cache(self, cache: OutputCache | None) -> OutputCache | None:
        """The store read once for this model, when it can be; other caches as given."""
        if isinstance(cache, ScopedCache):
            return ModelCache(cache, f"{harness.__version__}:{self.fingerprint}")
        return cache

    def _key(self, kind: str, settings: dict[str, Any] | None, request: Any) -> str:
        payload = [harness.__version__, self.fingerprint, kind, settings, request]
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _cached(
        self,
        kind: str,
        requests: list[Any],
        settings: dict[str, Any] | None,
        compute: Callable[[list[Any]], Iterator[BatchResult]],
    ) -> list[Any]:
        """Look every key up first, compute the misses once each, write after every batch."""
        keys = [self._key(kind, settings, r) for r in requests]
        found = self.cache.get_many(kind, sorted(set(keys))) if self.cache is not None else {}
        misses = list(dict.fromkeys(k for k in keys if k not in found))  # unique, in order
        self.requests_cached += len(found)
        self.requests_computed += len(misses)
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        copies = Counter(keys)
        done = sum(copies[k] for k in found)
        self._report(done, len(keys))
        batches = compute([requests[first[k]] for k in misses]) if misses else iter(())
        for batch in batches:
            fresh = {misses[pos]: value for pos, value in batch}
            if self.cache is not None:
                self.cache.put_many(kind, fresh)  # a run killed later keeps this batch
            found.update(fresh)
            done += sum(copies[k] for k in fresh)
            self._report(done, len(keys))
        return [found[k] for k in keys]

    def _report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)

    # ---- generation ------------------------------------------------------------------------

    @property
    def generation_engine(self) -> str | None:
        """Which library generated this model's outputs ("transformers", "vllm", or both as
        "transformers+vllm"); None when nothing was generated."""
        return "+".join(sorted(self._engines_used)) or None

    @cached_property
    def _vllm(self) -> VllmServing:
        """vLLM for this model: whether it serves, started on the first miss, stopped with us."""
        import weakref

        from harness.generation._vllm import VllmServing

        me = weakref.ref(self)  # the finalizer must not keep this engine alive
        serving = VllmServing(self.source, hf_loaded=lambda: (e := me()) is not None and e.loaded)
        weakref.finalize(self, serving.close)
        return serving

    def _generate_with_vllm(
        self, requests: list[str], settings: GenerationSettings
    ) -> list[str] | None:
        """vLLM's outputs when it serves this model; None when transformers is to generate."""
        from harness.generation._vllm import VllmStartError

        generator = self._vllm.generator(settings.engine)
        if generator is None:
            return None
        counts = (self.requests_cached, self.requests_computed)
        compute = partial(generator.batches, settings=settings)
        try:
            outputs = self._cached("generate", requests, generation_key(settings, "vllm"), compute)
        except VllmStartError as exc:
            if settings.engine == "vllm":
                raise
            # auto: vLLM failed before computing anything; transformers takes over for good.
            self._vllm.give_up(exc)
            self.requests_cached, self.requests_computed = counts
            return None
        self._engines_used.add("vllm")
        return outputs

    def _generate_batches(
        self, prompts: list[str], settings: GenerationSettings
    ) -> Iterator[BatchResult]:
        encoded = encode_prompts(self.tokenizer, prompts, settings, self.max_length)
        # Longest first, so each batch holds similar lengths (little padding) and OOM shows early.
        order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i))
        for chunk in _chunks(order, self.batch_size):
            outputs = self._generate_chunk([encoded[i] for i in chunk], settings)
            yield list(zip(chunk, outputs, strict=True))

    def _generate_chunk(self, rows: list[list[int]], settings: GenerationSettings) -> list[str]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        input_ids, attention_mask = _left_pad(rows, self._pad_id(), self._device())
        width = input_ids.shape[1]
        # Greedy decoding; with a temperature, each row samples with its own seeded generator
        # (SeededSampling), so a prompt draws the same text in any batch, cached or not.
        config = GenerationConfig(
            max_new_tokens=settings.max_new_tokens,
            do_sample=False,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self._pad_id(),
        )
        processors = LogitsProcessorList()
        if settings.temperature > 0:
            seeds = [sample_seed(settings.seed, row, settings.sample) for row in rows]
            processors.append(SeededSampling(seeds, settings.temperature))
        criteria = StoppingCriteriaList()
        if settings.stop:
            criteria.append(_StopStrings(self.tokenizer, settings.stop, width))
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=criteria,
            )
        return [decode_new(self.tokenizer, row[width:].tolist(), settings.stop) for row in out]

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    def _device(self) -> torch.device:
        device = getattr(self.model, "device", None)
        return device if device is not None else next(self.model.parameters()).device

    # ---- log-likelihood (lm-eval semantics) ------------------------------------------------

    def _tok_encode(self, text: str) -> list[int]:
        return self._tok_encode_many([text])[text]

    def _tok_encode_many(
        self, texts: list[str], add_special_tokens: bool | None = None
    ) -> dict[str, list[int]]:
        """lm-eval `HFLM.tok_encode` over many texts in one tokenizer call per setting.

        Tokenizer defaults, unless asked otherwise or the text already starts with BOS.
        """
        unique = list(dict.fromkeys(texts))
        if add_special_tokens is not None:
            return self._encode_batch(unique, {"add_special_tokens": add_special_tokens})
        bos = self._prefix_text
        prefixed = [t for t in unique if bos and t.startswith(bos)]
        plain = [t for t in unique if not (bos and t.startswith(bos))]
        encoded = self._encode_batch(plain, {})
        encoded.update(self._encode_batch(prefixed, {"add_special_tokens": False}))
        return encoded

    def _encode_batch(self, texts: list[str], kwargs: dict[str, bool]) -> dict[str, list[int]]:
        if not texts:
            return {}
        ids = self.tokenizer(texts, **kwargs)["input_ids"]
        return {t: list(i) for t, i in zip(texts, ids, strict=True)}

    def _encode_requests(self, requests: list[list[str]]) -> list[TokenPair]:
        """lm-eval `TemplateLM.loglikelihood` + `_encode_pair` for causal models."""
        split = [_move_trailing_spaces(ctx, cont) for ctx, cont in requests]
        full = self._tok_encode_many([t for c, x in split if c for t in (c, c + x)])
        bare = self._tok_encode_many([x for c, x in split if not c], add_special_tokens=False)
        return [
            self._pair_from_whole(full[c], full[c + x]) if c else self._pair_from_prefix(bare[x])
            for c, x in split
        ]

    def _pair_from_whole(self, context_enc: list[int], whole: list[int]) -> TokenPair:
        # Split the joint encoding, so a token spanning the boundary goes to the continuation.
        return context_enc, whole[len(context_enc) :]

    def _pair_from_prefix(self, cont: list[int]) -> TokenPair:
        # Nothing to condition on: use the prefix (BOS, else EOS) token, as lm-eval does.
        if cont and cont[0] == self.prefix_token_id:
            return cont[:1], cont[1:]
        return [self.prefix_token_id], cont

    def _loglikelihood_batches(self, requests: list[list[str]]) -> Iterator[BatchResult]:
        pairs = self._encode_requests(requests)
        for batch in self._score_pairs(pairs):
            yield [(i, asdict(result)) for i, result in batch]

    def _rolling_batches(self, texts: list[str]) -> Iterator[BatchResult]:
        windows = [self._rolling_windows(t) for t in texts]
        # Group whole texts so one group fills about one batch and its results can be written.
        for group in _group_by_size([len(w) for w in windows], self.batch_size):
            flat = [(t, pair) for t in group for pair in windows[t]]
            scores: list[LogLikelihood | None] = [None] * len(flat)
            for batch in self._score_pairs([pair for _, pair in flat]):
                for i, result in batch:
                    scores[i] = result
            yield [(t, asdict(_sum_windows(scores, flat, t))) for t in group]

    def _rolling_windows(self, text: str) -> list[TokenPair]:
        """lm-eval `get_rolling_token_windows(context_len=1)` + `make_disjoint_window`."""
        tokens = self._tok_encode(text)
        if not tokens:
            return []
        first = min(self.max_length, len(tokens))
        windows = [([self.prefix_token_id], tokens[:first])]
        done = first
        while done < len(tokens):
            end = min(len(tokens), done + self.max_length)
            inputs = tokens[max(0, end - self.max_length - 1) : end - 1]
            preds = tokens[done:end]
            windows.append((inputs[: len(inputs) - (len(preds) - 1)], preds))
            done = end
        return windows

    def _score_pairs(self, pairs: list[TokenPair]) -> Iterator[list[tuple[int, LogLikelihood]]]:
        """Score (context, continuation) token pairs; yields (index, result) per forward batch."""
        # Rows with the same input tokens share one forward pass (lm-eval's logits cache does
        # the same for choices that differ only in their last token).
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, cont) in enumerate(pairs):
            if not cont or len(cont) > self.max_length:
                raise ValueError(
                    f"cannot score a continuation of {len(cont)} tokens "
                    f"(1 to the model's {self.max_length} tokens)"
                )
            groups.setdefault(tuple((ctx + cont)[-(self.max_length + 1) :][:-1]), []).append(i)
        inputs = sorted(groups, key=lambda inp: (-len(inp), inp))  # lm-eval's order: longest first
        for chunk in _chunks(inputs, self.batch_size):
            needed = [max(len(pairs[i][1]) for i in groups[inp]) for inp in chunk]
            logprobs = self._forward_logprobs(chunk, needed)
            yield [
                (i, _score_row(row, pairs[i][1]))
                for row, inp in zip(logprobs, chunk, strict=True)
                for i in groups[inp]
            ]

    def _forward_logprobs(
        self, inputs: list[tuple[int, ...]], needed: list[int]
    ) -> list[tuple[Any, Any]]:
        """Per input row: (log-softmax over its last `needed` real positions, their argmax)."""
        import torch

        width = max(len(inp) for inp in inputs)
        # Right padding and no attention mask, like lm-eval: in a causal model padding only
        # follows the real tokens, so it cannot change their logits.
        batch = torch.zeros((len(inputs), width), dtype=torch.long)
        for r, inp in enumerate(inputs):
            batch[r, : len(inp)] = torch.tensor(inp, dtype=torch.long)
        with torch.inference_mode():
            logits = self.model(input_ids=batch.to(self._device())).logits
        offset = logits.shape[1] - width  # virtual tokens (prompt tuning) come first
        rows = []
        for r, (inp, n) in enumerate(zip(inputs, needed, strict=True)):
            real = logits[r, offset + len(inp) - n : offset + len(inp)]
            rows.append((torch.log_softmax(real, dim=-1), real.argmax(dim=-1)))
        return rows


class _StopStrings:
    """Stopping criterion: a row is done once its new text contains a stop string."""

    def __init__(self, tokenizer: Any, stop: tuple[str, ...], prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        texts = self.tokenizer.batch_decode(
            input_ids[:, self.prompt_width :], skip_special_tokens=True
        )
        done = [any(s in t for s in self.stop) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _score_row(row: tuple[Any, Any], cont: list[int]) -> LogLikelihood:
    """lm-eval's per-request scoring: the last len(cont) positions predict the continuation."""
    import torch

    logprobs, greedy = row
    n = len(cont)
    target = torch.tensor(cont, dtype=torch.long, device=logprobs.device)
    picked = logprobs[-n:].gather(1, target.unsqueeze(-1)).squeeze(-1)
    is_greedy = bool((greedy[-n:] == target).all())
    return LogLikelihood(logprob=float(picked.sum()), is_greedy=is_greedy, n_tokens=n)


def _sum_windows(
    scores: list[LogLikelihood | None], flat: list[tuple[int, TokenPair]], text: int
) -> LogLikelihood:
    mine = [s for s, (t, _) in zip(scores, flat, strict=True) if t == text and s is not None]
    return LogLikelihood(
        logprob=sum(s.logprob for s in mine),
        is_greedy=all(s.is_greedy for s in mine),
        n_tokens=sum(s.n_tokens for s in mine),
    )


def sample_seed(seed: int, prompt_ids: Sequence[int], sample: int) -> int:
    """The seed of one prompt's sample number `sample`: a stable hash (Python's hash() of a
    string changes with every process)."""
    text = json.dumps([seed, sample, list(prompt_ids)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)


class SeededSampling:
    """A logits processor that samples each row at `temperature` with the row's own generator
    and leaves only the drawn token finite, so greedy decoding takes it.

    transformers seeds sampling once per batch, which would make a prompt's samples depend on
    the prompts batched with it (and on which were already cached); one generator per row,
    seeded by (seed, prompt, sample), does not.
    """

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        self.seeds = list(seeds)
        self.temperature = temperature
        self.generators: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if not self.generators:
            self.generators = [
                torch.Generator(device=scores.device).manual_seed(seed) for seed in self.seeds
            ]
        probabilities = torch.softmax(scores.float() / self.temperature, dim=-1)
        picks = torch.cat(
            [
                torch.multinomial(probabilities[row], 1, generator=generator)
                for row, generator in enumerate(self.generators)
            ]
        )
        chosen = torch.full_like(scores, float("-inf"))
        chosen[torch.arange(len(picks), device=scores.device), picks] = 0.0
        return chosen


def _chunks(items: list[_T], size: int) -> Iterator[list[_T]]:
    # itertools.batched arrives only in Python 3.12.
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _group_by_size(sizes: list[int], target: int) -> Iterator[list[int]]:
    """Consecutive index groups whose sizes add up to about `target` (at least one each)."""
    group: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if group and total + size > target:
            yield group
            group, total = [], 0
        group.append(i)
        total += size
    if group:
        yield group


def _left_pad(rows: list[list[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _move_trailing_spaces(context: str, continuation: str) -> tuple[str, str]:
    """Trailing spaces of the context start the continuation's first word (lm-eval does this)."""
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + continuation


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


# Generation shared by both engines: vLLM is given these very token ids and its tokens are turned
# into text by the same decoding, so greedy outputs are the same text whichever engine ran.


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


def encode_prompt(tokenizer: Any, prompt: str, settings: GenerationSettings) -> list[int]:
    """A prompt's token ids: as the tokenizer encodes it, or wrapped by its chat template."""
    if not settings.chat_template:
        return list(tokenizer(prompt)["input_ids"])
    messages = [{"role": "user", "content": prompt}]
    if settings.system_prompt is not None:
        messages.insert(0, {"role": "system", "content": settings.system_prompt})
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # The template already carries whatever special tokens the model expects.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str], settings: GenerationSettings, max_length: int
) -> list[list[int]]:
    """Each prompt's token ids, cut from the left to leave room for `max_new_tokens`."""
    budget = max(1, max_length - settings.max_new_tokens)
    encoded = [encode_prompt(tokenizer, p, settings)[-budget:] for p in prompts]
    if not all(encoded):  # an empty prompt is conditioned on the prefix token, as lm-eval does
        prefix = [_prefix_token_id(tokenizer)]
        encoded = [row or prefix for row in encoded]
    return encoded


def decode_new(tokenizer: Any, tokens: list[int], stop: tuple[str, ...]) -> str:
    """Generated token ids to text: up to the first EOS, special tokens skipped, cut at the
    first stop string."""
    eos = tokenizer.eos_token_id
    if eos is not None and eos in tokens:
        tokens = tokens[: tokens.index(eos)]
    return _cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), stop)


def _prefix_token_id(tokenizer: Any) -> int:
    """lm-eval's prefix token: BOS when the tokenizer has one, else EOS."""
    if tokenizer.bos_token_id is not None:
        return int(tokenizer.bos_token_id)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to condition on")
    return int(tokenizer.eos_token_id)


def _max_length(model: Any, tokenizer: Any) -> int:
    """lm-eval's `resolve_max_length`: text config, then config, then tokenizer, then 2048."""
    config = model.config
    config = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit != _TOKENIZER_INFINITY:
        return int(limit)
    return DEFAULT_MAX_LENGTH
