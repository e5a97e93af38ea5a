"""A frame written as browsers write JSON is read by orjson instead of the strict decoder:
for every frame, both must read the same value, or refuse it with the same error.  A
message parsed from such a frame is sent on as that very frame."""

from __future__ import annotations

import dataclasses
import json
import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalling.errors import ProtocolError
from signalling.messages import Message
from signalling.protocol import (
    _DECODER,
    _NOT_CANONICAL,
    _canonical,
    _read_json,
    encode,
    parse_message,
)
from signalling.wire import checked_json

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def strict(frame: str) -> tuple[object, ...]:
    try:
        return ("value", _DECODER.decode(frame))
    except ProtocolError as error:
        return ("error", error.code, error.value)
    except ValueError as error:
        return ("error", str(error))


def read(frame: str) -> tuple[object, ...]:
    try:
        return ("value", _read_json(frame)[0])
    except ProtocolError as error:
        return ("error", error.code, error.value)


def same(a: object, b: object) -> bool:
    """Equal, with ints and floats, and 0.0 and -0.0, told apart."""
    return repr(a) == repr(b)


@given(value=values, ascii_only=st.booleans())
def test_a_compact_frame_reads_as_the_strict_decoder_reads_it(
    value: object, ascii_only: bool
) -> None:
    frame = json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)
    expected = strict(frame)
    if expected[0] == "value":  # the general path's own checks come after reading
        assert same(read(frame), expected)


@given(value=values)
def test_a_frame_written_with_spaces_reads_the_same(value: object) -> None:
    spaced = json.dumps(value)
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if strict(spaced)[0] == "value":
        assert same(read(spaced), read(compact))


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"chat","type":"chat"}',  # a repeated key
        '{"a":{"b":1,"b":2}}',
        '{"a":18446744073709551616}',  # beyond 64 bits: orjson reads a float
        '{"a":-0}',
        '{"a":1e400}',  # infinity to orjson, inf to the strict decoder
        '{"a":"\\u00e9"}',  # an escape orjson does not write
        '{"a":"\\ud800"}',  # a lone surrogate
        '{"a":NaN}',
        '{"a":1} ',
        "[" * 2000 + "]" * 2000,
    ],
)
def test_a_frame_orjson_would_write_otherwise_takes_the_strict_decoder(frame: str) -> None:
    assert _canonical(frame) is _NOT_CANONICAL


def test_a_canonical_frame_is_read_by_orjson_with_its_numbers_exact() -> None:
    frame = '{"type":"media-state","n":9007199254740993,"x":0.1,"y":-0.0,"s":"é"}'
    value = _canonical(frame)
    assert isinstance(value, dict)
    assert value["n"] == 9007199254740993 and type(value["n"]) is int
    assert value["x"] == 0.1 and math.copysign(1, value["y"]) == -1
    assert same(value, _DECODER.decode(frame))


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ('{"type":"chat","type":"chat"}', "key 'type' appears twice"),
        ('{"a":NaN}', "NaN is not valid JSON"),
    ],
)
def test_what_orjson_does_not_read_is_refused_as_before(frame: str, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        _read_json(frame)


# --- a relayed message goes out as it came ---------------------------------------------

candidates = st.fixed_dictionaries(
    {
        "candidate": st.text(max_size=60),
        "sdpMid": st.one_of(st.none(), st.text(max_size=8)),
        "sdpMLineIndex": st.one_of(st.none(), st.integers(0, 65535)),
    },
    optional={"usernameFragment": st.one_of(st.none(), st.text(max_size=8))},
)


def encoded_afresh(message: Message) -> str:
    """What ``encode`` wrote for a parsed message before it kept the frame."""
    parsed = checked_json(message)
    assert parsed is not None
    return orjson.dumps({"type": message.TYPE, **parsed}).decode()


@given(candidate=candidates, ascii_only=st.booleans())
def test_a_candidate_is_encoded_as_the_frame_it_came_in_and_as_it_was_encoded_before(
    candidate: dict[str, object], ascii_only: bool
) -> None:
    frame = json.dumps(
        {"type": "candidate", "candidate": candidate},
        separators=(",", ":"),
        ensure_ascii=ascii_only,
    )
    try:
        message = parse_message(frame)
    except ProtocolError:
        return  # refused (a lone surrogate, say): nothing to encode
    assert encode(message) == encoded_afresh(message)
    if _canonical(frame) is not _NOT_CANONICAL:
        assert encode(message) == frame


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"chat","text":"Can you hear me?"}',
        '{"type":"offer","sdp":"v=0\\r\\n"}',
        '{"type":"candidate","candidate":null}',
        '{"type":"chat","text":"ça va ? 🙂"}',
    ],
)
def test_a_canonical_frame_is_sent_on_exactly_as_it_came(frame: str) -> None:
    assert encode(parse_message(frame)) == frame


@pytest.mark.parametrize(
    ("frame", "sent"),
    [
        ('{"text":"hi","type":"chat"}', '{"type":"chat","text":"hi"}'),  # type first
        ('{"type": "chat", "text": "hi"}', '{"type":"chat","text":"hi"}'),  # compact
        ('{"type":"chat","text":"\\u00e9"}', '{"type":"chat","text":"é"}'),
    ],
)
def test_any_other_frame_is_sent_written_afresh(frame: str, sent: str) -> None:
    assert encode(parse_message(frame)) == sent


def test_a_message_changed_after_parsing_is_written_afresh() -> None:
    message = parse_message('{"type":"chat","text":"hi","id":"m-1"}')
    changed = dataclasses.replace(message, id=None)
    assert encode(changed) == '{"type":"chat","text":"hi"}'
