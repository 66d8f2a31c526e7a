"""`glue`: the nine GLUE tasks with their official metrics.

A causal LM answers by log-likelihood: each label has a verbaliser (" yes", " no", ...) appended to
the task's prompt, and the label whose verbaliser is most likely is the prediction, as lm-eval's
GLUE tasks score it (the default prompts and verbalisers are lm-eval's). STS-B is a regression
task: the model scores the verbalisers " 0" to " 5", and its prediction is the expected value
under those six log-likelihoods renormalised (softmax), a calibrated score in [0, 5] rather than
an argmax. A sequence classifier (an encoder such as BERT with a classification head, loaded as
one by `harness.models.loading`; trained by the `full`/`lora` backends with `task: classification`)
predicts with its head instead (argmax of the logits; the single logit for STS-B): `head: auto`,
the default, picks the head for such a model and log-likelihoods for a causal LM.

Rows come from the official GLUE TSV files (their column names: `#1 String`, `Quality`,
`gold_label`, ...), from the Hugging Face `glue` data sets' fields (`sentence1`, `label`, ...) or
from any file with `fields:` mapping the task's roles to its columns. Metrics use scikit-learn's
and scipy's definitions: CoLA Matthews correlation, MRPC/QQP F1 of the positive class and
accuracy, STS-B Pearson and Spearman, accuracy for the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness.checks import (
    Case,
    CheckSpec,
    CheckType,
    Corpus,
    EvalContext,
    Outcome,
)

TaskName = Literal[
    "cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli_mismatched", "qnli", "rte", "wnli"
]
METRICS = ("acc", "f1", "mcc", "pearson", "spearman")
_YES_NO = ("no", "yes")
_SIMILAR = "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: "


@dataclass(frozen=True)
class Task:
    """One GLUE task: the roles of its inputs, where rows keep them, its labels and metrics."""

    fields: Mapping[str, tuple[str, ...]]  # role -> column names tried in order; "label" too
    labels: tuple[str, ...]  # label names by label id (empty: regression)
    verbalisers: tuple[str, ...]  # one per label id (STS-B: one per score 0..5)
    template: str  # the prompt, with {role} placeholders
    metrics: tuple[str, ...]
    # How lm-eval tidies an input before the template (MNLI's hypothesis), by role.
    tidy: Mapping[str, Callable[[str], str]] = field(default_factory=dict)

    @property
    def regression(self) -> bool:
        return not self.labels


def _pair(first: str, second: str, label: str) -> dict[str, tuple[str, ...]]:
    """Field names of a two-input task: the official TSV's, then the datasets library's."""
    return {
        "sentence1": (first, "sentence1"),
        "sentence2": (second, "sentence2"),
        "label": (label, "label"),
    }


def _sentence(text: str) -> str:
    """MNLI's hypothesis as lm-eval writes it: stripped, ending with a period."""
    text = text.strip()
    return text if text.endswith(".") else text + "."


_ENTAILMENT = ("entailment", "not_entailment")
_NLI_TEMPLATE = "{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:"
_MNLI = Task(
    {
        "premise": ("sentence1", "premise"),
        "hypothesis": ("sentence2", "hypothesis"),
        "label": ("gold_label", "label"),
    },
    ("entailment", "neutral", "contradiction"),
    ("True", "Neither", "False"),
    "{premise}\nQuestion: {hypothesis} True, False or Neither?\nAnswer:",
    ("acc",),
    {"hypothesis": _sentence},  # lm-eval's glue/mnli/utils.py doc_to_text
)

