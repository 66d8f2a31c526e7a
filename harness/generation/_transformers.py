"""The transformers engine: batched greedy (or per-prompt seeded) generation and lm-eval-exact
log-likelihoods on a loaded model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from functools import cached_property
from typing import TYPE_CHECKING, Any

from harness.generation._settings import BatchResult, GenerationSettings, LogLikelihood, TokenPair
from harness.generation._tokens import (
    _chunks,
    _group_by_size,
    _left_pad,
    _max_length,
    _move_trailing_spaces,
    _prefix_token_id,
    decode_new,
    encode_prompts,
)

if TYPE_CHECKING:
    import torch

    from harness.models import LoadedModel


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


def _length_before(tokens: list[int], stops: set[int]) -> int:
    """How many tokens come before the first pad or end-of-text token (all when none)."""
    return next((i for i, token in enumerate(tokens) if token in stops), len(tokens))


class TransformersEngine:
    """A loaded model's generations and log-likelihoods through transformers, in batches.

    Log-likelihoods follow lm-eval's HFLM (`lm_eval/models/huggingface.py`,
    `lm_eval/api/model.py`, v0.4.13) token for token, so a `choice` or `perplexity` check gives
    the number an lm-eval user would get. Yields (position, JSON value) per batch, for `Engine`
    to cache as each batch finishes.
    """

    def __init__(self, lm: LoadedModel, batch_size: int) -> None:
        self.lm = lm
        self.batch_size = batch_size
        self.tokens_generated = 0  # new tokens, padding and what follows an end-of-text excluded

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

    def generate_batches(
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
        new = out[:, width:].tolist()
        stops = {self._pad_id(), self.tokenizer.eos_token_id}
        self.tokens_generated += sum(_length_before(row, stops) for row in new)
        return [decode_new(self.tokenizer, row, settings.stop) for row in new]

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

    def loglikelihood_batches(self, requests: list[list[str]]) -> Iterator[BatchResult]:
        pairs = self._encode_requests(requests)
        for batch in self._score_pairs(pairs):
            yield [(i, asdict(result)) for i, result in batch]

    def rolling_batches(self, texts: list[str]) -> Iterator[BatchResult]:
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


# Generation shared by both engines: vLLM is given these very token ids and its tokens are turned
# into text by the same decoding, so greedy outputs are the same text whichever engine ran.
