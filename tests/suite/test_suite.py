"""Suite files: every mistake is reported at its FILE:LINE:COL before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.suite import load_suite

GOOD = """\
name: demo
base: builtin:tiny
data:
  facts:
    rows:
      - {id: a, prompt: "Q: x? A:", answers: ["y"]}
      - {id: b, prompt: "Q: z? A:", answers: ["w"]}
capabilities:
  - name: facts
    forgetting: {metric: qa.em, max_drop: 0.1}
    checks:
      - {type: qa, data: facts}
      - type: exact
        cases:
          - {prompt: "1+1=", expected: "2"}
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(HarnessError) as caught:
        load_suite(write(tmp_path, text))
    return caught.value.problems


def test_good_suite_resolves_cases_and_prompts(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, GOOD))
    assert [(p.capability, p.label, len(p.cases)) for p in suite.checks] == [
        ("facts", "qa", 2),
        ("facts", "exact", 1),
    ]
    assert suite.checks[0].cases[0].prompt == "Q: x? A:"
    assert suite.checks[1].cases[0].source.endswith("suite.yaml:15")
    assert suite.models == {"base": "builtin:tiny"}


def test_unknown_key_points_at_the_key_with_did_you_mean(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("    forgetting:", "    forgeting:"))
    assert len(found) == 1
    assert found[0].startswith(
        f"{tmp_path / 'suite.yaml'}:10:5: capabilities[0].forgeting: unknown key"
    )
    assert 'did you mean "forgetting"' in found[0]


def test_unknown_check_type_suggests_the_close_one(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("type: exact", "type: exakt"))
    assert (
        found[0].startswith(f"{tmp_path / 'suite.yaml'}:13:")
        and "capabilities[0].checks[1].type" in found[0]
    )
    assert 'unknown check type "exakt" (did you mean "exact"?)' in found[0]


def test_check_parameters_are_validated_per_type(tmp_path: Path) -> None:
    text = GOOD.replace("{type: qa, data: facts}", "{type: qa, data: facts, patern: x}")
    found = problems(tmp_path, text)
    assert ":12:" in found[0] and "checks[0].patern: unknown key" in found[0]


def test_wrong_type_and_every_error_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("max_drop: 0.1", "max_drop: lots").replace(
        "name: demo", "name: demo\nseed: [1]"
    )
    found = problems(tmp_path, text)
    assert len(found) == 2
    assert ":2:7: seed:" in found[0]
    assert ":11:" in found[1] and "max_drop" in found[1] and "'lots'" in found[1]


def test_gate_metric_must_be_produced_by_a_check(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("metric: qa.em", "metric: qa.emm"))
    assert ":10:" in found[0] and 'did you mean "qa.em"' in found[0]


def test_missing_data_file_and_unknown_data_set(tmp_path: Path) -> None:
    text = GOOD.replace(
        '    rows:\n      - {id: a, prompt: "Q: x? A:", answers: ["y"]}\n      - {id: b, prompt: "Q: z? A:", answers: ["w"]}\n',
        "    path: nowhere.jsonl\n",
    )
    text = text.replace("{type: qa, data: facts}", "{type: qa, data: fact}")
    found = problems(tmp_path, text)
    assert any("nowhere.jsonl: no such data file" in p for p in found)
    assert any('no data set "fact" (did you mean "facts"?)' in p for p in found)


