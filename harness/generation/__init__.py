"""Running a model over many requests: generation and log-likelihoods, batched and cached.

`Engine` serves a model's requests from the output cache and computes the misses with the
transformers engine or, where it can serve the model, vLLM (`_vllm.py`).
"""

from harness.generation._cache import OutputCache, output_scope
from harness.generation._engine import Engine
from harness.generation._settings import GenerationSettings
from harness.generation._vllm import INSTALL_HINT, vllm_installed

__all__ = [
    "INSTALL_HINT",
    "Engine",
    "GenerationSettings",
    "OutputCache",
    "output_scope",
    "vllm_installed",
]
