"""How a request's values are checked: one error type, one number rule, one line per refusal.

Every numeric field goes through `Number.check` (type, bool is not a number, finite, range: the
rule of core/options.py, which declares the engine options' ranges); the
other shapes (a choice, an object, a path, the known fields) through the helpers below. A refusal
is a ProtocolError whose str() is the one line the editor shows.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from onnxstyle.core import options

INT_MAX = (
    options.MAX_COUNT
)  # sizes and counts: far above any image or run, and every front end's int
ID_MAX_CHARS = 200  # ids and names are echoed in every answer: keep them short


class ProtocolError(ValueError):
    """A request that can't be understood; str() is one line. `id` is the request's, if known."""

    def __init__(self, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.id = id


class FrameError(ProtocolError):
    """A "frame" that is not a length the worker may read: the next message can't be found."""


class Number(options.Number):
    """A numeric field's type and range (core/options.py's rule): the one check every number of
    the protocol goes through, refusing with a ProtocolError that names the field."""

    def check(self, value: Any, name: str) -> int | float | None:
        if value is None and self.nullable:
            return None
        if not self.accepts(value):
            raise ProtocolError(f'"{name}" must be {self.describe()}, not {shown(value)}')
        return value

    def count(self, value: Any, name: str) -> int:
        """check() of an integer field that takes no null: the int."""
        assert self.integer and not self.nullable, f"{name}: not a non-null integer field"
        checked = self.check(value, name)
        assert checked is not None  # refused above: not nullable
        return int(checked)

    def real(self, value: Any, name: str) -> float:
        """check() of a number field that takes no null: the float."""
        assert not self.nullable, f"{name}: a nullable field"
        checked = self.check(value, name)
        assert checked is not None  # refused above: not nullable
        return float(checked)

    @classmethod
    def of(cls, number: options.Number, nullable: bool) -> Number:
        """An option's range as a request field (null: the preset's value, when nullable)."""
        return cls(**{**asdict(number), "nullable": nullable})


def shown(value: Any) -> str:
    """A bad value as the error shows it: JSON spelling, cut short."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):  # e.g. an int of more digits than Python will print
        text = f"a {type(value).__name__} too large to show"
    return cut(text)


def cut(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def choice(value: Any, choices: Any, name: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ProtocolError(f'"{name}" must be one of {", ".join(choices)}, not {shown(value)}')
    return value


def an_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f'"{name}" must be an object, not {shown(value)}')
    return value


def a_path(value: Any, name: str) -> str:
    """A path as the request gives it: a non-empty string without NUL (the OS can't take one)."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise ProtocolError(
            f'"{name}" must be a file path (a non-empty string), not {shown(value)}'
        )
    return value


def a_label(value: Any, name: str) -> str:
    """An id or a name: a string of 1 to ID_MAX_CHARS characters (it is echoed in messages)."""
    if not isinstance(value, str) or not 0 < len(value) <= ID_MAX_CHARS:
        raise ProtocolError(
            f'"{name}" must be a string of 1 to {ID_MAX_CHARS} characters, not {shown(value)}'
        )
    return value


def only(message: dict[str, Any], fields: tuple[str, ...], kind: str) -> None:
    unknown = sorted(set(message) - set(fields))
    if unknown:
        raise ProtocolError(f'unknown field "{cut(unknown[0])}" in a "{kind}" request')
