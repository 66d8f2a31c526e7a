"""harness.plan._estimate: parameter counts against real models, the breakdown arithmetic on hand-computed
cases, `harness plan` offline on the example suite, and the estimate against a measured CPU peak."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.backends import BACKENDS, MemoryProfile
from harness.plan._estimate import (
    FP32,
    NF4_BYTES_PER_PARAM,
    LoraShape,
    ModelShape,
    TrainingSetup,
    kv_cache_bytes,
    linear_parameters,
    lora_parameters,
    model_shape,
    parameter_count,
    training_breakdown,
)
from harness.plan._suite import DeviceInfo

REPO = Path(__file__).resolve().parents[2]
# A small hand-checkable shape: h 8, 2 layers, i 16, 2 heads of 4, vocabulary 10, tied.
SHAPE = ModelShape(
    model_type="llama", vocab_size=10, hidden_size=8, intermediate_size=16, num_layers=2,
    num_heads=2, num_kv_heads=2, head_dim=4, tie_word_embeddings=True,
)  # fmt: skip


# ---- parameter counts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset", ["qwen2.5-0.5b", "qwen2.5-7b", "llama-3.2-1b", "llama-3-8b", "llama-3.1-8b"]
)
def test_parameter_count_matches_presets_on_the_meta_device(preset: str) -> None:
    from harness.models.presets import count_parameters, preset_config

    shape = model_shape(preset_config(preset).to_dict())
    assert parameter_count(shape) == count_parameters(preset)


def test_parameter_count_matches_builtin_tiny() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from harness.plan._suite import model_config

    config = model_config("builtin:tiny")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            __import__("transformers").AutoConfig.for_model(**config)
        )
    assert parameter_count(model_shape(config)) == sum(p.numel() for p in model.parameters())


def test_lora_parameters_match_peft() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from harness.plan._suite import model_config

    config = model_config("builtin:tiny")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert lora_parameters(model_shape(config), LoraShape(8)) == trainable


def test_hand_counted_parameters() -> None:
    # per layer: q,k,v,o 4*8*8 + gate,up,down 3*8*16 = 640 weights, 2 norms of 8; final norm 8;
    # embedding 10*8 once (tied)
    assert linear_parameters(SHAPE) == 2 * 640
    assert parameter_count(SHAPE) == 2 * (640 + 16) + 8 + 80
    # r 2 on q and v only: 2*(8+8) each, per layer
    assert lora_parameters(SHAPE, LoraShape(2, ("q_proj", "v_proj"))) == 2 * 2 * 32


# ---- the breakdown ---------------------------------------------------------------------------


def setup(method: str, **changes: object) -> TrainingSetup:
    """The setup of `method` as its backend's memory profile makes it (DPO: two sequences)."""
    sequences = 2 if method == "dpo" else 1
    base = TrainingSetup(batch_size=4, seq_len=16, compute_bytes=4, sequences_per_row=sequences)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_full_training_is_sixteen_bytes_per_parameter_plus_activations() -> None:
    n = parameter_count(SHAPE)
    full = training_breakdown(SHAPE, setup("full"))
    assert (full.weights, full.gradients, full.optimizer) == (4 * n, 4 * n, 8 * n)
    assert full.total == 16 * n + full.activations


def test_full_beats_lora_beats_qlora_on_the_same_base() -> None:
    from harness.models.presets import preset_config

    shape = model_shape(preset_config("qwen2.5-0.5b").to_dict())
    lora = LoraShape(8)
    full = training_breakdown(shape, setup("full")).total
    adapter = training_breakdown(shape, setup("lora", lora=lora)).total
    quantized = training_breakdown(shape, setup("qlora", lora=lora, quantized=True)).total
    assert full > adapter > quantized


def test_qlora_weights_are_nf4_linears_plus_float32_rest() -> None:
    lora = LoraShape(2)
    qlora = training_breakdown(SHAPE, setup("qlora", lora=lora, quantized=True))
    linears = linear_parameters(SHAPE)
    rest = parameter_count(SHAPE) - linears
    adapter = lora_parameters(SHAPE, lora)
    assert qlora.weights == pytest.approx(linears * NF4_BYTES_PER_PARAM + (rest + adapter) * FP32)
    assert qlora.optimizer == 8 * adapter  # only the adapter trains


