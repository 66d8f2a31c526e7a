"""Training a candidate through its backend: the artifact cache (local, or shared by a cluster's
nodes), cost measurement, rewards, and where it trains (this process, or a launch over several
devices); merged candidates built from trained ones."""

from harness.backends import Checkpoint
from harness.training._checkpoints import CheckpointPoint, Judge
from harness.training._launch import Placement
from harness.training._merge import merge_candidate
from harness.training._schedule import (
    Trainings,
    dependency_failed,
    in_dependency_order,
    launch_placement,
)
from harness.training._shared import (
    SharedArtifacts,
    extract_artifact,
    pack_artifact,
    unpack_artifact,
)
from harness.training._train import (
    TrainedModel,
    cached_artifact,
    stored_artifact,
    train_candidate,
    training_info,
)

__all__ = [
    "Checkpoint",
    "CheckpointPoint",
    "Judge",
    "Placement",
    "SharedArtifacts",
    "TrainedModel",
    "Trainings",
    "cached_artifact",
    "dependency_failed",
    "extract_artifact",
    "in_dependency_order",
    "launch_placement",
    "merge_candidate",
    "pack_artifact",
    "stored_artifact",
    "train_candidate",
    "training_info",
    "unpack_artifact",
]