def test_bad_rows_are_reported_at_their_file_line(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a", "answers": ["b"]}\n{"prompt": "c"}\n')
    text = GOOD.replace(
        '    rows:\n      - {id: a, prompt: "Q: x? A:", answers: ["y"]}\n      - {id: b, prompt: "Q: z? A:", answers: ["w"]}\n',
        "    path: rows.jsonl\n",
    )
    found = problems(tmp_path, text)
    assert f"1 row lacks 'answers' ({tmp_path / 'rows.jsonl'}:2); they have 'prompt'" in found[0]


def test_rows_lacking_a_field_are_reported_once_with_a_suggestion(tmp_path: Path) -> None:
    rows = "".join(f'{{"prompt": "q{i}", "answer": "a"}}\n' for i in range(12))
    (tmp_path / "rows.jsonl").write_text(rows)
    text = GOOD.replace(
        '    rows:\n      - {id: a, prompt: "Q: x? A:", answers: ["y"]}\n      - {id: b, prompt: "Q: z? A:", answers: ["w"]}\n',
        "    path: rows.jsonl\n",
    )
    (found,) = [p for p in problems(tmp_path, text) if "lack" in p]
    source = tmp_path / "rows.jsonl"
    assert f"12 rows lack 'answers' ({source}:1, {source}:2, {source}:3 …)" in found
    assert "they have 'answer', 'prompt' ('answers': did you mean \"answer\"?)" in found


def test_invalid_jsonl_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a", "answers": ["b"]}\n{"prompt": oops}\n')
    text = GOOD.replace(
        '    rows:\n      - {id: a, prompt: "Q: x? A:", answers: ["y"]}\n      - {id: b, prompt: "Q: z? A:", answers: ["w"]}\n',
        "    path: rows.jsonl\n",
    )
    assert f"{tmp_path / 'rows.jsonl'}:2:12: invalid JSON" in problems(tmp_path, text)[0]


def test_csv_tsv_and_parquet_data(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"prompt": ["1+1=", "2+2="], "expected": ["2", "4"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.tsv", "d.parquet"):
        suite = load_suite(
            write(
                tmp_path,
                f"name: t\nbase: builtin:tiny\ndata: {{d: {{path: {name}}}}}\ncapabilities:\n  - name: c\n    checks: [{{type: exact, data: d}}]\n",
            )
        )
        assert [c.fields["expected"] for c in suite.checks[0].cases] == ["2", "4"]


def test_invalid_regex_and_json_schema_are_caught(tmp_path: Path) -> None:
    text = GOOD.replace(
        "{type: qa, data: facts}", "{type: regex, data: facts, pattern: '(unclosed'}"
    )
    assert "invalid regular expression" in problems(tmp_path, text)[0]
    text = GOOD.replace("{type: qa, data: facts}", "{type: json, data: facts, schema: {type: 12}}")
    assert "not a valid JSON Schema" in problems(tmp_path, text)[0]


def test_model_references(tmp_path: Path) -> None:
    assert (
        "unknown builtin model"
        in problems(tmp_path, GOOD.replace("builtin:tiny", "builtin:tiy"))[0]
    )
    assert (
        "no model directory at"
        in problems(tmp_path, GOOD.replace("builtin:tiny", "./checkpoints/v3"))[0]
    )
    (tmp_path / "ckpt").mkdir()
    assert load_suite(write(tmp_path, GOOD.replace("builtin:tiny", "ckpt"))).models["base"] == str(
        tmp_path / "ckpt"
    )


def test_yaml_syntax_error_and_unsafe_tags(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"suite.yaml:2:8: invalid YAML: mapping values"):
        load_suite(write(tmp_path, "name: x\nbase: a: b\n"))
    with pytest.raises(HarnessError, match="invalid YAML"):
        load_suite(write(tmp_path, "name: !!python/object/apply:os.system ['echo owned']\n"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validate_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run_cli("validate", str(write(tmp_path, GOOD.replace("type: exact", "type: exakt"))))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and ":13:" in result.stderr
    ok = run_cli("validate", str(write(tmp_path, GOOD, "good.yaml")))
    assert ok.returncode == 0, ok.stderr


def test_schema_command_prints_the_json_schema() -> None:
    result = run_cli("schema")
    schema = json.loads(result.stdout)
    check_types = {
        v["properties"]["type"]["const"] for k, v in schema["$defs"].items() if k.endswith("Check")
    }
    assert {"exact", "contains", "regex", "json", "qa", "choice", "perplexity"} <= check_types


def test_shipped_suites_validate() -> None:
    suites = sorted(Path(__file__).resolve().parents[2].glob("suites/*.yaml"))
    assert {"qa.yaml", "gate.yaml"} <= {s.name for s in suites}  # never passes on nothing
    for suite in suites:
        load_suite(suite)


def test_datasets_local_directory_and_unreachable_hub_name(tmp_path: Path) -> None:
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "validation.jsonl").write_text(
        '{"prompt": "1+1=", "expected": "2"}\n{"prompt": "2+2=", "expected": "4"}\n'
    )
    suite_text = "name: t\nbase: builtin:tiny\ndata: {d: {dataset: sst2, split: validation}}\ncapabilities:\n  - name: c\n    checks: [{type: exact, data: d}]\n"
    suite = load_suite(write(tmp_path, suite_text))
    assert [c.fields["expected"] for c in suite.checks[0].cases] == ["2", "4"]

    found = problems(tmp_path, suite_text.replace("dataset: sst2", "dataset: glue, config: sst2"))
    assert ":3:" in found[0] and "dataset glue/sst2[validation] could not be loaded" in found[0]
    assert "export the split" in found[0]


def test_merge_is_refused_where_the_backend_says_all_weights_train(tmp_path: Path) -> None:
    train = (
        '  train:\n    rows:\n      - {prompt: "a", completion: "b", chosen: "b", rejected: "c"}\n'
    )
    text = GOOD.replace("data:\n", "data:\n" + train, 1) + (
        "candidates:\n"
        "  - {name: full, backend: full, data: train, merge: true}\n"
        "  - {name: dpo-full, backend: dpo, data: train, merge: true, args: {adapter: full}}\n"
        "  - {name: dpo-lora, backend: dpo, data: train, merge: true}\n"
    )
    found = problems(tmp_path, text)
    assert len(found) == 2, found
    assert ":20:" in found[0] and "full backend trains all weights" in found[0]
    assert ":21:" in found[1] and "dpo backend trains all weights" in found[1]


TRAINED = (
    GOOD
    + """\
  - name: sums
    checks:
      - type: exact
        cases:
          - {prompt: "2+2=", expected: "4"}
candidates:
  - name: tuned
    backend: lora
    data: facts_train
    args: {max_steps: 4}
"""
)
TRAIN_DATA = """\
  facts_train:
    rows:
      - {prompt: "Q: x? A:", completion: " y"}
"""


def with_checkpoints(block: str) -> str:
    text = TRAINED.replace("data:\n", "data:\n" + TRAIN_DATA, 1)
    return text + "    checkpoints: " + block + "\n"


def test_checkpoints_are_planned_into_the_training_and_its_artifact_key(tmp_path: Path) -> None:
    from harness.training._train import artifact_key

    suite = load_suite(write(tmp_path, with_checkpoints("{every: 2, select: best-passing}")))
    plan = suite.trainings["tuned"]
    assert plan.checkpoints is not None and plan.checkpoints.every == 2
    other = load_suite(write(tmp_path, with_checkpoints("{every: 2, capabilities: [facts]}")))
    bare = load_suite(write(tmp_path, TRAINED.replace("data:\n", "data:\n" + TRAIN_DATA, 1)))
    keys = {artifact_key(s.trainings["tuned"], "f", 0, False) for s in (suite, other, bare)}
    assert len(keys) == 3  # selection and what checkpoints evaluate decide the weights kept


@pytest.mark.parametrize(
    ("block", "where", "says"),
    [
        ("{every: 2, capabilities: [fact]}", "capabilities", 'no capability "fact"'),
        ("{every: 2, capabilities: [sums], stop_on: forgetting}", "stop_on", "forgetting gate"),
        ("{every: 2, capabilities: [sums], select: best-passing}", "select", "needs a gate"),
        ("{every: 0}", "every", "greater than or equal to 1"),
        ("{every: 2, select: best}", "select", "best-passing"),
    ],
)
def test_checkpoint_mistakes_are_reported_at_their_line(
    tmp_path: Path, block: str, where: str, says: str
) -> None:
    found = problems(tmp_path, with_checkpoints(block))
    assert len(found) == 1, found
    line = with_checkpoints(block).splitlines().index("    checkpoints: " + block) + 1
    assert f"suite.yaml:{line}:" in found[0] and where in found[0] and says in found[0], found


def test_checkpoints_belong_to_trained_candidates_and_not_to_sharded_launches(
    tmp_path: Path,
) -> None:
    (tmp_path / "fsdp.yaml").write_text("distributed_type: FSDP\n")
    launch = "    accelerate: {num_processes: 2, config_file: fsdp.yaml}\n"
    text = with_checkpoints("{every: 2}").replace(
        "    backend: lora\n", "    backend: lora\n" + launch
    )
    assert any("need plain data parallel" in p for p in problems(tmp_path, text))
    ddp = text.replace(", config_file: fsdp.yaml", "")
    assert load_suite(write(tmp_path, ddp)).trainings["tuned"].checkpoints is not None
    model = GOOD + "candidates:\n  - {name: m, model: builtin:tiny, checkpoints: {every: 2}}\n"
    assert any("belong to trained candidates" in p for p in problems(tmp_path, model))
