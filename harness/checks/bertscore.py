"""`bertscore`: BERTScore precision, recall and F1 of the output against its reference(s).

Computed by the `bert-score` package over all cases at once (its idf weights come from the
references of the whole check). Offline use needs `model_type` to be a local model directory
(relative paths are taken from the suite's directory) and `num_layers` to be given, since
bert-score knows the layer count of hub names only. Baseline rescaling uses bert-score's packaged
baseline for (`lang`, `model_type`) or `baseline_path`; when neither file exists the check fails
with a message rather than silently reporting unrescaled numbers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.checks import (
    Case,
    CheckSpec,
    CheckType,
    EvalContext,
    Outcome,
    expected_list,
)

METRICS = ("precision", "recall", "f1")


class BertScoreParams(CheckSpec):
    references_field: str = "expected"  # a reference string or a list (the best one counts)
    model_type: str = Field(
        "roberta-large", description="A local model directory (offline) or a bert-score model name"
    )
    num_layers: int | None = Field(None, ge=1, description="Which layer's embeddings to use")
    idf: bool = False  # weight tokens by idf computed over the check's references
    rescale_with_baseline: bool = False
    baseline_path: str | None = None  # a bert-score baseline TSV (relative to the suite)
    lang: str = "en"
    batch_size: int = Field(64, ge=1)


def resolve(path: str, suite_dir: Path | None) -> str:
    """A path relative to the suite's directory when it exists there; else as written."""
    if suite_dir is not None and not Path(path).is_absolute() and (suite_dir / path).exists():
        return str(suite_dir / path)
    return path


def baseline_file(params: BertScoreParams, suite_dir: Path | None) -> str | None:
    """The baseline TSV rescaling needs, or ValueError naming where it was looked for."""
    if not params.rescale_with_baseline:
        return None
    if params.baseline_path is not None:
        candidate = Path(resolve(params.baseline_path, suite_dir))
    else:
        import bert_score

        package = Path(bert_score.__file__).parent
        candidate = package / "rescale_baseline" / params.lang / f"{params.model_type}.tsv"
    if not candidate.is_file():
        raise ValueError(
            f"bertscore: rescale_with_baseline needs a baseline file; none at {candidate} (set `baseline_path`)"
        )
    return str(candidate)


def _patch_empty_sentences() -> None:
    """bert-score 0.3.13 encodes "" with `build_inputs_with_special_tokens`, which transformers 5
    removed; encoding "" with special tokens gives the same ids ([CLS] [SEP]) on every version."""
    import bert_score.utils as utils

    original = utils.sent_encode
    if getattr(original, "harness_patched", False):
        return

    def sent_encode(tokenizer: Any, sent: str) -> Any:
        if not sent.strip():
            return tokenizer.encode("", add_special_tokens=True)
        return original(tokenizer, sent)

    sent_encode.harness_patched = True  # type: ignore[attr-defined]
    utils.sent_encode = sent_encode


def bert_scores(
    outputs: list[str], references: list[list[str]], params: BertScoreParams, suite_dir: Path | None
) -> list[tuple[float, float, float]]:
    """(precision, recall, F1) per output, from one bert-score call."""
    import bert_score

    _patch_empty_sentences()
    precision, recall, f1 = bert_score.score(
        outputs,
        [refs or [""] for refs in references],
        model_type=resolve(params.model_type, suite_dir),
        num_layers=params.num_layers,
        idf=params.idf,
        lang=params.lang,
        rescale_with_baseline=params.rescale_with_baseline,
        baseline_path=baseline_file(params, suite_dir),
        batch_size=params.batch_size,
        device="cpu" if not _cuda() else None,
    )
    return list(zip(precision.tolist(), recall.tolist(), f1.tolist(), strict=True))


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _key(params: BertScoreParams, output: str, refs: list[str], corpus: str) -> str:
    # idf depends on every reference of the check, so the key holds them (hashed) when it is on.
    settings = params.model_dump(include={"model_type", "num_layers", "idf", "lang"})
    settings |= {"rescale": params.rescale_with_baseline, "baseline": params.baseline_path}
    text = json.dumps([settings, output, refs, corpus if params.idf else ""], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run_bertscore(
    cases: Sequence[Case],
    params: BertScoreParams,
    ctx: EvalContext,
    suite_dir: Path | None = None,
) -> list[Outcome]:
    outputs = ctx.engine.generate([case.prompt for case in cases], ctx.generation)
    references = [expected_list(case.fields[params.references_field]) for case in cases]
    corpus = hashlib.sha256(json.dumps(references).encode()).hexdigest()
    keys = [_key(params, o, r, corpus) for o, r in zip(outputs, references, strict=True)]
    cache = ctx.engine.cache
    found = cache.get_many("bertscore", keys) if cache is not None else {}
    todo = [i for i, key in enumerate(keys) if key not in found]
    if todo:
        # idf needs the whole reference set, so a partial miss recomputes every case.
        todo = list(range(len(keys))) if params.idf else todo
        scores = bert_scores(
            [outputs[i] for i in todo], [references[i] for i in todo], params, suite_dir
        )
        fresh = {keys[i]: list(s) for i, s in zip(todo, scores, strict=True)}
        if cache is not None:
            cache.put_many("bertscore", fresh)
        found.update(fresh)
    return [
        Outcome(output, dict(zip(METRICS, found[key], strict=True)), None, " | ".join(refs))
        for output, refs, key in zip(outputs, references, keys, strict=True)
    ]


def _specialise(
    check: CheckType[BertScoreParams], _params: BertScoreParams, suite_dir: Path
) -> Any:
    return replace(check, run=partial(run_bertscore, suite_dir=suite_dir))


CHECK = CheckType(
    "bertscore",
    BertScoreParams,
    METRICS,
    run_bertscore,
    required_fields=lambda p: {p.references_field},
    default_range=(-1.0, 1.0),  # cosine similarities; rescaled scores can fall below 0
    specialise=_specialise,
)
