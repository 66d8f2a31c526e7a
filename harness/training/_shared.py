"""Trained artifacts that leave the machine they were built on: a shared location every node of a
cluster reaches (`execution: {artifacts: ...}`, a path on shared storage or an fsspec URI), and
an artifact packed into bytes for the trip from a Ray worker on another node back to the run.

Both keep the artifact's name (`BACKEND-KEY`, harness.training._train), so an artifact built on
any node is found again by the same key anywhere.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

COMPLETE = ".complete"  # written last: object stores have no atomic rename of a directory


class SharedArtifacts:
    """Artifacts at a shared location, by name: written once complete, read by any node."""

    def __init__(self, location: str) -> None:
        from fsspec.core import url_to_fs  # deferred: only runs with `artifacts:` need fsspec

        self.location = location.rstrip("/")
        self.fs, root = url_to_fs(self.location)
        self.root = root.rstrip("/")

    def uri(self, name: str) -> str:
        return f"{self.location}/{name}"

    def has(self, name: str) -> bool:
        return bool(self.fs.exists(f"{self.root}/{name}/{COMPLETE}"))

    def upload(self, directory: Path, name: str, *, replace: bool = False) -> None:
        """Copy a complete artifact there, its marker last: unless it is there already, or
        replacing the copy there (`replace`: retrained)."""
        remote = f"{self.root}/{name}"
        if self.has(name) and not replace:
            return
        if self.fs.exists(remote):  # an older copy, or one cut short: its files all go
            self.fs.rm(remote, recursive=True)
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            target = f"{remote}/{path.relative_to(directory).as_posix()}"
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(path), target)
        self.fs.pipe_file(f"{remote}/{COMPLETE}", b"")

    def download(self, name: str, target: Path) -> None:
        """Copy artifact `name` into the (new or empty) directory `target`."""
        remote = f"{self.root}/{name}"
        for path in self.fs.find(remote):
            relative = path[len(remote) :].lstrip("/")
            if relative == COMPLETE:
                continue
            local = target / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(path, str(local))


def pack_artifact(directory: Path) -> bytes:
    """A directory as an uncompressed tar (safetensors weights do not compress)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=".")
    return buffer.getvalue()


def extract_artifact(packed: bytes, directory: Path) -> None:
    """Put a packed artifact's files into `directory`."""
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r") as tar:
        tar.extractall(directory, filter="data")  # no links or paths leaving the directory


def unpack_artifact(packed: bytes, target: Path, *, replace: bool = False) -> None:
    """Put a packed artifact at `target` whole (through a scratch directory renamed into place),
    unless it is there already and not to be replaced (`replace`: it was trained again)."""
    if target.is_dir() and not replace:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        extract_artifact(packed, scratch)
        if target.is_dir():
            shutil.rmtree(target)
        os.rename(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        if not target.is_dir():  # another process put it there first: that one is as good
            raise
