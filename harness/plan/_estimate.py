"""Memory estimates for training and evaluating a decoder transformer: pure arithmetic, no torch.

`harness plan` (harness/memory_plan.py reads the suite, configs and token lengths; cli_plan.py
prints) calls these functions. Everything here is a function of numbers, so it is tested on
hand-computed cases. The formulas follow what the backends really run (trl 1.16, peft, bnb):

- Precision, attention, batch layout and Liger are what `harness.backends.acceleration` decides
  for the candidate (the backends train with the same decision). Under bf16 (autocast) weights
  that train stay float32: they are the mixed-precision master weights, with no separate master
  copy, and autocast keeps a bf16 copy of each trainable matmul weight for the step (counted in
  `extra`). A frozen base under an adapter is loaded in bf16 then (2 bytes a weight), and its
  residual stream is bf16 too; in fp32 everything is float32.
- Gradients and AdamW's two states (exp_avg, exp_avg_sq): one each per trainable parameter, in
  the trainable weights' dtype: float32, except QLoRA's adapter, which trl 1.16 casts to bf16.
- Full fine-tuning with frozen weights (`freeze:`, `FrozenShape`): gradients, AdamW states and
  autocast's cached copies only for the weights that train (a frozen weight has no gradient, is
  never handed to the optimizer, and autocast caches only casts of weights that require grad);
  the frozen bottom layers save no activations (nothing below them needs a gradient) unless
  gradient checkpointing is on, which makes the embeddings' output require grad so every layer
  keeps its input. A gradual schedule peaks at its end, with every group that ever trains.
- QLoRA: every linear layer of the decoder blocks in NF4 (0.5 byte/param) plus double-quant
  constants (one 8-bit absmax per 64-weight block, one float32 absmax per 256 blocks); the
  embeddings, norms and an untied lm_head stay in the base's dtype (bitsandbytes leaves them).
- Activations, per token and decoder layer (Korthikanti et al. 2022, "Reducing activation
  recomputation", redone for a Llama block with SDPA attention): see `layer_activation_bytes`;
  flash attention keeps k and v unrepeated, Liger's kernels keep less for the norms, RoPE and
  SwiGLU. Gradient checkpointing keeps only each layer's input and recomputes one layer at a time.
- Padding-free batches hold their real tokens (the sum of the rows' lengths) instead of batch x
  longest row; with SDPA or eager attention transformers then builds one block-diagonal mask over
  the flattened batch (a byte per token pair), and eager attention spans it whole.
- trl 1.16 never materialises the (batch, sequence, vocabulary) logits when training: its fused
  LM head scores tiles of 4,096 tokens x 32,768 vocabulary entries (`lm_head_bytes`). It switches
  Liger's own fused cross-entropy off, so Liger does not change this term. The exception is
  ORPO (`trl.experimental`): it takes the model's full logits, so their bytes count instead
  (`full_logits_bytes`).
- DPO runs chosen and rejected in one forward (twice the sequences). Its reference is the base
  with the adapter disabled when training a LoRA adapter (no second copy: trl 1.16 sets
  `ref_model = None` for a peft model) and a frozen float32 copy with `adapter: full`. GRPO
  needs a reference only when beta > 0, under the same rule. ORPO needs no reference; KTO holds
  one under the same rule and, each step, runs forwards without gradients (the reference on the
  completions; the policy and the reference on mismatched pairs for its KL term) while the
  policy's activations are held: one such forward's temporaries are counted
  (`no_grad_forward_bytes`) on top of the gradients too, which is an upper bound (the gradients
  of a step are made after them).
- DoRA (peft 0.21.2, `DoraLinearLayer.forward`): see `dora_activation_bytes`. Its column norm of
  W + scale B A is computed per layer and detached, so that full-size weight is a temporary; what
  costs memory is that the magnitude's gradient keeps the base output and the LoRA output of
  every adapted linear (two tensors of tokens x out features) until backward.
- Generation buffers (KV cache): 2 (K and V) x layers x kv heads x head dim per token, for GRPO's
  generation batch x (prompt + max_completion_length) and the evaluation batch x (prompt +
  max_new_tokens).
- The peak adds the phases that coexist: the optimizer states live from the first step on; the
  gradients and saved activations exist together during backward; a generation's KV cache is
  freed before the backward that follows it, so it counts against activations + gradients, not
  on top of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.core.errors import HarnessError

FP32 = 4
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# bitsandbytes NF4 with double quantisation: 4 bits + an 8-bit absmax per 64 weights + a float32
# absmax per 256 of those blocks (QLoRA paper, section 3: 0.127 bits/param of constants).
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
# trl 1.16 `kernels/chunked_logprob.py`: TOKEN_CHUNK_SIZE and the vocabulary chunk it is given.
LM_HEAD_TOKEN_TILE = 4096
LM_HEAD_VOCAB_TILE = 32768
# Families whose MLP is gated (gate_proj, up_proj, down_proj); others have two matrices (fc1, fc2).
GATED_MLP = frozenset(
    {"llama", "qwen2", "qwen3", "mistral", "mixtral", "gemma", "gemma2", "gemma3_text", "phi3",
     "olmo", "olmo2", "granite", "cohere", "smollm3", "internlm2", "deepseek_v2", "yi"}
)  # fmt: skip
# Families whose q, k and v projections always carry a bias (and o_proj none).
QKV_BIAS = frozenset({"qwen2"})
QK_NORM = frozenset({"qwen3", "olmo2"})


@dataclass(frozen=True)
class ModelShape:
    """What the estimates need from a model's config."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool
    gated_mlp: bool = True
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    max_positions: int = 2048
    eager_attention: bool = False  # attention probabilities are materialised (not SDPA/flash)