def test_dpo_reference_copy_only_without_an_adapter() -> None:
    from harness.plan._suite import DeviceInfo, training_setup

    cpu = DeviceInfo("cpu", "float32", None, "")
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c"}]
    from harness.plan._suite import BaseModel

    base = BaseModel("x", {}, None)
    dpo = BACKENDS.get("dpo").Config
    peft_setup, _ = training_setup(BACKENDS.get("dpo"), dpo.model_validate({}), rows, base, cpu)
    full_setup, _ = training_setup(
        BACKENDS.get("dpo"), dpo.model_validate({"adapter": "full"}), rows, base, cpu
    )
    with_peft = training_breakdown(SHAPE, peft_setup)
    full = training_breakdown(SHAPE, full_setup)
    assert "reference model" not in with_peft.extra  # trl 1.16: the base with the adapter disabled
    assert full.extra["reference model"] == parameter_count(SHAPE) * FP32


def test_dpo_runs_chosen_and_rejected_together() -> None:
    sft = training_breakdown(SHAPE, setup("lora", lora=LoraShape(2)))
    dpo = training_breakdown(SHAPE, setup("dpo", lora=LoraShape(2)))
    assert dpo.activations > 1.9 * sft.activations - 1  # twice the sequences (head grads aside)


def test_gradient_checkpointing_lowers_activations() -> None:
    from harness.models.presets import preset_config

    shape = model_shape(preset_config("llama-3.2-1b").to_dict())
    plain = training_breakdown(shape, setup("full", seq_len=1024))
    checkpointed = training_breakdown(
        shape, setup("full", seq_len=1024, gradient_checkpointing=True)
    )
    assert checkpointed.activations < plain.activations / 3


def test_grpo_kv_cache_replaces_backward_memory_in_the_peak() -> None:
    grpo = setup(
        "grpo", lora=LoraShape(2), generation_sequences=8, generation_len=40, completion_len=24
    )
    breakdown = training_breakdown(SHAPE, grpo)
    kv = kv_cache_bytes(SHAPE, 8, 40, 4)
    assert breakdown.extra["KV cache (generation)"] == kv == 8 * 40 * 2 * 2 * 8 * 4
    assert breakdown.total == breakdown.weights + breakdown.optimizer + max(
        breakdown.gradients + breakdown.activations, kv
    )


def test_bf16_adds_autocast_copies_for_full_training_only() -> None:
    full = training_breakdown(SHAPE, setup("full", compute_bytes=2))
    lora = training_breakdown(SHAPE, setup("lora", compute_bytes=2, lora=LoraShape(2)))
    assert full.extra["autocast weight copies"] == 2 * linear_parameters(SHAPE)
    assert full.weights == 4 * parameter_count(SHAPE)  # float32 master weights
    assert "autocast weight copies" not in lora.extra


# ---- precision, attention, batch layout and Liger ---------------------------------------------


def test_bf16_frozen_base_is_half_the_bytes() -> None:
    lora = LoraShape(2)
    n, a = parameter_count(SHAPE), lora_parameters(SHAPE, lora)
    fp32 = training_breakdown(SHAPE, setup("lora", lora=lora))
    bf16 = training_breakdown(SHAPE, setup("lora", lora=lora, compute_bytes=2, weight_bytes=2))
    assert fp32.weights == 4 * n + 4 * a
    assert bf16.weights == 2 * n + 4 * a  # the adapter stays float32 (peft upcasts it)
    assert bf16.optimizer == fp32.optimizer == 8 * a
    assert bf16.activations < fp32.activations
    assert "autocast weight copies" not in bf16.extra


