"""`load_model`: any model reference to a ready-to-evaluate `LoadedModel`.

A checkpoint loads as a causal LM, or as a sequence classifier when its config says it is one
(a `...ForSequenceClassification` architecture, or an encoder such as BERT without a causal head;
see `harness.models.tasks`). A PEFT adapter loads its base first, as the adapter's task needs.

torch and transformers are imported inside functions so that importing this module (for
`harness validate`) stays fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from harness.core.device import resolve_device
from harness.core.errors import HarnessError, ModelNotFoundError
from harness.core.home import harness_home
from harness.models import LazyModel, LoadedModel
from harness.models.builtin import builtin_path, ensure_cached, known_builtins
from harness.models.fingerprint import (
    Remembered,
    adapter_fingerprint,
    combine_fingerprints,
    fingerprint_model,
    recall_fingerprint,
    remember_fingerprint,
    tokenizer_identity,
)
from harness.models.gguf import converted_path
from harness.models.presets import (
    count_parameters,
    known_presets,
    random_fingerprint,
    random_model,
)
from harness.models.references import (
    ModelReference,
    check_reference,
    local_directory,
    parse_reference,
)
from harness.models.tasks import (
    CAUSAL_LM,
    CLASSIFICATION,
    ModelTask,
    adapter_task,
    config_task,
    directory_task,
    head_config,
)

__all__ = [
    "ModelReference",
    "check_reference",
    "fingerprint_model",
    "known_builtins",
    "known_presets",
    "load_model",
    "open_model",
    "parse_reference",
]

DTYPE_NAMES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
ADAPTER_CONFIG = "adapter_config.json"


QUANTIZATIONS = ("int8", "nf4")  # bitsandbytes: LLM.int8() and 4-bit NormalFloat


def load_model(
    reference: str,
    *,
    trust_remote_code: bool = False,
    dtype: str | None = None,
    device: str | None = None,
    quantize: str | None = None,
) -> LoadedModel:
    """Load a model reference: `builtin:<name>`, `random:<preset>`, a local directory (a full
    model, or a PEFT adapter whose base is loaded first) or a hub id.

    `dtype`: auto/float32/bfloat16/float16 (default: float32 on CPU; on a GPU the checkpoint's own
    dtype, bfloat16 for random presets). `device`: default cuda when available, else cpu.
    `quantize`: int8 or nf4, the weights quantized by bitsandbytes as they load (a full model).
    Raises ModelNotFoundError when nothing can be found, HarnessError for other bad references.
    """
    parsed = check_reference(reference)
    device = resolve_device(device)
    if parsed.kind == "random":
        if quantize is not None:
            raise HarnessError(f"{reference}: quantize needs saved weights, not a random preset")
        loaded = load_random(parsed.name, dtype=dtype, device=device)
    else:
        path = parsed.name if parsed.kind == "hub" else local_directory(parsed)
        loaded = load_pretrained(str(path), trust_remote_code, dtype, device, quantize=quantize)
    loaded.reference = reference
    return loaded


def open_model(
    reference: str,
    *,
    trust_remote_code: bool = False,
    dtype: str | None = None,
    device: str | None = None,
    quantize: str | None = None,
) -> LoadedModel | LazyModel:
    """Like `load_model`, but returns a `LazyModel` (nothing loaded yet) for a random preset, or
    for a directory, built builtin or adapter (LM or classifier) whose fingerprint is remembered for its current
    files (and, for an adapter, its base's)."""
    load = partial(
        load_model,
        reference,
        trust_remote_code=trust_remote_code,
        dtype=dtype,
        device=device,
        quantize=quantize,
    )
    kind, name = check_reference(reference)
    if kind == "random":  # its fingerprint is a function of the preset: no need to build it
        fingerprint = random_fingerprint_for(name, dtype, resolve_device(device))
        return LazyModel(reference, fingerprint, count_parameters(name), load)
    setting = _memo_setting(device, dtype, quantize)
    target = memo_target(reference, setting)
    if target is not None and (remembered := _recalled(*target)) is not None:
        task = directory_task(target[0]) or CAUSAL_LM
        return LazyModel(
            reference, remembered.fingerprint, remembered.parameters, load, task,
            remembered.tokenizer,
        )  # fmt: skip
    loaded = load()
    # A builtin that this load built only now has a directory to remember against.
    target = target or memo_target(reference, setting)
    if target is None:
        return loaded
    directory, memo_setting = target
    parameters = sum(p.numel() for p in loaded.model.parameters())
    identity = tokenizer_identity(loaded.tokenizer)
    remember_fingerprint(directory, memo_setting, loaded.fingerprint, parameters, identity)
    return loaded


def remembered_fingerprint(
    reference: str,
    *,
    dtype: str | None = None,
    device: str | None = None,
    quantize: str | None = None,
) -> str | None:
    """The fingerprint `open_model` will give `reference`, when it is remembered (so without
    loading anything); None otherwise, a bad reference included (loading it reports that).
    Random presets are left out: naming theirs needs torch."""
    try:
        if check_reference(reference)[0] == "random":
            return None
    except HarnessError:
        return None
    target = memo_target(reference, _memo_setting(device, dtype, quantize))
    remembered = _recalled(*target) if target is not None else None
    return remembered.fingerprint if remembered is not None else None


def _memo_setting(device: str | None, dtype: str | None, quantize: str | None = None) -> str:
    setting = f"{resolve_device(device)}:{dtype or 'default'}"
    return f"{setting}:{quantize}" if quantize else setting


def _recalled(directory: Path, setting: str) -> Remembered | None:
    """A remembered fingerprint complete enough to stand in for a load (tokenizer included)."""
    remembered = recall_fingerprint(directory, setting)
    return remembered if remembered is not None and remembered.tokenizer is not None else None


def random_fingerprint_for(name: str, dtype: str | None, device: str) -> str:
    """The fingerprint `load_random` gives the same preset, dtype and device."""
    torch_dtype = resolve_dtype(dtype, device, default_gpu="bfloat16")
    if torch_dtype == "auto":
        import torch

        torch_dtype = torch.float32
    return random_fingerprint(name, seed=0, dtype=torch_dtype, device=device)


def memo_target(reference: str, setting: str) -> tuple[Path, str] | None:
    """Where the fingerprint of `reference` loaded with `setting` is remembered: the directory
    whose files decide it, and the memo's setting; None when it cannot be remembered."""
    directory = memo_directory(reference)
    if directory is not None:
        return directory, setting
    return adapter_memo_target(reference, setting)


def adapter_memo_target(reference: str, setting: str) -> tuple[Path, str] | None:
    """An adapter's memo is made for its base's current fingerprint, itself remembered
    against the base's files: a changed base reads another memo, so nothing stale is reused.
    (Loading an adapter only to hash it cost ~0.1 s each on a fully cached rerun.)"""
    kind, name = check_reference(reference)
    path = Path(name)
    if kind != "directory" or not (path / ADAPTER_CONFIG).is_file():
        return None
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        base = memo_directory(config["base_model_name_or_path"])
    except (OSError, ValueError, KeyError, TypeError, HarnessError):
        return None
    if base is None:
        return None
    remembered = recall_fingerprint(base, setting)
    if remembered is None:
        return None
    memo = f"{setting}|base:{remembered.fingerprint}"
    if adapter_task(config) == CLASSIFICATION:
        # Its base loads as a classifier shaped by the head file beside it (a missing head is
        # seeded, so the same files always load the same model): the base's files, that shape
        # and the adapter's own files decide its weights.
        memo += "|head:" + json.dumps(head_config(path), sort_keys=True)
    return path, memo


def memo_directory(reference: str) -> Path | None:
    """The directory whose files decide the weights, for references that have one.

    Adapters are left out: their base lives elsewhere and may change on its own (see
    `adapter_memo_target`).
    """
    kind, name = check_reference(reference)
    if kind == "builtin":
        path = builtin_path(name)
    elif kind == "directory":
        path = Path(name)
    elif kind == "gguf":
        path = converted_path(Path(name))
    else:
        return None
    return path if path.is_dir() and not (path / ADAPTER_CONFIG).is_file() else None


def resolve_dtype(dtype: str | None, device: str, default_gpu: str) -> Any:
    """A torch dtype (or "auto") from a user string; float32 on CPU unless asked otherwise."""
    import torch

    if dtype is None:
        dtype = "float32" if device == "cpu" else default_gpu
    if dtype not in DTYPE_NAMES:
        raise HarnessError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_NAMES)}")
    name = DTYPE_NAMES[dtype]
    return name if name == "auto" else getattr(torch, name)


