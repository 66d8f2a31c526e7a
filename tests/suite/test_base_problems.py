"""Args the base cannot follow (a freezing schedule's layers, an architecture without adaption
prompts in peft) are refused by `harness validate` at the candidate's `args:` line, exit 2, when
the base's config.json can be read without loading it; a hub id is not checked (offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.training import problems, write

from harness.backends.peft_methods import ADAPTION_PROMPT_MODEL_TYPES
from harness.core.errors import HarnessError
from harness.models.configs import base_config
from harness.suite import load_suite

FREEZE_5 = "- {name: frozen, backend: full, data: train, args: {freeze: {train_last_layers: 5}}}\n"
ADAPTER = "- {name: adapted, backend: llama_adapter, data: train, args: {max_steps: 1}}\n"
TOO_FEW_LAYERS = "freeze: train_last_layers 5, but the base has 4 decoder layers; give at most 4"
NO_ADAPTION_PROMPTS = (
    "llama_adapter: peft implements adaption prompts for gpt2, llama, mistral bases, not "
    "'qwen2'; use prompt_tuning, ia3 or lora"
)


def on_base(path: Path, base: str) -> Path:
    path.write_text(path.read_text().replace("base: builtin:tiny", f"base: {base}", 1))
    return path


def args_at(path: Path, name: str) -> str:
    """`FILE:LINE:COL` of candidate `name`'s `args:` value (flow style: one line each)."""
    lines = path.read_text().splitlines()
    index, line = next((i, t) for i, t in enumerate(lines) if f"name: {name}," in t)
    return f"{path}:{index + 1}:{line.index('args: ') + len('args: ') + 1}"


def test_validate_refuses_more_trained_layers_than_builtin_tiny_has(tmp_path: Path) -> None:
    from harness.cli import main

    suite = write(tmp_path, FREEZE_5)
    result = CliRunner().invoke(main, ["validate", str(suite)])
    assert result.exit_code == 2, result.output
    assert f"{args_at(suite, 'frozen')}: candidates[0].args: {TOO_FEW_LAYERS}" in result.output


def test_validate_refuses_llama_adapter_on_a_qwen2_preset(tmp_path: Path) -> None:
    from harness.cli import main

    suite = on_base(write(tmp_path, ADAPTER), "random:qwen2.5-0.5b")
    result = CliRunner().invoke(main, ["validate", str(suite)])
    assert result.exit_code == 2, result.output
    assert f"{args_at(suite, 'adapted')}: candidates[0].args: {NO_ADAPTION_PROMPTS}" in (
        result.output
    )


def test_a_schedule_the_base_can_follow_loads(tmp_path: Path) -> None:
    fits = """\
    - {name: top4, backend: full, data: train, args: {freeze: {train_last_layers: 4}}}
    - {name: adapted, backend: llama_adapter, data: train, args: {adapter_layers: 4}}
    """
    assert set(load_suite(write(tmp_path, fits)).trainings) == {"top4", "adapted"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "{freeze: {unfreeze_every: 2, group_size: 4}}",
            "freeze: group_size 4 covers all 4 trained layers of the base: nothing is left to "
            "unfreeze; lower group_size",
        ),
        (
            "{adapter_layers: 5}",
            "llama_adapter: adapter_layers 5, but the base has 4 decoder layers; give at most 4",
        ),
    ],
    ids=["group-covers-every-layer", "adapter-layers"],
)
def test_other_layer_counts_the_base_lacks_are_refused(
    tmp_path: Path, args: str, message: str
) -> None:
    backend = "llama_adapter" if "adapter_layers" in args else "full"
    found = problems(tmp_path, f"- {{name: c, backend: {backend}, data: train, args: {args}}}\n")
    assert found == [f"{args_at(tmp_path / 'suite.yaml', 'c')}: candidates[0].args: {message}"]


def refused(suite: Path, base_override: str | None = None) -> list[str]:
    with pytest.raises(HarnessError) as caught:
        load_suite(suite, base_override=base_override)
    return caught.value.problems