TASKS: dict[str, Task] = {
    "cola": Task(
        {"sentence": ("sentence",), "label": ("label",)},
        ("unacceptable", "acceptable"),
        _YES_NO,
        "{sentence}\nQuestion: Does this sentence make sense?\nAnswer:",
        ("mcc",),
    ),
    "sst2": Task(
        {"sentence": ("sentence",), "label": ("label",)},
        ("negative", "positive"),
        ("negative", "positive"),
        "{sentence}\nQuestion: Is this sentence positive or negative?\nAnswer:",
        ("acc",),
    ),
    "mrpc": Task(
        _pair("#1 String", "#2 String", "Quality"),
        ("not_equivalent", "equivalent"),
        _YES_NO,
        _SIMILAR + "Do both sentences mean the same thing?\nAnswer:",
        ("f1", "acc"),
    ),
    "stsb": Task(
        _pair("sentence1", "sentence2", "score"),
        (),
        tuple(str(score) for score in range(6)),
        _SIMILAR + "On a scale from 0 to 5, how similar in meaning are the two sentences?\nAnswer:",
        ("pearson", "spearman"),
    ),
    "qqp": Task(
        {
            "question1": ("question1",),
            "question2": ("question2",),
            "label": ("is_duplicate", "label"),
        },
        ("not_duplicate", "duplicate"),
        _YES_NO,
        "Question 1: {question1}\nQuestion 2: {question2}\nQuestion: Do both questions ask the same thing?\nAnswer:",
        ("f1", "acc"),
    ),
    "mnli": _MNLI,  # the matched dev/test sets; name the check to tell them apart
    "mnli_mismatched": _MNLI,
    "qnli": Task(
        {"question": ("question",), "sentence": ("sentence",), "label": ("label",)},
        _ENTAILMENT,
        ("yes", "no"),
        "{question}\n{sentence}\nQuestion: Does this response answer the question?\nAnswer:",
        ("acc",),
    ),
    "rte": Task(
        _pair("sentence1", "sentence2", "label"),
        _ENTAILMENT,
        ("True", "False"),
        _NLI_TEMPLATE,
        ("acc",),
    ),
    # WNLI's label 1 is entailment (RTE's 0 is): the label names follow each data set's ids.
    "wnli": Task(
        _pair("sentence1", "sentence2", "label"),
        ("not_entailment", "entailment"),
        ("False", "True"),
        _NLI_TEMPLATE,
        ("acc",),
    ),
}


class GlueParams(CheckSpec):
    task: TaskName
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Role -> column, when the data's columns differ (roles: see the task, and `label`)",
    )
    verbalisers: list[str] | None = Field(
        None, description="One word per label id (STS-B: per score 0..5), replacing the task's"
    )
    target_delimiter: str = " "  # between the prompt and each verbaliser, as lm-eval
    head: Literal["auto", "lm", "classifier"] = Field(
        "auto",
        description="lm: log-likelihood of verbalisers; classifier: a sequence-classification "
        "head; auto: classifier for a sequence-classification model, else lm",
    )


# ---- reading rows ------------------------------------------------------------------------


def column(fields: Mapping[str, Any], role: str, params: GlueParams) -> str:
    """The column of `fields` that holds `role`; ValueError naming what was looked for."""
    names = (params.fields[role],) if role in params.fields else TASKS[params.task].fields[role]
    names = tuple(dict.fromkeys(names))  # the TSV's and the datasets' names may coincide
    for name in names:
        if name in fields:
            return name
    raise ValueError(
        f"{params.task}: no column for `{role}` (looked for {', '.join(map(repr, names))}; "
        f"set `fields: {{{role}: <column>}}`); the row has: {', '.join(fields)}"
    )


def inputs(fields: Mapping[str, Any], params: GlueParams) -> dict[str, str]:
    roles = [role for role in TASKS[params.task].fields if role != "label"]
    return {role: str(fields[column(fields, role, params)]) for role in roles}


def gold(fields: Mapping[str, Any], params: GlueParams) -> float:
    """The gold label id (or STS-B score) of a row, from an id, a numeric string or a label name."""
    task = TASKS[params.task]
    raw = fields[column(fields, "label", params)]
    text = str(raw).strip()
    if task.regression:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"stsb: score {raw!r} is not a number") from None
    if text in task.labels:
        return float(task.labels.index(text))
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(task.labels):
        return float(int(text))
    raise ValueError(
        f"{params.task}: label {raw!r} is neither a label id (0-{len(task.labels) - 1}) nor one of {list(task.labels)}"
    )


def validate_row(case: Case, params: GlueParams) -> None:
    inputs(case.fields, params)
    gold(case.fields, params)
    verbalisers(params)


