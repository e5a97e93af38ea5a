"""A frame written as browsers write JSON is read by orjson instead of the strict decoder:
for every frame, both must read the same value, or refuse it with the same error."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalling.errors import ProtocolError
from signalling.protocol import _DECODER, _NOT_CANONICAL, _canonical, _load

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
        return ("value", _load(frame))
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
        _load(frame)
