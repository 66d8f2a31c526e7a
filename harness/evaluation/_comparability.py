"""Whether a candidate's results can stand beside its reference's, and what else they say.

Two evaluations compare only when they were made the same way: the same generation settings for
each check, the same tokenizer, the same chat template (where a check uses one) and the same
generation engine. Each model records these facts (`info["evaluation"]`); a candidate whose facts
differ from its reference's is refused with the differing fields named, a run error, never a
verdict. Facts a record lacks (an older run, a model never loaded) are not compared.

A trained candidate whose every output and score equals the base's is warned about: a training
that changed nothing measured (an adapter on the wrong modules, a learning rate of zero) is a
known silent failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.core.records import CaseResult

EVALUATION = "evaluation"  # the key of these facts in a model record's info


def evaluation_facts(
    tokenizer: Mapping[str, str | None] | None,
    generation: Mapping[str, Mapping[str, Any]],
    engine: str | None,
) -> dict[str, Any]:
    """The facts of one model's evaluation (`generation`: each check's settings by label)."""
    facts: dict[str, Any] = {"generation": {k: dict(v) for k, v in generation.items()}}
    if tokenizer is not None:
        facts |= {
            "tokenizer": tokenizer.get("tokenizer"),
            "chat_template": tokenizer.get("chat_template"),
        }
    if engine is not None:
        facts["engine"] = engine
    return facts


def incomparable(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[str]:
    """What differs between two models' evaluation facts, in words (empty: comparable)."""
    ours, theirs = reference.get(EVALUATION) or {}, candidate.get(EVALUATION) or {}
    differences = []
    for field, label in (("tokenizer", "tokenizer"), ("engine", "generation engine")):
        if field in ours and field in theirs and ours[field] != theirs[field]:
            differences.append(f"{label} ({_short(ours[field])} vs {_short(theirs[field])})")
    settings_a, settings_b = ours.get("generation") or {}, theirs.get("generation") or {}
    uses_template = any(
        s.get("chat_template") for s in (*settings_a.values(), *settings_b.values())
    )
    if (
        uses_template
        and "chat_template" in ours
        and "chat_template" in theirs
        and ours["chat_template"] != theirs["chat_template"]
    ):
        differences.append(
            f"chat template ({_short(ours['chat_template'])} vs {_short(theirs['chat_template'])})"
        )
    for check in sorted(set(settings_a) & set(settings_b)):
        changed = [
            f"{key} {settings_a[check].get(key)!r} vs {settings_b[check].get(key)!r}"
            for key in sorted(set(settings_a[check]) | set(settings_b[check]))
            if settings_a[check].get(key) != settings_b[check].get(key)
        ]
        if changed:
            differences.append(f"generation settings of {check} ({', '.join(changed)})")
    return differences


def _short(value: Any) -> str:
    return "none" if value is None else str(value)[:12]


def no_effect_warning(candidate: Sequence[CaseResult], base: Sequence[CaseResult]) -> str | None:
    """A warning when a trained candidate answered and scored every case exactly as the base."""
    if not candidate or not base:
        return None
    theirs = {(c.capability, c.check, c.case_id): c for c in base}
    for case in candidate:
        other = theirs.get((case.capability, case.check, case.case_id))
        if other is None or (case.output, case.scores, case.details) != (
            other.output,
            other.scores,
            other.details,
        ):
            return None
    return (
        f"its training changed nothing measured: all {len(candidate)} outputs, scores and "
        "log-likelihoods equal the base's (check the adapter's target modules, the learning rate "
        "and the steps)"
    )
