"""`preference`: on prompt/chosen/rejected pairs, how often the model prefers the chosen answer.

A reward model (a sequence classifier with one output, as the `reward_model` backend trains it)
prefers what it rewards more: reward(prompt + chosen) > reward(prompt + rejected), each text
formatted as RewardTrainer formats a pair in training (prompt + answer + eos, or with the suite's
chat template the conversation [system, user prompt, assistant answer]). A causal LM prefers the
answer it finds more likely: the summed log-probability of chosen given the prompt above that of
rejected (the engine's log-likelihood, lm-eval's arithmetic; with the chat template the prompt is
the templated user turn generation sees). So a base, its DPO candidates and a reward model
trained from it are measured on the same held-out pairs.

`accuracy`: the share of pairs where the chosen answer is preferred (a tie is not); `margin`:
score(chosen) - score(rejected), in the scorer's own units (reward, or nats of log-likelihood),
so margins of a reward model and of a causal LM are not comparable, while accuracies are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import harness
from harness.checks import Case, CheckSpec, CheckType, EvalContext, Outcome
from harness.core.chat import chat_turns
from harness.models.rewards import reward_scores, reward_token_ids

REWARD = "reward"
LOGLIKELIHOOD = "loglikelihood"
Request = tuple[str, str]  # (prompt, answer)


class PreferenceParams(CheckSpec):
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"


@dataclass(frozen=True)
class Pair:
    chosen: str
    rejected: str


def pair_of(case: Case, params: PreferenceParams) -> Pair:
    """The case's two answers; ValueError for a pair that cannot be scored."""
    answers = [case.fields.get(params.chosen_field), case.fields.get(params.rejected_field)]
    for name, value in zip((params.chosen_field, params.rejected_field), answers, strict=True):
        if not isinstance(value, str) or not value:
            raise ValueError(f"`{name}` must be a non-empty string, got {value!r}")
    if answers[0] == answers[1]:
        raise ValueError(f"`{params.chosen_field}` and `{params.rejected_field}` are the same text")
    return Pair(str(answers[0]), str(answers[1]))


# ---- scoring -------------------------------------------------------------------------------


def scorer_of(ctx: EvalContext) -> str:
    """A classifier is scored by its head (known without loading), anything else by likelihood."""
    return REWARD if ctx.engine.task == "classification" else LOGLIKELIHOOD


def answer_scores(requests: list[Request], ctx: EvalContext) -> list[float]:
    """One score per (prompt, answer): its reward, or its log-likelihood given the prompt."""
    if scorer_of(ctx) == REWARD:
        return cached_scores(requests, ctx, REWARD, lambda missing: model_rewards(missing, ctx))
    if not ctx.generation.chat_template:
        return [result.logprob for result in ctx.engine.loglikelihood(requests)]
    # Rendering the template needs the tokenizer (the weights): cached by the raw pair instead,
    # so a rerun served from the cache never loads the model.
    return cached_scores(
        requests, ctx, LOGLIKELIHOOD, lambda missing: templated_loglikelihoods(missing, ctx)
    )


def cached_scores(
    requests: list[Request],
    ctx: EvalContext,
    kind: str,
    compute: Callable[[list[Request]], list[float]],
) -> list[float]:
    """Scores from the output cache (keyed by weights, scorer and chat settings); the misses
    computed once each."""
    keys = [score_key(ctx, kind, request) for request in requests]
    cache = ctx.engine.cache
    found = cache.get_many(f"preference_{kind}", sorted(set(keys))) if cache is not None else {}
    first = {key: i for i, key in reversed(list(enumerate(keys)))}
    missing = [key for key in first if key not in found]
    ctx.engine.requests_cached += len(first) - len(missing)  # as the engine counts its own
    ctx.engine.requests_computed += len(missing)
    if missing:
        fresh = dict(zip(missing, compute([requests[first[k]] for k in missing]), strict=True))
        if cache is not None:
            cache.put_many(f"preference_{kind}", fresh)
        found.update(fresh)
    return [float(found[key]) for key in keys]


def score_key(ctx: EvalContext, kind: str, request: Request) -> str:
    chat = [ctx.generation.chat_template, ctx.generation.system_prompt]
    payload = [harness.__version__, ctx.engine.fingerprint, kind, chat, list(request)]
    text = json.dumps(payload, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def templated_loglikelihoods(requests: list[Request], ctx: EvalContext) -> list[float]:
    tokenizer = ctx.engine.tokenizer
    contexts = [
        tokenizer.apply_chat_template(
            chat_turns(prompt, ctx.generation.system_prompt),
            add_generation_prompt=True,
            tokenize=False,
        )
        for prompt, _ in requests
    ]
    pairs = [(context, answer) for context, (_, answer) in zip(contexts, requests, strict=True)]
    return [result.logprob for result in ctx.engine.loglikelihood(pairs)]


def model_rewards(requests: list[Request], ctx: EvalContext) -> list[float]:
    """The reward model's head on each pair's text (as RewardTrainer formats it), batched."""
    lm = ctx.engine.lm
    model, tokenizer = lm.model, lm.tokenizer
    outputs = getattr(model.config, "num_labels", None)
    if outputs != 1:
        raise ValueError(
            f"preference needs a reward model (a classifier with one output); {lm.reference} "
            f"has {outputs} outputs"
        )
    generation = ctx.generation
    rows = [
        reward_token_ids(
            tokenizer, prompt, answer, generation.chat_template, generation.system_prompt
        )
        for prompt, answer in requests
    ]
    return reward_scores(model, rows, ctx.engine.batch_size)


# ---- the check -----------------------------------------------------------------------------


def run_preference(
    cases: Sequence[Case], params: PreferenceParams, ctx: EvalContext
) -> list[Outcome]:
    pairs = [pair_of(case, params) for case in cases]
    requests = [(case.prompt, pair.chosen) for case, pair in zip(cases, pairs, strict=True)]
    requests += [(case.prompt, pair.rejected) for case, pair in zip(cases, pairs, strict=True)]
    scores = answer_scores(requests, ctx)
    scorer = scorer_of(ctx)
    outcomes = []
    for i, pair in enumerate(pairs):
        chosen, rejected = scores[i], scores[len(pairs) + i]
        prefers_chosen = chosen > rejected
        outcomes.append(
            Outcome(
                pair.chosen if prefers_chosen else pair.rejected,
                {"accuracy": float(prefers_chosen), "margin": chosen - rejected},
                prefers_chosen,
                pair.chosen,
                {"chosen": chosen, "rejected": rejected, "scorer": scorer},
            )
        )
    return outcomes


CHECK = CheckType(
    "preference",
    PreferenceParams,
    ("accuracy", "margin"),
    run_preference,
    required_fields=lambda p: {p.chosen_field, p.rejected_field},
    ranges={"margin": None},  # unbounded: judged from the spread of the margins
    validate_case=pair_of,
    scores_classifiers=lambda _params: True,  # by its reward head
)
