"""The kinds of JSON value a field can hold: text, integer, number, boolean, one of an
enum's values, an instant, an array.  Each is a ``signalling.wire.Kind``: how a value is
checked and turned into Python (refusing with an error that names the field), how it is
written back, and, for the compiled decoders, the test of a value accepted as it is.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from signalling.wire import JSON, Kind, bad, describe

E = TypeVar("E", bound=enum.Enum)


def _same(value: Any) -> JSON:
    return value  # type: ignore[no-any-return]


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text(max_chars: int, *, min_chars: int = 1, prefixes: Sequence[str] = ()) -> Kind:
    """A string of ``min_chars``..``max_chars`` code points, optionally with a required prefix."""

    def decode(value: object, path: str) -> str:
        if not isinstance(value, str):
            raise bad(path, f"expected a string, got {describe(value)}")
        if len(value) > max_chars:
            raise bad(path, f"longer than {max_chars} characters")
        if len(value) < min_chars:
            raise bad(path, "must not be empty" if min_chars == 1 else "too short")
        if not value.isascii() and _has_surrogates(value):
            raise bad(path, "contains an unpaired surrogate")
        if prefixes and not value.startswith(tuple(prefixes)):
            raise bad(path, f"must begin with one of {', '.join(prefixes)}")
        return value

    # ASCII only: any other text goes through ``decode``, for its surrogate check.
    accepts = f"type({{v}}) is str and {min_chars} <= len({{v}}) <= {max_chars} and {{v}}.isascii()"
    if prefixes:
        accepts += f" and {{v}}.startswith({tuple(prefixes)!r})"
    return Kind(decode, _same, accepts)


def integer(low: int, high: int) -> Kind:
    """An integer in ``low..high``; ``true``, ``false`` and ``1.0`` are not integers."""

    def decode(value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(path, f"expected an integer, got {describe(value)}")
        if not low <= value <= high:
            raise bad(path, f"must be between {low} and {high}")
        return value

    return Kind(decode, _same, f"type({{v}}) is int and {low} <= {{v}} <= {high}")


def _decode_number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(path, f"expected a number, got {describe(value)}")
    if not math.isfinite(value):
        raise bad(path, "must be finite")
    return value


NUMBER = Kind(_decode_number, _same)


def _decode_boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise bad(path, f"expected a boolean, got {describe(value)}")
    return value


BOOLEAN = Kind(_decode_boolean, _same, "type({v}) is bool")


def choice(enum_type: type[E], *, only: Sequence[E] = ()) -> Kind:
    """One of the (string) values of ``enum_type``, or of its members ``only``."""
    allowed = {str(member.value): member for member in (only or list(enum_type))}

    def decode(value: object, path: str) -> E:
        if not isinstance(value, str):
            raise bad(path, f"expected a string, got {describe(value)}")
        try:
            return allowed[value]
        except KeyError:
            raise bad(path, f"must be one of {', '.join(allowed)}") from None

    def encode(value: Any) -> JSON:
        return str(enum_type(value).value)

    return Kind(decode, encode)


_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z", re.ASCII)


def format_instant(value: dt.datetime) -> str:
    """``2026-03-02T14:00:00Z``, with microseconds only when there are some."""
    if value.tzinfo is None:
        raise ValueError("refusing to encode a naive datetime")
    value = value.astimezone(dt.UTC)
    fraction = f".{value.microsecond:06d}" if value.microsecond else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _decode_instant(value: object, path: str) -> dt.datetime:
    if not isinstance(value, str):
        raise bad(path, f"expected a string, got {describe(value)}")
    if not _INSTANT.fullmatch(value):
        raise bad(path, "expected an ISO-8601 UTC instant like 2026-03-02T14:00:00Z")
    try:
        return dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=dt.UTC)
    except ValueError:
        raise bad(path, "not a valid date and time") from None


INSTANT = Kind(_decode_instant, lambda value: format_instant(value))


def array(item: Kind, *, max_items: int, min_items: int = 0) -> Kind:
    """A JSON array of ``min_items``..``max_items`` values of kind ``item`` (a Python tuple)."""

    def decode(value: object, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise bad(path, f"expected an array, got {describe(value)}")
        if len(value) > max_items:
            raise bad(path, f"more than {max_items} items")
        if len(value) < min_items:
            raise bad(path, f"fewer than {min_items} items")
        return tuple(item.decode(element, f"{path}[{i}]") for i, element in enumerate(value))

    def encode(value: Any) -> JSON:
        return [item.encode(element) for element in value]

    return Kind(decode, encode)