def test_qlora_adapter_trains_in_bf16() -> None:
    lora = LoraShape(2)
    a = lora_parameters(SHAPE, lora)
    qlora = training_breakdown(
        SHAPE, setup("qlora", lora=lora, quantized=True, adapter_bytes=2, weight_bytes=2)
    )
    assert (qlora.gradients, qlora.optimizer) == (2 * a, 4 * a)  # trl casts it to bf16
    linears = linear_parameters(SHAPE)
    rest = parameter_count(SHAPE) - linears
    assert qlora.weights == pytest.approx(linears * NF4_BYTES_PER_PARAM + rest * 2 + a * 2)


def test_liger_and_flash_attention_keep_fewer_activations() -> None:
    from harness.plan._estimate import layer_activation_bytes

    # per token and layer, by hand (SHAPE: h 8, i 16, q = kv = 8; float32 residual, bf16 compute):
    # norms 2 x 8 x (4 + 8) = 192; RoPE 2(8 + 8) = 32, attention 5 x 8 = 40, MLP 4 x 16 = 64
    assert layer_activation_bytes(SHAPE, 16, 2) == 192 + (32 + 40 + 64) * 2
    # Liger: norms keep input and output (2 x 8 x 8 = 128), no RoPE copies, SwiGLU 3i
    assert layer_activation_bytes(SHAPE, 16, 2, liger=True) == 128 + (40 + 48) * 2
    # flash attention: q, k, v unrepeated (3q + 2kv = 40 here, as kv == q)
    assert layer_activation_bytes(SHAPE, 16, 2, attention="flash_attention_2") == 192 + 136 * 2

    from harness.models.presets import preset_config

    qwen = model_shape(preset_config("qwen2.5-0.5b").to_dict())  # 14 heads, 2 kv heads
    base = training_breakdown(qwen, setup("full", seq_len=512, compute_bytes=2)).activations
    liger = training_breakdown(qwen, setup("full", seq_len=512, compute_bytes=2, liger=True))
    flash = training_breakdown(
        qwen, setup("full", seq_len=512, compute_bytes=2, attention="flash_attention_2")
    )
    assert liger.activations < 0.9 * base and flash.activations < base


def test_padding_free_counts_real_tokens_and_sdpa_pays_for_the_mask() -> None:
    lora = LoraShape(2)
    padded = training_breakdown(SHAPE, setup("lora", lora=lora))  # 4 x 16 = 64 tokens
    flash = training_breakdown(
        SHAPE, setup("lora", lora=lora, padding_free_tokens=40, attention="flash_attention_2")
    )
    sdpa = training_breakdown(SHAPE, setup("lora", lora=lora, padding_free_tokens=40))
    assert flash.activations < padded.activations
    # SDPA: the same saved tensors (5q instead of 3q + 2kv: equal here) plus a 40 x 40 bool mask
    assert sdpa.activations == flash.activations + 40 * 40


CPU_INFO = DeviceInfo("cpu", "float32", None, "")
GPU_INFO = DeviceInfo("cuda", "bfloat16", None, "")  # `harness plan --device cuda`: bf16 assumed


def test_plan_follows_the_backends_decision() -> None:
    from harness.backends.acceleration import acceleration_plan, installed_libraries
    from harness.plan._suite import BaseModel, training_device, training_setup

    cpu, gpu = CPU_INFO, GPU_INFO
    base = BaseModel("x", {"model_type": "llama"}, None)
    rows = [{"prompt": "a", "completion": "b"}]
    cases = [
        ("lora", {}, gpu, (2, 2, 4)),  # bf16 autocast, bf16 frozen base, float32 adapter
        ("qlora", {}, gpu, (2, 2, 2)),
        ("full", {}, gpu, (2, 4, 4)),  # float32 master weights
        ("lora", {"precision": "fp32"}, gpu, (4, 4, 4)),
        ("lora", {}, cpu, (4, 4, 4)),
        ("dpo", {"adapter": "full"}, gpu, (2, 4, 4)),
    ]
    for backend, args, device, expected in cases:
        config = BACKENDS.get(backend).Config(**args)
        planned, _ = training_setup(BACKENDS.get(backend), config, rows, base, device)
        assert (planned.compute_bytes, planned.weight_bytes, planned.adapter_bytes) == expected
        decision = acceleration_plan(
            training_device(device),
            config,
            installed_libraries(),
            "llama",
        )
        assert planned.attention == decision.attention and planned.liger == decision.liger
        assert planned.gradient_checkpointing == decision.gradient_checkpointing


