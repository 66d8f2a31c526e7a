"""Artifacts leaving their machine: a shared location (real fsspec filesystems: a directory, and
fsspec's in-memory one standing for an object store), and packed bytes unpacked whole."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from harness.training import SharedArtifacts, pack_artifact, unpack_artifact
from harness.training._train import TRAINING_RECORD, cached_artifact


def an_artifact(directory: Path, content: str = "weights") -> Path:
    (directory / "model").mkdir(parents=True)
    (directory / "model" / "adapter_model.safetensors").write_text(content)
    (directory / "model" / "adapter_config.json").write_text("{}")
    record = {"backend": "lora", "loss_curve": [[1, 2.5]]}
    (directory / TRAINING_RECORD).write_text(json.dumps(record))
    return directory


def files(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("scheme", ["path", "memory"])
def test_an_artifact_goes_to_the_shared_location_and_comes_back_whole(
    tmp_path: Path, scheme: str
) -> None:
    location = str(tmp_path / "shared") if scheme == "path" else f"memory://{uuid.uuid4().hex}"
    shared = SharedArtifacts(location)
    artifact = an_artifact(tmp_path / "built")
    assert not shared.has("lora-abc")
    shared.upload(artifact, "lora-abc")
    assert shared.has("lora-abc") and shared.uri("lora-abc") == f"{location}/lora-abc"
    shared.download("lora-abc", tmp_path / "elsewhere")
    assert files(tmp_path / "elsewhere") == files(artifact)  # the marker is not part of it


def test_a_half_written_artifact_is_not_taken_for_one(tmp_path: Path) -> None:
    shared = SharedArtifacts(str(tmp_path / "shared"))
    (tmp_path / "shared" / "lora-abc" / "model").mkdir(parents=True)  # an upload cut short
    assert not shared.has("lora-abc")


def test_a_packed_artifact_unpacks_whole_and_once(tmp_path: Path) -> None:
    artifact = an_artifact(tmp_path / "built")
    packed = pack_artifact(artifact)
    target = tmp_path / "home" / "artifacts" / "lora-abc"
    unpack_artifact(packed, target)
    assert files(target) == files(artifact)
    unpack_artifact(pack_artifact(an_artifact(tmp_path / "other", "changed")), target)
    assert files(target) == files(artifact)  # already there: kept, not replaced
    assert [p.name for p in target.parent.iterdir()] == ["lora-abc"]  # no scratch left behind


def test_a_node_without_the_artifact_takes_it_from_the_shared_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = SharedArtifacts(str(tmp_path / "shared"))
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "first-node"))
    built = cached_artifact("lora-abc", an_artifact, shared=shared)
    assert not built.reused and shared.has("lora-abc")  # built, and written there too

    def must_not_train(_: Path) -> None:
        raise AssertionError("the artifact was at the shared location")

    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "second-node"))
    fetched = cached_artifact("lora-abc", must_not_train, shared=shared)
    assert fetched.reused and fetched.model_dir == tmp_path / "second-node/artifacts/lora-abc/model"
    assert files(fetched.model_dir) == files(built.model_dir)
    assert fetched.loss_curve == [(1, 2.5)]
