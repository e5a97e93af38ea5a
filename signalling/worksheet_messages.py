"""The worksheet messages: a shared worksheet opened in a call, and its Yjs sync traffic.

The room logic does not interpret them: the switchboard hands them to a
``WorksheetHandler`` (the server's), which checks who may read and write and keeps the
documents.  ``docs/PROTOCOL.md`` documents each one.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from typing import Any

from signalling.kinds import integer, text
from signalling.messages import BOTH, THERAPIST_ONLY, Message
from signalling.parts import ID
from signalling.wire import JSON, Kind, bad, describe, field

#: A worksheet's id on the wire: ``w-<n>``.
WORKSHEET_ID = text(32, prefixes=("w-",))
#: A template's id: a built-in slug, or ``t-<n>`` for a therapist's own template.
TEMPLATE_ID = text(80)
#: A field's path in the document: ``went_well``, ``entries[1].situation``.
FIELD_PATH = text(200)
#: The largest Yjs message that fits in a frame once base64-encoded, with room for the rest.
MAX_SYNC_BYTES = 48 * 1024
#: The largest template the server sends (it checks templates when they are saved).
MAX_TEMPLATE_BYTES = 48 * 1024


def _decode_base64(value: object, path: str) -> bytes:
    if not isinstance(value, str):
        raise bad(path, f"expected a string, got {describe(value)}")
    if len(value) > (MAX_SYNC_BYTES * 4) // 3 + 4:
        raise bad(path, f"longer than a Yjs message of {MAX_SYNC_BYTES} bytes")
    try:
        # ``base64.b64decode(..., validate=True)``, without its wrapper (one per keystroke).
        data = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise bad(path, "not standard base64 with padding") from None
    if not data:
        raise bad(path, "must not be empty")
    return data


def _encode_base64(value: Any) -> JSON:
    return binascii.b2a_base64(value, newline=False).decode("ascii")


BASE64 = Kind(_decode_base64, _encode_base64)


def _decode_template(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(path, f"expected an object, got {describe(value)}")
    if len(json.dumps(value)) > MAX_TEMPLATE_BYTES:
        raise bad(path, f"larger than {MAX_TEMPLATE_BYTES} bytes")
    return value


TEMPLATE_OBJECT = Kind(_decode_template, lambda value: value)


@dataclass(frozen=True, kw_only=True)
class WorksheetOpen(Message):
    """Therapist→server: open a new worksheet from a template, or continue one."""

    TYPE = "worksheet-open"
    SENDERS = THERAPIST_ONLY
    FIELDS = (
        field("appointment", ID),
        field("template", TEMPLATE_ID, optional=True),
        field("worksheet", WORKSHEET_ID, optional=True),
    )
    appointment: str
    template: str | None = None
    worksheet: str | None = None

    def problem(self) -> str | None:
        if (self.template is None) == (self.worksheet is None):
            return "exactly one of template and worksheet is required"
        return None


@dataclass(frozen=True, kw_only=True)
class WorksheetShown(Message):
    """Server→participant: this worksheet is open in the call."""

    TYPE = "worksheet"
    FIELDS = (
        field("worksheet", WORKSHEET_ID),
        field("title", text(120)),
        field("template", TEMPLATE_OBJECT),
    )
    worksheet: str
    title: str
    template: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class WorksheetClose(Message):
    """Therapist→server: put the worksheet away (it stays on the client's record)."""

    TYPE = "worksheet-close"
    SENDERS = THERAPIST_ONLY
    FIELDS = (field("worksheet", WORKSHEET_ID),)
    worksheet: str


@dataclass(frozen=True, kw_only=True)
class WorksheetClosed(Message):
    """Server→participant: the worksheet is no longer open in the call."""

    TYPE = "worksheet-closed"
    FIELDS = (field("worksheet", WORKSHEET_ID),)
    worksheet: str


@dataclass(frozen=True, kw_only=True)
class WorksheetSaved(Message):
    """Server→participant: every change the server had received is stored; ``received``
    says how many of the participant's ``yjs`` messages on this connection that covers."""

    TYPE = "worksheet-saved"
    FIELDS = (
        field("worksheet", WORKSHEET_ID),
        field("revision", integer(0, 2**31 - 1)),
        field("received", integer(0, 2**53 - 1)),
    )
    worksheet: str
    revision: int
    received: int


@dataclass(frozen=True, kw_only=True)
class Yjs(Message):
    """Both ways: one y-protocols sync message (step 1, step 2 or update), base64."""

    TYPE = "yjs"
    SENDERS = BOTH
    FIELDS = (field("worksheet", WORKSHEET_ID), field("data", BASE64))
    worksheet: str
    data: bytes


@dataclass(frozen=True, kw_only=True)
class Editing(Message):
    """Both ways: which field the sender is in (``null``: none); relayed to the other."""

    TYPE = "editing"
    SENDERS = BOTH
    FIELDS = (field("worksheet", WORKSHEET_ID), field("field", FIELD_PATH, nullable=True))
    worksheet: str
    field: str | None


#: Messages the server hands to its worksheet handler.
WorksheetCommand = WorksheetOpen | WorksheetClose | Yjs | Editing

WORKSHEET_MESSAGE_CLASSES: tuple[type[Message], ...] = (
    WorksheetOpen,
    WorksheetShown,
    WorksheetClose,
    WorksheetClosed,
    WorksheetSaved,
    Yjs,
    Editing,
)


def worksheet_ref(worksheet_id: int) -> str:
    return f"w-{worksheet_id}"


def parse_worksheet_ref(ref: str) -> int | None:
    """The number in ``w-<n>``, or None for anything else."""
    digits = ref.removeprefix("w-")
    if digits == ref or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)
