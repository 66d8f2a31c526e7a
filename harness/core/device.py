"""Which device work runs on: a CUDA GPU when one is there, else the CPU.

One definition for loading models, training and planning. torch is imported only when a GPU
could be there (an NVIDIA or AMD driver, CUDA_VISIBLE_DEVICES not empty): deciding "cpu" on a
machine without one costs no import, so a fully cached rerun never loads torch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

_GPU_DRIVER_MARKS = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd")


@dataclass(frozen=True)
class Device:
    name: str  # "cpu" or "cuda"
    bf16: bool  # a CUDA GPU with bf16 support: `precision: auto` trains in bf16 there


def gpu_possible() -> bool:
    """Whether a GPU could be visible, judged without importing torch."""
    if "torch" in sys.modules:  # already paid for: ask it
        return True
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(Path(mark).exists() for mark in _GPU_DRIVER_MARKS)


def pick_device() -> Device:
    """The CUDA GPU when torch sees one (and whether it has bf16), else the CPU."""
    if not gpu_possible():
        return Device("cpu", False)
    import torch  # deferred: 1-2 s, and only machines that may have a GPU pay it

    if torch.cuda.is_available():
        return Device("cuda", bool(torch.cuda.is_bf16_supported()))
    return Device("cpu", False)


def resolve_device(device: str | None) -> str:
    """The device asked for, else cuda when available, else cpu."""
    return device or pick_device().name
