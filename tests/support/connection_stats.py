"""The connection test's figures from two ``getStats()`` snapshots, as the browser computes
them (``web/static/js/connection-test.js``, ``summarise``), for aiortc peers in tests.

A snapshot is a list of stats objects, each a mapping with a ``type`` — what the browser's
``RTCStatsReport.values()`` holds, and what ``snapshot`` makes of aiortc's report.  aiortc
reports fewer statistics than browsers (no candidate pairs, no ``bytesReceived`` per stream),
so each figure falls back as the script does: RTT from the candidate pair, else from
``remote-inbound-rtp``; received bytes from ``inbound-rtp``, else from the transport.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection

Stats = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class ConnectionFigures:
    """What the therapist is shown; ``None`` where the statistics did not say."""

    rtt_ms: int | None
    loss_percent: float | None
    kbps_up: int | None
    kbps_down: int | None


async def snapshot(pc: RTCPeerConnection) -> list[dict[str, Any]]:
    """aiortc's ``getStats()`` as plain mappings, like the browser's report values."""
    report = await pc.getStats()
    return [dataclasses.asdict(value) for value in report.values()]


def _total(stats: Stats, kind: str, key: str) -> float | None:
    values = [
        float(s[key])
        for s in stats
        if s.get("type") == kind and isinstance(s.get(key), int | float)
    ]
    return sum(values) if values else None


def _delta(before: Stats, after: Stats, kinds: Sequence[str], key: str) -> float | None:
    """How much counter ``key`` grew, from the first of ``kinds`` that has it."""
    for kind in kinds:
        end = _total(after, kind, key)
        if end is not None:
            return end - (_total(before, kind, key) or 0.0)
    return None


def _rtt_seconds(stats: Stats) -> float | None:
    for s in stats:
        if (
            s.get("type") == "candidate-pair"
            and s.get("nominated")
            and isinstance(s.get("currentRoundTripTime"), int | float)
        ):
            return float(s["currentRoundTripTime"])
    rtts = [
        float(s["roundTripTime"])
        for s in stats
        if s.get("type") == "remote-inbound-rtp" and isinstance(s.get("roundTripTime"), int | float)
    ]
    return max(rtts) if rtts else None


def _kbps(byte_count: float | None, seconds: float) -> int | None:
    if byte_count is None or seconds <= 0:
        return None
    return round(max(0.0, byte_count) * 8 / 1000 / seconds)


def summarise(before: Stats, after: Stats, seconds: float) -> ConnectionFigures:
    """The figures for the ``seconds`` between two snapshots of the same peer connection.

    Loss counts both ways: what the echo did not receive of ours (``remote-inbound-rtp``
    against ``outbound-rtp``) and what we did not receive of the echo's (``inbound-rtp``).
    """
    rtt = _rtt_seconds(after)
    sent = _delta(before, after, ["outbound-rtp"], "packetsSent")
    lost_up = _delta(before, after, ["remote-inbound-rtp"], "packetsLost")
    received = _delta(before, after, ["inbound-rtp"], "packetsReceived")
    lost_down = _delta(before, after, ["inbound-rtp"], "packetsLost")
    expected = (sent or 0.0) + (received or 0.0) + max(0.0, lost_down or 0.0)
    lost = max(0.0, lost_up or 0.0) + max(0.0, lost_down or 0.0)
    loss = round(min(100.0, 100 * lost / expected), 1) if expected > 0 else None
    up = _delta(before, after, ["outbound-rtp", "candidate-pair", "transport"], "bytesSent")
    down = _delta(before, after, ["inbound-rtp", "candidate-pair", "transport"], "bytesReceived")
    return ConnectionFigures(
        rtt_ms=None if rtt is None else round(rtt * 1000),
        loss_percent=loss,
        kbps_up=_kbps(up, seconds),
        kbps_down=_kbps(down, seconds),
    )
