"""Library messages that are harmless here, filtered by their exact text so nothing else is lost.

- bitsandbytes, on a CPU with AVX512-BF16, tries to download an optional kernel package when it is
  imported and logs "Failed to load CPU gemm_4bit_forward from kernels-community: No module named
  'kernels'" when it is not installed; bitsandbytes then uses its own CPU code, which harness's
  QLoRA tests run on.
- transformers 5 deprecates `is_gradient_checkpointing`, which peft and trl still read when an
  adapter is loaded or trained; nothing a suite author can change.
"""

from __future__ import annotations

import logging
import warnings

_BNB_KERNEL = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_harmless_messages() -> None:
    """Drop the messages above (idempotent; other messages of those libraries still show)."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, _DropMessage) for f in logger.filters):
        logger.addFilter(_DropMessage(_BNB_KERNEL))
    warnings.filterwarnings(
        "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
