"""TURN: coturn's time-limited credentials, the settings behind them, and calls relayed by a
real coturn that the tests start themselves.

The coturn tests need ``turnserver`` (Debian: ``apt-get install coturn``).  Without it they
are skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import logging
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import RTCIceTransport
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import turn
from server.app import create_app
from server.settings import Settings, SettingsError, load_settings
from signalling.parts import IceServer
from tests.conftest import LiveServer, free_port, make_settings
from tests.server.test_cli import alcove_env, run_alcove
from tests.support.arrange import make_appointment, make_therapist
from tests.support.rtc import Peer, loopback_only
from tests.support.signalling_client import SignallingClient, client_session, sign_in_session

TURN_SECRET = "alcove-turn-" + "s" * 40
PASSWORD = "a long enough password"
UTC = dt.UTC


def rest_api_password(secret: str, username: str) -> str:
    """coturn's password for ``username``, computed here without ``server.turn``."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# --- credentials ---------------------------------------------------------------------------


def test_credentials_are_expiry_colon_participant_and_the_base64_hmac_sha1_of_that() -> None:
    secret = "alcove-turn-test-secret-0123456789abcdef"
    now = dt.datetime(2025, 12, 31, 22, 0, tzinfo=UTC)

    username, password = turn.credentials(secret, "c-42", now, dt.timedelta(minutes=120))

    # 2026-01-01T00:00:00Z; the password as `openssl dgst -sha1 -hmac <secret> -binary | base64`
    # computes it, and as hmac/base64 do here.
    assert username == "1767225600:c-42"
    assert password == "4778LlwlLIWSDi+sHvW/oR9/AXk="
    assert password == rest_api_password(secret, username)


def test_the_expiry_is_now_plus_the_ttl_in_whole_unix_seconds() -> None:
    now = dt.datetime(2026, 11, 26, 14, 30, 15, 900_000, tzinfo=UTC)

    username, _ = turn.credentials(TURN_SECRET, "t-7", now, dt.timedelta(minutes=90))

    expiry, participant = username.split(":")
    assert int(expiry) == int(now.timestamp()) + 90 * 60
    assert participant == "t-7"


@pytest.mark.parametrize("participant", ["", "c:1"])
def test_a_participant_that_would_confuse_coturn_is_refused(participant: str) -> None:
    with pytest.raises(ValueError):
        turn.credentials(TURN_SECRET, participant, dt.datetime.now(UTC), dt.timedelta(hours=1))


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        turn.credentials(TURN_SECRET, "c-1", dt.datetime(2026, 1, 1), dt.timedelta(hours=1))


def settings_with(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"ALCOVE_DATA_DIR": str(tmp_path), **env}, env_file=None)


def test_ice_servers_are_the_plain_ice_urls_then_the_turn_urls_with_credentials(
    tmp_path: Path,
) -> None:
    settings = settings_with(
        tmp_path,
        ALCOVE_ICE_URLS="stun:stun.example.org:3478",
        ALCOVE_TURN_URLS="turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349",
        ALCOVE_TURN_SECRET=TURN_SECRET,
        ALCOVE_TURN_TTL_MINUTES="60",
    )
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    plain, relay = turn.ice_servers_for(settings, "c-12", now)

    assert plain == IceServer(urls=("stun:stun.example.org:3478",))
    assert relay.urls == ("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349")
    assert relay.username == f"{int(now.timestamp()) + 3600}:c-12"
    assert relay.credential == rest_api_password(TURN_SECRET, relay.username)


def test_without_turn_urls_no_credentials_are_made(tmp_path: Path) -> None:
    now = dt.datetime.now(UTC)
    assert turn.ice_servers_for(settings_with(tmp_path), "c-1", now) == ()
    stun_only = settings_with(tmp_path, ALCOVE_ICE_URLS="stun:stun.example.org")
    assert turn.ice_servers_for(stun_only, "c-1", now) == (
        IceServer(urls=("stun:stun.example.org",)),
    )


# --- settings ------------------------------------------------------------------------------


