"""`replay: {data, ratio}`: general rows mixed into a candidate's training set, seeded, checked
at the suite's line before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.training import DATA, problems, write

from harness.core.errors import HarnessError
from harness.suite import load_suite

REPLAYED = """\
- name: replayed
  backend: lora
  data: train
  replay: {data: known, ratio: 0.2}
"""


def with_known(tmp_path: Path, candidates: str, seed: int = 0) -> Path:
    path = write(tmp_path, candidates)
    text = path.read_text().replace(
        "data:\n", f"seed: {seed}\ndata:\n  known: {{path: {DATA / 'new_facts_replay.jsonl'}}}\n", 1
    )
    path.write_text(text)
    return path


def test_replay_mixes_its_share_of_general_rows_seeded(tmp_path: Path) -> None:
    plan = load_suite(with_known(tmp_path, REPLAYED)).trainings["replayed"]
    train_rows = (DATA / "new_facts_train.jsonl").read_text().splitlines()
    # 20 training rows; 0.2 of the whole is replay: 5 rows, so 25 in all.
    assert len(train_rows) == 20 and plan.replay_rows == 5 and len(plan.rows) == 25
    replayed = plan.rows[20:]
    assert len({r["id"] for r in replayed}) == 5  # no row twice while the set has more
    again = load_suite(with_known(tmp_path, REPLAYED)).trainings["replayed"]
    assert again.rows == plan.rows and again.data_hash == plan.data_hash  # seeded
    other_seed = load_suite(with_known(tmp_path, REPLAYED, seed=7)).trainings["replayed"]
    assert other_seed.rows[20:] != replayed  # the suite's seed picks them
    plain = load_suite(with_known(tmp_path, REPLAYED.replace("  replay:", "  # replay:")))
    assert plain.trainings["replayed"].data_hash != plan.data_hash  # another artifact


def test_replay_beyond_the_set_repeats_every_row_before_any_twice(tmp_path: Path) -> None:
    small = REPLAYED.replace("data: known, ratio: 0.2", "data: sums_rows, ratio: 0.5")
    path = with_known(tmp_path, small)
    rows = "\n".join(
        f'    - {{id: r{i}, prompt: "{i}+{i}=", completion: " {2 * i}"}}' for i in range(3)
    )
    text = path.read_text().replace("data:\n", f"data:\n  sums_rows:\n    rows:\n{rows}\n", 1)
    path.write_text(text)
    plan = load_suite(path).trainings["replayed"]
    ids = [r["id"] for r in plan.rows[20:]]
    assert len(ids) == 20  # half of 40
    assert all(ids.count(f"r{i}") in (6, 7) for i in range(3)), ids


def test_replay_problems_name_the_line(tmp_path: Path) -> None:
    unknown = problems(tmp_path, REPLAYED.replace("data: known", "data: knwn"))
    lines = (tmp_path / "suite.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "replay:" in text)
    assert unknown == [
        f'{tmp_path / "suite.yaml"}:{line}:20: candidates[0].replay.data: no data set "knwn"'
    ]
    # DPO trains on chosen/rejected: prompt/completion rows cannot be replayed into it
    path = with_known(
        tmp_path, REPLAYED.replace("lora", "dpo").replace("data: train", "data: prefs")
    )
    with pytest.raises(HarnessError) as caught:
        load_suite(path)
    [found] = caught.value.problems
    assert "replayed row has no field 'chosen', 'rejected' needed by the dpo backend" in found
    assert "candidates[0].replay.data" in found and "new_facts_replay.jsonl:1" in found
    whole = problems(tmp_path, REPLAYED.replace("ratio: 0.2", "ratio: 1.0"))
    assert any("ratio" in p and "less than 1" in p for p in whole), whole
