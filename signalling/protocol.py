"""The signalling protocol, version 1: parse a frame into a message, encode one back.

``parse_message`` is strict: anything ``docs/PROTOCOL.md`` does not allow raises
``ProtocolError`` with a stable code.  ``check_direction`` and ``expect_hello`` add the rules
that depend on who is speaking.  The message classes themselves live in
``signalling.messages`` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

from signalling.errors import FATAL, CloseCode, ErrorCode, ProtocolError
from signalling.messages import (
    MESSAGE_CLASSES,
    Admit,
    Admitted,
    Answer,
    Candidate,
    End,
    Ended,
    Error,
    Hello,
    Leave,
    Lobby,
    Message,
    MessageToWaiting,
    Offer,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Relayed,
    SendBack,
    SentBack,
    TextMessage,
    Waiting,
    Welcome,
)
from signalling.parts import (
    LOBBY_STATES,
    MAX_ERROR_VALUE_CHARS,
    MAX_ID_CHARS,
    MAX_LOBBY_ENTRIES,
    MAX_NAME_CHARS,
    MAX_SDP_CHARS,
    MAX_STATUS_CHARS,
    MAX_TEXT_CHARS,
    MAX_WELCOME_CHARS,
    DeviceStatus,
    DeviceSummary,
    IceCandidate,
    IceServer,
    LobbyEntry,
    ParticipantState,
    Role,
)
from signalling.wire import checked_json, decode_struct, describe, encode_struct, struct_decoder
from signalling.worksheet_messages import (
    BASE64,
    MAX_SYNC_BYTES,
    WORKSHEET_MESSAGE_CLASSES,
    Yjs,
)

__all__ = [
    "FATAL",
    "IDLE_TIMEOUT_SECONDS",
    "LOBBY_STATES",
    "MAX_ERROR_VALUE_CHARS",
    "MAX_FRAME_BYTES",
    "MAX_ID_CHARS",
    "MAX_LOBBY_ENTRIES",
    "MAX_NAME_CHARS",
    "MAX_SDP_CHARS",
    "MAX_STATUS_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_WELCOME_CHARS",
    "MESSAGE_TYPES",
    "PING_INTERVAL_SECONDS",
    "PROTOCOL_VERSION",
    "RATE_BURST",
    "RATE_PER_SECOND",
    "Admit",
    "Admitted",
    "Answer",
    "Candidate",
    "CloseCode",
    "DeviceStatus",
    "DeviceSummary",
    "End",
    "Ended",
    "Error",
    "ErrorCode",
    "Hello",
    "IceCandidate",
    "IceServer",
    "Leave",
    "Lobby",
    "LobbyEntry",
    "Message",
    "MessageToWaiting",
    "Offer",
    "ParticipantState",
    "PeerJoined",
    "PeerLeft",
    "Ping",
    "Pong",
    "ProtocolError",
    "Relayed",
    "Role",
    "SendBack",
    "SentBack",
    "TextMessage",
    "Waiting",
    "Welcome",
    "check_direction",
    "encode",
    "error_for",
    "expect_hello",
    "parse_message",
]

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
#: The server sends a ``ping`` this often.
PING_INTERVAL_SECONDS = 20
#: A socket on which nothing arrived for this long is closed with 1000.
IDLE_TIMEOUT_SECONDS = 60
#: Sustained message rate and burst allowed per socket before ``rate-limited``.
RATE_PER_SECOND = 20
RATE_BURST = 100

#: Every message class, by its wire ``type``.
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (*MESSAGE_CLASSES, *WORKSHEET_MESSAGE_CLASSES)
}


def _refuse_constant(name: str) -> NoReturn:
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"key {key!r} appears twice")
        result[key] = value
    return result


def _read_json(frame: str | bytes) -> tuple[object, bool]:
    """What ``frame`` holds, and whether it is written as orjson writes that back."""
    if isinstance(frame, str):
        # Most frames are ASCII: their size in bytes is their length, and they cannot hold
        # a lone surrogate, so they need no round trip through UTF-8.
        try:
            size = len(frame) if frame.isascii() else len(frame.encode("utf-8"))
        except UnicodeEncodeError:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "frame is not valid UTF-8") from None
    else:
        size = len(frame)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"frame is larger than {MAX_FRAME_BYTES} bytes")
    try:
        decoded = frame if isinstance(frame, str) else frame.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "frame is not valid UTF-8") from None
    if decoded.startswith("\ufeff"):  # what json.loads refuses before decoding
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "frame is not valid JSON: it starts with a BOM")
    canonical = _canonical(decoded)
    if canonical is not _NOT_CANONICAL:
        return canonical, True
    try:
        return _DECODER.decode(decoded), False
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "frame is nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame is not valid JSON: {exc}") from None


_NOT_CANONICAL = object()
#: Set on a message parsed from a canonical frame that begins with its type: that frame.
_FRAME = "_wire_frame"
_TYPE_FIRST = '{"type":'


def _canonical(text: str) -> object:
    """What ``text`` holds, if it is written exactly as orjson writes that back (compact,
    keys in their order, each once, strings and numbers in their shortest form: what a
    browser's ``JSON.stringify`` writes); else ``_NOT_CANONICAL``.

    orjson's reading of such a text is the strict decoder's, at a fraction of its cost: a
    repeated key, a number the strict decoder refuses or reads otherwise, anything written
    another way makes the text differ from what orjson writes, and the strict decoder then
    reads it (and says what is wrong).
    """
    try:
        value = orjson.loads(text)
        written = orjson.dumps(value)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return _NOT_CANONICAL
    if written == text.encode():
        return value
    return _NOT_CANONICAL


#: A ``yjs`` frame exactly as a browser writes one (``JSON.stringify`` of type, worksheet
#: and data), the commonest frame of all: one per keystroke in a worksheet.  A frame of this
#: shape has no escapes, no repeated key and no other field, so it needs no JSON decoder;
#: its fields are still checked as any other frame's.  Any other frame is decoded in full.
_YJS_FRAME = re.compile(
    r'\{"type":"yjs","worksheet":"(w-[0-9]{1,30})","data":"([A-Za-z0-9+/]*={0,2})"\}'
)
YJS_PREFIX = '{"type":"yjs",'
#: A worksheet id that needs no escaping in JSON, for encoding.
_YJS_WORKSHEET = re.compile(r"w-[0-9A-Za-z_-]{1,30}")


#: A ``candidate`` frame exactly as a browser writes one (``JSON.stringify`` of the
#: ``RTCIceCandidate``'s four fields, in their order): the commonest signalling frame of all.
#: Printable ASCII strings only, without quote or backslash, so the text is canonical (what
#: ``encode`` would write) and every string within its field's limits as written.
_PLAIN = r"[ !#-\[\]-~]"
_CANDIDATE_FRAME = re.compile(
    r'\{"type":"candidate","candidate":\{"candidate":"' + _PLAIN + r'{0,1024}"'
    r',"sdpMid":(?:"' + _PLAIN + r'{0,64}"|null)'
    r',"sdpMLineIndex":(?:0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}'
    r"|655[0-2][0-9]|6553[0-5]|null)"
    r'(?:,"usernameFragment":(?:"' + _PLAIN + r'{0,256}"|null))?\}\}'
)
CANDIDATE_PREFIX = '{"type":"candidate",'


def plain_yjs(frame: str) -> tuple[str, str] | None:
    """The worksheet and the base64 data of a ``yjs`` frame written as a browser writes one
    (the shape ``parse_message`` reads without its JSON decoder), for a keystroke's short
    way (``Switchboard.keystroke``); None for any other frame, which is parsed.  The data is
    not checked here: its decoder checks it as ``parse_message`` would."""
    if len(frame) > MAX_FRAME_BYTES:
        return None
    match = _YJS_FRAME.fullmatch(frame)
    return None if match is None else (match[1], match[2])


def plain_candidate(frame: str) -> bool:
    """Whether ``frame`` is a ``candidate`` written as a browser writes one, which
    ``parse_message`` accepts and ``encode`` writes back unchanged: it can be relayed as it
    came, without being parsed (``Switchboard.relay_here``).  Any other frame is parsed."""
    return _CANDIDATE_FRAME.fullmatch(frame) is not None


#: Each message type's decoder, made on first use (``MESSAGE_TYPES`` bounds it).
_DECODERS: dict[str, Callable[[object], Message]] = {}


def parse_message(frame: str | bytes) -> Message:
    """Parse one frame into its message, or raise ``ProtocolError``.

    ``too-large`` for a frame over ``MAX_FRAME_BYTES``; ``unknown-type`` for a ``type`` this
    version does not have; ``bad-message`` for everything else that is wrong.
    """
    if type(frame) is str and frame.startswith(YJS_PREFIX) and len(frame) <= MAX_FRAME_BYTES:
        match = _YJS_FRAME.fullmatch(frame)
        if match is not None:
            fields = {"worksheet": match[1], "data": match[2]}
            return decode_struct(Yjs, fields, Yjs.TYPE)
    value, canonical = _read_json(frame)
    if not isinstance(value, dict):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"a message is a JSON object, not {describe(value)}"
        )
    if "type" not in value:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "type: missing")
    kind = value["type"]
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"type: expected a string, got {describe(kind)}")
    decode = _DECODERS.get(kind)
    if decode is None:
        cls = MESSAGE_TYPES.get(kind)
        if cls is None:
            shown = kind if len(kind) <= MAX_ID_CHARS else kind[:MAX_ID_CHARS] + "..."
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {shown!r}")
        decode = _DECODERS[kind] = struct_decoder(cls, kind, ignore="type")
    message = decode(value)
    if canonical and type(frame) is str and frame.startswith(_TYPE_FIRST):
        # Exactly what ``encode`` would write for it: a relayed message is sent as it came.
        message.__dict__[_FRAME] = frame
    return message


def encode(message: Message) -> str:
    """The JSON text of ``message``, ``type`` first.

    Refuses (``ValueError``) to produce anything ``parse_message`` would reject, so the
    server never sends what it would not accept.
    """
    if type(message) is Yjs and message.id is None:
        return _encode_yjs(message)
    frame: str | None = message.__dict__.get(_FRAME)
    if frame is not None:
        return frame
    parsed = checked_json(message)
    if parsed is not None:
        # Parsed from a frame and unchanged since (messages are immutable), as a relayed
        # message is: what it was parsed from passed every check.
        with contextlib.suppress(orjson.JSONEncodeError):  # an integer beyond 64 bits
            return orjson.dumps({"type": message.TYPE, **parsed}).decode()
    try:
        return _encode_cached(message)  # hashes the message once, to look it up
    except TypeError:  # a field holds a list or a dict: nothing to look up
        return _encode(message)


def _encode(message: Message) -> str:
    data: dict[str, Any] = {"type": message.TYPE, **encode_struct(message)}
    try:
        # The checks of ``parse_message``, on the object itself rather than on its text.
        decode_struct(type(message), data, message.TYPE, ignore="type")
    except ProtocolError as exc:
        raise ValueError(f"refusing to encode an invalid {message.TYPE!r}: {exc.value}") from exc
    try:
        text = orjson.dumps(data).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(text) > MAX_FRAME_BYTES // 4 and len(text.encode("utf-8")) > MAX_FRAME_BYTES:
        raise ValueError(
            f"refusing to encode a {message.TYPE!r} larger than {MAX_FRAME_BYTES} bytes"
        )
    return text


def _encode_yjs(message: Yjs) -> str:
    """A ``yjs`` message (one per keystroke, to each other subscriber), checked on its own
    two fields: the same text as ``_encode`` gives, without its general checks."""
    worksheet, data = message.worksheet, message.data
    if (
        type(worksheet) is not str
        or _YJS_WORKSHEET.fullmatch(worksheet) is None
        or type(data) is not bytes
        or not 0 < len(data) <= MAX_SYNC_BYTES
    ):
        return _encode(message)  # which says what is wrong
    return f'{{"type":"yjs","worksheet":"{worksheet}","data":"{BASE64.encode(data)}"}}'


# A message the server builds is checked as it is encoded, and the same one is often sent to
# several sockets (a lobby to each of a therapist's pages): a small cache of recent ones
# spares checking it again.  A message parsed from a frame (a relayed one) needs no check
# and is not looked up: every one differs.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
_encode_cached = functools.lru_cache(maxsize=32)(_encode)


def check_direction(message: Message, role: Role) -> None:
    """Raise ``ProtocolError(FORBIDDEN)`` unless a participant of ``role`` may send ``message``."""
    if role not in message.SENDERS:
        if message.SENDERS:
            who = "a therapist" if role is Role.CLIENT else "a client"
            raise ProtocolError(ErrorCode.FORBIDDEN, f"{who} may not send {message.TYPE!r}")
        raise ProtocolError(ErrorCode.FORBIDDEN, f"{message.TYPE!r} is sent by the server only")


def expect_hello(message: Message, role: Role) -> Hello:
    """Check the first message on a socket: a ``hello`` this server can answer for ``role``.

    A therapist's ``hello`` with an ``appointment`` opens the call page's socket, one
    without opens a lobby socket.  Any ``ProtocolError`` raised here closes the socket
    with 1008.
    """
    if not isinstance(message, Hello):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"expected hello, got {message.TYPE!r}")
    if message.version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"this server speaks version {PROTOCOL_VERSION}, not {message.version}",
        )
    if role is Role.THERAPIST:
        if message.devices is not None:
            raise ProtocolError(ErrorCode.FORBIDDEN, "hello.devices is for clients only")
    elif message.appointment is not None:
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            "hello.appointment is for therapists only: a client's cookie names it",
        )
    return message


def error_for(exc: ProtocolError, reply_to: Message | None = None) -> Error:
    """The ``error`` message for ``exc``, echoing the ``id`` of the message it answers."""
    value = exc.value if len(exc.value) <= MAX_ERROR_VALUE_CHARS else exc.value[:497] + "..."
    return Error(error=exc.code, value=value, id=reply_to.id if reply_to is not None else None)