def test_plan_of_settings_this_machine_cannot_honour() -> None:
    from harness.backends.acceleration import installed_libraries
    from harness.plan._suite import BaseModel, training_setup

    cpu, gpu = CPU_INFO, GPU_INFO
    base = BaseModel("x", {"model_type": "llama"}, None)
    rows = [{"prompt": "a", "completion": "b"}]
    lora = BACKENDS.get("lora").Config
    planned, notes = training_setup(BACKENDS.get("lora"), lora(liger=True), rows, base, gpu)
    assert planned.liger
    if "liger_kernel" not in installed_libraries():
        assert "planned as if it is where the candidate trains" in notes[-1]
    planned, notes = training_setup(
        BACKENDS.get("lora"),
        lora(attention="flash_attention_2"),
        rows,
        base,
        cpu,
    )
    assert planned.attention == "sdpa" and "cannot train on cpu" in notes[-1]


def test_plan_of_packed_and_padding_free_batches(tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    from harness.plan._suite import BaseModel, read_config, sft_row_lengths, training_setup

    cpu = CPU_INFO
    base = BaseModel("tiny", read_config(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir))
    rows = [{"prompt": "Q: What is 2 plus 3? A:", "completion": " " + "5" * n} for n in range(12)]
    lora = BACKENDS.get("lora").Config
    lengths = sorted(sft_row_lengths(lora(), rows, base.tokenizer), reverse=True)
    padded, _ = training_setup(
        BACKENDS.get("lora"), lora(per_device_train_batch_size=4), rows, base, cpu
    )
    free, _ = training_setup(
        BACKENDS.get("lora"),
        lora(per_device_train_batch_size=4, padding_free=True),
        rows,
        base,
        cpu,
    )
    packed, _ = training_setup(
        BACKENDS.get("lora"),
        lora(per_device_train_batch_size=4, packing=True, max_length=16),
        rows,
        base,
        cpu,
    )
    assert padded.padding_free_tokens == 0 and padded.seq_len == lengths[0]
    assert free.padding_free_tokens == sum(lengths[:4])
    assert packed.padding_free_tokens == min(4 * 16, sum(min(n, 16) for n in lengths))


def test_plan_command_shows_the_acceleration(tmp_path: Path) -> None:
    from harness.cli._plan import plan

    out = tmp_path / "plan.json"
    result = CliRunner().invoke(
        plan,
        [
            str(REPO / "suites" / "qa.yaml"),
            "--device",
            "cuda",
            "--memory",
            "80GiB",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "trains with bf16 autocast, bfloat16 weights" in result.output
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["base"]["acceleration"] is None
    assert rows["lora"]["acceleration"]["weights"] == "bfloat16"
    assert rows["full"]["acceleration"]["weights"] == "float32"
    assert rows["full"]["acceleration"]["precision"] == "bf16"
    cpu = CliRunner().invoke(plan, [str(REPO / "suites" / "qa.yaml"), "--memory", "16GiB"])
    assert "trains with fp32, sdpa, padded batches" in cpu.output


# ---- the command -----------------------------------------------------------------------------


def test_plan_command_on_the_example_suite_offline(tmp_path: Path) -> None:
    from harness.cli._plan import plan

    out = tmp_path / "plan.json"
    result = CliRunner().invoke(
        plan, [str(REPO / "suites" / "qa.yaml"), "--json", str(out), "--memory", "16GiB"]
    )
    assert result.exit_code == 0, result.output
    assert "qlora" in result.output and "fits?" in result.output
    data = json.loads(out.read_text())
    rows = {row["name"]: row for row in data["rows"]}
    assert rows["base"]["training"] is None and rows["base"]["fits"] is True
    totals = {n: rows[n]["training"]["total"] for n in ("full", "lora", "qlora")}
    assert totals["full"] > totals["lora"] > totals["qlora"]
    assert rows["grpo"]["training"]["extra"]["KV cache (generation)"] > 0


def test_plan_says_no_when_it_does_not_fit(tmp_path: Path) -> None:
    from harness.cli._plan import plan

    result = CliRunner().invoke(plan, [str(REPO / "suites" / "qa.yaml"), "--memory", "780MiB"])
    assert result.exit_code == 1
    assert "NO" in result.output


def test_parse_size() -> None:
    from harness.plan._suite import parse_size

    assert parse_size("80GiB") == parse_size("80gb") == 80 * 2**30
    assert parse_size("512MiB") == 512 * 2**20


# ---- estimate vs a measured CPU peak ---------------------------------------------------------


@pytest.mark.slow
def test_estimate_within_3x_of_measured_cpu_peak(tmp_path: Path) -> None:
    """Real short trainings of builtin:tiny and a 34M-parameter random Llama (full fine-tuning),
    peak RSS above a baseline taken after a warm-up (benchmarks/bench_planner.py)."""
    out = tmp_path / "planner.json"
    script = REPO / "benchmarks" / "bench_planner.py"
    command = [
        sys.executable,
        str(script),
        "--cases",
        "tiny-full,small-lora",
        "--steps",
        "2",
        "--json",
        str(out),
    ]
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    results = json.loads(out.read_text())
    assert len(results) == 2, results  # both cases measured: never passes on nothing
    for result in results:
        ratio = result["estimate"]["total"] / result["measured"]
        assert 1 / 3 < ratio < 3, result


# ---- accelerate launches: one GPU's share ------------------------------------------------------


def test_sharding_divides_what_each_zero_stage_shards() -> None:
    from harness.plan._estimate import Sharding, sharded

    full = training_breakdown(SHAPE, TrainingSetup(2, 6, FP32))
    ddp = sharded(full, Sharding(4))
    zero3 = sharded(full, Sharding(4, weights=True, gradients=True, optimizer=True))
    assert ddp == full  # every process holds everything
    assert zero3.weights == full.weights / 4 and zero3.optimizer == full.optimizer / 4
    assert zero3.gradients == full.gradients / 4
    assert zero3.activations == full.activations  # each process runs its own micro-batch


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, ("DDP", False, False, False)),
        ("distributed_type: MULTI_GPU\n", ("DDP", False, False, False)),
        (
            "distributed_type: FSDP\nfsdp_config: {fsdp_sharding_strategy: FULL_SHARD}\n",
            ("FSDP FULL_SHARD", True, True, True),
        ),
        (  # older accelerate configs write the strategy's number
            "distributed_type: FSDP\nfsdp_config: {fsdp_sharding_strategy: 2}\n",
            ("FSDP SHARD_GRAD_OP", False, True, True),
        ),
        (
            "distributed_type: FSDP\nfsdp_config: {fsdp_version: 2, fsdp_reshard_after_forward: true}\n",
            ("FSDP FULL_SHARD", True, True, True),
        ),
        (
            "distributed_type: DEEPSPEED\ndeepspeed_config: {zero_stage: 1}\n",
            ("ZeRO-1", False, False, True),
        ),
    ],
)
def test_launch_sharding_is_read_from_the_accelerate_config(
    tmp_path: Path, config: str | None, expected: tuple[str, bool, bool, bool]
) -> None:
    from harness.plan._suite import launch_sharding
    from harness.suite import AccelerateConfig

    path = None
    if config is not None:
        path = tmp_path / "accelerate.yaml"
        path.write_text(config)
    sharding = launch_sharding(AccelerateConfig(4, path))
    assert (sharding.name, sharding.weights, sharding.gradients, sharding.optimizer) == expected
    assert sharding.processes == 4


