"""``yjs`` frames, one per keystroke in a worksheet, go to the worksheet handler unparsed when
written as a browser writes them: the short way must reach the handler with what the full
way would have given it, answer as the full way answers, and never overtake it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signalling import session as session_module
from signalling.errors import ErrorCode, ProtocolError
from signalling.messages import Error
from signalling.participants import Participant
from signalling.protocol import plain_yjs
from signalling.worksheet_messages import WorksheetCommand, Yjs
from tests.signalling.fakes import Call

DATA = "AAEBAgMEBQ=="  # base64 of seven bytes; the handler here does not read them


def browser_frame(worksheet: str = "w-7", data: str = DATA, **extra: Any) -> str:
    """As ``JSON.stringify`` writes the message ``worksheet-panel.js`` sends."""
    message = {"type": "yjs", "worksheet": worksheet, "data": data, **extra}
    return json.dumps(message, separators=(",", ":"))


class Worksheets:
    """A worksheet handler that records what it is given; ``takes`` says whether it takes a
    keystroke the short way, ``refuses`` makes it refuse one."""

    def __init__(self) -> None:
        self.takes = True
        self.refuses: ProtocolError | None = None
        self.fails: Exception | None = None
        self.keystrokes: list[tuple[str, str, str]] = []
        self.frames: list[str | None] = []
        self.handled: list[tuple[str, WorksheetCommand]] = []

    async def handle(self, sender: Participant, message: WorksheetCommand) -> None:
        if self.fails is not None:
            raise self.fails
        self.handled.append((sender.id, message))

    async def keystroke(
        self, sender: Participant, worksheet: str, data: str, frame: str | None = None
    ) -> bool:
        if self.refuses is not None:
            raise self.refuses
        if self.fails is not None:
            raise self.fails
        if self.takes:
            self.keystrokes.append((sender.id, worksheet, data))
            self.frames.append(frame)
        return self.takes


async def call_with_worksheets(**options: Any) -> tuple[Call, Worksheets]:
    call = Call(**options)
    worksheets = Worksheets()
    call.board.switchboard.worksheets = worksheets
    await call.start()
    return call, worksheets


@pytest.mark.parametrize(
    ("frame", "fields"),
    [
        (browser_frame(), ("w-7", DATA)),
        (browser_frame("w-123456789012345678901234567890", ""), ("w-" + "1234567890" * 3, "")),
        (browser_frame(data="AAA"), ("w-7", "AAA")),  # bad padding: the decoder says so
        (browser_frame(id="y-1"), None),  # answered by id: the full way
        (browser_frame("w-1x"), None),
        (browser_frame(data="AA\\u003d"), None),
        ('{"type": "yjs", "worksheet": "w-7", "data": "AA=="}', None),
        ('{"worksheet":"w-7","type":"yjs","data":"AA=="}', None),
        (browser_frame(data="A" * 70_000), None),  # over the frame limit
    ],
)
def test_a_plain_yjs_frame_is_one_written_as_a_browser_writes_it(
    frame: str, fields: tuple[str, str] | None
) -> None:
    assert plain_yjs(frame) == fields


async def test_a_browser_keystroke_goes_to_the_worksheet_without_being_parsed(
    parsed: list[str],
) -> None:
    call, worksheets = await call_with_worksheets()
    frame = browser_frame()

    await call.client.receive(frame)
    await call.therapist.receive(browser_frame("w-7", "AQ=="))

    assert worksheets.keystrokes == [("c-1", "w-7", DATA), ("h-1", "w-7", "AQ==")]
    assert worksheets.frames == [frame, browser_frame("w-7", "AQ==")]
    assert worksheets.handled == []
    assert frame not in parsed
    assert call.client_socket.sent == []


async def test_a_keystroke_the_worksheet_does_not_take_goes_the_full_way(
    parsed: list[str],
) -> None:
    call, worksheets = await call_with_worksheets()
    worksheets.takes = False
    frame = browser_frame()

    await call.client.receive(frame)

    assert parsed[-1] == frame
    assert worksheets.handled == [
        ("c-1", Yjs(worksheet="w-7", data=b"\x00\x01\x01\x02\x03\x04\x05"))
    ]


async def test_frames_the_short_way_cannot_take_get_the_answers_of_the_full_way(
    parsed: list[str],
) -> None:
    call, worksheets = await call_with_worksheets()
    await call.client.receive(browser_frame(id="y-1"))  # handled, by the full way
    await call.client.receive(browser_frame("w-1x"))  # not the server's form: the handler's
    await call.therapist.receive(browser_frame("x-1"))  # no worksheet's id at all

    assert [sender for sender, _ in worksheets.handled] == ["c-1", "c-1"]
    assert worksheets.keystrokes == []
    assert call.therapist_socket.last(Error).error is ErrorCode.BAD_MESSAGE
    assert call.therapist.closed  # as for any malformed message
    assert parsed[-3:] == [browser_frame(id="y-1"), browser_frame("w-1x"), browser_frame("x-1")]


async def test_a_lobby_socket_or_a_replaced_connection_has_no_short_way() -> None:
    call, _ = await call_with_worksheets()
    lobby = await call.board.watch()
    client = call.client.handle
    assert client is not None
    switchboard = call.board.switchboard

    assert switchboard.worksheet_lane(lobby.handle) is None
    assert switchboard.worksheet_lane(client._replace(token="gone")) is None
    assert switchboard.worksheet_lane(client) is not None
    switchboard.worksheets = None
    assert switchboard.worksheet_lane(client) is None


async def test_a_refused_keystroke_is_answered_with_error_and_the_socket_stays_open() -> None:
    call, worksheets = await call_with_worksheets()
    worksheets.refuses = ProtocolError(ErrorCode.WORKSHEET_REFUSED, "over the field's limit")

    await call.client.receive(browser_frame())

    error = call.client_socket.last(Error)
    assert (error.error, error.value) == (ErrorCode.WORKSHEET_REFUSED, "over the field's limit")
    assert not call.client.closed
    assert call.therapist_socket.sent == []


async def test_a_worksheet_handler_failing_either_way_is_refused_alike_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call, worksheets = await call_with_worksheets()
    worksheets.fails = RuntimeError("a bug")

    await call.client.receive(browser_frame())  # the short way
    await call.client.receive(browser_frame(id="y-2"))  # the full way

    errors = call.client_socket.of(Error)
    assert [(e.error, e.value, e.id) for e in errors] == [
        (ErrorCode.WORKSHEET_REFUSED, "yjs could not be handled; try again", None),
        (ErrorCode.WORKSHEET_REFUSED, "yjs could not be handled; try again", "y-2"),
    ]
    assert not call.client.closed
    failures = [r for r in caplog.records if r.getMessage().startswith("the worksheet handler")]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


async def test_keystrokes_count_against_the_worksheet_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module, "SYNC_RATE_PER_SECOND", 0)
    monkeypatch.setattr(session_module, "SYNC_RATE_BURST", 3)
    call, worksheets = await call_with_worksheets()

    for _ in range(5):
        await call.client.receive(browser_frame())

    assert len(worksheets.keystrokes) == 3
    assert [e.error for e in call.client_socket.of(Error)] == [ErrorCode.RATE_LIMITED] * 2


async def test_a_keystroke_taken_the_short_way_is_counted_as_a_yjs_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call, worksheets = await call_with_worksheets()
    kinds: list[str] = []
    monkeypatch.setattr(call.board.switchboard, "relaying", kinds.append)
    monkeypatch.setattr(
        call.board.switchboard, "receiving", lambda handle, message: kinds.append(message.TYPE)
    )

    await call.client.receive(browser_frame())
    worksheets.takes = False
    await call.client.receive(browser_frame())  # the full way counts it, once

    assert kinds == ["yjs", "yjs"]
