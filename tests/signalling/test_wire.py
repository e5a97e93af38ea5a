"""signalling.wire: the compiled decoders accept, build and refuse exactly what the checks
field by field do."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalling import wire
from signalling.errors import ErrorCode, ProtocolError
from signalling.messages import Candidate, Message
from signalling.parts import IceCandidate
from signalling.protocol import MESSAGE_TYPES
from signalling.wire import decode_struct

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
#: One valid object of every message type: the examples of docs/PROTOCOL.md.
EXAMPLES: list[dict[str, Any]] = [
    json.loads(example)
    for example in re.findall(
        r"^```json\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE
    )
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 1, -1, 65535, 65536, 1.0, 0.5, float("inf")]),
    st.text(max_size=12),
    # Beyond ASCII, a lone surrogate, a prefix that ids have, an over-long text.
    st.sampled_from(["é", "Łódź", "\ud800", "c-1", "w-12", "x" * 5000, ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def changed(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` with one thing changed somewhere in it: a value replaced, a key dropped
    or added, or (for an object or array) the same one level down."""
    if isinstance(value, dict) and value and depth < 4:
        key = draw(st.sampled_from(sorted(value)))
        how = draw(st.sampled_from(["replace", "drop", "add", "deeper"]))
        out = dict(value)
        if how == "replace":
            out[key] = draw(values)
        elif how == "drop":
            del out[key]
        elif how == "add":
            out[draw(st.sampled_from(["extra", key + "s", "type", "id"]))] = draw(values)
        else:
            out[key] = draw(changed(value[key], depth + 1))
        return out
    if isinstance(value, list) and value and depth < 4:
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], draw(changed(value[index], depth + 1)), *value[index + 1 :]]
    return draw(values)


@contextlib.contextmanager
def field_by_field() -> Iterator[None]:
    """Decode with no compiled decoder anywhere, nested objects included."""
    plans, compile_ = wire._PLANS, wire._compile
    wire._PLANS = {}
    wire._compile = lambda *args: None  # type: ignore[assignment]
    try:
        yield
    finally:
        wire._PLANS, wire._compile = plans, compile_


def outcome(cls: type[Message], value: object) -> tuple[object, ...]:
    try:
        result = decode_struct(cls, value, cls.TYPE, ignore="type")
    except ProtocolError as error:
        return ("refused", error.code, error.value)
    return ("built", type(result), repr(result), sorted(result.__dict__))


def both(value: dict[str, Any]) -> tuple[tuple[object, ...], tuple[object, ...]]:
    cls = MESSAGE_TYPES[value["type"]]
    compiled = outcome(cls, value)
    with field_by_field():
        expected = outcome(cls, value)
    return compiled, expected


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example["type"])
def test_every_example_is_built_the_same_by_its_compiled_decoder(example: dict[str, Any]) -> None:
    compiled, expected = both(example)
    assert compiled[0] == "built"
    assert compiled == expected


@settings(max_examples=600)
@given(data=st.data(), example=st.sampled_from(EXAMPLES))
def test_a_changed_message_is_built_or_refused_the_same(
    data: st.DataObject, example: dict[str, Any]
) -> None:
    value = data.draw(changed(example))
    if not isinstance(value, dict) or value.get("type") != example["type"]:
        value = {"type": example["type"]} if not isinstance(value, dict) else value
        value["type"] = example["type"]
    compiled, expected = both(value)
    assert compiled == expected


def test_a_candidate_has_a_compiled_decoder_and_so_has_its_nested_object() -> None:
    assert wire._plan(Candidate, "candidate", "type").compiled is not None
    assert wire._plan(IceCandidate, "candidate.candidate").compiled is not None


@pytest.mark.parametrize(
    ("candidate", "where", "problem"),
    [
        ({"sdpMid": "0", "sdpMLineIndex": 0}, "candidate.candidate.candidate", "missing"),
        (
            {"candidate": 7, "sdpMid": "0", "sdpMLineIndex": 0},
            "candidate.candidate.candidate",
            "expected a string, got a number",
        ),
        (
            {"candidate": "", "sdpMid": "0", "sdpMLineIndex": True},
            "candidate.candidate.sdpMLineIndex",
            "expected an integer, got a boolean",
        ),
        (
            {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 65536},
            "candidate.candidate.sdpMLineIndex",
            "must be between 0 and 65535",
        ),
        (
            {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0, "x": 1},
            "candidate.candidate",
            "unknown field 'x'",
        ),
    ],
)
def test_a_refusal_names_the_field_as_ever(
    candidate: dict[str, Any], where: str, problem: str
) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode_struct(
            Candidate, {"type": "candidate", "candidate": candidate}, "candidate", ignore="type"
        )
    assert refused.value.code is ErrorCode.BAD_MESSAGE
    assert refused.value.value == f"{where}: {problem}"


def test_text_beyond_ascii_is_accepted_and_a_lone_surrogate_refused() -> None:
    def candidate(sdp_mid: str) -> dict[str, Any]:
        body = {"candidate": "", "sdpMid": sdp_mid, "sdpMLineIndex": 0}
        return {"type": "candidate", "candidate": body}

    built = decode_struct(Candidate, candidate("é"), "candidate", ignore="type")
    assert built.candidate is not None and built.candidate.sdp_mid == "é"
    with pytest.raises(ProtocolError, match="unpaired surrogate"):
        decode_struct(Candidate, candidate("\ud800"), "candidate", ignore="type")


def test_the_items_of_an_array_and_plans_beyond_the_cap_are_not_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert wire._plan(IceCandidate, "welcome.iceServers[3]").compiled is None
    monkeypatch.setattr(wire, "_PLANS", {})
    monkeypatch.setattr(wire, "_MAX_PLANS", 0)
    assert wire._plan(IceCandidate, "candidate.candidate").compiled is None
    assert wire._PLANS == {}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "field-by-field"])
def test_a_struct_decoder_builds_and_refuses_as_decode_struct_does(compiled: bool) -> None:
    refusal = {"type": "candidate", "candidate": {"sdpMid": "0", "sdpMLineIndex": 0}}
    with contextlib.ExitStack() as stack:
        if not compiled:
            stack.enter_context(field_by_field())
        for value in [*EXAMPLES, refusal]:
            cls = MESSAGE_TYPES[value["type"]]
            decode = wire.struct_decoder(cls, cls.TYPE, ignore="type")
            try:
                result = decode(value)
            except ProtocolError as error:
                got: tuple[object, ...] = ("refused", error.code, error.value)
            else:
                got = ("built", type(result), repr(result), sorted(result.__dict__))
            assert got == outcome(cls, value)
        assert got[0] == "refused"  # the last one
