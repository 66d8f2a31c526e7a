"""Merged candidates (`merge_of:`): trained candidates' weights merged through peft's merge
utilities, evaluated like any other candidate, cached, and checked at the suite's line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.cli import harness
from helpers.training import problems, write
from transformers import AutoModelForCausalLM

SOURCES = """\
- name: adapter
  backend: lora
  data: train
  merge: true
  args: {learning_rate: 1.0e-3, max_steps: 6}
- name: tuned
  backend: full
  data: train
  args: {learning_rate: 1.0e-4, max_steps: 6}
"""

MERGES = """\
- name: only_adapter
  merge_of: {candidates: [adapter, tuned], method: task_arithmetic, weights: [1.0, 0.0]}
- name: mean
  merge_of: {candidates: [adapter, tuned], method: linear}
- name: ties
  merge_of: {candidates: [adapter, tuned], method: ties, density: 0.3}
"""


def weights(directory: str | Path) -> dict[str, Any]:
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    return dict(model.state_dict())


def close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.slow  # a LoRA and a full fine-tune of the tiny model, then three merges
def test_merged_candidates_are_the_merge_of_their_sources(tmp_path: Path) -> None:
    suite = write(tmp_path, SOURCES + MERGES)
    summary = tmp_path / "s.json"
    run = harness(
        "run", str(suite), "--db", str(tmp_path / "h.duckdb"), "--json", str(summary), "--retrain"
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr
    found = {c["name"]: c for c in json.loads(summary.read_text())["candidates"]}
    assert all(found[n]["status"] != "error" for n in found), found
    artifact = {n: Path(c["info"]["training"]["artifact"]) for n, c in found.items()}

    adapter = weights(artifact["adapter"] / "merged")  # the LoRA merged into the base
    tuned = weights(artifact["tuned"] / "model")
    # weights [1, 0]: the adapter's model, whatever the other candidate learned
    assert close(weights(artifact["only_adapter"] / "model"), adapter)
    # linear: the mean of the two models
    mean = {k: (adapter[k] + tuned[k]) / 2 for k in adapter}
    assert close(weights(artifact["mean"] / "model"), mean)
    # ties keeps 30% of each task vector by magnitude: not the mean
    assert not close(weights(artifact["ties"] / "model"), mean)

    training = found["ties"]["info"]["training"]
    assert training["backend"] == "merge" and training["trainable_parameters"] == 0
    assert training["method"]["merged"] == ["adapter", "tuned"]

    again = harness("run", str(suite), "--db", str(tmp_path / "h.duckdb"), "--json", str(summary))
    assert again.returncode == run.returncode, again.stdout + again.stderr
    rerun = {c["name"]: c for c in json.loads(summary.read_text())["candidates"]}
    assert rerun["ties"]["info"]["training"]["reused_artifact"] is True
    assert rerun["ties"]["fingerprint"] == found["ties"]["fingerprint"]


def test_merge_of_names_trained_candidates_of_the_suite(tmp_path: Path) -> None:
    unknown = problems(tmp_path, SOURCES + "- name: m\n  merge_of: {candidates: [adapter, tund]}\n")
    assert any(
        "candidates[2].merge_of.candidates[1]" in p
        and 'no trained candidate "tund"' in p
        and 'did you mean "tuned"' in p
        for p in unknown
    ), unknown
    counts = problems(
        tmp_path, SOURCES + "- name: m\n  merge_of: {candidates: [adapter, tuned], weights: [1]}\n"
    )
    assert any("1 weights for 2 candidates" in p for p in counts), counts
    trained_only = problems(
        tmp_path, SOURCES + "- name: m\n  data: train\n  merge_of: {candidates: [adapter, tuned]}\n"
    )
    assert any("belong to trained candidates" in p for p in trained_only), trained_only
