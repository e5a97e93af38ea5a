"""Effects cross the fan-out as text and come back the same."""

from __future__ import annotations

import json

import pytest

from signalling.effects import (
    Close,
    Deliver,
    Forwarded,
    Handle,
    channel_for,
    channel_of,
    dump_effect,
    load_effect,
    lobby_channel_for,
)
from signalling.errors import CloseCode, ErrorCode
from signalling.messages import Candidate, Error, Lobby, Offer, Waiting
from signalling.parts import IceCandidate
from signalling.protocol import encode, parse_message

TO = Handle("c-1", "tok-1")
LOBBY_SOCKET = Handle("t-1", "tok-2", watcher=True)

EFFECTS = [
    Deliver(TO, Offer(sdp="v=0\r\n")),
    Deliver(LOBBY_SOCKET, Lobby(participants=())),
    Close(LOBBY_SOCKET, CloseCode.NORMAL, "left"),
    Deliver(TO, Waiting(welcome="Bienvenue — à tout de suite", status="")),
    Deliver(TO, Candidate(candidate=IceCandidate(candidate="", sdp_mid="0", sdp_m_line_index=0))),
    Close(TO, CloseCode.REPLACED, "replaced by a newer connection"),
]


@pytest.mark.parametrize("effect", EFFECTS, ids=lambda e: type(e).__name__)
def test_an_effect_survives_the_trip(effect: Deliver | Close) -> None:
    loaded = load_effect(dump_effect(effect))

    if isinstance(effect, Deliver):
        # Sent on as the frame the producing instance encoded, which reads as the message.
        assert loaded == Forwarded(effect.to, encode(effect.message))
        assert isinstance(loaded, Forwarded)
        assert parse_message(loaded.frame) == effect.message
    else:
        assert loaded == effect


def test_an_error_is_parsed_again_so_that_the_receiving_instance_can_count_it() -> None:
    effect = Deliver(TO, Error(error=ErrorCode.NOT_ADMITTED, value="not yet"))

    assert load_effect(dump_effect(effect)) == effect


def test_a_deliver_from_an_older_instance_without_its_type_is_parsed() -> None:
    payload = json.loads(dump_effect(Deliver(TO, Offer(sdp="v=0"))))
    del payload["type"]

    assert load_effect(json.dumps(payload)) == Deliver(TO, Offer(sdp="v=0"))


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[]",
        json.dumps({"kind": "deliver", "participant": "c-1", "token": "t"}),
        json.dumps({"kind": "deliver", "participant": "c", "token": "t", "message": "{}"}),
        json.dumps({"kind": "deliver", "participant": "c", "token": "t", "type": "offer"}),
        json.dumps(
            {"kind": "deliver", "participant": "c", "token": "t", "type": "offer", "message": {}}
        ),
        json.dumps({"kind": "close", "participant": "c", "token": "t", "code": 1234, "reason": ""}),
        json.dumps({"kind": "explode", "participant": "c", "token": "t"}),
    ],
)
def test_anything_else_is_refused(payload: str) -> None:
    with pytest.raises(ValueError, match="not an effect"):
        load_effect(payload)


def test_a_close_reason_must_fit_a_close_frame() -> None:
    with pytest.raises(ValueError, match="123 bytes"):
        Close(TO, CloseCode.NORMAL, "é" * 62)


def test_each_participant_has_its_own_channel() -> None:
    assert channel_for("c-1") != channel_for("c-2")


def test_lobby_sockets_have_their_therapists_lobby_channel() -> None:
    assert channel_of(LOBBY_SOCKET) == lobby_channel_for("t-1") != channel_for("t-1")
    assert channel_of(TO) == channel_for("c-1")
    assert "watcher" not in json.loads(dump_effect(Deliver(TO, Offer(sdp="v=0"))))
