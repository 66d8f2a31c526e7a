"""The base of every suite model: unknown keys are errors, parsed suites are immutable, numbers
are finite, and names are printable."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from harness.core.text import control_characters


class Strict(BaseModel):
    # NaN and infinity are refused everywhere: a `min: .nan` gate could never hold.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _printable_name(value: str) -> str:
    """A name shows in terminals, CI logs, JUnit and reports: no blank, no control characters."""
    if not value.strip():
        raise ValueError("a name must not be blank")
    if found := control_characters(value):
        raise ValueError(f"a name must not hold control characters (found {', '.join(found)})")
    return value


Name = Annotated[str, Field(min_length=1), AfterValidator(_printable_name)]
