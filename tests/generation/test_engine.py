"""The engine on a real (random, tiny) Llama: batching, stopping, caching, lm-eval parity."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.generation import Engine, GenerationSettings
from harness.generation._cache import DictCache
from harness.models import LoadedModel

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MAX_LENGTH = 64  # small, so truncation and several rolling windows are exercised


def _corpus(n: int = 300) -> list[str]:
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "over", "green"]
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        lines.append(f"Q: What is {a} plus {b}? A: {a + b}")
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + ".")
    return lines


def _build_tiny(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_corpus(), trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|pad|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LENGTH,
        initializer_range=0.3,  # peaked logits: argmax never hangs on a float-noise tie
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tok.save_pretrained(directory)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = tmp_path_factory.mktemp("tiny")
    _build_tiny(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return LoadedModel(str(directory), model, tokenizer, fingerprint="test")


class ForwardCounter:
    """Counts model forward calls and keeps each call's input ids."""

    def __init__(self, model: Any) -> None:
        self.inputs: list[torch.Tensor] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.inputs.append(ids)

    @property
    def calls(self) -> int:
        return len(self.inputs)


@pytest.fixture
def counter(tiny: LoadedModel) -> Iterator[ForwardCounter]:
    c = ForwardCounter(tiny.model)
    yield c
    c.handle.remove()


PROMPTS = [
    "Q: What is 2 plus 3? A:",
    "the cat",
    "Q: What is 41 plus 17? A: 58. Q: What is 9 plus 90? A:",
    "dogs ran over green hills near old towns while the cat sat on a mat",
    "a",
    "Q: What is 5 plus 5? A:",
]
NO_STOP = GenerationSettings(max_new_tokens=12, stop=())


def test_batched_generation_equals_one_at_a_time(tiny: LoadedModel) -> None:
    batched = Engine(tiny, batch_size=4).generate(PROMPTS, NO_STOP)
    single = [Engine(tiny, batch_size=1).generate([p], NO_STOP)[0] for p in PROMPTS]
    assert batched == single
    assert any(batched)


def test_generation_is_deterministic_and_in_input_order(tiny: LoadedModel) -> None:
    engine = Engine(tiny, batch_size=3)
    forward = engine.generate(PROMPTS, NO_STOP)
    backward = engine.generate(PROMPTS[::-1], NO_STOP)
    assert backward == forward[::-1]


def test_stop_string_cuts_output_and_halts_early(
    tiny: LoadedModel, counter: ForwardCounter
) -> None:
    engine = Engine(tiny)
    raw = engine.generate([PROMPTS[0]], GenerationSettings(max_new_tokens=24, stop=()))[0]
    assert len(raw) > 4
    stop = raw[2]  # a character the model emits early on
    counter.inputs.clear()
    cut = engine.generate([PROMPTS[0]], GenerationSettings(max_new_tokens=24, stop=(stop,)))[0]
    assert cut == raw[: raw.index(stop)]
    assert counter.calls < 24  # stopped once the stop string appeared


def test_max_new_tokens_is_respected(tiny: LoadedModel, counter: ForwardCounter) -> None:
    engine = Engine(tiny)
    long = engine.generate(PROMPTS[:2], GenerationSettings(max_new_tokens=8, stop=()))
    counter.inputs.clear()
    short = engine.generate(PROMPTS[:2], GenerationSettings(max_new_tokens=2, stop=()))
    assert counter.calls <= 2
    assert all(lo.startswith(sh) for lo, sh in zip(long, short, strict=True))


def test_chat_template_wraps_prompt(tiny: LoadedModel, counter: ForwardCounter) -> None:
    settings = GenerationSettings(max_new_tokens=1, chat_template=True, system_prompt="Be brief.")
    Engine(tiny).generate(["Hello there"], settings)
    prompt = tiny.tokenizer.decode(counter.inputs[0][0])
    assert prompt == "<|system|>Be brief.\n<|user|>Hello there\n<|assistant|>"


def test_cache_second_call_does_no_model_work(tiny: LoadedModel, counter: ForwardCounter) -> None:
    cache = DictCache()
    engine = Engine(tiny, cache, batch_size=2)
    first = engine.generate(PROMPTS, NO_STOP)
    assert cache.puts == 3  # written after each of the three batches
    counter.inputs.clear()
    assert engine.generate(PROMPTS, NO_STOP) == first
    assert counter.calls == 0
    other = GenerationSettings(max_new_tokens=3, stop=())
    engine.generate(PROMPTS[:1], other)
    assert counter.calls > 0  # settings are part of the key


def test_cache_partial_hits_compute_only_misses(tiny: LoadedModel) -> None:
    cache = DictCache()
    engine = Engine(tiny, cache, batch_size=8)
    engine.generate(PROMPTS[:3], NO_STOP)
    before = set(cache.data)
    seen: list[tuple[int, int]] = []
    engine.progress = lambda done, total: seen.append((done, total))
    outputs = engine.generate(PROMPTS, NO_STOP)
    assert len(set(cache.data) - before) == 3  # only the three new prompts were computed
    assert seen == [(3, 6), (6, 6)]
    assert outputs == Engine(tiny).generate(PROMPTS, NO_STOP)


