"""Trainer backends, installed as `harness.backends`: one module per fine-tuning method.

Third parties add one through the `harness.backends` entry-point group.
"""

from __future__ import annotations

from typing import Any

from harness.registry import Registry

BACKENDS: Registry[Any] = Registry("backend", "harness.backends")
