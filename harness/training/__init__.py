"""Training a candidate through its backend: the artifact cache, cost measurement, rewards, and
which device trains which candidate when (in this process, or a child per GPU); merged
candidates built from trained ones."""

from harness.backends import Checkpoint
from harness.training._checkpoints import CheckpointPoint, Judge
from harness.training._merge import merge_candidate
from harness.training._schedule import Trainings
from harness.training._train import TrainedModel, train_candidate, training_info

__all__ = [
    "Checkpoint",
    "CheckpointPoint",
    "Judge",
    "TrainedModel",
    "Trainings",
    "merge_candidate",
    "train_candidate",
    "training_info",
]
