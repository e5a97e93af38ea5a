"""The vocabulary of the protocol: one class per message type.

Every class is a frozen dataclass whose ``FIELDS`` say how each attribute appears on the
wire (camelCase there, snake_case here).  ``docs/PROTOCOL.md`` documents the same fields,
and a test holds the two together.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from signalling.errors import ErrorCode
from signalling.kinds import BOOLEAN, NUMBER, array, choice, integer, text
from signalling.parts import (
    ID,
    MAX_ERROR_VALUE_CHARS,
    MAX_ICE_SERVERS,
    MAX_LOBBY_ENTRIES,
    MAX_NAME_CHARS,
    MAX_STATUS_CHARS,
    MAX_TEXT_CHARS,
    MAX_WELCOME_CHARS,
    SDP,
    DeviceSummary,
    IceCandidate,
    IceServer,
    LobbyEntry,
    ParticipantState,
    Role,
)
from signalling.wire import Field, Struct, field, struct

BOTH: frozenset[Role] = frozenset(Role)
THERAPIST_ONLY: frozenset[Role] = frozenset({Role.THERAPIST})
SERVER_ONLY: frozenset[Role] = frozenset()


# Messages

ID_FIELD = field("id", ID, optional=True)


@dataclass(frozen=True, kw_only=True)
class Message(Struct):
    """A message: its ``type`` on the wire is ``TYPE``; ``SENDERS`` are the roles that may
    send it (none: the server only).  ``id`` is the sender's optional correlation id."""

    TYPE: ClassVar[str] = ""
    SENDERS: ClassVar[frozenset[Role]] = SERVER_ONLY
    id: str | None = None

    @classmethod
    def wire_fields(cls) -> tuple[Field, ...]:
        return (*cls.FIELDS, ID_FIELD)


@dataclass(frozen=True, kw_only=True)
class Hello(Message):
    TYPE = "hello"
    SENDERS = BOTH
    FIELDS = (
        field("version", integer(0, 2**31 - 1)),
        field("appointment", ID, optional=True),
        field("devices", struct(DeviceSummary), optional=True),
    )
    version: int
    appointment: str | None = None
    devices: DeviceSummary | None = None


@dataclass(frozen=True, kw_only=True)
class Welcome(Message):
    """The answer to ``hello``.  For a therapist's lobby socket, which is no participant,
    ``participant``, ``appointment`` and ``state`` are ``None`` — all three, and only then —
    and there are no ICE servers and no politeness."""

    TYPE = "welcome"
    FIELDS = (
        field("version", integer(0, 2**31 - 1)),
        field("role", choice(Role)),
        field("participant", ID, nullable=True),
        field("appointment", ID, nullable=True),
        field("state", choice(ParticipantState), nullable=True),
        field("ice_servers", array(struct(IceServer), max_items=MAX_ICE_SERVERS)),
        field("polite", BOOLEAN),
    )
    version: int
    role: Role
    participant: str | None
    appointment: str | None
    state: ParticipantState | None
    ice_servers: tuple[IceServer, ...]
    polite: bool

    @property
    def lobby(self) -> bool:
        """Whether this welcomes a therapist's lobby socket."""
        return self.participant is None and self.appointment is None and self.state is None

    def problem(self) -> str | None:
        seat = (self.participant, self.appointment, self.state)
        if not self.lobby:
            if None in seat:
                return "participant, appointment and state are null together or not at all"
            return None
        if self.role is not Role.THERAPIST:
            return "only a therapist has a lobby socket (participant, appointment, state null)"
        if self.ice_servers or self.polite:
            return "a lobby socket has no iceServers and is not polite"
        return None


@dataclass(frozen=True, kw_only=True)
class Ping(Message):
    TYPE = "ping"
    SENDERS = BOTH
    FIELDS = (field("ts", NUMBER),)
    ts: float


@dataclass(frozen=True, kw_only=True)
class Pong(Message):
    TYPE = "pong"
    SENDERS = BOTH
    FIELDS = (field("ts", NUMBER),)
    ts: float


@dataclass(frozen=True, kw_only=True)
class Error(Message):
    TYPE = "error"
    FIELDS = (field("error", choice(ErrorCode)), field("value", text(MAX_ERROR_VALUE_CHARS)))
    error: ErrorCode
    value: str


@dataclass(frozen=True, kw_only=True)
class Waiting(Message):
    TYPE = "waiting"
    FIELDS = (
        field("welcome", text(MAX_WELCOME_CHARS, min_chars=0)),
        field("status", text(MAX_STATUS_CHARS, min_chars=0)),
    )
    welcome: str
    status: str


@dataclass(frozen=True, kw_only=True)
class Lobby(Message):
    TYPE = "lobby"
    FIELDS = (field("participants", array(struct(LobbyEntry), max_items=MAX_LOBBY_ENTRIES)),)
    participants: tuple[LobbyEntry, ...]