def test_a_preset_is_checked_against_its_published_layers(tmp_path: Path) -> None:
    deep = "- {name: deep, backend: full, data: train, args: {freeze: {train_last_layers: 25}}}\n"
    suite = on_base(write(tmp_path, deep), "random:qwen2.5-0.5b")
    assert refused(suite) == [
        f"{args_at(suite, 'deep')}: candidates[0].args: freeze: train_last_layers 25, but the "
        "base has 24 decoder layers; give at most 24"
    ]
    suite = on_base(write(tmp_path, deep.replace("25", "24")), "random:qwen2.5-0.5b")
    assert "deep" in load_suite(suite).trainings


def test_base_override_is_the_base_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--base` replaces the suite's base for training, so it is the one the args must fit;
    a relative --base directory is taken from the working directory."""
    suite = write(tmp_path, ADAPTER)
    assert "adapted" in load_suite(suite).trainings  # builtin:tiny is a Llama
    (found,) = refused(suite, base_override="random:qwen2.5-0.5b")
    assert found.endswith(NO_ADAPTION_PROMPTS)
    (tmp_path / "qwen").mkdir()
    qwen_suite = on_base(write(tmp_path / "qwen", ADAPTER), "random:qwen2.5-0.5b")
    assert "adapted" in load_suite(qwen_suite, base_override="builtin:tiny").trainings
    elsewhere = tmp_path / "cwd"
    write_config(elsewhere / "base", {"model_type": "qwen2", "num_hidden_layers": 2})
    monkeypatch.chdir(elsewhere)
    (found,) = refused(suite, base_override="./base")
    assert found.endswith(NO_ADAPTION_PROMPTS)


def write_config(directory: Path, config: dict[str, object], name: str = "config.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(config))
    return directory


def test_a_local_directory_base_is_read_relative_to_the_suite(tmp_path: Path) -> None:
    write_config(tmp_path / "base", {"model_type": "mistral", "num_hidden_layers": 2})
    suite = on_base(write(tmp_path, FREEZE_5 + ADAPTER), "./base")
    assert refused(suite) == [
        f"{args_at(suite, 'frozen')}: candidates[0].args: freeze: train_last_layers 5, but the "
        "base has 2 decoder layers; give at most 2"
    ]  # a mistral base takes adaption prompts
    # An adapter saved alone stands for the base it names.
    write_config(tmp_path / "adapter", {"base_model_name_or_path": "builtin:tiny"},
                 "adapter_config.json")  # fmt: skip
    adapter_base = base_config("./adapter", tmp_path)
    assert adapter_base is not None and adapter_base["num_hidden_layers"] == 4


def test_a_hub_id_base_is_not_checked_offline(tmp_path: Path) -> None:
    """Its config is only on the hub: training starts by checking the same, with the base."""
    suite = on_base(write(tmp_path, FREEZE_5 + ADAPTER), "someorg/no-such-model")
    assert base_config("someorg/no-such-model", tmp_path) is None
    assert set(load_suite(suite).trainings) == {"frozen", "adapted"}


def test_an_unbuilt_builtin_is_known_from_its_recipe_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path
) -> None:
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    from_code = base_config("builtin:tiny-v2", tmp_path)  # continues tiny: tiny's shape
    assert from_code is not None and not (tmp_path / "home").exists()  # nothing was built
    built = json.loads((tiny_dir / "config.json").read_text())
    assert {k: built[k] for k in from_code} == from_code  # what new_model really makes
    suite = write(tmp_path, FREEZE_5)
    assert refused(suite)[0].endswith(TOO_FEW_LAYERS)
    assert not (tmp_path / "home").exists()


def test_the_adaption_prompt_architectures_are_peft_s() -> None:
    from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

    assert sorted(TRANSFORMERS_MODEL_CONFIG) == list(ADAPTION_PROMPT_MODEL_TYPES)


def test_validating_against_the_base_imports_no_torch(tmp_path: Path) -> None:
    suite = write(tmp_path, FREEZE_5 + ADAPTER)
    code = (
        "import sys\nfrom harness.cli import main\n"
        f"sys.argv = ['harness', 'validate', {str(suite)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    print('EXIT', exit.code)\n"
        "print('HEAVY', [m for m in ('torch', 'transformers', 'peft') if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ
    )
    assert TOO_FEW_LAYERS in result.stdout + result.stderr  # the base really was checked
    assert "EXIT 2" in result.stdout and "HEAVY []" in result.stdout, result.stdout
