"""Safe YAML loading that remembers where every key and value came from.

PyYAML's SafeLoader builds only plain data; composing the node tree beside it gives line and
column for any path, which is how suite errors point at `FILE:LINE:COL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True)
class YamlDocument:
    path: Path
    text: str
    data: Any
    value_positions: dict[PathKey, Position]
    key_positions: dict[PathKey, Position]

    def position(self, path: PathKey, *, key: bool = False) -> Position:
        """Where `path` is written; the nearest written ancestor when it is missing."""
        table = self.key_positions if key else self.value_positions
        for end in range(len(path), -1, -1):
            found = table.get(path[:end]) or self.value_positions.get(path[:end])
            if found:
                return found
        return Position(1, 1)


def _mark(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _index_node(node: yaml.Node, path: PathKey, values: dict, keys: dict) -> None:
    values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            keys[child] = _mark(key_node)
            _index_node(value_node, child, values, keys)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_node(item, (*path, index), values, keys)


def load_yaml(path: Path) -> YamlDocument:
    """Parse `path` with the safe loader; a syntax error becomes a HarnessError at its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the suite file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise HarnessError(f"{where}: invalid YAML: {exc.problem or exc}") from exc
    values: dict[PathKey, Position] = {}
    keys: dict[PathKey, Position] = {}
    if root is not None:
        _index_node(root, (), values, keys)
    return YamlDocument(path, text, data, values, keys)
