"""Training a candidate through its backend: the artifact cache, cost measurement, rewards, and
which device trains which candidate when (in this process, or a child per GPU)."""

from harness.backends import Checkpoint
from harness.training._checkpoints import CheckpointPoint, Judge
from harness.training._schedule import Trainings
from harness.training._train import train_candidate, training_info

__all__ = [
    "Checkpoint",
    "CheckpointPoint",
    "Judge",
    "Trainings",
    "train_candidate",
    "training_info",
]
