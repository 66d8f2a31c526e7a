"""GPU training defaults (harness.backends.acceleration): the decision over devices and installed
libraries, its refusals at validation time, real CPU trainings with packed and padding-free
batches and bf16 autocast, what a training records, and the memory plan following the same
decision. The CUDA-only paths (flash attention, Liger) are decided here and trained only on a GPU
(`-m gpu`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from helpers.training import problems, sft_rows, train, write

from harness.backends import BACKENDS, TrainRequest
from harness.backends.acceleration import (
    AccelerationError,
    Device,
    acceleration_plan,
    acceleration_problems,
    base_model_type,
    installed_libraries,
)
from harness.backends.common import kept_module_globals, sft_trainer

CPU = Device("cpu", False)
GPU = Device("cuda", True)  # an A100/H100-class GPU: bf16
OLD_GPU = Device("cuda", False)  # a T4 or V100: no bf16
NOTHING: frozenset[str] = frozenset()
FLASH = frozenset({"flash_attn"})
LIGER = frozenset({"liger_kernel"})
BOTH = FLASH | LIGER
HUB_KERNELS = frozenset({"kernels"})


def config(backend: str, **args: Any) -> Any:
    return BACKENDS.get(backend).Config(**args)


# ---- the decision table ----------------------------------------------------------------------

# device, installed, backend, args, model type ->
#   precision, weights, attention, padding_free, packing, liger
TABLE: list[tuple[Device, frozenset[str], str, dict[str, Any], str | None, tuple[Any, ...]]] = [
    # a CPU: float32, SDPA, padded, no Liger, whatever is installed
    (CPU, BOTH, "full", {}, "llama", ("fp32", "float32", "sdpa", False, False, False)),
    (CPU, BOTH, "lora", {}, "llama", ("fp32", "float32", "sdpa", False, False, False)),
    (CPU, NOTHING, "grpo", {}, "llama", ("fp32", "float32", "sdpa", False, False, False)),
    # a bf16 GPU without the optional libraries: bf16 autocast, SDPA, padded
    (GPU, NOTHING, "full", {}, "llama", ("bf16", "float32", "sdpa", False, False, False)),
    (GPU, NOTHING, "lora", {}, "llama", ("bf16", "bfloat16", "sdpa", False, False, False)),
    (GPU, NOTHING, "qlora", {}, "llama", ("bf16", "bfloat16", "sdpa", False, False, False)),
    (GPU, NOTHING, "dpo", {}, "qwen2", ("bf16", "bfloat16", "sdpa", False, False, False)),
    (GPU, NOTHING, "dpo", {"adapter": "full"}, "qwen2", ("bf16", "float32", "sdpa", False, False, False)),
    # Hub kernels need the Hub: installed alone they change nothing
    (GPU, HUB_KERNELS, "lora", {}, "llama", ("bf16", "bfloat16", "sdpa", False, False, False)),
    # flash_attn: flash attention, and SFT batches go padding-free with it
    (GPU, FLASH, "lora", {}, "llama", ("bf16", "bfloat16", "flash_attention_2", True, False, False)),
    (GPU, FLASH, "grpo", {}, "qwen2", ("bf16", "bfloat16", "flash_attention_2", False, False, False)),
    # liger_kernel: Liger on architectures it has kernels for
    (GPU, LIGER, "full", {}, "qwen2", ("bf16", "float32", "sdpa", False, False, True)),
    (GPU, BOTH, "full", {}, "llama", ("bf16", "float32", "flash_attention_2", True, False, True)),
    (GPU, BOTH, "lora", {}, "gpt2", ("bf16", "bfloat16", "sdpa", False, False, False)),
    (GPU, BOTH, "lora", {}, None, ("bf16", "bfloat16", "sdpa", False, False, False)),
    # classification: float32 weights (the head trains in full), never padding-free
    (GPU, BOTH, "lora", {"task": "classification"}, "llama", ("bf16", "float32", "flash_attention_2", False, False, True)),
    (GPU, BOTH, "full", {"task": "classification"}, "bert", ("bf16", "float32", "sdpa", False, False, False)),
    # a GPU without bf16: float32, so no flash attention (16-bit kernels); Liger still applies
    (OLD_GPU, BOTH, "lora", {}, "llama", ("fp32", "float32", "sdpa", False, False, True)),
    # explicit settings win over auto
    (GPU, BOTH, "lora", {"precision": "fp32", "liger": False}, "llama", ("fp32", "float32", "sdpa", False, False, False)),
    (GPU, BOTH, "lora", {"padding_free": False}, "llama", ("bf16", "bfloat16", "flash_attention_2", False, False, True)),
    (GPU, NOTHING, "lora", {"attention": "eager"}, "llama", ("bf16", "bfloat16", "eager", False, False, False)),
    (CPU, NOTHING, "lora", {"packing": True}, "llama", ("fp32", "float32", "sdpa", True, True, False)),
    (CPU, NOTHING, "full", {"padding_free": True}, "llama", ("fp32", "float32", "sdpa", True, False, False)),
    (CPU, NOTHING, "lora", {"precision": "bf16"}, "llama", ("bf16", "bfloat16", "sdpa", False, False, False)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("device", "installed", "backend", "args", "model_type", "expected"), TABLE
)
def test_decision_table(
    device: Device,
    installed: frozenset[str],
    backend: str,
    args: dict[str, Any],
    model_type: str | None,
    expected: tuple[Any, ...],
) -> None:
    plan = acceleration_plan(device, config(backend, **args), installed, model_type)
    got = (
        plan.precision,
        plan.weights,
        plan.attention,
        plan.padding_free,
        plan.packing,
        plan.liger,
    )
    assert got == expected, plan.reasons


def test_auto_leaves_sdpa_to_transformers_and_says_why() -> None:
    plan = acceleration_plan(GPU, config("lora"), NOTHING, "llama")
    assert plan.attn_implementation is None  # transformers' default: SDPA (eager if none)
    assert "sdpa: flash_attn not installed" in plan.reasons
    assert any("liger_kernel is not installed" in reason for reason in plan.reasons)
    flash = acceleration_plan(GPU, config("lora"), FLASH, "llama")
    assert flash.attn_implementation == "flash_attention_2"
    eager = acceleration_plan(CPU, config("lora", attention="eager"), NOTHING, "llama")
    assert eager.attn_implementation == "eager"


def test_gradient_checkpointing_is_an_option_recorded_as_given() -> None:
    assert not acceleration_plan(GPU, config("full"), BOTH, "llama").gradient_checkpointing
    plan = acceleration_plan(GPU, config("full", gradient_checkpointing=True), BOTH, "llama")
    assert plan.gradient_checkpointing and plan.record()["gradient_checkpointing"] is True


@pytest.mark.parametrize(
    ("device", "installed", "args", "message"),
    [
        (CPU, BOTH, {"liger": True}, "no CUDA GPU"),
        (GPU, NOTHING, {"liger": True}, "pip install liger-kernel"),
        (CPU, BOTH, {"attention": "flash_attention_2"}, "needs a CUDA GPU"),
        (GPU, NOTHING, {"attention": "flash_attention_2"}, "pip install flash-attn"),
        (OLD_GPU, BOTH, {"precision": "bf16"}, "no bf16 support"),
        (OLD_GPU, BOTH, {"attention": "flash_attention_2"}, "trains in fp32"),
    ],
)
def test_explicit_settings_the_machine_cannot_honour_fail_at_train_time(
    device: Device, installed: frozenset[str], args: dict[str, Any], message: str
) -> None:
    with pytest.raises(AccelerationError, match=message):
        acceleration_plan(device, config("lora", **args), installed, "llama")


def test_liger_refuses_an_architecture_without_kernels() -> None:
    with pytest.raises(AccelerationError, match="no kernels for model type bert"):
        acceleration_plan(GPU, config("full", liger=True), BOTH, "bert")


def test_installed_libraries_and_model_type(tiny_dir: Path) -> None:
    assert installed_libraries(["json", "surely_not_a_module_here"]) == {"json"}
    assert installed_libraries() <= {"liger_kernel", "flash_attn", "kernels"}
    assert base_model_type(tiny_dir) == "llama"
    assert base_model_type(tiny_dir / "missing") is None


# ---- refused before anything trains ----------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "args", "expected"),
    [
        ("full", {"attention": "flash_attention_2", "precision": "fp32"}, "16 bits"),
        ("lora", {"packing": True, "max_length": None}, "needs max_length"),
        ("qlora", {"packing": True, "padding_free": False}, "always padding-free"),
        ("lora", {"task": "classification", "packing": True}, "packing applies to SFT"),
        ("full", {"task": "classification", "padding_free": True}, "padding_free applies to SFT"),
        ("dpo", {"attention": "flash_attention_2", "precision": "fp32"}, "16 bits"),
    ],
)
def test_impossible_combinations_are_problems(
    backend: str, args: dict[str, Any], expected: str
) -> None:
    spec = BACKENDS.get(backend)
    found = spec.problems(spec.Config(**args))
    assert any(expected in problem for problem in found), found


def test_possible_combinations_are_not_problems() -> None:
    for backend, args in [
        ("lora", {"packing": True}),
        ("full", {"padding_free": True, "attention": "eager"}),
        ("lora", {"precision": "bf16", "attention": "flash_attention_2", "liger": True}),
        ("grpo", {"liger": True, "gradient_checkpointing": True}),
    ]:
        assert acceleration_problems(config(backend, **args)) == [], (backend, args)


def test_validate_reports_them_at_their_line(tmp_path: Path) -> None:
    packing = "- name: l\n  backend: lora\n  data: train\n  args:\n    packing: true\n    max_length: null\n"
    found = problems(tmp_path, packing)
    assert len(found) == 1
    assert ":21:7: candidates[0].args: packing: true needs max_length" in found[0]
    flash = "- name: f\n  backend: full\n  data: train\n  args: {attention: flash_attention_2, precision: fp32}\n"
    assert (
        ":20:11: candidates[0].args: attention: flash_attention_2" in problems(tmp_path, flash)[0]
    )
    # DPO and GRPO have no batch layout to choose (trl 1.16 disabled DPO's padding_free)
    dpo = "- name: d\n  backend: dpo\n  data: prefs\n  args:\n    packing: true\n"
    assert ':21:7: candidates[0].args.packing: unknown key "packing"' in problems(tmp_path, dpo)[0]
    liger = "- name: l\n  backend: lora\n  data: train\n  args:\n    liger: maybe\n"
    assert problems(tmp_path, liger) == [
        f"{tmp_path / 'suite.yaml'}:21:14: candidates[0].args.liger: Input should be 'auto', "
        "True or False (got 'maybe')"
    ]


# ---- real trainings on the CPU ---------------------------------------------------------------


def test_padding_free_collator_still_truncates_to_max_length(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """trl 1.16 refuses padding_free=True with a max_length unless packing ("not enforced"); the
    backends pass its collator instead, and its dataset preparation does truncate."""
    spec = BACKENDS.get("lora")
    cfg = spec.Config(padding_free=True, max_length=14, max_steps=1)
    trainer = sft_trainer(TrainRequest(tiny_dir, sft_rows(), cfg, 0, tmp_path), cfg, cfg, False)
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    assert lengths and max(lengths) == 14
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    assert "attention_mask" not in batch and batch["input_ids"].shape == (1, 3 * 14)
    assert batch["position_ids"][0].tolist() == list(range(14)) * 3


@pytest.mark.slow
def test_padding_free_trains_exactly_like_padded_batches_on_sdpa(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """transformers 5 builds a block-diagonal mask from the restarting position_ids when
    training (no KV cache), so SDPA never attends across rows: the same losses as padding."""
    args: dict[str, Any] = {"max_steps": 3, "learning_rate": 1e-2}
    padded = train("lora", tiny_dir, tmp_path / "padded", sft_rows(), **args)
    free = train("lora", tiny_dir, tmp_path / "free", sft_rows(), padding_free=True, **args)
    assert free.acceleration["padding_free"] and not padded.acceleration["padding_free"]
    assert free.train_tokens == padded.train_tokens  # real tokens either way
    for (step, a), (_, b) in zip(padded.loss_curve, free.loss_curve, strict=True):
        assert a == pytest.approx(b, rel=1e-4), step


@pytest.mark.slow
def test_packed_sft_trains_on_the_cpu_and_records_it(tiny_dir: Path, tmp_path: Path) -> None:
    result = train("lora", tiny_dir, tmp_path, sft_rows(), packing=True, max_length=64, max_steps=3)
    assert result.final_loss is not None and math.isfinite(result.final_loss)
    assert result.acceleration == {
        "precision": "fp32",
        "weights": "float32",
        "attention": "sdpa",
        "padding_free": True,  # trl's bfd packing flattens its bins
        "packing": True,
        "liger": False,
        "gradient_checkpointing": False,
    }


def test_packing_fills_max_length_bins_with_every_token(tiny_dir: Path, tmp_path: Path) -> None:
    spec = BACKENDS.get("lora")
    rows = sft_rows()
    plain = spec.Config(max_length=64, max_steps=1)
    packed = spec.Config(max_length=64, max_steps=1, packing=True)
    unpacked = sft_trainer(TrainRequest(tiny_dir, rows, plain, 0, tmp_path), plain, plain, False)
    trainer = sft_trainer(TrainRequest(tiny_dir, rows, packed, 0, tmp_path), packed, packed, False)
    bins = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    rows_tokens = [len(ids) for ids in unpacked.train_dataset["input_ids"]]
    assert len(bins) < len(rows_tokens) and max(bins) <= 64
    assert sum(bins) == sum(rows_tokens)  # best-fit decreasing: nothing cut, rows kept whole


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "weights"), [("lora", "bfloat16"), ("full", "float32"), ("qlora", "bfloat16")]
)
def test_bf16_autocast_on_the_cpu(
    tiny_dir: Path, tmp_path: Path, backend: str, weights: str
) -> None:
    """`precision: bf16` is honoured on a CPU too (CPU autocast): a frozen base loads in bf16,
    weights that train stay float32 master weights."""
    result = train(backend, tiny_dir, tmp_path, sft_rows(), precision="bf16", max_steps=2)
    assert result.final_loss is not None and math.isfinite(result.final_loss)
    assert result.acceleration["precision"] == "bf16"
    assert result.acceleration["weights"] == weights


@pytest.mark.slow
def test_recorded_acceleration_is_the_plan(tiny_dir: Path, tmp_path: Path) -> None:
    """What a training records (read back from the trainer) is what the plan decided, for the
    defaults, checkpointing and a classification head."""
    from harness.backends.common import plan_acceleration
    from harness.core.device import pick_device

    prefs = [
        {"prompt": r["prompt"], "chosen": r["completion"], "rejected": " no"} for r in sft_rows()
    ]
    labelled = [{"text": r["prompt"], "label": i % 2} for i, r in enumerate(sft_rows())]
    cases: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
        ("full", sft_rows(), {}),
        ("dpo", prefs, {"gradient_checkpointing": True}),
        ("lora", labelled, {"task": "classification", "labels": ["no", "yes"]}),
    ]
    for backend, rows, args in cases:
        result = train(backend, tiny_dir, tmp_path / backend, rows, max_steps=1, **args)
        request = TrainRequest(tiny_dir, rows, config(backend, **args), 0, tmp_path)
        plan = plan_acceleration(request.config, request, pick_device())
        assert result.acceleration == plan.record(), backend


@pytest.mark.slow
def test_training_statistics_carry_the_acceleration(tiny_dir: Path, tmp_path: Path) -> None:
    """Through the harness: training.json (the store's, the JSON summary's and the report's
    `training` record) has an `acceleration` entry."""
    from harness.suite import load_suite
    from harness.training import train_candidate

    path = write(
        tmp_path,
        "- {name: l, backend: lora, data: train, args: {max_steps: 1, packing: true}}\n",
    )
    suite = load_suite(path)
    trained = train_candidate(suite, "l", tiny_dir, f"test-{tmp_path.name}", retrain=True)
    record = json.loads((trained.model_dir.parent / "training.json").read_text())
    assert record["acceleration"]["packing"] is True
    assert trained.stats["acceleration"] == record["acceleration"]


def test_liger_patches_are_undone_after_training() -> None:
    """Liger replaces the architecture module's classes for the whole process; the backends
    restore them so that models loaded afterwards (the evaluation) run transformers' code."""
    from transformers.models.llama import modeling_llama

    original_norm, original_rope = modeling_llama.LlamaRMSNorm, modeling_llama.apply_rotary_pos_emb
    with kept_module_globals("llama"):
        modeling_llama.LlamaRMSNorm = object  # type: ignore[misc, assignment]
        modeling_llama.apply_rotary_pos_emb = len  # type: ignore[assignment]
        modeling_llama.liger_added = True  # type: ignore[attr-defined]
    assert modeling_llama.LlamaRMSNorm is original_norm
    assert modeling_llama.apply_rotary_pos_emb is original_rope
    with kept_module_globals("not_an_architecture"):
        pass


# ---- on a GPU --------------------------------------------------------------------------------


def cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_defaults_train_and_are_recorded(tiny_dir: Path, tmp_path: Path) -> None:
    if not cuda():
        pytest.skip("no CUDA device")
    from harness.core.device import pick_device

    device = pick_device()
    result = train("lora", tiny_dir, tmp_path, sft_rows(), max_steps=2)
    plan = acceleration_plan(device, config("lora"), installed_libraries(), "llama")
    assert result.acceleration == plan.record()
    assert result.acceleration["precision"] == ("bf16" if device.bf16 else "fp32")
    assert result.device == "cuda"


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("library", ["flash_attn", "liger_kernel"])
def test_gpu_kernels_when_installed(tiny_dir: Path, tmp_path: Path, library: str) -> None:
    if not cuda() or library not in installed_libraries():
        pytest.skip(f"needs CUDA and {library}")
    args = {"attention": "flash_attention_2"} if library == "flash_attn" else {"liger": True}
    result = train("lora", tiny_dir, tmp_path, sft_rows(), max_steps=2, **args)
    assert result.final_loss is not None and math.isfinite(result.final_loss)
    key, value = ("attention", "flash_attention_2") if library == "flash_attn" else ("liger", True)
    assert result.acceleration[key] == value
