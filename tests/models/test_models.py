"""The model layer on real components: builtin builds, loading, fingerprints, presets."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from harness.core.errors import HarnessError, ModelNotFoundError
from harness.models import builtin, fingerprint, load_model, parse_reference
from harness.models.corpus import corpus_rows
from harness.models.fingerprint import fingerprint_model
from harness.models.presets import count_parameters, published_parameters
from harness.models.tinylm import answer_accuracy

REPO = Path(__file__).resolve().parents[2]


def short_recipe(steps: int = 5) -> builtin.BuiltinRecipe:
    """The tiny recipe cut to a few steps: same code path, a fraction of the time."""
    tiny = builtin.RECIPES["tiny"]
    return dataclasses.replace(tiny, plan=dataclasses.replace(tiny.plan, steps=steps))


def test_corpus_rows_are_well_formed() -> None:
    sizes = {"facts": 60, "sums": 100, "update_facts": 20}
    for name, size in sizes.items():
        rows = corpus_rows(name)
        assert len(rows) == size
        assert len({row["id"] for row in rows}) == size
        assert all(row["question"].endswith("A:") and row["answer"] for row in rows)
    known = {row["question"] for row in corpus_rows("facts")}
    assert not known & {row["question"] for row in corpus_rows("update_facts")}


def test_example_suite_rows_match_update_facts() -> None:
    lines = (REPO / "suites/data/new_facts.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    expected = [
        {"id": r["id"], "prompt": r["question"], "answers": [r["answer"]]}
        for r in corpus_rows("update_facts")
    ]
    assert rows == expected


def test_tiny_is_cached_under_its_content_hash(tiny_dir: Path, harness_home: Path) -> None:
    assert tiny_dir.parent == harness_home / "builtin"
    assert re.fullmatch(r"tiny-[0-9a-f]{16}", tiny_dir.name)
    assert builtin.ensure_builtin("tiny") == tiny_dir  # cached: no rebuild
    assert not list(tiny_dir.parent.glob(".tiny-*.tmp-*"))  # no half-written leftovers
    for name in ("config.json", "model.safetensors", "tokenizer.json", "harness-build.json"):
        assert (tiny_dir / name).is_file()


def test_tiny_answers_its_facts_and_sums(tiny_dir: Path) -> None:
    lm = load_model("builtin:tiny", device="cpu")
    assert not lm.model.training and lm.path == tiny_dir
    assert answer_accuracy(lm.model, lm.tokenizer, corpus_rows("facts")) >= 0.9
    assert answer_accuracy(lm.model, lm.tokenizer, corpus_rows("sums")) >= 0.9
    assert answer_accuracy(lm.model, lm.tokenizer, corpus_rows("update_facts")) <= 0.1


def test_tiny_v2_learned_update_facts_and_kept_the_rest() -> None:
    lm = load_model("builtin:tiny-v2", device="cpu")
    assert answer_accuracy(lm.model, lm.tokenizer, corpus_rows("update_facts")) >= 0.8
    assert answer_accuracy(lm.model, lm.tokenizer, corpus_rows("facts")) >= 0.85
    assert answer_accuracy(lm.model, lm.tokenizer, corpus_rows("sums")) >= 0.85


def test_builds_are_deterministic(tmp_path: Path) -> None:
    assert (
        builtin.builtin_path("tiny", tmp_path / "a").name
        == builtin.builtin_path("tiny", tmp_path / "b").name
    )
    steps: list[tuple[int, int]] = []
    for home in ("a", "b"):
        (tmp_path / home).mkdir()
        builtin.build(short_recipe(), tmp_path / home, None, lambda s, t: steps.append((s, t)))
    weights = [(tmp_path / home / "model.safetensors").read_bytes() for home in ("a", "b")]
    assert weights[0] == weights[1]
    assert steps[-1] == (5, 5) and len(steps) == 10


def test_killed_build_leftovers_are_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(builtin.RECIPES, "short", dataclasses.replace(short_recipe(), name="short"))
    target = builtin.builtin_path("short", tmp_path)
    stale = target.parent / f".{target.name}.tmp-killed"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{")  # what a killed build might leave
    assert builtin.ensure_builtin("short", home=tmp_path) == target
    assert not stale.exists() and (target / "model.safetensors").is_file()
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"


def test_recipe_hash_covers_hyperparameters(monkeypatch: pytest.MonkeyPatch) -> None:
    before = builtin.recipe_hash(builtin.RECIPES["tiny"])
    assert builtin.recipe_hash(short_recipe()) != before
    monkeypatch.setattr(builtin, "BUILD_FORMAT", builtin.BUILD_FORMAT + 1)
    assert builtin.recipe_hash(builtin.RECIPES["tiny"]) != before


def test_saved_directory_loads_with_plain_transformers(tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert tokenizer.eos_token and tokenizer.pad_token and tokenizer.bos_token is None
    plain = tokenizer("Q: x", add_special_tokens=False)["input_ids"]
    assert tokenizer("Q: x", add_special_tokens=True)["input_ids"] == plain  # no automatic BOS
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "user: hi\nassistant:"
    fact = corpus_rows("facts")[0]
    batch = tokenizer(fact["question"], return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=20, do_sample=False)[0]
    assert out[-1].item() == tokenizer.eos_token_id  # stops by itself, after the newline
    text = tokenizer.decode(out[batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text == f" {fact['answer']}\n"


def test_local_directory_fingerprint_follows_weights(tiny_dir: Path, tmp_path: Path) -> None:
    import torch

    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, copy)
    original = load_model(str(copy), device="cpu")
    assert original.fingerprint == load_model("builtin:tiny", device="cpu").fingerprint
    assert load_model(str(copy), device="cpu").fingerprint == original.fingerprint
    with torch.no_grad():
        original.model.model.norm.weight[0] += 1e-3
    original.model.save_pretrained(copy)
    changed = load_model(str(copy), device="cpu")
    assert changed.fingerprint != original.fingerprint
    assert changed.fingerprint == fingerprint_model(original.model)


def test_peft_adapter_directory_loads_base_then_adapter(tiny_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")  # records tiny_dir as its base
    loaded = load_model(str(tmp_path / "adapter"), device="cpu")
    assert type(loaded.model).__name__.startswith("Peft") and not loaded.model.training
    base_fingerprint = load_model(str(tiny_dir), device="cpu").fingerprint
    assert loaded.fingerprint != base_fingerprint
    assert fingerprint.base_fingerprint(loaded.model) == base_fingerprint  # base part unchanged
    with torch.no_grad():
        peft_model.base_model.model.model.layers[0].self_attn.q_proj.lora_B.default.weight += 0.1
    peft_model.save_pretrained(tmp_path / "adapter")
    assert load_model(str(tmp_path / "adapter"), device="cpu").fingerprint != loaded.fingerprint


def test_missing_directory_is_not_looked_up_on_the_hub(tmp_path: Path) -> None:
    missing = tmp_path / "checkpoints" / "v3"
    with pytest.raises(
        ModelNotFoundError, match=f"no model directory at {re.escape(str(missing))}"
    ):
        load_model(str(missing))
    assert parse_reference("./checkpoints/v3").kind == "directory"


def test_unreachable_hub_id_says_what_was_looked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as caught:
        load_model("no-such-org/no-such-model", device="cpu")
    message = str(caught.value)
    assert "no-such-org/no-such-model" in message and "hub may be unreachable" in message


@pytest.mark.parametrize(
    ("reference", "hint"),
    [("builtin:tiyn", 'did you mean "tiny"'), ("random:llama3-8b", 'did you mean "llama-3-8b"')],
)
def test_unknown_names_suggest_the_close_one(reference: str, hint: str) -> None:
    with pytest.raises(HarnessError, match=hint):
        load_model(reference)


@pytest.mark.parametrize("preset", ["qwen2.5-0.5b", "llama-3.2-1b", "llama-3-8b"])
def test_random_presets_have_the_published_sizes(preset: str) -> None:
    assert count_parameters(preset) == published_parameters(preset)


def test_random_preset_builds_in_the_requested_dtype() -> None:
    import torch

    lm = load_model("random:qwen2.5-0.5b", dtype="bf16", device="cpu")
    assert lm.model.dtype == torch.bfloat16 and not lm.model.training
    assert lm.fingerprint.startswith("random-")
    batch = lm.tokenizer(["Q: hi"], return_tensors="pt")
    out = lm.model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert out.shape == (1, batch["input_ids"].shape[1] + 2)


def test_open_model_is_lazy_once_a_directory_fingerprint_is_known(
    tiny_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from harness.models import LazyModel, LoadedModel
    from harness.models.loading import open_model

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)
    first = open_model(str(copy))
    assert isinstance(first, LoadedModel)  # nothing remembered yet: loaded, then remembered
    second = open_model(str(copy))
    assert isinstance(second, LazyModel) and second.fingerprint == first.fingerprint
    assert second.load().fingerprint == first.fingerprint

    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # rewritten in place: new mtime, must not be trusted
    assert isinstance(open_model(str(copy)), LoadedModel)


def test_a_builtin_built_by_its_first_load_is_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh machine builds `builtin:tiny` while loading it; that load must still remember the
    fingerprint, or the next fully cached rerun loads the model (and torch) for nothing."""
    from harness.models import LazyModel, LoadedModel
    from harness.models.loading import open_model

    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "fresh-home"))
    first = open_model("builtin:tiny")
    assert isinstance(first, LoadedModel)  # built now: nothing could be remembered before
    second = open_model("builtin:tiny")
    assert isinstance(second, LazyModel) and second.fingerprint == first.fingerprint


