"""The parser refuses everything the protocol does not allow, with the right error code."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from signalling.protocol import (
    MAX_FRAME_BYTES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Admit,
    Candidate,
    DeviceStatus,
    DeviceSummary,
    End,
    ErrorCode,
    Hello,
    IceCandidate,
    IceServer,
    Leave,
    Lobby,
    LobbyEntry,
    Message,
    Offer,
    ParticipantState,
    Ping,
    ProtocolError,
    Role,
    SendBack,
    TextMessage,
    Waiting,
    Welcome,
    check_direction,
    encode,
    error_for,
    expect_hello,
    parse_message,
)
from signalling.wire import checked_json

BAD = ErrorCode.BAD_MESSAGE

ENTRY: dict[str, object] = {
    "participant": "p",
    "appointment": "a",
    "name": "N",
    "start": "2026-03-02T14:00:00Z",
    "end": "2026-03-02T14:50:00Z",
    "waitingSince": "2026-03-02T13:00:00Z",
    "devices": None,
    "state": "waiting",
    "online": True,
}
WELCOME: dict[str, object] = {
    "type": "welcome",
    "version": 1,
    "role": "client",
    "participant": "p",
    "appointment": "a",
    "state": "waiting",
    "iceServers": [],
    "polite": True,
}
LOBBY_WELCOME: dict[str, object] = WELCOME | {
    "role": "therapist",
    "participant": None,
    "appointment": None,
    "state": None,
    "polite": False,
}
LOBBY_WELCOME_WITHOUT_NULLS = {k: v for k, v in LOBBY_WELCOME.items() if v is not None}
ICE_CANDIDATE: dict[str, object] = {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}


def frame(**fields: object) -> str:
    return json.dumps(fields, ensure_ascii=False)


def lobby_with(**changes: object) -> str:
    return frame(type="lobby", participants=[ENTRY | changes])


def welcome_with(**changes: object) -> str:
    return json.dumps(WELCOME | changes)


def lobby_welcome_with(**changes: object) -> str:
    return json.dumps(LOBBY_WELCOME | changes)


def candidate_with(**changes: object) -> str:
    return frame(type="candidate", candidate=ICE_CANDIDATE | changes)


REFUSED: list[tuple[str, str | bytes, ErrorCode]] = [
    ("not JSON", "hello", BAD),
    ("truncated JSON", '{"type": "leave"', BAD),
    ("an array", '[{"type": "leave"}]', BAD),
    ("a string", '"leave"', BAD),
    ("null", "null", BAD),
    ("no type", '{"id": "m-1"}', BAD),
    ("type not a string", '{"type": 7}', BAD),
    ("unknown type", '{"type": "subscribe"}', ErrorCode.UNKNOWN_TYPE),
    ("type in another case", '{"type": "Leave"}', ErrorCode.UNKNOWN_TYPE),
    ("unknown field", '{"type": "leave", "reason": "bye"}', BAD),
    ("unknown nested field", candidate_with(foundation="1"), BAD),
    ("snake_case on the wire", welcome_with(ice_servers=[]), BAD),
    ("missing field", '{"type": "admit"}', BAD),
    ("missing nested field", frame(type="hello", version=1, devices={"camera": "ok"}), BAD),
    ("null for a required field", '{"type": "admit", "participant": null}', BAD),
    ("null for an optional field", '{"type": "hello", "version": 1, "devices": null}', BAD),
    ("number for a string", '{"type": "admit", "participant": 42}', BAD),
    ("string for an integer", '{"type": "hello", "version": "1"}', BAD),
    ("bool as int", '{"type": "hello", "version": true}', BAD),
    ("bool as number", '{"type": "ping", "ts": false}', BAD),
    ("bool as nested int", candidate_with(sdpMLineIndex=True), BAD),
    ("float as int", '{"type": "hello", "version": 1.0}', BAD),
    ("string for a boolean", welcome_with(polite="true"), BAD),
    ("NaN", '{"type": "ping", "ts": NaN}', BAD),
    ("Infinity", '{"type": "ping", "ts": -Infinity}', BAD),
    ("overflowing float", '{"type": "ping", "ts": 1e999}', BAD),
    ("duplicate key", '{"type": "admit", "participant": "p-1", "participant": "p-2"}', BAD),
    ("duplicate type", '{"type": "leave", "type": "end", "appointment": "a-1"}', BAD),
    ("empty id", '{"type": "leave", "id": ""}', BAD),
    ("overlong id", frame(type="leave", id="x" * 65), BAD),
    ("overlong participant id", frame(type="admit", participant="x" * 65), BAD),
    ("overlong text", frame(type="message", participant="p", text="x" * 501), BAD),
    ("empty text", frame(type="message", participant="p", text=""), BAD),
    ("overlong sdp", frame(type="offer", sdp="x" * 60_001), BAD),
    (
        "unknown enum value",
        frame(type="hello", version=1, devices={"camera": "broken", "microphone": "ok"}),
        BAD,
    ),
    ("array for an object", '{"type": "candidate", "candidate": []}', BAD),
    ("index out of range", candidate_with(sdpMLineIndex=65536), BAD),
    ("negative index", candidate_with(sdpMLineIndex=-1), BAD),
    ("state not shown in a lobby", lobby_with(state="left"), BAD),
    ("instant without Z", lobby_with(start="2026-03-02T14:00:00"), BAD),
    ("instant with an offset", lobby_with(start="2026-03-02T15:00:00+01:00"), BAD),
    ("impossible date", lobby_with(start="2026-02-30T14:00:00Z"), BAD),
    ("too many lobby entries", frame(type="lobby", participants=[ENTRY] * 201), BAD),
    ("ICE url with another scheme", welcome_with(iceServers=[{"urls": ["https://x.org"]}]), BAD),
    ("ICE server without urls", welcome_with(iceServers=[{"urls": []}]), BAD),
    ("ICE urls as a string", welcome_with(iceServers=[{"urls": "stun:x.org"}]), BAD),
    ("welcome without a participant", welcome_with(participant=None), BAD),
    ("welcome without a state", welcome_with(state=None), BAD),
    ("a lobby welcome leaving out its nulls", json.dumps(LOBBY_WELCOME_WITHOUT_NULLS), BAD),
    ("a client's lobby welcome", lobby_welcome_with(role="client"), BAD),
    (
        "a lobby welcome with ICE servers",
        lobby_welcome_with(iceServers=[{"urls": ["stun:s"]}]),
        BAD,
    ),
    ("a polite lobby welcome", lobby_welcome_with(polite=True), BAD),
    ("unpaired surrogate", '{"type": "offer", "sdp": "v=0\\ud800"}', BAD),
    ("deeply nested", '{"type": "offer", "sdp": ' + "[" * 30_000 + "]" * 30_000 + "}", BAD),
    ("invalid UTF-8", b'{"type": "offer", "sdp": "\xff"}', BAD),
    ("frame over 64 KiB", frame(type="offer", sdp="x" * MAX_FRAME_BYTES), ErrorCode.TOO_LARGE),
    ("over 64 KiB in bytes only", frame(type="offer", sdp="é" * 33_000), ErrorCode.TOO_LARGE),
]


@pytest.mark.parametrize(
    ("frame", "code"), [(f, c) for _, f, c in REFUSED], ids=[n for n, *_ in REFUSED]
)
def test_parse_message_refuses(frame: str | bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_message(frame)
    assert caught.value.code is code
    assert caught.value.value


def test_refusal_names_the_offending_field() -> None:
    with pytest.raises(ProtocolError, match=r"hello\.devices\.camera"):
        parse_message(
            '{"type": "hello", "version": 1, "devices": {"camera": 1, "microphone": "ok"}}'
        )


def test_bytes_and_text_frames_parse_alike() -> None:
    frame = '{"type": "admit", "participant": "p-9f2c", "id": "m-3"}'
    assert (
        parse_message(frame)
        == parse_message(frame.encode())
        == Admit(participant="p-9f2c", id="m-3")
    )


def test_a_frame_of_exactly_64_kib_is_not_too_large() -> None:
    head = '{"type":"offer","sdp":"'
    frame = head + "x" * (MAX_FRAME_BYTES - len(head) - 2) + '"}'
    assert len(frame.encode()) == MAX_FRAME_BYTES
    with pytest.raises(ProtocolError) as caught:
        parse_message(frame)
    assert caught.value.code is BAD  # refused for its sdp length, not its size


UTC = dt.UTC
WELCOME_MESSAGE = Welcome(
    version=1,
    role=Role.CLIENT,
    participant="p",
    appointment="a",
    state=ParticipantState.IN_CALL,
    ice_servers=(
        IceServer(urls=("stun:s",)),
        IceServer(urls=("turn:t",), username="u", credential=""),
    ),
    polite=True,
)
LOBBY_WELCOME_MESSAGE = Welcome(
    version=1,
    role=Role.THERAPIST,
    participant=None,
    appointment=None,
    state=None,
    ice_servers=(),
    polite=False,
)
CANDIDATE_MESSAGE = Candidate(
    candidate=IceCandidate(candidate="c", sdp_mid="0", sdp_m_line_index=0, username_fragment="u")
)
LOBBY_ENTRY = LobbyEntry(
    participant="p",
    appointment="a",
    name="Ana",
    devices=None,
    online=False,
    start=dt.datetime(2026, 3, 2, 14, tzinfo=UTC),
    end=dt.datetime(2026, 3, 2, 14, 50, tzinfo=UTC),
    waiting_since=dt.datetime(2026, 3, 2, 13, 1, 2, 345678, tzinfo=UTC),
    state=ParticipantState.ADMITTED,
)


def test_wire_names_are_camel_case() -> None:
    welcome = json.loads(encode(WELCOME_MESSAGE))
    assert welcome["iceServers"][0] == {"urls": ["stun:s"]}
    assert welcome["state"] == "in_call"
    candidate = json.loads(encode(CANDIDATE_MESSAGE))["candidate"]
    assert set(candidate) == {"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"}
    entry = json.loads(encode(Lobby(participants=(LOBBY_ENTRY,))))["participants"][0]
    assert entry["waitingSince"] == "2026-03-02T13:01:02.345678Z"


ROUND_TRIPS = [
    Hello(version=1, devices=DeviceSummary(camera=DeviceStatus.OK, microphone=DeviceStatus.DENIED)),
    Hello(version=1, appointment="a-1", id="m-1"),
    Ping(ts=1772442000000),
    Ping(ts=0.5),
    Offer(sdp="v=0\r\n", id="x"),
    Candidate(candidate=None),
    Candidate(candidate=IceCandidate(candidate="", sdp_mid=None, sdp_m_line_index=None)),
    Leave(),
    Waiting(welcome="", status=""),
    Lobby(participants=(LOBBY_ENTRY,)),
    WELCOME_MESSAGE,
    LOBBY_WELCOME_MESSAGE,
    CANDIDATE_MESSAGE,
]


@pytest.mark.parametrize("message", ROUND_TRIPS, ids=lambda m: m.TYPE)
def test_encode_then_parse_gives_the_message_back(message: Message) -> None:
    text = encode(message)
    assert json.loads(text)["type"] == message.TYPE
    assert parse_message(text) == message


@pytest.mark.parametrize("message", ROUND_TRIPS, ids=lambda m: m.TYPE)
def test_a_parsed_message_is_encoded_as_the_same_message_built_by_the_server(
    message: Message,
) -> None:
    """A parsed message skips the checks on its way out (it passed them coming in), and is
    sent compactly, ``type`` first, whatever order and spacing it came in."""
    built = encode(message)
    # Keys in another order, spaces, and escapes the canonical text does not use.
    parsed = parse_message(json.dumps(dict(reversed(json.loads(built).items())), indent=1))
    assert checked_json(parsed) is not None and checked_json(message) is None
    sent = encode(parsed)
    assert sent.startswith(f'{{"type":"{message.TYPE}"') and "\n" not in sent
    assert json.loads(sent) == json.loads(built)
    assert parse_message(sent) == message


def test_a_parsed_number_beyond_64_bits_is_still_encoded() -> None:
    parsed = parse_message('{"type": "ping", "ts": ' + "9" * 30 + "}")
    assert json.loads(encode(parsed)) == {"type": "ping", "ts": int("9" * 30)}


def test_a_parsed_message_changed_afterwards_is_checked_again() -> None:
    parsed = parse_message(encode(TextMessage(participant="p", text="hello")))
    assert isinstance(parsed, TextMessage)
    changed = dataclasses.replace(parsed, text="x" * 501)
    assert checked_json(changed) is None
    with pytest.raises(ValueError, match="text"):
        encode(changed)


def test_optional_fields_are_left_out_and_nullable_ones_sent_as_null() -> None:
    assert json.loads(encode(Hello(version=1))) == {"type": "hello", "version": 1}
    assert json.loads(encode(Candidate(candidate=None))) == {"type": "candidate", "candidate": None}


def test_a_lobby_sockets_welcome_spells_out_its_nulls() -> None:
    sent = json.loads(encode(LOBBY_WELCOME_MESSAGE))
    assert {k: sent[k] for k in ("participant", "appointment", "state")} == dict.fromkeys(
        ("participant", "appointment", "state")
    )
    assert LOBBY_WELCOME_MESSAGE.lobby and not WELCOME_MESSAGE.lobby


def test_instants_are_sent_in_utc_with_z() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    entry = dataclasses.replace(LOBBY_ENTRY, start=dt.datetime(2026, 3, 2, 15, tzinfo=paris))
    sent = json.loads(encode(Lobby(participants=(entry,))))["participants"][0]
    assert sent["start"] == "2026-03-02T14:00:00Z"


def test_encode_refuses_what_parse_would_refuse() -> None:
    with pytest.raises(ValueError, match="text"):
        encode(TextMessage(participant="p", text="x" * 501))
    with pytest.raises(ValueError, match="null together"):
        encode(dataclasses.replace(WELCOME_MESSAGE, appointment=None))
    naive = dataclasses.replace(LOBBY_ENTRY, start=dt.datetime(2026, 3, 2))
    with pytest.raises(ValueError, match="naive"):
        encode(Lobby(participants=(naive,)))
    # Within the sdp's limit of characters, over the frame's limit of bytes.
    with pytest.raises(ValueError, match="larger than"):
        encode(Offer(sdp="é" * 40_000))
    with pytest.raises(ValueError, match="finite"):
        encode(Ping(ts=float("nan")))


def test_every_message_class_declares_every_field_it_has() -> None:
    for cls in MESSAGE_TYPES.values():
        declared = {f.attr for f in cls.wire_fields()}
        assert declared == {f.name for f in dataclasses.fields(cls)}, cls.TYPE


DIRECTIONS = [
    (Role.CLIENT, Hello(version=1), True),
    (Role.CLIENT, Offer(sdp="v=0"), True),
    (Role.CLIENT, Leave(), True),
    (Role.CLIENT, Admit(participant="p"), False),
    (Role.CLIENT, SendBack(participant="p"), False),
    (Role.CLIENT, TextMessage(participant="p", text="hi"), False),
    (Role.CLIENT, End(appointment="a"), False),
    (Role.THERAPIST, Admit(participant="p"), True),
    (Role.THERAPIST, End(appointment="a"), True),
    (Role.THERAPIST, Candidate(candidate=None), True),
    (Role.THERAPIST, Waiting(welcome="", status=""), False),
    (Role.CLIENT, WELCOME_MESSAGE, False),
]


@pytest.mark.parametrize(("role", "message", "allowed"), DIRECTIONS)
def test_check_direction(role: Role, message: Message, allowed: bool) -> None:
    if allowed:
        check_direction(message, role)
    else:
        with pytest.raises(ProtocolError) as caught:
            check_direction(message, role)
        assert caught.value.code is ErrorCode.FORBIDDEN


HELLOS = [
    (Role.CLIENT, Hello(version=PROTOCOL_VERSION), None),
    (
        Role.CLIENT,
        Hello(
            version=1,
            devices=DeviceSummary(camera=DeviceStatus.MISSING, microphone=DeviceStatus.OK),
        ),
        None,
    ),
    (Role.THERAPIST, Hello(version=1, appointment="a-1"), None),
    (Role.CLIENT, Hello(version=2), ErrorCode.UNSUPPORTED_VERSION),
    (Role.THERAPIST, Hello(version=0, appointment="a-1"), ErrorCode.UNSUPPORTED_VERSION),
    (Role.THERAPIST, Hello(version=1), None),  # a lobby socket
    (
        Role.THERAPIST,
        Hello(version=1, devices=DeviceSummary(camera=DeviceStatus.OK, microphone=DeviceStatus.OK)),
        ErrorCode.FORBIDDEN,
    ),
    (
        Role.THERAPIST,
        Hello(
            version=1,
            appointment="a-1",
            devices=DeviceSummary(camera=DeviceStatus.OK, microphone=DeviceStatus.OK),
        ),
        ErrorCode.FORBIDDEN,
    ),
    (Role.CLIENT, Hello(version=1, appointment="a-1"), ErrorCode.FORBIDDEN),
    (Role.CLIENT, Leave(), BAD),
]


@pytest.mark.parametrize(("role", "message", "code"), HELLOS)
def test_expect_hello(role: Role, message: Message, code: ErrorCode | None) -> None:
    if code is None:
        assert expect_hello(message, role) is message
    else:
        with pytest.raises(ProtocolError) as caught:
            expect_hello(message, role)
        assert caught.value.code is code


def test_error_for_echoes_the_id_and_fits_the_limit() -> None:
    error = error_for(
        ProtocolError(ErrorCode.NOT_FOUND, "x" * 900), Admit(participant="p", id="m-9")
    )
    assert (error.error, error.id, len(error.value)) == (ErrorCode.NOT_FOUND, "m-9", 500)
    assert parse_message(encode(error)) == error


def test_fatal_errors_are_the_documented_ones() -> None:
    fatal = {code for code in ErrorCode if ProtocolError(code, "").fatal}
    assert fatal == {
        ErrorCode.BAD_MESSAGE,
        ErrorCode.UNKNOWN_TYPE,
        ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.TOO_LARGE,
        ErrorCode.REPLACED,
    }
