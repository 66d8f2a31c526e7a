"""The suite file: its schema, its YAML source with positions, data sets, and planning.

    from harness.suite import load_suite
    suite = load_suite("suites/qa.yaml")   # HarnessError listing every FILE:LINE:COL problem

`load_suite` validates everything that can be known without loading a model and resolves the
checks (with their cases), the trained candidates and the model references.
"""

from harness.suite._execution import ray_problem
from harness.suite._load import load_suite
from harness.suite._planned import AccelerateConfig, LoadedSuite, PlannedCheck, PlannedTraining
from harness.suite._schema import (
    CapabilityBase,
    Checkpoints,
    Execution,
    GenerationConfig,
    MergeOf,
    SuiteBase,
    dump_schema,
    json_schema,
    suite_model,
)
from harness.suite._trainings import checkpoint_capabilities, reward_checks

__all__ = [
    "AccelerateConfig",
    "CapabilityBase",
    "Checkpoints",
    "Execution",
    "GenerationConfig",
    "LoadedSuite",
    "MergeOf",
    "PlannedCheck",
    "PlannedTraining",
    "SuiteBase",
    "checkpoint_capabilities",
    "dump_schema",
    "json_schema",
    "load_suite",
    "ray_problem",
    "reward_checks",
    "suite_model",
]
