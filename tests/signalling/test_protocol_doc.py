"""docs/PROTOCOL.md and signalling.protocol describe the same protocol."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signalling.protocol import (
    IDLE_TIMEOUT_SECONDS,
    MESSAGE_TYPES,
    PING_INTERVAL_SECONDS,
    RATE_BURST,
    RATE_PER_SECOND,
    CloseCode,
    ErrorCode,
    Message,
    Welcome,
    parse_message,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
TEXT = DOC.read_text(encoding="utf-8")
EXAMPLES = re.findall(r"^```json\n(.*?)^```", TEXT, flags=re.DOTALL | re.MULTILINE)
SECTIONS = re.findall(r"^### `([a-z-]+)`$", TEXT, flags=re.MULTILINE)


def _section(title: str) -> str:
    start = TEXT.index(f"\n## {title}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end != -1 else None]


def test_the_document_has_examples() -> None:
    assert len(EXAMPLES) >= len(MESSAGE_TYPES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.split('"type": "')[1].split('"')[0])
def test_every_example_parses(example: str) -> None:
    parse_message(example)


def test_every_message_type_has_an_example() -> None:
    shown = {parse_message(example).TYPE for example in EXAMPLES}
    assert shown == set(MESSAGE_TYPES)


def test_both_kinds_of_welcome_are_shown() -> None:
    welcomes = [m for m in map(parse_message, EXAMPLES) if isinstance(m, Welcome)]
    assert sorted(w.lobby for w in welcomes) == [False, True]


def test_every_message_type_has_its_own_section_and_no_other_does() -> None:
    assert sorted(SECTIONS) == sorted(MESSAGE_TYPES)


@pytest.mark.parametrize("kind", MESSAGE_TYPES.values(), ids=lambda cls: cls.TYPE)
def test_every_field_is_documented_in_its_section(kind: type[Message]) -> None:
    start = TEXT.index(f"### `{kind.TYPE}`")
    end = TEXT.find("\n### ", start + 1)
    section = TEXT[start:end]
    for field in kind.FIELDS:
        assert f"`{field.wire}`" in section, f"{kind.TYPE}.{field.wire} is not documented"


def test_every_error_code_is_in_the_errors_table() -> None:
    table = _section("Errors")
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.MULTILINE))
    assert documented == {code.value for code in ErrorCode}


def test_every_close_code_is_in_the_close_codes_table() -> None:
    table = _section("Close codes")
    documented = {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, flags=re.MULTILINE)}
    assert documented == {int(code) for code in CloseCode}


def test_timings_and_limits_match_the_constants() -> None:
    transport = _section("Transport")
    assert f"a `ping` every {PING_INTERVAL_SECONDS} seconds" in transport
    assert f"for {IDLE_TIMEOUT_SECONDS} seconds" in transport
    assert f"more than {RATE_PER_SECOND} messages a second" in transport
    assert f"bursts of up to {RATE_BURST}" in transport
