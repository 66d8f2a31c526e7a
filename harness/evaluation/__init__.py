"""From a model's cases to verdicts: metric intervals, the evidence of each gate, the gates
themselves, baselines from stored runs, and whether two evaluations compare."""

from harness.evaluation._baseline import (
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
from harness.evaluation._stats import estimate

__all__ = [
    "EVALUATION",
    "GATE_KINDS",
    "STRICT",
    "GateInputs",
    "MetricCases",
    "PairedSamples",
    "Verdict",
    "annotate",
    "candidate_names",
    "cases_needed_text",
    "decide_gates",
    "estimate",
    "evaluation_facts",
    "fail_on_of",
    "gate_status",
    "incomparable",
    "index_metrics",
    "load_reference",
    "missing_warning",
    "no_effect_warning",
    "p_value_text",
    "plan_baseline",
    "unmeasured_gates",
    "verdict_of",
]
