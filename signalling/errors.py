"""Error codes, close codes and the one exception the protocol raises.

An error travels to the browser as ``{"type": "error", "error": <code>, "value": <text>}``;
``docs/PROTOCOL.md`` lists what each code means and whether the socket survives it.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """The stable ``error`` codes of the protocol."""

    BAD_MESSAGE = "bad-message"
    UNKNOWN_TYPE = "unknown-type"
    UNSUPPORTED_VERSION = "unsupported-version"
    TOO_LARGE = "too-large"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    NOT_ADMITTED = "not-admitted"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate-limited"
    REPLACED = "replaced"
    WORKSHEET_REFUSED = "worksheet-refused"
    UNAVAILABLE = "unavailable"


class CloseCode(enum.IntEnum):
    """The websocket close codes the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    TOO_BIG = 1009
    #: The room is now held by another instance: reconnect (``signalling.routing``).
    MOVED = 1012
    TRY_AGAIN_LATER = 1013
    REPLACED = 4001
    ENDED = 4003


#: Errors after which the socket is closed, and with which code.  Any error in answer to
#: ``hello`` also closes the socket, with 1008.
FATAL: dict[ErrorCode, CloseCode] = {
    ErrorCode.BAD_MESSAGE: CloseCode.POLICY_VIOLATION,
    ErrorCode.UNKNOWN_TYPE: CloseCode.POLICY_VIOLATION,
    ErrorCode.UNSUPPORTED_VERSION: CloseCode.POLICY_VIOLATION,
    ErrorCode.TOO_LARGE: CloseCode.TOO_BIG,
    ErrorCode.REPLACED: CloseCode.REPLACED,
}


class ProtocolError(Exception):
    """A message was refused: ``code`` is stable, ``value`` explains it to a human."""

    def __init__(self, code: ErrorCode, value: str) -> None:
        super().__init__(f"{code.value}: {value}")
        self.code = code
        self.value = value

    @property
    def fatal(self) -> bool:
        """Whether the socket is closed after this error (see ``FATAL``)."""
        return self.code in FATAL
