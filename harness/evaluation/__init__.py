"""From a model to verdicts: evaluating it on the suite, metric intervals, the evidence of each
gate, the gates themselves, baselines from stored runs, whether two evaluations compare, and
the results every output renders (`RunResult`)."""

from harness.evaluation._baseline import (
    Baseline,
    Reference,
    annotate,
    candidate_names,
    load_reference,
    missing_warning,
    plan_baseline,
)
from harness.evaluation._comparability import (
    EVALUATION,
    evaluation_facts,
    incomparable,
    no_effect_warning,
)
from harness.evaluation._evaluate import (
    EmptyCheck,
    Evaluation,
    aggregate_metrics,
    evaluate_model,
    generation_settings,
    lower_is_better_metrics,
    metric_cases,
    paired_samples,
)
from harness.evaluation._evidence import EvidenceCache, evidence_scope
from harness.evaluation._gates import (
    GATE_KINDS,
    STRICT,
    GateInputs,
    MetricCases,
    PairedSamples,
    Verdict,
    cases_needed_text,
    decide_gates,
    fail_on_of,
    gate_status,
    index_metrics,
    p_value_text,
    unmeasured_gates,
    verdict_of,
)
from harness.evaluation._results import (
    ALL_GATE_KINDS,
    ModelResult,
    RunResult,
    never_recorded,
    stored_result,
)
from harness.evaluation._stats import estimate

__all__ = [
    "ALL_GATE_KINDS",
    "EVALUATION",
    "GATE_KINDS",
    "STRICT",
    "Baseline",
    "EmptyCheck",
    "Evaluation",
    "EvidenceCache",
    "GateInputs",
    "MetricCases",
    "ModelResult",
    "PairedSamples",
    "Reference",
    "RunResult",
    "Verdict",
    "aggregate_metrics",
    "annotate",
    "candidate_names",
    "cases_needed_text",
    "decide_gates",
    "estimate",
    "evaluate_model",
    "evaluation_facts",
    "evidence_scope",
    "fail_on_of",
    "gate_status",
    "generation_settings",
    "incomparable",
    "index_metrics",
    "load_reference",
    "lower_is_better_metrics",
    "metric_cases",
    "missing_warning",
    "never_recorded",
    "no_effect_warning",
    "p_value_text",
    "paired_samples",
    "plan_baseline",
    "stored_result",
    "unmeasured_gates",
    "verdict_of",
]