def test_cache_loglikelihood_and_rolling(tiny: LoadedModel, counter: ForwardCounter) -> None:
    cache = DictCache()
    engine = Engine(tiny, cache)
    requests = [("Q: What is 2 plus 3? A:", " 5"), ("the", " cat")]
    first = engine.loglikelihood(requests)
    rolling = engine.rolling_loglikelihood(["the cat sat on a mat."])
    counter.inputs.clear()
    assert engine.loglikelihood(requests) == first
    assert engine.rolling_loglikelihood(["the cat sat on a mat."]) == rolling
    assert counter.calls == 0


# ---- lm-eval parity -------------------------------------------------------------------------

LONG = " ".join(_corpus(20))  # far beyond MAX_LENGTH tokens
LOGLIK_REQUESTS = [
    ("", "the cat sat on a mat."),  # empty context: conditioned on EOS
    ("Q: What is 2 plus 3? A: ", "5"),  # trailing space moves to the continuation
    ("Q: What is 2 plus 3? A:", " 5"),
    ("Q: What is 2 plus 3? A:", " 6"),  # same input as above but for the last token
    ("Q: What is 2 plus 3? A:", " 5 and then some more words"),
    ("the cat", " sat on a mat"),
    ("dogs", " ran"),
    (LONG, " 42"),  # truncated from the left
    ("a", LONG[:150]),
    ("Q: What is 2 plus 3? A:", " 5"),  # duplicate
]
ROLLING_TEXTS = ["the cat sat on a mat.", LONG, LONG[:300], "Q: What is 1 plus 1? A: 2"]


def _hflm(tiny: LoadedModel, batch_size: int) -> Any:
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=tiny.model, tokenizer=tiny.tokenizer, batch_size=batch_size)


def _instances(request_type: str, args: list[tuple]) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [
        Instance(request_type=request_type, doc={}, arguments=a, idx=i) for i, a in enumerate(args)
    ]


def test_loglikelihood_matches_lm_eval(tiny: LoadedModel) -> None:
    # One greedy token after each prompt, so that some requests are greedy.
    prompts = PROMPTS[:4]
    greedy = Engine(tiny).generate(prompts, GenerationSettings(max_new_tokens=1, stop=()))
    requests = LOGLIK_REQUESTS + list(zip(prompts, greedy, strict=True))
    expected = _hflm(tiny, 3).loglikelihood(_instances("loglikelihood", requests))
    got = Engine(tiny, batch_size=4).loglikelihood(requests)
    for (logprob, greedy), result in zip(expected, got, strict=True):
        assert result.logprob == pytest.approx(logprob, abs=1e-4)
        assert result.is_greedy == greedy
    assert any(r.is_greedy for r in got)  # the comparison covers both values
    assert got[1].logprob == pytest.approx(got[2].logprob, abs=1e-6)


def test_rolling_loglikelihood_matches_lm_eval(tiny: LoadedModel) -> None:
    texts = [(t,) for t in ROLLING_TEXTS]
    expected = _hflm(tiny, 2).loglikelihood_rolling(_instances("loglikelihood_rolling", texts))
    got = Engine(tiny, batch_size=3).rolling_loglikelihood(ROLLING_TEXTS)
    for logprob, result in zip(expected, got, strict=True):
        assert result.logprob == pytest.approx(logprob, abs=1e-4)
    assert got[0].n_tokens == len(tiny.tokenizer.encode(ROLLING_TEXTS[0]))


def test_rolling_windows_match_lm_eval_utils(tiny: LoadedModel) -> None:
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    engine = Engine(tiny)
    for text in ROLLING_TEXTS:
        tokens = tiny.tokenizer.encode(text)
        expected = [
            make_disjoint_window(w)
            for w in get_rolling_token_windows(
                tokens, engine.transformers.prefix_token_id, MAX_LENGTH, 1
            )
        ]
        assert engine.transformers._rolling_windows(text) == expected
    assert len(engine.transformers._rolling_windows(LONG)) > 2


def test_peft_model_scores_like_its_base(tiny: LoadedModel) -> None:
    from peft import LoraConfig, get_peft_model

    base = Engine(tiny).loglikelihood(LOGLIK_REQUESTS[:4])
    # A fresh LoRA adapter is the identity (B = 0), so the wrapped model must agree.
    wrapped = get_peft_model(
        type(tiny.model).from_pretrained(tiny.reference),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    peft_lm = LoadedModel(tiny.reference, wrapped, tiny.tokenizer, "peft")
    got = Engine(peft_lm).loglikelihood(LOGLIK_REQUESTS[:4])
    assert [r.logprob for r in got] == pytest.approx([r.logprob for r in base], abs=1e-5)
    assert Engine(peft_lm).generate(PROMPTS[:2], NO_STOP) == Engine(tiny).generate(
        PROMPTS[:2], NO_STOP
    )


def test_empty_prompt_is_conditioned_on_the_prefix_token(tiny: LoadedModel) -> None:
    out = Engine(tiny).generate(["", "the cat"], NO_STOP)
    assert out[1] == Engine(tiny).generate(["the cat"], NO_STOP)[0]
    assert isinstance(out[0], str)
