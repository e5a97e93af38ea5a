"""Fixtures for the signalling tests."""

from __future__ import annotations

import pytest

from signalling import router, routing, session
from signalling.messages import Message
from signalling.protocol import parse_message
from tests.signalling.fakes import Board


@pytest.fixture
def board() -> Board:
    """A fresh switchboard on an in-process fan-out, with the clock at ``T0``."""
    return Board()


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The frames parsed anywhere on a message's way: by a session, or reading a command
    forwarded from another instance."""
    frames: list[str] = []

    def parse(frame: str | bytes) -> Message:
        frames.append(frame if isinstance(frame, str) else frame.decode())
        return parse_message(frame)

    for module in (session, routing, router):
        monkeypatch.setattr(module, "parse_message", parse)
    return frames
