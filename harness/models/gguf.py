"""GGUF files as models: converted once into an ordinary Hugging Face directory.

transformers loads a `.gguf` file (through the `gguf` package) by dequantising it, which takes
~20 s for a 135M model, and cannot `save_pretrained` the result. So a GGUF reference is converted
once, rebuilt as a plain model (`from_config` + `load_state_dict`) and saved under
`$HARNESS_HOME/gguf/<file stem>-<content hash>/`; from then on it loads (~2-4 s), fingerprints and
caches like any model directory. Conversions happen in a temporary directory renamed into place,
under a lock, like builtin builds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.errors import HarnessError, ModelNotFoundError
from harness.core.home import harness_home, write_json_atomically
from harness.models.builtin import ensure_cached

log = logging.getLogger("harness.models")

GGUF_SUFFIX = ".gguf"
CONVERSION_FORMAT = 1  # bump when `convert` saves something else for the same file
CONVERSION_INFO = "harness-gguf.json"
GGUF_INSTALL_HINT = "pip install gguf  (or: pip install 'harness[gguf]')"


def is_gguf_reference(reference: str) -> bool:
    return reference.strip().lower().endswith(GGUF_SUFFIX)


def check_gguf_file(path: Path) -> None:
    """What validation can check without converting: the file exists and `gguf` is installed."""
    if not path.is_file():
        raise ModelNotFoundError(f"no GGUF file at {path}")
    if importlib.util.find_spec("gguf") is None:
        raise HarnessError(
            f"{path}: loading a GGUF file needs the gguf package: {GGUF_INSTALL_HINT}"
        )


def converted_path(gguf_file: Path, home: Path | None = None) -> Path:
    """Where `gguf_file` is (or will be) converted to; nothing is converted."""
    digest = content_hash(gguf_file, home)
    return (home or harness_home()) / "gguf" / f"{gguf_file.stem}-{digest}"


def ensure_converted(gguf_file: Path, home: Path | None = None) -> Path:
    """The converted directory of `gguf_file`, converting it first when missing."""
    check_gguf_file(gguf_file)
    return ensure_cached(converted_path(gguf_file, home), lambda out: convert(gguf_file, out))


def convert(gguf_file: Path, out_dir: Path) -> None:
    """Dequantise `gguf_file` through transformers and save it as a plain float32 model."""
    log.info("converting %s once into %s (about 25 s for 135M parameters)", gguf_file, out_dir)
    started = time.perf_counter()
    with _no_progress_bars():
        _convert(gguf_file, out_dir)
    log.info("converted %s in %.1f s", gguf_file.name, time.perf_counter() - started)


def _convert(gguf_file: Path, out_dir: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_file.parent), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(
            directory, gguf_file=name, dtype=torch.float32
        )
    except (ValueError, KeyError, NotImplementedError, OSError) as exc:
        architecture = gguf_architecture(gguf_file)
        raise HarnessError(
            f"{gguf_file}: transformers {transformers.__version__} cannot load this GGUF file "
            f"(architecture {architecture!r}): {exc}"
        ) from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):  # it would make the saved model "gguf-quantized"
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {
        "format": CONVERSION_FORMAT,
        "source": str(gguf_file),
        "architecture": gguf_architecture(gguf_file),
        "transformers": transformers.__version__,
    }
    (out_dir / CONVERSION_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' bars while converting: `convert`'s two log lines say what happens.

    transformers' GGUF reader calls `tqdm` directly (not through its own switchable bar), so its
    module's `tqdm` is swapped for a disabled one for the duration; its own loading bar obeys
    `disable_progress_bar`.
    """
    from functools import partial

    from transformers import modeling_gguf_pytorch_utils as reader
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    original = getattr(reader, "tqdm", None)
    hf_logging.disable_progress_bar()
    if original is not None:
        reader.tqdm = partial(original, disable=True)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if original is not None:
            reader.tqdm = original  # type: ignore[attr-defined]
        if was_enabled:
            hf_logging.enable_progress_bar()


def gguf_architecture(gguf_file: Path) -> str:
    """The `general.architecture` a GGUF file declares ("llama", "qwen2", ...), or "unknown"."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(gguf_file)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except Exception:  # a damaged or foreign file: the caller's error says the rest
        return "unknown"


def content_hash(path: Path, home: Path | None = None) -> str:
    """16 hex digits of the file's SHA-256, remembered for its size and modification time (a
    100 MB file hashes in ~0.3 s, which every run would otherwise pay)."""
    stat = path.stat()
    state = [str(path.resolve()), stat.st_size, stat.st_mtime_ns, CONVERSION_FORMAT]
    key = hashlib.sha256(json.dumps(state).encode()).hexdigest()[:24]
    memo = (home or harness_home()) / "gguf" / ".hashes" / f"{key}.json"
    try:
        return str(json.loads(memo.read_text(encoding="utf-8"))["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with path.open("rb") as handle:
        value = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    write_json_atomically(memo, {"sha256": value})
    return value