def test_plan_of_a_candidate_sharded_over_gpus(tmp_path: Path) -> None:
    from harness.plan import plan_suite
    from harness.suite import load_suite

    (tmp_path / "fsdp.yaml").write_text(
        "distributed_type: FSDP\nfsdp_config: {fsdp_sharding_strategy: FULL_SHARD}\n"
    )
    data = REPO / "suites" / "data"
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"""\
name: sharded
base: random:qwen2.5-0.5b
data: {{train: {{path: {data / "new_facts_train.jsonl"}}}, new_facts: {{path: {data / "new_facts.jsonl"}}}}}
capabilities: [{{name: new_facts, checks: [{{type: qa, data: new_facts}}]}}]
candidates:
  - {{name: one, backend: full, data: train}}
  - {{name: four, backend: full, data: train, accelerate: {{num_processes: 4, config_file: fsdp.yaml}}}}
"""
    )
    plan = plan_suite(load_suite(suite), device="cuda", dtype="bfloat16", memory="80GiB")
    rows = {row.name: row for row in plan.rows}
    one, four = rows["one"].training, rows["four"].training
    assert one is not None and four is not None
    assert four.optimizer == one.optimizer / 4 and four.weights == one.weights / 4
    assert four.total < one.total
    assert any("4 processes, FSDP FULL_SHARD: per GPU" in note for note in rows["four"].notes)