def load_random(name: str, *, dtype: str | None, device: str) -> LoadedModel:
    torch_dtype = resolve_dtype(dtype, device, default_gpu="bfloat16")
    if torch_dtype == "auto":
        torch_dtype = None  # random weights have no checkpoint dtype: float32
    model, tokenizer = random_model(name, dtype=torch_dtype, device=device)
    fingerprint = random_fingerprint(name, seed=0, dtype=model.dtype, device=device)
    return LoadedModel(f"random:{name}", model, tokenizer, fingerprint)


def load_pretrained(
    source: str,
    trust_remote_code: bool,
    dtype: str | None,
    device: str,
    head: Mapping[str, Any] | None = None,
    *,
    quantize: str | None = None,
) -> LoadedModel:
    """A local directory (full model or PEFT adapter) or a hub id, through from_pretrained.

    `head`: load as a sequence classifier with this head (config keys such as `id2label`),
    whatever the checkpoint's own config says (the base of a classification adapter).
    `quantize`: int8 / nf4 through bitsandbytes; its fingerprint names the quantization too.
    """
    path = Path(source)
    if (path / ADAPTER_CONFIG).is_file():
        if quantize is not None:
            raise HarnessError(f"{source}: quantize applies to full models, not to an adapter")
        return load_adapter(path, trust_remote_code, dtype, device)
    model, tokenizer, task = from_pretrained(
        source, trust_remote_code, dtype, device, head, quantize=quantize
    )
    local = path if path.is_dir() else None
    fingerprint = fingerprint_model(model)
    if quantize is not None:
        fingerprint = combine_fingerprints(fingerprint, f"quantized:{quantize}")
    return LoadedModel(source, model, tokenizer, fingerprint, local, task)