@dataclass(frozen=True, kw_only=True)
class Admit(Message):
    TYPE = "admit"
    SENDERS = THERAPIST_ONLY
    FIELDS = (field("participant", ID),)
    participant: str


@dataclass(frozen=True, kw_only=True)
class Admitted(Message):
    TYPE = "admitted"


@dataclass(frozen=True, kw_only=True)
class SendBack(Message):
    TYPE = "send-back"
    SENDERS = THERAPIST_ONLY
    FIELDS = (field("participant", ID),)
    participant: str


@dataclass(frozen=True, kw_only=True)
class SentBack(Message):
    TYPE = "sent-back"


@dataclass(frozen=True, kw_only=True)
class TextMessage(Message):
    """``message``: the therapist's short text for a waiting client."""

    TYPE = "message"
    SENDERS = THERAPIST_ONLY
    FIELDS = (field("participant", ID), field("text", text(MAX_TEXT_CHARS)))
    participant: str
    text: str


@dataclass(frozen=True, kw_only=True)
class MessageToWaiting(Message):
    TYPE = "message-to-waiting"
    FIELDS = (field("text", text(MAX_TEXT_CHARS)),)
    text: str


@dataclass(frozen=True, kw_only=True)
class End(Message):
    TYPE = "end"
    SENDERS = THERAPIST_ONLY
    FIELDS = (field("appointment", ID),)
    appointment: str


@dataclass(frozen=True, kw_only=True)
class Ended(Message):
    TYPE = "ended"
    FIELDS = (field("appointment", ID),)
    appointment: str


@dataclass(frozen=True, kw_only=True)
class PeerJoined(Message):
    TYPE = "peer-joined"
    FIELDS = (
        field("participant", ID),
        field("role", choice(Role)),
        field("name", text(MAX_NAME_CHARS)),
    )
    participant: str
    role: Role
    name: str


@dataclass(frozen=True, kw_only=True)
class PeerLeft(Message):
    TYPE = "peer-left"
    FIELDS = (field("participant", ID), field("role", choice(Role)))
    participant: str
    role: Role


@dataclass(frozen=True, kw_only=True)
class Offer(Message):
    TYPE = "offer"
    SENDERS = BOTH
    FIELDS = (field("sdp", SDP),)
    sdp: str


@dataclass(frozen=True, kw_only=True)
class Answer(Message):
    TYPE = "answer"
    SENDERS = BOTH
    FIELDS = (field("sdp", SDP),)
    sdp: str


@dataclass(frozen=True, kw_only=True)
class Candidate(Message):
    TYPE = "candidate"
    SENDERS = BOTH
    FIELDS = (field("candidate", struct(IceCandidate), nullable=True),)
    candidate: IceCandidate | None


class VideoState(enum.StrEnum):
    """What the sender's camera is doing: sending, or paused on purpose (audio only)."""

    ON = "on"
    PAUSED = "paused"


@dataclass(frozen=True, kw_only=True)
class MediaState(Message):
    """Both ways: what the sender is sending, so the other side can say so (a paused
    camera is not a frozen call).  Relayed to the other participant in the call."""

    TYPE = "media"
    SENDERS = BOTH
    FIELDS = (field("video", choice(VideoState)), field("screen", BOOLEAN))
    video: VideoState
    screen: bool


@dataclass(frozen=True, kw_only=True)
class CallConnected(Message):
    """Client→server: the call's media connected, ``admit_to_connected_ms`` after the
    client was told ``admitted`` (for the server's metrics; nothing is relayed)."""

    TYPE = "call-connected"
    SENDERS = frozenset({Role.CLIENT})
    FIELDS = (field("admit_to_connected_ms", integer(0, 3_600_000)),)
    admit_to_connected_ms: int


MAX_CHAT_CHARS = 2000


@dataclass(frozen=True, kw_only=True)
class Chat(Message):
    """Both ways: a line of text chat, relayed to the other person in the call; never stored."""

    TYPE = "chat"
    SENDERS = BOTH
    FIELDS = (field("text", text(MAX_CHAT_CHARS)),)
    text: str


@dataclass(frozen=True, kw_only=True)
class Leave(Message):
    TYPE = "leave"
    SENDERS = BOTH


#: Media signalling: relayed only between the two admitted participants of an appointment.
Relayed = Offer | Answer | Candidate

MESSAGE_CLASSES: tuple[type[Message], ...] = (
    Hello,
    Welcome,
    Ping,
    Pong,
    Error,
    Waiting,
    Lobby,
    Admit,
    Admitted,
    SendBack,
    SentBack,
    TextMessage,
    MessageToWaiting,
    End,
    Ended,
    PeerJoined,
    PeerLeft,
    Offer,
    Answer,
    Candidate,
    Chat,
    MediaState,
    CallConnected,
    Leave,
)
