"""The parts messages are made of: roles and states, the limits of the protocol's fields,
and the data structures nested in messages (ICE servers, device and connection summaries,
candidates, lobby entries).

Like the messages, each structure is a frozen dataclass whose ``FIELDS`` say how each
attribute appears on the wire; ``docs/PROTOCOL.md`` documents them.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from signalling.kinds import BOOLEAN, INSTANT, NUMBER, array, choice, integer, text
from signalling.wire import Struct, field, struct

MAX_ID_CHARS = 64
MAX_TEXT_CHARS = 500
MAX_WELCOME_CHARS = 2000
MAX_STATUS_CHARS = 500
MAX_ERROR_VALUE_CHARS = 500
MAX_NAME_CHARS = 200
MAX_SDP_CHARS = 60_000
MAX_CANDIDATE_CHARS = 1024
MAX_ICE_SERVERS = 8
MAX_ICE_URLS = 8
MAX_ICE_FIELD_CHARS = 512
MAX_LOBBY_ENTRIES = 200


class Role(enum.StrEnum):
    THERAPIST = "therapist"
    CLIENT = "client"


class ParticipantState(enum.StrEnum):
    """Where a participant stands; the transitions live in ``signalling.rooms``."""

    WAITING = "waiting"
    ADMITTED = "admitted"
    IN_CALL = "in_call"
    LEFT = "left"
    ENDED = "ended"


class DeviceStatus(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"
    DENIED = "denied"


ID = text(MAX_ID_CHARS)
SDP = text(MAX_SDP_CHARS)


@dataclass(frozen=True, kw_only=True)
class IceServer(Struct):
    FIELDS = (
        field(
            "urls",
            array(
                text(MAX_ICE_FIELD_CHARS, prefixes=("stun:", "turn:", "turns:")),
                min_items=1,
                max_items=MAX_ICE_URLS,
            ),
        ),
        field("username", text(MAX_ICE_FIELD_CHARS, min_chars=0), optional=True),
        field("credential", text(MAX_ICE_FIELD_CHARS, min_chars=0), optional=True),
    )
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


class ConnectionVerdict(enum.StrEnum):
    """The connection test's verdict; ``failed``: it could not connect at all."""

    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    FAILED = "failed"


MAX_RTT_MS = 60_000
MAX_KBPS = 10_000_000


@dataclass(frozen=True, kw_only=True)
class ConnectionSummary(Struct):
    """The client's connection test before joining (``server/echo.py``).  A measurement is
    ``None`` when the browser's statistics did not give it, and always when it failed."""

    FIELDS = (
        field("verdict", choice(ConnectionVerdict)),
        field("rtt_ms", integer(0, MAX_RTT_MS), nullable=True),
        field("loss_percent", NUMBER, nullable=True),
        field("kbps_up", integer(0, MAX_KBPS), nullable=True),
        field("kbps_down", integer(0, MAX_KBPS), nullable=True),
    )
    verdict: ConnectionVerdict
    rtt_ms: int | None
    loss_percent: float | None
    kbps_up: int | None
    kbps_down: int | None

    def problem(self) -> str | None:
        if self.loss_percent is not None and not 0 <= self.loss_percent <= 100:
            return "lossPercent must be between 0 and 100"
        measured = (self.rtt_ms, self.loss_percent, self.kbps_up, self.kbps_down)
        if self.verdict is ConnectionVerdict.FAILED and any(m is not None for m in measured):
            return "a failed connection test has no measurements"
        return None


@dataclass(frozen=True, kw_only=True)
class DeviceSummary(Struct):
    FIELDS = (
        field("camera", choice(DeviceStatus)),
        field("microphone", choice(DeviceStatus)),
        field("connection", struct(ConnectionSummary), optional=True),
    )
    camera: DeviceStatus
    microphone: DeviceStatus
    connection: ConnectionSummary | None = None


@dataclass(frozen=True, kw_only=True)
class IceCandidate(Struct):
    FIELDS = (
        field("candidate", text(MAX_CANDIDATE_CHARS, min_chars=0)),
        field("sdp_mid", text(MAX_ID_CHARS, min_chars=0), nullable=True),
        field("sdp_m_line_index", integer(0, 65535), nullable=True),
        field("username_fragment", text(256, min_chars=0), optional=True, nullable=True),
    )
    candidate: str
    sdp_mid: str | None
    sdp_m_line_index: int | None
    username_fragment: str | None = None


LOBBY_STATES = (ParticipantState.WAITING, ParticipantState.ADMITTED, ParticipantState.IN_CALL)


@dataclass(frozen=True, kw_only=True)
class LobbyEntry(Struct):
    FIELDS = (
        field("participant", ID),
        field("appointment", ID),
        field("name", text(MAX_NAME_CHARS)),
        field("start", INSTANT),
        field("end", INSTANT),
        field("waiting_since", INSTANT),
        field("devices", struct(DeviceSummary), nullable=True),
        field("state", choice(ParticipantState, only=LOBBY_STATES)),
        field("online", BOOLEAN),
    )
    participant: str
    appointment: str
    name: str
    start: dt.datetime
    end: dt.datetime
    waiting_since: dt.datetime
    devices: DeviceSummary | None
    state: ParticipantState
    online: bool