def from_pretrained(
    source: str,
    trust_remote_code: bool,
    dtype: str | None,
    device: str,
    head: Mapping[str, Any] | None = None,
    *,
    quantize: str | None = None,
) -> tuple[Any, Any, ModelTask]:
    """(model in eval mode on `device`, tokenizer with a pad token, its task); errors made
    user-facing."""
    from transformers import AutoTokenizer

    options: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        options["local_files_only"] = True  # honoured even when set after huggingface_hub loaded
    with user_facing_errors(source):
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        task = CLASSIFICATION if head is not None else source_task(source, options)
        torch_dtype = resolve_dtype(dtype, device, default_gpu="auto")
        # device_map puts weights straight on the GPU instead of staging them in CPU memory
        placement = {} if device == "cpu" else {"device_map": device}
        if quantize is not None:  # bitsandbytes places the quantized weights itself
            placement = {
                "device_map": device,
                "quantization_config": quantization(quantize, device),
            }
        options |= {"dtype": torch_dtype, **placement}
        if task == CLASSIFICATION:
            model = classifier_from_pretrained(source, options, head)
        else:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(source, **options)
    model, tokenizer = prepare(model, tokenizer)
    if task == CLASSIFICATION and model.config.pad_token_id is None:
        # a decoder's classification head finds each row's last token through the pad id
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, task


def quantization(name: str, device: str) -> Any:
    """The bitsandbytes config of `int8` or `nf4` (4-bit computes in float32 on the CPU,
    bfloat16 on a GPU)."""
    import torch
    from transformers import BitsAndBytesConfig

    if name == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if name == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.float32 if device == "cpu" else torch.bfloat16,
        )
    raise HarnessError(f"unknown quantization {name!r}; use one of {', '.join(QUANTIZATIONS)}")


def source_task(source: str, options: dict[str, Any]) -> ModelTask:
    """The task of a directory (from its config.json) or of a hub id (through AutoConfig)."""
    if Path(source).is_dir():
        return directory_task(Path(source)) or CAUSAL_LM
    from transformers import AutoConfig

    return config_task(AutoConfig.from_pretrained(source, **options).to_dict())


def classifier_from_pretrained(
    source: str, options: dict[str, Any], head: Mapping[str, Any] | None
) -> Any:
    """AutoModelForSequenceClassification, with `head` (and a head of another size replaced)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    extra = {**head, "ignore_mismatched_sizes": True} if head else {}
    # An encoder saved without a head gets a fresh random one: seeded, so that every load of
    # the same directory has the same weights (one fingerprint, reproducible base answers).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_pretrained(source, **options, **extra)


def prepare(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """Eval mode; pad = eos when the tokenizer has no pad token (batched generation needs one)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