def verbalisers(params: GlueParams) -> list[str]:
    task = TASKS[params.task]
    words = list(params.verbalisers or task.verbalisers)
    if len(words) != len(task.verbalisers):
        raise ValueError(
            f"{params.task} needs {len(task.verbalisers)} verbalisers (one per label), got {len(words)}"
        )
    return words


def default_prompt(fields: Mapping[str, Any], params: GlueParams) -> str:
    task = TASKS[params.task]
    try:
        values = inputs(fields, params)
    except ValueError:
        return ""  # validate_row reports the missing column at the row's line
    tidied = {role: task.tidy.get(role, str)(str(value)) for role, value in values.items()}
    return task.template.format_map(tidied)


# ---- predicting ---------------------------------------------------------------------------


def lm_predictions(
    cases: Sequence[Case], params: GlueParams, ctx: EvalContext
) -> list[tuple[float, list[float]]]:
    """(prediction, log-likelihood per verbaliser) per case, from one batched pass."""
    words = verbalisers(params)
    requests = [(case.prompt, params.target_delimiter + w) for case in cases for w in words]
    results = [r.logprob for r in ctx.engine.loglikelihood(requests)]
    rows = [results[i : i + len(words)] for i in range(0, len(results), len(words))]
    return [(predict(row, TASKS[params.task].regression), row) for row in rows]


def predict(logprobs: Sequence[float], regression: bool) -> float:
    """Argmax (first on ties, as lm-eval), or for STS-B the expected score under softmax."""
    values = np.asarray(logprobs, dtype=float)
    if not regression:
        return float(np.argmax(values))
    weights = np.exp(values - values.max())
    return float((weights / weights.sum()) @ np.arange(len(values)))


def classifier_predictions(
    cases: Sequence[Case], params: GlueParams, ctx: EvalContext
) -> list[tuple[float, list[float]]]:
    """Predictions of a sequence-classification head, cached like every model output."""
    pairs = [list(inputs(case.fields, params).values()) for case in cases]
    keys = [_classifier_key(ctx, pair) for pair in pairs]
    cache = ctx.engine.cache
    found = cache.get_many("glue_classifier", keys) if cache is not None else {}
    missing = [i for i, key in enumerate(keys) if key not in found]
    if missing:
        logits = _classify(ctx.engine.lm, [pairs[i] for i in missing])
        fresh = {keys[i]: row for i, row in zip(missing, logits, strict=True)}
        if cache is not None:
            cache.put_many("glue_classifier", fresh)
        found.update(fresh)
    regression = TASKS[params.task].regression
    _check_head_size(len(found[keys[0]]) if keys else 0, params)
    return [(_head_prediction(found[key], regression), found[key]) for key in keys]


def _check_head_size(outputs: int, params: GlueParams) -> None:
    """A head of another size would predict label ids the task does not have (or drop some)."""
    task = TASKS[params.task]
    expected = len(task.labels) or 1
    if outputs not in (0, expected):
        raise ValueError(
            f"{params.task} has {expected} label(s) but the classifier head has {outputs} outputs; "
            f"train the head with num_labels: {expected}"
        )


def _head_prediction(logits: Sequence[float], regression: bool) -> float:
    return float(logits[0]) if regression else float(np.argmax(logits))


