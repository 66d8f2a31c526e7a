"""Training a candidate through its backend: the artifact cache, cost measurement, rewards, and
which device trains which candidate when (in this process, or a child per GPU)."""

from harness.training._schedule import Trainings
from harness.training._train import train_candidate, training_info

__all__ = ["Trainings", "train_candidate", "training_info"]
