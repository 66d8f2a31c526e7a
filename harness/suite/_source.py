"""Safe YAML loading that remembers where every key and value came from.

The document is composed once with PyYAML's safe loader; the node tree gives line and column for
any path, which is how suite errors point at `FILE:LINE:COL`, and the safe constructor builds only
plain data from it. Before anything reads the tree, what a hostile or broken file could do is
refused at its position, exit 2: bytes that are not UTF-8 (or UTF-16 with its BOM) text, duplicate
keys (an error in YAML; PyYAML would keep the last), recursive aliases, aliases that expand to
more values than any suite has (an "alias bomb"), nesting deeper than any suite needs, and
integers too long to convert.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent

from harness.core.errors import HarnessError

PathKey = tuple[str | int, ...]

MAX_VALUES = 200_000  # values once aliases are expanded; 10,000 inline rows of 5 fields is 60,000
MAX_INT_DIGITS = 100
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


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


class _Loader(yaml.SafeLoader):
    """The safe loader, remembering where aliases are and refusing enormous integers."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.alias_marks: list[Any] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(AliasEvent):
            self.alias_marks.append(self.peek_event().start_mark)
        node: yaml.Node = super().compose_node(parent, index)
        return node

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise ConstructorError(
                None,
                None,
                f"an integer of {digits} digits (at most {MAX_INT_DIGITS} are accepted)",
                node.start_mark,
            )
        return int(self.construct_yaml_int(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_bounded_int)


class _Refused(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.mark = mark


def _mark(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _decode(path: Path, raw: bytes) -> str:
    """The file's text: UTF-8 (a BOM allowed) or UTF-16 with its BOM; anything else is refused
    at the line and column of the first byte that is not text."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise HarnessError(
                    f"{path}: not valid {encoding.upper()} text ({exc.reason})"
                ) from None
    if (nul := raw.find(b"\x00")) >= 0:
        line, column = _line_column(raw[:nul])
        raise HarnessError(
            f"{path}:{line}:{column}: not a text file (it holds a NUL byte); a suite is YAML text"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(raw[: exc.start])
        raise HarnessError(
            f"{path}:{line}:{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None


def _line_column(before: bytes) -> tuple[int, int]:
    """The 1-based line and column just after `before`, the bytes that precede a position."""
    return before.count(b"\n") + 1, len(before) - (before.rfind(b"\n") + 1) + 1


def _check_graph(root: yaml.Node, alias_marks: list[Any]) -> None:
    """Refuse cycles, duplicate keys and expansions beyond MAX_VALUES, walking the node graph
    without recursion (a tree of depth 5,000 must not overflow the stack)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_VALUES:
                mark = alias_marks[-1] if alias_marks else node.start_mark
                raise _Refused(
                    f"aliases expand the suite to more than {MAX_VALUES:,} values; "
                    "write the data out, or put it in a data file",
                    mark,
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _Refused("recursive alias: this anchor's value contains itself", node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node)
        for child in _children(node):
            if id(child) in on_path:
                raise _Refused(
                    "recursive alias: this anchor's value contains itself", child.start_mark
                )
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_duplicate_keys(node: yaml.MappingNode) -> None:
    seen: dict[str, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        first = seen.setdefault(str(key_node.value), key_node)
        if first is not key_node:
            raise _Refused(
                f'duplicate key "{key_node.value}" (first at line {first.start_mark.line + 1}); '
                "each key may appear once",
                key_node.start_mark,
            )


def _index_node(root: yaml.Node) -> tuple[dict[PathKey, Position], dict[PathKey, Position]]:
    """Where each path's value and key are written (iteratively: deep trees are fine)."""
    values: dict[PathKey, Position] = {}
    keys: dict[PathKey, Position] = {}
    stack: list[tuple[yaml.Node, PathKey]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        values[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = (*path, str(key_node.value))
                keys[child] = _mark(key_node)
                stack.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return values, keys


def load_yaml(path: Path) -> YamlDocument:
    """Parse `path` with the safe loader; anything wrong becomes a HarnessError at its line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the suite file ({exc.strerror})") from exc
    text = _decode(path, raw)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ESC, ...)
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        raise HarnessError(
            f"{path}:{line}:{column}: invalid YAML: character U+{exc.character:04X} is not allowed "
            "in a YAML file (write it as an escape inside double quotes, if it must be there)"
        ) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return YamlDocument(path, text, None, {}, {})
        _check_graph(root, loader.alias_marks)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise HarnessError(f"{_where(path, mark)}: invalid YAML: {exc.problem or exc}") from None
    except _Refused as exc:
        raise HarnessError(f"{_where(path, exc.mark)}: {exc}") from None
    except RecursionError:
        raise HarnessError(
            f"{_where(path, loader.get_mark())}: invalid YAML: nested too deeply"
        ) from None
    except yaml.YAMLError as exc:  # any other error PyYAML raises without a mark
        raise HarnessError(f"{path}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    values, keys = _index_node(root)
    return YamlDocument(path, text, data, values, keys)


def _where(path: Path, mark: Any) -> str:
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
