"""harness: a declarative evaluation-and-regression harness for fine-tuned language models."""

__version__ = "0.1.0"
