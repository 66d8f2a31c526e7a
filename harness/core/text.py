"""User strings made safe for each place they are printed: a terminal, XML, a CI log.

Suite names, model outputs and error messages can hold anything: Rich markup (`[/bold]`, which
Rich would interpret or fail on), control characters (an ESC sequence can clear a CI log; a NUL
makes XML unreadable). Validation refuses control characters in names; these functions make every
output safe anyway.
"""

from __future__ import annotations

import re

from rich.markup import escape as rich_escape

# C0 and C1 control characters except tab and newline, and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What XML 1.0 cannot hold at all: C0 controls but tab, newline and carriage return, the
# surrogates and U+FFFE/U+FFFF.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group(0)):02x}"


def printable(text: object) -> str:
    """`text` with control characters shown as `\\x1b`-style escapes (tab and newline kept)."""
    return _CONTROL.sub(_visible, str(text))


def terminal(text: object) -> str:
    """`text` for Rich: control characters shown, markup escaped so it prints as written."""
    return rich_escape(printable(text))


def xml_text(text: object) -> str:
    """`text` with what XML 1.0 cannot hold shown as escapes (ElementTree escapes the rest)."""
    return _NOT_XML.sub(_visible, str(text))


def control_characters(text: str) -> list[str]:
    """The control characters in `text`, as escapes, for a validation message."""
    return sorted({_visible(m) for m in _CONTROL.finditer(text)})
