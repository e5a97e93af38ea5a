"""Fixtures for the signalling tests."""

from __future__ import annotations

import pytest

from tests.signalling.fakes import Board


@pytest.fixture
def board() -> Board:
    """A fresh switchboard on an in-process fan-out, with the clock at ``T0``."""
    return Board()