@dataclass(frozen=True)
class Linear:
    """One linear layer of a decoder block: its peft name and shape."""

    name: str
    in_features: int
    out_features: int
    bias: bool = False

    @property
    def weights(self) -> int:
        return self.in_features * self.out_features


def _field(config: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    if default is None:
        raise HarnessError(
            f"the model config has no {' / '.join(names)}: the planner estimates decoder "
            "transformers (Llama, Qwen, Mistral, GPT-2-like configs)"
        )
    return default


def model_shape(config: Mapping[str, Any]) -> ModelShape:
    """A ModelShape from a config dict (`config.to_dict()` or config.json), without weights."""
    text = config.get("text_config") or config  # multimodal configs nest the decoder's
    model_type = str(config.get("model_type", text.get("model_type", "")))
    hidden = int(_field(text, "hidden_size", "n_embd", "d_model"))
    heads = int(_field(text, "num_attention_heads", "n_head"))
    attention_bias = bool(text.get("attention_bias", False))
    implementation = str(text.get("_attn_implementation") or text.get("attn_implementation") or "")
    return ModelShape(
        model_type=model_type,
        vocab_size=int(_field(text, "vocab_size")),
        hidden_size=hidden,
        intermediate_size=int(_field(text, "intermediate_size", "n_inner", default=4 * hidden)),
        num_layers=int(_field(text, "num_hidden_layers", "n_layer")),
        num_heads=heads,
        num_kv_heads=int(_field(text, "num_key_value_heads", default=heads)),
        head_dim=int(_field(text, "head_dim", default=hidden // heads)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
        gated_mlp=model_type in GATED_MLP,
        qkv_bias=attention_bias or model_type in QKV_BIAS,
        o_bias=attention_bias,
        mlp_bias=bool(text.get("mlp_bias", False)),
        qk_norm=model_type in QK_NORM,
        max_positions=int(_field(text, "max_position_embeddings", "n_positions", default=2048)),
        eager_attention=implementation == "eager",
    )


# ---- parameters ------------------------------------------------------------------------------


def block_linears(shape: ModelShape) -> list[Linear]:
    """The linear layers of one decoder block, with peft's module names."""
    h, q, kv = (
        shape.hidden_size,
        shape.num_heads * shape.head_dim,
        shape.num_kv_heads * shape.head_dim,
    )
    attention = [
        Linear("q_proj", h, q, shape.qkv_bias),
        Linear("k_proj", h, kv, shape.qkv_bias),
        Linear("v_proj", h, kv, shape.qkv_bias),
        Linear("o_proj", q, h, shape.o_bias),
    ]
    i, bias = shape.intermediate_size, shape.mlp_bias
    if shape.gated_mlp:
        mlp = [
            Linear("gate_proj", h, i, bias),
            Linear("up_proj", h, i, bias),
            Linear("down_proj", i, h, bias),
        ]
    else:
        mlp = [Linear("fc1", h, i, bias), Linear("fc2", i, h, bias)]
    return attention + mlp


def linear_parameters(shape: ModelShape) -> int:
    """Weights of every decoder-block linear layer (what QLoRA quantises), biases excluded."""
    return shape.num_layers * sum(linear.weights for linear in block_linears(shape))


def parameter_count(shape: ModelShape) -> int:
    """Parameters of the model, tied embeddings counted once (as `model.parameters()` does)."""
    h = shape.hidden_size
    biases = sum(linear.out_features for linear in block_linears(shape) if linear.bias)
    norms = 2 * h + (2 * shape.head_dim if shape.qk_norm else 0)
    per_layer = biases + norms
    embeddings = shape.vocab_size * h * (1 if shape.tie_word_embeddings else 2)
    return linear_parameters(shape) + shape.num_layers * per_layer + embeddings + h


@dataclass(frozen=True)
class FrozenShape:
    """Full fine-tuning with frozen weights: the top `trained_layers` decoder layers train (None:
    all), whole or only their "attention" or "mlp" blocks; whole layers bring the final norm and
    an untied LM head with them. The embeddings, and a head tied to them, never train."""

    trained_layers: int | None = None
    only: str | None = None


def trained_layer_count(shape: ModelShape, frozen: FrozenShape) -> int:
    return min(frozen.trained_layers or shape.num_layers, shape.num_layers)


def trained_linears(shape: ModelShape, only: str | None) -> list[Linear]:
    """A block's linears that train: all, or the attention (q, k, v, o) or MLP ones."""
    linears = block_linears(shape)
    return {"attention": linears[:4], "mlp": linears[4:]}.get(str(only), linears)


def frozen_trainable_parameters(shape: ModelShape, frozen: FrozenShape) -> int:
    """The weights a freezing schedule trains: per trained layer its linears (+ biases) and, for
    whole layers, its two norms (attention alone: its q/k norms); plus the final norm and an
    untied LM head when whole layers train."""
    linears = trained_linears(shape, frozen.only)
    per_layer = sum(t.weights + (t.out_features if t.bias else 0) for t in linears)
    qk_norms = 2 * shape.head_dim if shape.qk_norm else 0
    if frozen.only is None:
        per_layer += 2 * shape.hidden_size + qk_norms
    elif frozen.only == "attention":
        per_layer += qk_norms
    top = 0 if frozen.only else shape.hidden_size + untied_head_parameters(shape)
    return trained_layer_count(shape, frozen) * per_layer + top


def untied_head_parameters(shape: ModelShape) -> int:
    return 0 if shape.tie_word_embeddings else shape.vocab_size * shape.hidden_size


def head_trains(shape: ModelShape, setup: TrainingSetup) -> bool:
    """The LM head's weight gets a gradient: all weights train, or a freezing schedule trains
    whole layers of a model whose head is not the (frozen) input embedding."""
    if setup.lora is not None:
        return False
    frozen = setup.frozen
    return frozen is None or (frozen.only is None and not shape.tie_word_embeddings)


@dataclass(frozen=True)
class LoraShape:
    """A trained adapter (harness.backends.AdapterShape): LoRA, or the peft `method` named."""

    r: int
    target_modules: str | tuple[str, ...] = "all-linear"
    use_dora: bool = False
    method: str = "lora"  # lora, ia3, prompt_tuning, prefix_tuning, adaption_prompt
    virtual_tokens: int = 0  # prompt/prefix tuning's virtual tokens; adaption prompt's length
    layers: int | None = None  # adaption prompt: the top layers adapted (None: all)
    feedforward_modules: tuple[str, ...] = ()  # IA3: targets scaled on their input
    dropout: bool = False  # lora_dropout > 0: DoRA then recomputes the base output itself


def lora_targets(shape: ModelShape, lora: LoraShape) -> list[Linear]:
    """The block linears an adapter wraps: all of them for "all-linear" (peft leaves lm_head out),
    else those whose name is listed."""
    linears = block_linears(shape)
    if lora.target_modules == "all-linear":
        return linears
    names = (
        {lora.target_modules} if isinstance(lora.target_modules, str) else set(lora.target_modules)
    )
    return [linear for linear in linears if linear.name in names]


def lora_parameters(shape: ModelShape, lora: LoraShape) -> int:
    """A: r x in, B: out x r per wrapped linear (+ DoRA's magnitude vector, one per output)."""
    per_layer = sum(
        lora.r * (t.in_features + t.out_features) + (t.out_features if lora.use_dora else 0)
        for t in lora_targets(shape, lora)
    )
    return shape.num_layers * per_layer


def adapter_parameters(shape: ModelShape, adapter: LoraShape) -> int:
    """Trainable parameters of any adapter, as peft 0.21 builds it for a causal LM:
    - LoRA: `lora_parameters`;
    - IA3: one vector per targeted linear and layer, as long as its output (its input for a
      feedforward module);
    - prompt tuning: virtual tokens x hidden size (one embedding table);
    - prefix tuning: virtual tokens x layers x 2 (keys, values) x kv heads x head dim (peft sizes
      the prefix for grouped-query attention by the kv heads);
    - adaption prompt: per adapted (top) layer a prompt of virtual tokens x hidden size and a
      scalar gate."""
    n = adapter.virtual_tokens
    if adapter.method == "ia3":
        return shape.num_layers * ia3_layer_elements(shape, adapter)
    if adapter.method == "prompt_tuning":
        return n * shape.hidden_size
    if adapter.method == "prefix_tuning":
        return n * shape.num_layers * 2 * shape.num_kv_heads * shape.head_dim
    if adapter.method == "adaption_prompt":
        return adapted_layers(shape, adapter) * (n * shape.hidden_size + 1)
    return lora_parameters(shape, adapter)


def ia3_layer_elements(shape: ModelShape, adapter: LoraShape) -> int:
    """IA3's scaling vectors in one layer: a feedforward target's input width, another's output."""
    return sum(
        t.in_features if t.name in adapter.feedforward_modules else t.out_features
        for t in lora_targets(shape, adapter)
    )


def adapted_layers(shape: ModelShape, adapter: LoraShape) -> int:
    return min(adapter.layers or shape.num_layers, shape.num_layers)


# ---- activations -----------------------------------------------------------------------------


def layer_activation_bytes(
    shape: ModelShape,
    seq_len: int,
    compute_bytes: int,
    lora_r: int = 0,
    *,
    residual_bytes: int = FP32,
    liger: bool = False,
    attention: str = "sdpa",
) -> float:
    """Bytes one decoder layer saves for backward, per token (a Llama block, SDPA attention).

    - two RMSNorms, computed in float32 by transformers: the float32 input, the normalised value
      and the weighted output, in the residual stream's dtype (so 3h float32 in fp32); Liger's
      RMSNorm keeps only its input and output (and a float32 scalar per row);
    - RoPE: q and k before rotation and their rotated halves, 2(q + kv); Liger rotates in place;
    - attention: q, k and v as SDPA sees them (k and v repeated to every head), its output, and
      the output made contiguous for o_proj: 5q (flash attention: q, k, v unrepeated, 3q + 2kv);
    - gated MLP: gate output, SiLU output, up output and their product: 4i (Liger's SwiGLU
      recomputes the SiLU: 3i); 2i for two-matrix MLPs;
    - eager attention also keeps the probabilities, in float32 then cast back: 2 x heads x seq;
    - a LoRA adapter keeps its r-wide intermediate per wrapped linear (7r for all-linear).
    """
    h, i = shape.hidden_size, shape.intermediate_size
    q = shape.num_heads * shape.head_dim
    kv = shape.num_kv_heads * shape.head_dim
    norms = 2 * h * (2 * residual_bytes if liger else FP32 + 2 * residual_bytes)
    rope = 0 if liger else 2 * (q + kv)
    attention_saved = 3 * q + 2 * kv if attention.startswith("flash") else 5 * q
    mlp = ((3 if liger else 4) if shape.gated_mlp else 2) * i
    elements = rope + attention_saved + mlp + len(block_linears(shape)) * lora_r
    if shape.eager_attention or attention == "eager":
        elements += 2 * shape.num_heads * seq_len
    return norms + elements * compute_bytes


def lm_head_bytes(
    shape: ModelShape, tokens: int, compute_bytes: int, *, trains_head: bool, gpu: bool
) -> float:
    """trl's fused LM head: the final norm's output it keeps (float32 h per token), one logits tile
    (float32 temporaries of the same size on the torch path the CPU takes; the GPU's Triton kernel
    works in place), the float32 gradient of the hidden states, and when the head trains
    (full fine-tuning; it is the embedding when tied) its float32 weight gradient."""
    tile_bytes = lm_head_tile_bytes(shape, tokens, compute_bytes, gpu=gpu)
    hidden = tokens * shape.hidden_size * (FP32 + FP32 + compute_bytes)
    head_grad = shape.vocab_size * shape.hidden_size * FP32 if trains_head else 0
    return tile_bytes + hidden + head_grad


def lm_head_tile_bytes(shape: ModelShape, tokens: int, compute_bytes: int, *, gpu: bool) -> float:
    """One tile of trl's fused LM head: its logits, and on the CPU's torch path three float32
    temporaries of the same size."""
    tile = min(tokens, LM_HEAD_TOKEN_TILE) * min(shape.vocab_size, LM_HEAD_VOCAB_TILE)
    return tile * (compute_bytes + (0 if gpu else 3 * FP32))


def full_logits_bytes(shape: ModelShape, tokens: int, compute_bytes: int) -> float:
    """Materialised logits (ORPO): the logits and their gradient in the compute dtype, and the
    float32 log-probabilities its losses keep for backward, per token and vocabulary entry."""
    return tokens * shape.vocab_size * (2 * compute_bytes + FP32)


def no_grad_forward_bytes(
    shape: ModelShape, tokens: int, compute_bytes: int, *, gpu: bool
) -> float:
    """A forward without gradients through the fused LM head (KTO's reference and KL passes):
    the layers' temporaries and one head tile."""
    layers = inference_activation_bytes(shape, tokens, compute_bytes)
    return layers + lm_head_tile_bytes(shape, tokens, compute_bytes, gpu=gpu)


def training_activation_bytes(
    shape: ModelShape,
    sequences: int,
    seq_len: int,
    compute_bytes: int,
    *,
    checkpointing: bool,
    lora_r: int = 0,
    residual_bytes: int = FP32,
    liger: bool = False,
    attention: str = "sdpa",
    padding_free_tokens: int = 0,
) -> float:
    """Saved activations of one micro-batch. Without checkpointing every layer keeps all it saves;
    with it each layer keeps its input and one layer at a time is recomputed in backward.

    A padding-free micro-batch (`padding_free_tokens` > 0) is one sequence of that many tokens:
    flash attention still sees each row alone (span `seq_len`), SDPA and eager attend over the
    whole flattened batch through one block-diagonal boolean mask, kept for backward."""
    tokens, span, mask = sequences * seq_len, seq_len, 0
    if padding_free_tokens:
        tokens = padding_free_tokens
        if not attention.startswith("flash"):
            span, mask = tokens, tokens * tokens
    one_layer = tokens * layer_activation_bytes(
        shape, span, compute_bytes, lora_r,
        residual_bytes=residual_bytes, liger=liger, attention=attention,
    )  # fmt: skip
    if checkpointing:
        return shape.num_layers * tokens * shape.hidden_size * residual_bytes + one_layer + mask
    return shape.num_layers * one_layer + mask


def adapter_activation_bytes(
    shape: ModelShape,
    adapter: LoraShape,
    sequences: int,
    seq_len: int,
    compute_bytes: int,
    *,
    checkpointing: bool,
) -> float:
    """What an adapter other than LoRA adds to a micro-batch's saved activations (LoRA's r-wide
    intermediates are in `layer_activation_bytes`; prompt tuning's virtual tokens lengthen every
    sequence instead, see `training_breakdown`). Per layer:
    - IA3: each scaling keeps the unscaled tensor for its vector's gradient, per token as wide as
      the vector;
    - prefix tuning: the virtual keys and values, repeated to every head as SDPA sees them, per
      sequence 2 x virtual tokens x q;
    - adaption prompt (adapted layers only), per token: the recomputed and the rotated queries
      (2q), the scores and their float32 softmax (heads x virtual tokens each), the gated output
      (q) and its o_proj output (h); per sequence its keys and values repeated to every head.
    With gradient checkpointing one layer's worth is held at a time (recomputed in backward)."""
    n, tokens = adapter.virtual_tokens, sequences * seq_len
    q = shape.num_heads * shape.head_dim
    layers = shape.num_layers
    if adapter.method == "ia3":
        per_layer = tokens * ia3_layer_elements(shape, adapter) * compute_bytes
    elif adapter.method == "prefix_tuning":
        per_layer = sequences * 2 * n * q * compute_bytes
    elif adapter.method == "adaption_prompt":
        layers = adapted_layers(shape, adapter)
        scores = shape.num_heads * n
        per_token = (3 * q + shape.hidden_size + scores) * compute_bytes + scores * FP32
        per_layer = tokens * per_token + sequences * 2 * n * q * compute_bytes
    else:
        return 0.0
    return per_layer * (1 if checkpointing else layers)


def dora_activation_bytes(
    shape: ModelShape,
    adapter: LoraShape,
    tokens: int,
    compute_bytes: int,
    *,
    checkpointing: bool,
    quantized: bool = False,
) -> float:
    """What DoRA adds to LoRA's saved activations for a micro-batch of `tokens` tokens, as
    peft 0.21.2's `DoraLinearLayer.forward` runs in training (dora.py, variants.py), per adapted
    linear of out features `o` and in features `i`:

    - kept until backward: `(m / ||W + s B A||_c - 1) * base_out + m / ||.||_c * lora_out * s`
      needs, for the magnitude m's gradient, `base_out` and `lora_out = B(A(x))` themselves:
      2 x tokens x o in the compute dtype (autocast's linear outputs). LoRA keeps neither (its
      `base_out + lora_out * s` saves nothing). Counted for every layer (one with checkpointing);
    - with lora_dropout > 0 DoRA recomputes the base output as `F.linear(dropout(x), W)`, which
      keeps its weight for the input's gradient: a fresh o x i copy per adapted linear when that
      weight is a cast (autocast's bf16 copy of the weight) or a dequantised 4-bit weight; in
      float32 it is the parameter itself, nothing new;
    - one transient, in the backward of the widest adapted linear: the float32 magnitude makes
      the combination float32 (type promotion), so its backward holds about three float32
      tokens x o tensors at once (the output's gradient, its scaled copy, a product reduced to
      the magnitude's gradient).

    Not counted, being per layer and freed before the next: the column norm's inputs, W and
    B A (an identity of i x i through A and B) in full size, detached (no gradient flows
    through the norm: DoRA paper, section 4.3)."""
    targets = lora_targets(shape, adapter)
    if adapter.method != "lora" or not adapter.use_dora or not targets:
        return 0.0
    per_layer = 2 * tokens * sum(t.out_features for t in targets) * compute_bytes
    if adapter.dropout and (quantized or compute_bytes < FP32):
        per_layer += sum(t.weights for t in targets) * compute_bytes
    backward = 3 * tokens * max(t.out_features for t in targets) * FP32
    return per_layer * (1 if checkpointing else shape.num_layers) + backward


def inference_activation_bytes(shape: ModelShape, tokens: int, compute_bytes: int) -> float:
    """A forward without gradients frees each layer's tensors as it goes: the residual stream plus
    the widest layer's temporaries (q, k, v, attention output, gate/up/product) are alive at once."""
    h, i = shape.hidden_size, shape.intermediate_size
    q = shape.num_heads * shape.head_dim
    kv = shape.num_kv_heads * shape.head_dim
    return tokens * (2 * h + max(2 * q + 2 * kv, 3 * i)) * compute_bytes


def kv_cache_bytes(shape: ModelShape, sequences: int, seq_len: int, compute_bytes: int) -> float:
    """K and V of every layer for `sequences` x `seq_len` tokens."""
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * compute_bytes
    return sequences * seq_len * per_token


# ---- plans -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSetup:
    """One candidate's training, reduced to what memory depends on."""

    batch_size: int  # per-device micro-batch (rows)
    seq_len: int  # tokens of the longest training sequence (prompt + answer), capped at max_length
    compute_bytes: int  # 2 under bf16/fp16 autocast, 4 in float32
    gradient_checkpointing: bool = False
    lora: LoraShape | None = None  # None: all weights train
    quantized: bool = False  # NF4 base
    weight_bytes: int = FP32  # bytes of a base weight as loaded (2: a frozen bf16 base)
    adapter_bytes: int = FP32  # bytes of an adapter weight, its gradient and states (QLoRA: 2)
    attention: str = "sdpa"  # sdpa, eager or flash_attention_2
    liger: bool = False  # Liger's RMSNorm, RoPE and SwiGLU kernels
    padding_free_tokens: int = 0  # padding-free: tokens of the largest flattened micro-batch
    reference_copy: bool = False  # a frozen copy of the base (DPO/GRPO with adapter: full)
    generation_sequences: int = 0  # GRPO: completions generated at once
    generation_len: int = 0  # GRPO: prompt + max_completion_length
    completion_len: int = 0  # GRPO: the tokens scored by the fused head
    gpu: bool = False
    sequences_per_row: int = 1  # sequences a row makes in one step (DPO: chosen and rejected)
    frozen: FrozenShape | None = None  # full fine-tuning with part of the weights frozen
    no_grad_forwards: int = 0  # forwards without gradients a step runs (KTO: reference, KL)
    full_logits: bool = False  # the (sequences, length, vocabulary) logits exist (ORPO)


@dataclass(frozen=True)
class Breakdown:
    """Bytes of one phase's peak, by kind; `extra` names what does not fit the other columns."""

    weights: float
    gradients: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    # The extras that replace (not add to) gradients + activations at the peak (a KV cache).
    exclusive: frozenset[str] = frozenset()
    trainable_parameters: int = 0
    total_parameters: int = 0

    @property
    def total(self) -> float:
        """The peak: see the module docstring for which phases coexist."""
        additive = sum(v for k, v in self.extra.items() if k not in self.exclusive)
        during_backward = self.gradients + self.activations
        generation = sum(v for k, v in self.extra.items() if k in self.exclusive)
        return self.weights + self.optimizer + additive + max(during_backward, generation)

    def as_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer": self.optimizer,
            "activations": self.activations,
            "extra": dict(self.extra),
            "total": self.total,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
        }


def base_weight_bytes(shape: ModelShape, quantized: bool, weight_bytes: int = FP32) -> float:
    """The base as the trainer holds it: in its dtype, or NF4 decoder linears + the rest in it."""
    total = parameter_count(shape)
    if not quantized:
        return total * weight_bytes
    linears = linear_parameters(shape)
    return linears * NF4_BYTES_PER_PARAM + (total - linears) * weight_bytes


def training_breakdown(shape: ModelShape, setup: TrainingSetup) -> Breakdown:
    """Peak memory of training one candidate (see the module docstring for the rules)."""
    base = parameter_count(shape)
    adapter = adapter_parameters(shape, setup.lora) if setup.lora else 0
    frozen = setup.frozen if setup.lora is None else None
    trainable = adapter or (frozen_trainable_parameters(shape, frozen) if frozen else base)
    trainable_bytes = setup.adapter_bytes if setup.lora else FP32
    weights = base_weight_bytes(shape, setup.quantized, setup.weight_bytes)
    weights += adapter * setup.adapter_bytes
    extra: dict[str, float] = {}
    if setup.reference_copy:
        extra["reference model"] = base_weight_bytes(shape, setup.quantized, setup.weight_bytes)
    if setup.compute_bytes < FP32 and setup.lora is None:
        # autocast caches a low-precision copy of every trainable weight it casts (the linears)
        cast = linear_parameters(shape)
        if frozen:
            layers = trained_layer_count(shape, frozen)
            cast = layers * sum(t.weights for t in trained_linears(shape, frozen.only))
        extra["autocast weight copies"] = cast * setup.compute_bytes
    sequences = setup.batch_size * setup.sequences_per_row
    saving = shape  # the layers that save activations (frozen ones below the trained: none)
    if frozen and not setup.gradient_checkpointing:
        saving = replace(shape, num_layers=trained_layer_count(shape, frozen))
    lora = setup.lora
    # prompt tuning's virtual tokens go before every sequence, through every layer
    seq_len = setup.seq_len + (
        lora.virtual_tokens if lora and lora.method == "prompt_tuning" else 0
    )
    activations = training_activation_bytes(
        saving, sequences, seq_len, setup.compute_bytes,
        checkpointing=setup.gradient_checkpointing,
        lora_r=lora.r if lora and lora.method == "lora" else 0,
        residual_bytes=setup.weight_bytes, liger=setup.liger, attention=setup.attention,
        padding_free_tokens=setup.padding_free_tokens,
    )  # fmt: skip
    if lora is not None:
        activations += adapter_activation_bytes(
            shape, lora, sequences, seq_len, setup.compute_bytes,
            checkpointing=setup.gradient_checkpointing,
        )  # fmt: skip
        activations += dora_activation_bytes(
            shape, lora, setup.padding_free_tokens or sequences * seq_len, setup.compute_bytes,
            checkpointing=setup.gradient_checkpointing, quantized=setup.quantized,
        )  # fmt: skip
    scored = setup.completion_len or setup.seq_len
    if setup.full_logits:
        activations += full_logits_bytes(shape, sequences * setup.seq_len, setup.compute_bytes)
    else:
        activations += lm_head_bytes(
            shape,
            setup.padding_free_tokens or sequences * scored,
            setup.compute_bytes,
            trains_head=head_trains(shape, setup),
            gpu=setup.gpu,
        )
    if setup.no_grad_forwards:
        extra["forwards without gradients"] = no_grad_forward_bytes(
            shape, sequences * setup.seq_len, setup.compute_bytes, gpu=setup.gpu
        )
    exclusive: frozenset[str] = frozenset()
    if setup.generation_sequences:
        extra["KV cache (generation)"] = kv_cache_bytes(
            shape, setup.generation_sequences, setup.generation_len, setup.compute_bytes
        )
        exclusive = frozenset({"KV cache (generation)"})
    return Breakdown(
        weights=weights,
        gradients=trainable * trainable_bytes,
        optimizer=trainable * 2 * trainable_bytes,
        activations=activations,
        extra=extra,
        exclusive=exclusive,
        trainable_parameters=trainable,
        total_parameters=base + adapter,
    )


@dataclass(frozen=True)
class EvaluationSetup:
    """The evaluation of one model: batch size, the longest case, and what the checks need."""

    batch_size: int
    weight_bytes: int  # bytes per parameter as evaluated (the `--dtype`)
    prompt_len: int  # tokens of the longest generation prompt
    max_new_tokens: int
    score_len: int = 0  # tokens of the longest scored (log-likelihood) input; 0: none
    generates: bool = True
    adapter_parameters: int = 0  # an unmerged LoRA adapter evaluated on its base


def evaluation_breakdown(shape: ModelShape, setup: EvaluationSetup) -> Breakdown:
    """Peak memory of evaluating a model: weights, the larger of a scoring forward (full logits,
    as lm-eval's log-likelihoods need) and a generation prefill, and the generation's KV cache."""
    params = parameter_count(shape) + setup.adapter_parameters
    b, batch = setup.weight_bytes, setup.batch_size
    gen_len = setup.prompt_len + setup.max_new_tokens if setup.generates else 0
    scoring = 0.0
    if setup.score_len:
        tokens = batch * setup.score_len
        scoring = inference_activation_bytes(shape, tokens, b) + tokens * shape.vocab_size * b
    prefill = inference_activation_bytes(shape, batch * setup.prompt_len, b) if gen_len else 0.0
    extra: dict[str, float] = {}
    if gen_len:
        extra["KV cache (evaluation)"] = kv_cache_bytes(shape, batch, gen_len, b)
    return Breakdown(
        weights=params * b,
        activations=max(scoring, prefill + batch * shape.vocab_size * FP32),
        extra=extra,
        total_parameters=params,
    )


@dataclass(frozen=True)
class Sharding:
    """What a multi-process launch divides among its processes (ZeRO's stages): DDP and
    NO_SHARD nothing; ZeRO-1 the optimizer states; ZeRO-2 and SHARD_GRAD_OP also the gradients;
    ZeRO-3 and FULL_SHARD also the weights. Activations stay per process (its own micro-batch)."""

    processes: int
    name: str = "DDP"
    optimizer: bool = False
    gradients: bool = False
    weights: bool = False


def sharded(breakdown: Breakdown, sharding: Sharding) -> Breakdown:
    """One process's share of a training peak (what each GPU must hold)."""
    n = sharding.processes

    def share(value: float, divided: bool) -> float:
        return value / n if divided else value

    return replace(
        breakdown,
        weights=share(breakdown.weights, sharding.weights),
        gradients=share(breakdown.gradients, sharding.gradients),
        optimizer=share(breakdown.optimizer, sharding.optimizer),
    )


def peak(breakdowns: Sequence[Breakdown]) -> float:
    return max((b.total for b in breakdowns), default=0.0)


def human_bytes(value: float) -> str:
    """1.5 GiB, 820 MiB, 12 KiB: binary units, three significant figures."""
    if value < 1024:
        return f"{value:.0f} B"
    exponent = min(int(math.log(value, 1024)), 4)
    scaled = value / 1024**exponent
    unit = ("B", "KiB", "MiB", "GiB", "TiB")[exponent]
    return f"{scaled:.3g} {unit}" if scaled < 1000 else f"{scaled:.0f} {unit}"
