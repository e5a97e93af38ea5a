"""What the booking service refuses, and the client details it accepts.

Every refusal is an exception the caller can show as it is:

* ``BookingError``: the input is wrong; it names the field(s) and says why, and nothing
  was written.
* ``SlotTaken``: the time was offered but someone else has it now (or it collides with
  another appointment); ``nearest`` holds the nearest free slots.
* ``TooLate``: the client's self-service cutoff has passed; ``contact_text`` says whom
  to ask instead.
* ``NotChangeable``: the appointment behind a manage link was cancelled or moved, or is
  over; the link can do nothing any more.
* ``NotFound``: no such therapist, link or record -- or it belongs to another therapist,
  which is told apart from "no such record" for nobody.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from dataclasses import dataclass

from server import accounts
from server.availability import Slot

NAME_MAX = 200
PHONE_MAX = 40
NOTE_MAX = 2000
_PHONE = re.compile(r"[0-9 +()\-]+")
# C0 controls and DEL; a note may keep its line breaks and tabs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class BookingProblem(Exception):
    """Base of every refusal of the booking service."""


class BookingError(BookingProblem):
    """Invalid input.  ``field``/``message`` name the first problem, ``errors`` all of them."""

    def __init__(self, field: str, message: str, *more: FieldError) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors: tuple[FieldError, ...] = (FieldError(field, message), *more)

    @classmethod
    def of(cls, errors: list[FieldError]) -> BookingError:
        first, *rest = errors
        return cls(first.field, first.message, *rest)


class SlotTaken(BookingProblem):
    """The wanted time is no longer free.

    ``nearest`` are the nearest free slots for the same session (possibly none);
    ``start`` is the colliding start and ``occurrence`` its 1-based week in a series.
    """

    def __init__(
        self,
        nearest: list[Slot],
        *,
        start: dt.datetime | None = None,
        occurrence: int | None = None,
    ) -> None:
        where = f" (week {occurrence}, {start.isoformat()})" if occurrence and start else ""
        super().__init__(f"that time is taken{where}")
        self.nearest = nearest
        self.start = start
        self.occurrence = occurrence


class TooLate(BookingProblem):
    """The appointment is too close to change online; ``contact_text`` says whom to ask."""

    def __init__(self, contact_text: str, cutoff_at: dt.datetime) -> None:
        super().__init__("too late to change this appointment online")
        self.contact_text = contact_text
        self.cutoff_at = cutoff_at


class NotChangeable(BookingProblem):
    """The link's appointment was cancelled or moved (or is over): nothing can be done."""


class NotFound(BookingProblem):
    """No such record for this caller; ``what`` names the kind ("therapist", "link", ...)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what}")
        self.what = what


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA zone this machine knows (``Europe/Berlin``, ``UTC``)."""
    return name in _zones()


def _text_error(value: object, *, allow_lines: bool = False) -> str | None:
    """Why ``value`` cannot be stored as text, or ``None``."""
    if not isinstance(value, str):
        return "must be text"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains characters that are not valid text"
    pattern = _CONTROL_BUT_LINES if allow_lines else _CONTROL
    if pattern.search(value):
        return "contains control characters"
    return None


@dataclass(frozen=True)
class ClientDetails:
    """Who is booking, validated and normalised on construction.

    Raises ``BookingError`` listing every bad field: ``name`` (1-200 characters, spaces
    collapsed), ``email`` (an address; stored lower-case), ``phone`` (optional, at most 40
    of digits, spaces and ``+()-``), ``note`` (optional, at most 2000 characters; line
    breaks kept) and ``timezone`` (an IANA zone).  Empty optional fields become ``None``.
    """

    name: str
    email: str
    phone: str | None
    note: str | None
    timezone: str

    def __post_init__(self) -> None:
        errors: list[FieldError] = []

        def check(field: str, value: object, *, allow_lines: bool = False) -> bool:
            problem = _text_error(value, allow_lines=allow_lines)
            if problem:
                errors.append(FieldError(field, problem))
            return problem is None

        if check("name", self.name):
            name = " ".join(self.name.split())
            object.__setattr__(self, "name", name)
            if not 1 <= len(name) <= NAME_MAX:
                errors.append(FieldError("name", f"use between 1 and {NAME_MAX} characters"))
        if check("email", self.email):
            try:
                object.__setattr__(self, "email", accounts.validate_email(self.email))
            except accounts.InvalidAccount:
                errors.append(FieldError("email", "is not an e-mail address"))
        if self.phone is not None and check("phone", self.phone):
            phone = " ".join(self.phone.split()) or None
            object.__setattr__(self, "phone", phone)
            if phone is not None and (
                len(phone) > PHONE_MAX
                or not _PHONE.fullmatch(phone)
                or not any(map(str.isdigit, phone))
            ):
                errors.append(
                    FieldError(
                        "phone", f"use at most {PHONE_MAX} digits, spaces and + ( ) - characters"
                    )
                )
        if self.note is not None and check("note", self.note, allow_lines=True):
            note = self.note.strip() or None
            object.__setattr__(self, "note", note)
            if note is not None and len(note) > NOTE_MAX:
                errors.append(FieldError("note", f"use at most {NOTE_MAX} characters"))
        if check("timezone", self.timezone) and not is_timezone(self.timezone):
            errors.append(FieldError("timezone", "is not an IANA time zone (e.g. Europe/Berlin)"))
        if errors:
            raise BookingError.of(errors)


def aware_utc(value: dt.datetime, field: str) -> dt.datetime:
    """``value`` as a UTC instant, or ``BookingError(field)`` if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise BookingError(field, "needs a time zone offset")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise BookingError(field, "is out of range") from None
