"""One tiny registry shared by checks, backends and model sources.

Built-ins register with a decorator; third parties through an entry-point group. Lookups of an
unknown name fail with a did-you-mean, so a typo in a suite is caught at validation time.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from harness.core.errors import HarnessError

T = TypeVar("T")


# Names people write from other tools, and what they are called here.
_ALIASES = {
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "steps": "max_steps",
    "seq_len": "max_length",
    "max_seq_length": "max_length",
}


def did_you_mean(name: str, options: list[str] | tuple[str, ...]) -> str:
    """' (did you mean "x"?)' when a close option exists, else ''.

    Close in spelling (`lerning_rate`), or an option that holds the name as whole words
    (`batch_size` -> `per_device_train_batch_size`), or a known alias (`lr`).
    """
    choices = list(options)
    alias = _ALIASES.get(name)
    close = [alias] if alias in choices else []
    close = close or difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if not close and "_" in name:
        containing = [o for o in choices if f"_{name}" in f"_{o}_" or f"_{name}_" in f"_{o}_"]
        close = sorted(containing, key=len)[:1]
    return f' (did you mean "{close[0]}"?)' if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorator

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name not in self._items:
            raise HarnessError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; "
                f"known: {', '.join(self.names()) or 'none'}"
            )
        return self._items[name]

    def items(self) -> Iterator[tuple[str, T]]:
        self._load_entry_points()
        yield from sorted(self._items.items())
