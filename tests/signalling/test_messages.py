"""The device-check summary a client's ``hello`` carries, with its connection test."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signalling.errors import ErrorCode, ProtocolError
from signalling.messages import Hello
from signalling.parts import ConnectionSummary, ConnectionVerdict, DeviceStatus, DeviceSummary
from signalling.protocol import encode, parse_message

MEASURED = {"verdict": "fair", "rttMs": 180, "lossPercent": 2.5, "kbpsUp": 640, "kbpsDown": 910}


def hello(connection: Any) -> str:
    devices = {"camera": "ok", "microphone": "ok", "connection": connection}
    return json.dumps({"type": "hello", "version": 1, "devices": devices})


def test_a_hello_carries_the_connection_test_next_to_the_devices() -> None:
    message = parse_message(hello(MEASURED))
    assert isinstance(message, Hello) and message.devices is not None
    assert message.devices.connection == ConnectionSummary(
        verdict=ConnectionVerdict.FAIR, rtt_ms=180, loss_percent=2.5, kbps_up=640, kbps_down=910
    )


def test_a_summary_round_trips_through_the_wire() -> None:
    message = parse_message(hello(MEASURED))
    assert json.loads(encode(message))["devices"]["connection"] == MEASURED


def test_a_test_that_could_not_connect_has_a_verdict_and_no_measurements() -> None:
    failed = {"verdict": "failed", "rttMs": None, "lossPercent": None, "kbpsUp": None}
    message = parse_message(hello({**failed, "kbpsDown": None}))
    assert isinstance(message, Hello) and message.devices is not None
    assert message.devices.connection is not None
    assert message.devices.connection.verdict is ConnectionVerdict.FAILED


def test_the_connection_test_is_optional_and_left_out_when_absent() -> None:
    summary = DeviceSummary(camera=DeviceStatus.OK, microphone=DeviceStatus.DENIED)
    frame = encode(Hello(version=1, devices=summary))
    assert json.loads(frame)["devices"] == {"camera": "ok", "microphone": "denied"}
    assert parse_message(frame) == Hello(version=1, devices=summary)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"verdict": "excellent"}, "verdict"),
        ({"rttMs": -1}, "rttMs"),
        ({"rttMs": 1.5}, "rttMs"),
        ({"lossPercent": 101}, "lossPercent must be between 0 and 100"),
        ({"lossPercent": "2"}, "lossPercent"),
        ({"kbpsUp": True}, "kbpsUp"),
        ({"verdict": "failed"}, "a failed connection test has no measurements"),
        ({"jitterMs": 3}, "unknown field 'jitterMs'"),
    ],
)
def test_a_wrong_connection_summary_is_a_bad_message(change: dict[str, Any], where: str) -> None:
    with pytest.raises(ProtocolError, match=where) as raised:
        parse_message(hello({**MEASURED, **change}))
    assert raised.value.code is ErrorCode.BAD_MESSAGE
    assert "hello.devices.connection" in str(raised.value)


def test_every_measurement_must_be_present_even_if_null() -> None:
    partial = {key: value for key, value in MEASURED.items() if key != "kbpsDown"}
    with pytest.raises(ProtocolError, match=r"connection\.kbpsDown: missing"):
        parse_message(hello(partial))