def test_turn_settings_default_to_none_and_two_hours(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    assert (settings.turn_urls, settings.turn_secret, settings.turn_ttl_minutes) == ((), "", 120)


@pytest.mark.parametrize(
    "url",
    [
        "turn:turn.example.org",
        "turn:turn.example.org:3478",
        "turn:203.0.113.7:3478?transport=udp",
        "turn:turn.example.org?transport=tcp",
        "turns:turn.example.org:5349?transport=tcp",
        "turn:[2001:db8::1]:3478",
        "turn:localhost:1",
        "turn:localhost:65535",
    ],
)
def test_a_well_formed_turn_url_is_accepted(tmp_path: Path, url: str) -> None:
    settings = settings_with(tmp_path, ALCOVE_TURN_URLS=url, ALCOVE_TURN_SECRET=TURN_SECRET)
    assert settings.turn_urls == (url,)


@pytest.mark.parametrize(
    "url",
    [
        "stun:turn.example.org",
        "http://turn.example.org",
        "turn:",
        "turn://turn.example.org",
        "turn:user@turn.example.org",
        "turn:turn.example.org:0",
        "turn:turn.example.org:65536",
        "turn:turn.example.org:",
        "turn:turn.example.org:3478/path",
        "turn:turn.example.org?transport=sctp",
        "turn:turn.example.org?transport=udp&x=1",
        "turn:-bad-.example.org",
        "turn:turn..example.org",
        "turn:[not-ipv6]:3478",
        "turn:turn example.org",
    ],
)
def test_a_malformed_turn_url_is_refused_in_one_line_naming_the_variable(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(SettingsError, match=r"^ALCOVE_TURN_URLS: ") as caught:
        settings_with(tmp_path, ALCOVE_TURN_URLS=url, ALCOVE_TURN_SECRET=TURN_SECRET)
    assert "\n" not in str(caught.value)


def test_more_than_eight_turn_urls_are_refused(tmp_path: Path) -> None:
    urls = ",".join(f"turn:turn{n}.example.org" for n in range(9))
    with pytest.raises(SettingsError, match=r"^ALCOVE_TURN_URLS: at most 8 URLs$"):
        settings_with(tmp_path, ALCOVE_TURN_URLS=urls, ALCOVE_TURN_SECRET=TURN_SECRET)


@pytest.mark.parametrize("mode", ["development", "production"])
def test_turn_urls_without_a_secret_are_refused_in_every_mode(tmp_path: Path, mode: str) -> None:
    env = {
        "ALCOVE_MODE": mode,
        "ALCOVE_SECRET_KEY": "k" * 48,
        "ALCOVE_PUBLIC_URL": "https://therapy.example.org",
        "ALCOVE_TURN_URLS": "turn:turn.example.org",
    }
    with pytest.raises(
        SettingsError,
        match=r"^ALCOVE_TURN_SECRET is required when ALCOVE_TURN_URLS is set$",
    ):
        settings_with(tmp_path, **env)


@pytest.mark.parametrize("urls", ["turn:turn.example.org", ""])
def test_a_short_turn_secret_is_refused(tmp_path: Path, urls: str) -> None:
    with pytest.raises(SettingsError, match=r"^ALCOVE_TURN_SECRET is too short: .*32"):
        settings_with(tmp_path, ALCOVE_TURN_URLS=urls, ALCOVE_TURN_SECRET="s" * 31)


@pytest.mark.parametrize("raw", ["0", "1441", "two hours"])
def test_a_turn_ttl_out_of_range_is_refused(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match=r"^ALCOVE_TURN_TTL_MINUTES must be "):
        settings_with(tmp_path, ALCOVE_TURN_TTL_MINUTES=raw)


async def test_alcove_serve_in_production_with_turn_urls_and_no_secret_refuses_in_one_line(
    tmp_path: Path,
) -> None:
    env = alcove_env(
        ALCOVE_MODE="production",
        ALCOVE_SECRET_KEY="k" * 48,
        ALCOVE_PUBLIC_URL="https://therapy.example.org",
        ALCOVE_DATA_DIR=str(tmp_path / "var"),
        ALCOVE_PORT="0",
        ALCOVE_TURN_URLS="turn:turn.example.org:3478",
    )

    result = await run_alcove("serve", env=env, cwd=tmp_path, wait_seconds=30)

    assert result.returncode != 0
    assert result.output_lines == [
        "alcove: cannot start: ALCOVE_TURN_SECRET is required when ALCOVE_TURN_URLS is set"
    ]


def test_the_turn_secret_is_not_in_the_settings_repr(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path, ALCOVE_TURN_URLS="turn:turn.example.org", ALCOVE_TURN_SECRET=TURN_SECRET
    )
    assert settings.turn_secret == TURN_SECRET
    assert TURN_SECRET not in repr(settings)


# --- a real coturn -------------------------------------------------------------------------

#: Linux hands out ephemeral ports from 32768 to 60999: relay ports above that are free-ish.
RELAY_PORTS = (61000, 65500)
RELAY_PORT_COUNT = 200


@dataclass(frozen=True)
class Coturn:
    port: int
    log: Path

    def url(self, transport: str = "udp") -> str:
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def free_udp_and_tcp_port() -> int:
    """A port on 127.0.0.1 free for both TCP and UDP: coturn listens on both."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both TCP and UDP")


def stun_binding_answered(port: int) -> bool:
    """Whether a STUN Binding request to 127.0.0.1:``port`` gets its success response."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            data = sock.recv(2048)
        except OSError:  # timeout, or refused (ICMP port unreachable)
            return False
    return data[:2] == b"\x01\x01" and data[8:20] == transaction


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    """coturn on a free port of 127.0.0.1, checking credentials made with ``TURN_SECRET``."""
    binary = shutil.which("turnserver")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("turnserver (coturn) is missing: .ci/run should have installed it")
        pytest.skip("turnserver (coturn) is not installed: apt-get install coturn")
    home = tmp_path / "coturn"
    home.mkdir()
    port = free_udp_and_tcp_port()
    low = random.randrange(RELAY_PORTS[0], RELAY_PORTS[1] - RELAY_PORT_COUNT)
    config = home / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                "use-auth-secret",
                f"static-auth-secret={TURN_SECRET}",
                "realm=alcove.test",
                "listening-ip=127.0.0.1",
                "relay-ip=127.0.0.1",
                f"listening-port={port}",
                f"min-port={low}",
                f"max-port={low + RELAY_PORT_COUNT - 1}",
                # Both peers are on 127.0.0.1; coturn refuses loopback peers otherwise.
                "allow-loopback-peers",
                "no-tls",
                "no-dtls",
                "no-cli",
                f"userdb={home / 'turndb'}",
                f"pidfile={home / 'turnserver.pid'}",
                "log-file=stdout",
                "simple-log",
                "verbose",
                "",
            ]
        ),
        encoding="utf-8",
    )
    log = home / "turnserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=home
        )
    server = Coturn(port=port, log=log)
    try:
        deadline = time.monotonic() + 15
        while not stun_binding_answered(port):
            if process.poll() is not None:
                pytest.fail(f"coturn exited with {process.returncode}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"coturn did not answer STUN on port {port}:\n{server.log_tail()}")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rtc_servers(ice_servers: list[dict[str, Any]]) -> list[RTCIceServer]:
    """A ``welcome``'s ``iceServers``, as aiortc takes them."""
    return [
        RTCIceServer(
            urls=server["urls"],
            username=server.get("username"),
            credential=server.get("credential"),
        )
        for server in ice_servers
    ]


def relay_only(ice_servers: list[RTCIceServer]) -> RTCConfiguration:
    return RTCConfiguration(iceServers=ice_servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY)


def candidate_types(sdp: str) -> set[str]:
    """The ``typ`` of every ``a=candidate`` line of ``sdp``."""
    types = set()
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            types.add(fields[fields.index("typ") + 1])
    return types


def ice_transports(pc: RTCPeerConnection) -> list[RTCIceTransport]:
    dtls = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    found: dict[int, RTCIceTransport] = {}
    for transport in dtls:
        if transport is not None:
            found[id(transport.transport)] = transport.transport
    return list(found.values())


def selected_pair_types(pc: RTCPeerConnection) -> set[tuple[str, str]]:
    """``(local type, remote type)`` of the candidate pair each ICE transport selected.

    aiortc has no public API for the selected pair (nor candidate-pair stats): this reads
    the pairs aioice nominated.
    """
    pairs = set()
    for transport in ice_transports(pc):
        for pair in transport._connection._nominated.values():
            pairs.add((pair.local_candidate.type, pair.remote_candidate.type))
    return pairs


@pytest.fixture
async def turn_live_server(
    migrated_url: str, tmp_path: Path, coturn: Coturn
) -> AsyncIterator[LiveServer]:
    """The app on a real port, handing out ``coturn``'s URLs with credentials."""
    port = free_port()
    settings = make_settings(
        migrated_url,
        tmp_path / "var",
        ALCOVE_PUBLIC_URL=f"http://127.0.0.1:{port}",
        ALCOVE_ICE_URLS=f"stun:127.0.0.1:{coturn.port}",
        ALCOVE_TURN_URLS=f"{coturn.url('udp')},{coturn.url('tcp')}",
        ALCOVE_TURN_SECRET=TURN_SECRET,
        ALCOVE_TURN_TTL_MINUTES="120",
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    yield LiveServer(settings, server)
    await server.close()


def check_welcome_credentials(
    welcome: dict[str, Any], coturn: Coturn, participant: str, before: float, after: float
) -> None:
    """The ``welcome`` names the STUN URL, then the TURN URLs with credentials for
    ``participant`` expiring two hours after it was sent."""
    plain, relay = welcome["iceServers"]
    assert plain == {"urls": [f"stun:127.0.0.1:{coturn.port}"]}
    assert relay["urls"] == [coturn.url("udp"), coturn.url("tcp")]
    expiry, _, who = relay["username"].partition(":")
    assert who == participant
    assert int(before) + 7200 <= int(expiry) <= int(after) + 7200
    assert relay["credential"] == rest_api_password(TURN_SECRET, relay["username"])


@pytest.mark.slow
async def test_a_relay_only_call_goes_through_coturn_with_the_credentials_the_app_hands_out(
    turn_live_server: LiveServer,
    coturn: Coturn,
    db: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="server")
    caplog.set_level(logging.DEBUG, logger="signalling")
    loopback_only(monkeypatch)
    url = turn_live_server.url
    therapist = await make_therapist(db, email="sam@example.com", password=PASSWORD)
    appointment, token = await make_appointment(db, therapist.id, starts_at=dt.datetime.now(UTC))

    therapist_http = await sign_in_session(url, "sam@example.com", PASSWORD)
    client_http = await client_session(url, token)
    client_ws = SignallingClient(client_http, url)
    therapist_ws = SignallingClient(therapist_http, url)
    peers: list[Peer] = []
    try:
        before = time.time()
        await client_ws.connect(origin=url)
        welcome = await client_ws.hello(devices={"camera": "ok", "microphone": "ok"})
        await therapist_ws.connect(origin=url)
        t_welcome = await therapist_ws.hello(appointment=f"a-{appointment.id}")
        after = time.time()
        check_welcome_credentials(welcome, coturn, f"c-{appointment.id}", before, after)
        check_welcome_credentials(t_welcome, coturn, f"t-{therapist.id}", before, after)

        lobby = await therapist_ws.expect("lobby")
        waiting = [e for e in lobby["participants"] if e["state"] == "waiting"]
        await therapist_ws.send({"type": "admit", "participant": waiting[0]["participant"]})
        await client_ws.expect("peer-joined")
        await therapist_ws.expect("peer-joined")

        therapist_peer = Peer(
            therapist_ws,
            polite=False,
            configuration=relay_only(rtc_servers(t_welcome["iceServers"])),
        )
        client_peer = Peer(
            client_ws, polite=True, configuration=relay_only(rtc_servers(welcome["iceServers"]))
        )
        peers = [therapist_peer, client_peer]
        therapist_peer.start_pump()
        client_peer.start_pump()
        await therapist_peer.offer()

        async with asyncio.timeout(30):
            await asyncio.gather(therapist_peer.connected.wait(), client_peer.connected.wait())
            await asyncio.gather(therapist_peer.first_frame.wait(), client_peer.first_frame.wait())

        for peer in peers:
            sdp = peer.pc.localDescription.sdp
            assert candidate_types(sdp) == {"relay"}, sdp
            assert selected_pair_types(peer.pc) == {("relay", "relay")}
        assert therapist_peer.frames > 0 and client_peer.frames > 0
    finally:
        for peer in peers:
            await peer.close()
        await client_ws.close()
        await therapist_ws.close()
        await client_http.close()
        await therapist_http.close()

    # coturn allocated a relay for each participant's user and bound the other's relay
    # address to it; the app logged neither the secret nor a password.
    log = coturn.log.read_text(encoding="utf-8", errors="replace")
    for participant in (f"c-{appointment.id}", f"t-{therapist.id}"):
        for request in ("ALLOCATE", "CHANNEL_BIND"):
            done = rf"user <\d+:{participant}>: incoming packet {request} processed, success"
            assert re.search(done, log), coturn.log_tail()
    for secret in (TURN_SECRET, welcome["iceServers"][1]["credential"]):
        assert secret not in caplog.text
    assert t_welcome["iceServers"][1]["credential"] not in caplog.text


async def relay_candidates_gathered(ice_servers: tuple[IceServer, ...]) -> set[str]:
    """The candidate types a relay-only peer with ``ice_servers`` puts in its offer."""
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
        for s in ice_servers
    ]
    pc = RTCPeerConnection(relay_only(servers))
    try:
        pc.createDataChannel("probe")
        await pc.setLocalDescription(await pc.createOffer())
        return candidate_types(pc.localDescription.sdp)
    finally:
        await pc.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("secret", "minutes_ago", "allocated"),
    [
        pytest.param(TURN_SECRET, 0, True, id="fresh"),
        # Made 121 minutes ago with a 120-minute TTL: expired a minute ago.
        pytest.param(TURN_SECRET, 121, False, id="expired"),
        pytest.param("another-secret-" + "w" * 40, 0, False, id="wrong-secret"),
    ],
)
async def test_coturn_allocates_a_relay_only_with_fresh_credentials_from_its_secret(
    coturn: Coturn,
    tmp_path: Path,
    secret: str,
    minutes_ago: int,
    allocated: bool,
) -> None:
    settings = settings_with(
        tmp_path,
        ALCOVE_TURN_URLS=coturn.url("udp"),
        ALCOVE_TURN_SECRET=secret,
        ALCOVE_TURN_TTL_MINUTES="120",
    )
    now = dt.datetime.now(UTC) - dt.timedelta(minutes=minutes_ago)
    ice_servers = turn.ice_servers_for(settings, "c-1", now)

    types = await relay_candidates_gathered(ice_servers)

    assert types == ({"relay"} if allocated else set()), coturn.log_tail()
