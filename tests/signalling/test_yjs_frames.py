"""``yjs`` frames, the commonest of all, take a short path through parse and encode: it
must give exactly what the general path gives, message or error, for every frame."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalling.errors import ProtocolError
from signalling.protocol import _encode, encode, parse_message
from signalling.worksheet_messages import MAX_SYNC_BYTES, Yjs


def browser_frame(worksheet: str, data: str) -> str:
    """As ``JSON.stringify({type, worksheet, data})`` writes it: the short path's shape."""
    return json.dumps({"type": "yjs", "worksheet": worksheet, "data": data}, separators=(",", ":"))


def general_frame(worksheet: str, data: str) -> str:
    """The same message with spaces after the separators: always the general path."""
    return json.dumps({"type": "yjs", "worksheet": worksheet, "data": data})


def outcome(frame: str) -> Yjs | tuple[str, str]:
    try:
        message = parse_message(frame)
    except ProtocolError as error:
        return (error.code, error.value)
    assert isinstance(message, Yjs)
    return message


worksheets = st.one_of(
    st.integers(min_value=0, max_value=10**30).map(lambda n: f"w-{n}"),
    st.text(alphabet="w-0123456789ab", max_size=40),
)
payloads = st.one_of(
    st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet="AZaz09+/=", max_size=40),
)


@given(worksheet=worksheets, data=payloads)
def test_a_browser_frame_parses_as_the_same_frame_through_the_general_path(
    worksheet: str, data: str
) -> None:
    assert outcome(browser_frame(worksheet, data)) == outcome(general_frame(worksheet, data))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", "yjs.data: must not be empty"),
        ("AAI", "yjs.data: not standard base64 with padding"),
    ],
)
def test_a_browser_frame_with_bad_data_is_refused_naming_the_field(
    data: str, expected: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_message(browser_frame("w-7", data))
    assert caught.value.code == "bad-message"
    assert expected in caught.value.value


def test_a_browser_frame_over_the_frame_limit_is_refused_as_too_large() -> None:
    frame = browser_frame("w-7", "A" * ((MAX_SYNC_BYTES * 4) // 3 + 8))
    assert outcome(frame) == ("too-large", "frame is larger than 65536 bytes")


def test_a_browser_frame_with_another_field_or_a_repeated_key_takes_the_general_path() -> None:
    with pytest.raises(ProtocolError, match="unknown field 'extra'"):
        parse_message('{"type":"yjs","worksheet":"w-7","data":"AAA=","extra":1}')
    with pytest.raises(ProtocolError, match="appears twice"):
        parse_message('{"type":"yjs","worksheet":"w-7","data":"AAA=","data":"AAA="}')
    message = parse_message('{"type":"yjs","worksheet":"w-7","data":"AAA=","id":"k1"}')
    assert message == Yjs(worksheet="w-7", data=b"\x00\x00", id="k1")


@given(
    worksheet=st.integers(min_value=1, max_value=2**40).map(lambda n: f"w-{n}"),
    data=st.binary(min_size=1, max_size=2000),
)
def test_a_yjs_message_encodes_to_the_text_of_the_general_encoder(
    worksheet: str, data: bytes
) -> None:
    message = Yjs(worksheet=worksheet, data=data)
    assert encode(message) == _encode(message)
    assert parse_message(encode(message)) == message


@pytest.mark.parametrize(
    "message",
    [
        Yjs(worksheet="w-1", data=b""),
        Yjs(worksheet="w-1", data=b"x" * (MAX_SYNC_BYTES + 1)),
        Yjs(worksheet="x-1", data=b"\x00"),
        Yjs(worksheet="w-" + "1" * 40, data=b"\x00"),
    ],
    ids=["empty", "too-large", "bad-prefix", "too-long-id"],
)
def test_encoding_an_invalid_yjs_message_is_refused(message: Yjs) -> None:
    with pytest.raises(ValueError, match="refusing to encode a"):
        encode(message)
