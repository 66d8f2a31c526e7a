"""`harness plan`: each trained candidate's peak memory, estimated before anything trains."""

from harness.plan._estimate import Breakdown, human_bytes
from harness.plan._suite import SuitePlan, plan_suite

__all__ = ["Breakdown", "SuitePlan", "human_bytes", "plan_suite"]