@contextlib.contextmanager
def user_facing_errors(source: str) -> Iterator[None]:
    """Turn from_pretrained's OSError/ValueError into ModelNotFoundError / HarnessError."""
    try:
        yield
    except ValueError as error:
        if "trust_remote_code" not in str(error):
            raise
        raise HarnessError(
            f"model {source!r} ships its own code; set trust_remote_code: true in the suite if "
            "you trust it"
        ) from error
    except OSError as error:
        raise ModelNotFoundError(not_found_message(source, error)) from error


def not_found_message(source: str, error: BaseException) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if Path(source).is_dir():
        return f"could not load a model from directory {source}: {first_line}"
    return (
        f"could not load model {source!r}: no local directory by that name, and the Hugging Face "
        f"hub could not provide it (the hub may be unreachable from this machine, the id "
        f"misspelled, or the model gated). Underlying error: {first_line}"
    )


def load_adapter(
    path: Path, trust_remote_code: bool, dtype: str | None, device: str
) -> LoadedModel:
    """A PEFT adapter directory: its base (any reference) first, then the adapter on top."""
    from peft import PeftModel

    config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base_reference = config.get("base_model_name_or_path")
    if not base_reference:
        raise HarnessError(f"adapter at {path} does not name its base (base_model_name_or_path)")
    task = adapter_task(config)
    if task == CLASSIFICATION:
        base = load_classifier_base(base_reference, path, trust_remote_code, dtype, device)
    else:
        base = load_model(
            base_reference, trust_remote_code=trust_remote_code, dtype=dtype, device=device
        )
    model = PeftModel.from_pretrained(base.model, str(path)).eval()
    tokenizer = base.tokenizer
    if (path / "tokenizer_config.json").is_file():
        with user_facing_errors(str(path)):
            tokenizer = from_pretrained_tokenizer(path, trust_remote_code)
    fingerprint = combine_fingerprints(base.fingerprint, adapter_fingerprint(model))
    return LoadedModel(str(path), model, tokenizer, fingerprint, path, task)


def load_classifier_base(
    reference: str, adapter: Path, trust_remote_code: bool, dtype: str | None, device: str
) -> LoadedModel:
    """The base of a SEQ_CLS adapter, as a classifier whose head has the adapter's shape (the
    base may be a causal LM, or an encoder saved without a head or with another label count)."""
    kind, name = check_reference(reference)
    if kind == "random":
        raise HarnessError(f"adapter at {adapter}: a classification adapter needs a saved base")
    parsed = ModelReference(kind, name)
    source = name if kind == "hub" else str(local_directory(parsed))
    # {} when the adapter came from elsewhere: the base's own head shape is then assumed
    with _no_load_report():
        loaded = load_pretrained(source, trust_remote_code, dtype, device, head_config(adapter))
    loaded.reference = reference
    return loaded


@contextlib.contextmanager
def _no_load_report() -> Iterator[None]:
    """Without transformers' load report, which lists the head as MISSING: the adapter loaded
    next brings the trained head (peft's `modules_to_save`), so nothing is missing in the end."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def from_pretrained_tokenizer(path: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def base_directory(reference: str) -> Path:
    """A local HF directory holding `reference`, for trainers that load from a path (QLoRA must).

    Built-ins are built; a hub id is resolved to its snapshot (downloaded when the hub is
    reachable); a random preset is saved once under $HARNESS_HOME/random/.
    """
    parsed = check_reference(reference)
    kind, name = parsed
    if kind in ("builtin", "directory", "gguf"):
        return local_directory(parsed)
    if kind == "random":
        return saved_random(name)
    from huggingface_hub import snapshot_download

    with user_facing_errors(name):
        return Path(snapshot_download(name))


def saved_random(name: str) -> Path:
    """Preset `name` with its seed-0 random weights (float32), saved as an HF directory once."""

    fingerprint = random_fingerprint_for(name, "float32", "cpu")
    target = harness_home() / "random" / f"{name}-{fingerprint[-16:]}"

    def save(directory: Path) -> None:
        model, tokenizer = random_model(name)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    return ensure_cached(target, save)  # locked, and a killed save leaves no half directory