def _classifier_key(ctx: EvalContext, pair: list[str]) -> str:
    text = json.dumps([ctx.engine.fingerprint, "classifier", pair], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _classify(lm: Any, pairs: list[list[str]], batch_size: int = 32) -> list[list[float]]:
    import torch

    model = lm.model.eval()
    if "ForSequenceClassification" not in type(model).__name__:
        raise ValueError(
            f"`head: classifier` needs a sequence-classification model; {lm.reference} loaded as {type(model).__name__}"
        )
    rows: list[list[float]] = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        columns = [list(column) for column in zip(*batch, strict=True)]
        encoded = lm.tokenizer(*columns, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**encoded.to(model.device)).logits
        rows += logits.float().cpu().tolist()
    return rows


# ---- scoring ------------------------------------------------------------------------------


def uses_classifier(params: GlueParams, ctx: EvalContext) -> bool:
    """`head: auto` follows the model: its head when it is a classifier (known without loading)."""
    if params.head != "auto":
        return params.head == "classifier"
    return getattr(ctx.engine, "task", "causal_lm") == "classification"


def run_glue(cases: Sequence[Case], params: GlueParams, ctx: EvalContext) -> list[Outcome]:
    task = TASKS[params.task]
    predictor = classifier_predictions if uses_classifier(params, ctx) else lm_predictions
    outcomes = []
    for case, (pred, raw) in zip(cases, predictor(cases, params, ctx), strict=True):
        target = gold(case.fields, params)
        details = {"pred": pred, "gold": target, "scores": raw}
        if task.regression:
            outcomes.append(
                Outcome(
                    f"{pred:.3f}", {"abs_error": abs(pred - target)}, None, f"{target:g}", details
                )
            )
            continue
        right = pred == target
        label, expected = task.labels[int(pred)], task.labels[int(target)]
        outcomes.append(Outcome(label, {"acc": float(right)}, right, expected, details))
    return outcomes


# Corpus metrics over [prediction, gold] rows of shape (..., cases, 2), every resample at once.


def binary_f1(stats: Any) -> Any:
    """F1 of label 1 (sklearn's f1_score, zero_division=0)."""
    pred, true = stats[..., 0] == 1, stats[..., 1] == 1
    tp = (pred & true).sum(-1)
    fp = (pred & ~true).sum(-1)
    fn = (~pred & true).sum(-1)
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def matthews(stats: Any) -> Any:
    """Matthews correlation, multiclass (sklearn's matthews_corrcoef; 0 when undefined)."""
    labels = np.unique(stats[..., :2])
    pred = (stats[..., 0][..., None] == labels).sum(-2).astype(float)  # per-class predicted
    true = (stats[..., 1][..., None] == labels).sum(-2).astype(float)  # per-class true
    correct = (stats[..., 0] == stats[..., 1]).sum(-1).astype(float)
    n = float(stats.shape[-2])
    cov_ytyp = correct * n - (pred * true).sum(-1)
    cov_ypyp = n * n - (pred * pred).sum(-1)
    cov_ytyt = n * n - (true * true).sum(-1)
    denominator = np.sqrt(cov_ytyt * cov_ypyp)
    return np.where(denominator > 0, cov_ytyp / np.where(denominator > 0, denominator, 1), 0.0)


def pearson(stats: Any) -> Any:
    """Pearson's r of predictions and gold scores (NaN when either is constant, as scipy)."""
    x = stats[..., 0] - stats[..., 0].mean(-1, keepdims=True)
    y = stats[..., 1] - stats[..., 1].mean(-1, keepdims=True)
    denominator = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x * y).sum(-1) / denominator, np.nan)


def spearman(stats: Any) -> Any:
    """Spearman's rho: Pearson's r of average ranks (scipy.stats.spearmanr)."""
    from scipy.stats import rankdata

    return pearson(rankdata(stats, axis=-2))


def _pred_gold(outcome: Outcome) -> tuple[float, float]:
    return outcome.details["pred"], outcome.details["gold"]


AGGREGATORS = {
    "f1": Corpus(stats=_pred_gold, compute=binary_f1),
    "mcc": Corpus(stats=_pred_gold, compute=matthews),
    "pearson": Corpus(stats=_pred_gold, compute=pearson),
    "spearman": Corpus(stats=_pred_gold, compute=spearman),
}


def _specialise(check: CheckType[GlueParams], params: GlueParams, _suite_dir: Path) -> Any:
    """Only the task's own metrics: an SST-2 check has no MCC or Pearson."""
    return replace(check, metrics=TASKS[params.task].metrics)


CHECK = CheckType(
    "glue",
    GlueParams,
    METRICS,
    run_glue,
    aggregators=AGGREGATORS,
    ranges={"mcc": (-1.0, 1.0), "pearson": (-1.0, 1.0), "spearman": (-1.0, 1.0)},
    validate_case=validate_row,
    default_prompt=default_prompt,
    specialise=_specialise,
    scores_classifiers=lambda params: params.head != "lm",
)
