"""``candidate`` frames, the commonest signalling frame, are relayed unparsed when written as
a browser writes them and both participants are in the call here: the short way must accept
only what the full way accepts and sends back unchanged, and must never overtake it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalling.errors import ErrorCode
from signalling.messages import Candidate, Error
from signalling.protocol import encode, parse_message, plain_candidate
from signalling.session import RateLimiter
from signalling.switchboard import Switchboard
from tests.signalling.fakes import Call, Held, media_stuck_on_its_way

LINE = "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0"


def browser_frame(candidate: dict[str, Any] | None, **extra: Any) -> str:
    """As ``JSON.stringify`` writes the message ``call.js`` sends."""
    message = {"type": "candidate", **extra, "candidate": candidate}
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def fields(
    line: str = LINE, mid: str | None = "0", index: int | None = 0, **more: Any
) -> dict[str, Any]:
    return {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index, **more}


# --- which frames take the short way ------------------------------------------------------


texts = st.one_of(
    st.text(max_size=70),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=70),
    st.sampled_from(["", "x" * 64, "x" * 65, "x" * 256, "x" * 257, "a\\b", 'a"b', "é"]),
)
lines = st.one_of(texts, st.sampled_from([LINE, "c" * 1024, "c" * 1025, "tab\there"]))
indexes = st.one_of(st.none(), st.integers(min_value=-2, max_value=70000))


@given(line=lines, mid=st.one_of(st.none(), texts), index=indexes, ufrag=st.none() | texts)
def test_a_plain_candidate_is_one_the_full_way_accepts_and_sends_back_as_it_came(
    line: str, mid: str | None, index: int | None, ufrag: str | None
) -> None:
    for candidate in (fields(line, mid, index), fields(line, mid, index, usernameFragment=ufrag)):
        frame = browser_frame(candidate)
        if plain_candidate(frame):
            assert encode(parse_message(frame)) == frame


@pytest.mark.parametrize(
    "candidate",
    [
        fields(),
        fields(usernameFragment="9fq2"),
        fields(usernameFragment=None),
        fields("", None, None),  # the end of a generation
        fields("c" * 1024, "m" * 64, 65535, usernameFragment="u" * 256),
    ],
)
def test_a_browser_candidate_is_plain(candidate: dict[str, Any]) -> None:
    assert plain_candidate(browser_frame(candidate))


@pytest.mark.parametrize(
    "frame",
    [
        browser_frame(fields(), id="c-1"),  # answered by id: the relay drops the id
        browser_frame(None),  # no more candidates
        browser_frame(fields("c" * 1025)),  # too long: the full way says so
        browser_frame(fields(mid="m" * 65)),
        browser_frame(fields(usernameFragment="u" * 257)),
        browser_frame(fields(index=65536)),
        browser_frame(fields(index=-1)),
        browser_frame(fields("caf\u00e9")),  # not ASCII: the full way checks it
        browser_frame(fields("a\\u0041")),  # an escape: not what encode writes
        browser_frame(fields(extra=1)),  # a field the message does not have
        '{"type":"candidate","candidate":{"sdpMid":"0","candidate":"x","sdpMLineIndex":0}}',
        '{"type":"candidate","candidate":{"candidate":"x","sdpMid":"0","sdpMLineIndex":00}}',
        '{"type": "candidate", "candidate": {"candidate": "x", "sdpMid": "0", "sdpMLineIndex": 0}}',
    ],
)
def test_anything_else_is_not_plain(frame: str) -> None:
    assert not plain_candidate(frame)


# --- the short way in a session -----------------------------------------------------------


async def test_a_browser_candidate_in_the_call_is_relayed_as_it_came_without_being_parsed(
    parsed: list[str],
) -> None:
    call = Call()
    await call.start()
    frame = browser_frame(fields(usernameFragment="9fq2"))

    await call.client.receive(frame)

    assert call.therapist_socket.frames == [frame]
    assert frame not in parsed
    assert call.client_socket.sent == []


async def test_a_browser_candidate_is_written_to_a_peer_with_room_in_one_step(
    parsed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held("therapist", at_once=True)
    call = Call(therapist_socket=held)
    await call.start()

    async def not_this_way(*args: object) -> None:
        raise AssertionError("relayed through relay_frame")

    # Not the coroutine for a frame that must wait, or go through the fan-out: the peer's
    # connection is found and written to at once, in one step.
    monkeypatch.setattr(Switchboard, "relay_frame", not_this_way)
    frame = browser_frame(fields(usernameFragment="9fq2"))
    await call.client.receive(frame)

    assert held.at_once == [frame]
    assert frame not in parsed


async def test_a_candidate_the_short_way_cannot_take_is_handled_as_before(
    parsed: list[str],
) -> None:
    call = Call()
    await call.start(admit=False)
    plain = browser_frame(fields())
    await call.client.receive(plain)  # still waiting: refused, as it always was
    assert [e.error for e in call.client_socket.of(Error)] == [ErrorCode.NOT_ADMITTED]

    assert call.therapist.handle is not None
    await call.board.switchboard.admit(call.therapist.handle, "c-1")
    await call.client.receive(browser_frame(fields(), id="c-7"))  # relayed without its id
    await call.client.receive(browser_frame(fields("caf\u00e9")))
    await call.therapist.disconnected()
    await call.client.receive(plain)  # nobody to relay it to: dropped

    # Each of them took the full way.
    assert parsed[-4:] == [
        plain,
        browser_frame(fields(), id="c-7"),
        browser_frame(fields("caf\u00e9")),
        plain,
    ]
    relayed = call.therapist_socket.of(Candidate)
    assert [c.id for c in relayed] == [None, None]
    assert [c.candidate.candidate for c in relayed if c.candidate] == [LINE, "caf\u00e9"]


async def test_candidates_relayed_unparsed_count_against_the_rate() -> None:
    clock = [0.0]
    call = Call(limiter=RateLimiter(2, 3, clock=lambda: clock[0]))
    await call.start()
    for n in range(5):
        await call.client.receive(browser_frame(fields(f"{LINE} {n}")))

    assert len(call.therapist_socket.frames) == 3
    assert [e.error for e in call.client_socket.of(Error)] == [ErrorCode.RATE_LIMITED] * 2


async def test_a_candidate_never_overtakes_what_is_already_on_its_way() -> None:
    call, held, media = await media_stuck_on_its_way()

    await call.client.receive(browser_frame(fields()))
    held.release.set()
    await media

    assert held.types() == ["media", "candidate"]