def test_a_third_party_backend_is_planned_by_its_memory_profile() -> None:
    """The planner asks the backend, never its name: one that runs two sequences per row against
    a frozen copy of the base is planned so, whatever it is called."""
    from harness.plan._suite import BaseModel, training_setup

    class PairwiseOnAllWeights:
        name = "my-pairwise"

        def memory_profile(self, config: object) -> MemoryProfile:
            return MemoryProfile(answer_fields=("chosen", "rejected"), reference_copy=True)

    full = BACKENDS.get("full")
    rows = [{"prompt": "a", "completion": "b", "chosen": "b", "rejected": "c"}]
    base = BaseModel("x", {}, None)
    plain, _ = training_setup(full, full.Config(), rows, base, CPU_INFO)
    pairwise, _ = training_setup(PairwiseOnAllWeights(), full.Config(), rows, base, CPU_INFO)  # type: ignore[arg-type]
    assert (plain.sequences_per_row, plain.reference_copy) == (1, False)
    assert (pairwise.sequences_per_row, pairwise.reference_copy) == (2, True)
    ours = training_breakdown(SHAPE, replace(pairwise, seq_len=16))
    theirs = training_breakdown(SHAPE, replace(plain, seq_len=16))
    assert ours.extra["reference model"] == parameter_count(SHAPE) * FP32
    assert ours.activations > theirs.activations


def test_chat_suites_are_planned_with_rows_as_trained(tmp_path: Path, tiny_dir: Path) -> None:
    """With `chat_template: true` the backends train templated rows (system prompt included):
    the plan measures those, not the bare prompt and completion."""
    import json
    import shutil

    from harness.plan import plan_suite
    from harness.suite import load_suite

    model = tmp_path / "chatty"
    shutil.copytree(tiny_dir, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    data = REPO / "suites" / "data"
    seq_lens = {}
    for chat in (False, True):
        suite = tmp_path / f"chat-{chat}.yaml"
        suite.write_text(
            f"name: chat\nbase: {model}\n"
            f"generation: {{chat_template: {str(chat).lower()}, system_prompt: Answer briefly and only with the fact.}}\n"
            f"data: {{train: {{path: {data / 'new_facts_train.jsonl'}}}, "
            f"new: {{path: {data / 'new_facts.jsonl'}}}}}\n"
            "capabilities: [{name: c, checks: [{type: qa, data: new}]}]\n"
            "candidates: [{name: lora, backend: lora, data: train}]\n"
        )
        plan = plan_suite(load_suite(suite), device="cpu")
        seq_lens[chat] = next(row.seq_len for row in plan.rows if row.name == "lora")
    # The system prompt alone is longer than the template's markers: well over 10 more tokens.
    assert seq_lens[True] is not None and seq_lens[False] is not None
    assert seq_lens[True] > seq_lens[False] + 10, seq_lens
