"""One tiny registry shared by checks and backends.

Built-ins and plugins are the same kind of thing: a "module:attr" target, loaded on first use
(built-ins are listed where their registry is made, plugins come from an entry-point group).
Lookups of an unknown name fail with a did-you-mean, so a typo in a suite is caught at validation.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from harness.core.errors import HarnessError

T = TypeVar("T")
logger = logging.getLogger("harness.plugins")


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
    """Named things of one kind, loaded on first use from "module:attr" targets.

    Built-ins are targets given here; third parties add targets through the entry-point group
    (the value of an entry point is the same "module:attr" string). Either way nothing is imported
    until it is looked up, and a plugin that fails to load is a warning naming it, not a traceback.
    `register` adds an object directly (tests, programmatic plugins).
    """

    def __init__(
        self,
        kind: str,
        entry_point_group: str,
        builtins: Mapping[str, str] | None = None,
        required: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.required = required  # attributes every item must have (its protocol)
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._targets: dict[str, str] = dict(builtins or {})
        self._builtin = set(self._targets)
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            self._targets.pop(name, None)
            return item

        return decorator

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in self._items and ep.name not in self._targets:
                self._targets[ep.name] = ep.value

    def _resolve(self, name: str) -> bool:
        """Load `name`'s target; False (with a warning) when a plugin's target fails."""
        target = self._targets.pop(name)
        try:
            item = load_target(target)
            missing = [a for a in self.required if not hasattr(item, a)]
            if missing:
                raise TypeError(f"it lacks {', '.join(missing)}")
            self._items[name] = item
        except Exception as exc:
            if name in self._builtin:
                raise  # a broken built-in is harness's own bug: say so loudly
            logger.warning(
                "%s plugin %r (%s) could not be loaded and is ignored: %s: %s",
                self.kind, name, target, type(exc).__name__, exc,
            )  # fmt: skip
            return False
        return True

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted({*self._items, *self._targets})

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name in self._targets:
            self._resolve(name)
        if name not in self._items:
            raise HarnessError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; "
                f"known: {', '.join(self.names()) or 'none'}"
            )
        return self._items[name]

    def items(self) -> Iterator[tuple[str, T]]:
        self._load_entry_points()
        for name in list(self._targets):
            self._resolve(name)
        yield from sorted(self._items.items())


def load_target(target: str) -> Any:
    """The object a "module:attr" (or "module") string names."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module