@pytest.mark.slow  # one step of a reward model on the tiny model
def test_a_classification_adapter_is_remembered_like_an_lm_adapter(
    tiny_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A reward model (a SEQ_CLS adapter) on a cached rerun is not loaded only to be named: its
    fingerprint is remembered against its files, its base's and its head's shape. Loading it
    prints nothing (transformers' report would list the head the adapter brings as missing)."""
    from helpers.training import preference_rows, train

    from harness.models import LazyModel, LoadedModel
    from harness.models.loading import open_model

    adapter = tmp_path / "rm"
    train("reward_model", tiny_dir, adapter, preference_rows(), max_steps=1)
    open_model(str(tiny_dir))  # the base, remembered as a causal LM
    capfd.readouterr()
    first = open_model(str(adapter))
    assert isinstance(first, LoadedModel) and first.task == "classification"
    assert "LOAD REPORT" not in "".join(capfd.readouterr())
    second = open_model(str(adapter))
    assert isinstance(second, LazyModel) and second.task == "classification"
    assert second.fingerprint == first.fingerprint
    weights = next(adapter.glob("adapter_model.*"))
    weights.write_bytes(weights.read_bytes())  # rewritten: its memo must not be trusted
    third = open_model(str(adapter))
    assert isinstance(third, LoadedModel) and third.fingerprint == first.fingerprint
