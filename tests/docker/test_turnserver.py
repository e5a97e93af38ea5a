"""docker/turnserver.conf in a real coturn: it refuses to relay to the ranges it denies.

coturn is started with the repository's configuration, changed only where a test must be
(a free port on 127.0.0.1, a small relay range, files under the test's directory, the
secret). A TURN client written here allocates a relay with the credentials Alcove hands
out (``server.turn``) and asks for permissions to reach peers: loopback, private,
link-local, CGNAT and multicast peers must be refused with 403 (Forbidden IP), an
IPv4-mapped IPv6 peer must be refused too, whatever the error, and a public peer must be
allowed (a misplaced deny rule can refuse every peer, which no static check of the file
notices).

The relay check happens on CreatePermission, before any packet could reach a peer, so the
test sends nothing anywhere but to coturn on 127.0.0.1.

Needs ``turnserver`` (Debian: ``apt-get install coturn``, which .ci/run installs); without
it the test is skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import random
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server import turn
from tests.conftest import free_port
from tests.docker.support import TURNSERVER_CONF, require_tool, turnserver_options

SECRET = "docker-turn-test-" + "k" * 40
COOKIE = 0x2112A442

ALLOCATE, CREATE_PERMISSION, BINDING = 0x0003, 0x0008, 0x0001
SUCCESS, ERROR = 0x0100, 0x0110
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE = 0x0006, 0x0008, 0x0009
REALM, NONCE, XOR_PEER_ADDRESS, REQUESTED_TRANSPORT = 0x0014, 0x0015, 0x0012, 0x0019

pytestmark = pytest.mark.slow


def attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def parse(data: bytes) -> tuple[int, bytes, dict[int, bytes]]:
    kind, length, cookie = struct.unpack("!HHI", data[:8])
    assert cookie == COOKIE
    attributes: dict[int, bytes] = {}
    offset = 20
    while offset < 20 + length:
        akind, alen = struct.unpack("!HH", data[offset : offset + 4])
        attributes.setdefault(akind, data[offset + 4 : offset + 4 + alen])
        offset += 4 + alen + (-alen % 4)
    return kind, data[8:20], attributes


def xor_peer_address(address: str, port: int, transaction: bytes) -> bytes:
    ip = ipaddress.ip_address(address)
    xport = port ^ (COOKIE >> 16)
    if ip.version == 4:
        xaddr = int(ip) ^ COOKIE
        return struct.pack("!BBHI", 0, 1, xport, xaddr)
    mask = int.from_bytes(struct.pack("!I", COOKIE) + transaction, "big")
    return struct.pack("!BBH", 0, 2, xport) + (int(ip) ^ mask).to_bytes(16, "big")


@dataclass
class TurnClient:
    """Just enough of a TURN client (RFC 5766) for Allocate and CreatePermission over UDP."""

    port: int
    username: str
    password: str
    realm: bytes = b""
    nonce: bytes = b""

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2)

    def close(self) -> None:
        self.sock.close()

    def request(
        self,
        method: int,
        body: bytes | Callable[[bytes], bytes],
        authenticated: bool = True,
    ) -> tuple[int, dict[int, bytes]]:
        transaction = os.urandom(12)
        attributes = body(transaction) if callable(body) else body
        if authenticated:
            attributes += attribute(USERNAME, self.username.encode())
            attributes += attribute(REALM, self.realm) + attribute(NONCE, self.nonce)
            key = hashlib.md5(  # noqa: S324 - the key derivation TURN prescribes
                f"{self.username}:{self.realm.decode()}:{self.password}".encode()
            ).digest()
            header = struct.pack("!HHI", method, len(attributes) + 24, COOKIE) + transaction
            digest = hmac.new(key, header + attributes, hashlib.sha1).digest()
            attributes += attribute(MESSAGE_INTEGRITY, digest)
        message = struct.pack("!HHI", method, len(attributes), COOKIE) + transaction + attributes
        self.sock.sendto(message, ("127.0.0.1", self.port))
        while True:
            kind, echoed, answer = parse(self.sock.recv(4096))
            if echoed == transaction:
                return kind, answer

    def allocate(self) -> None:
        transport = attribute(REQUESTED_TRANSPORT, struct.pack("!B3x", 17))
        kind, answer = self.request(ALLOCATE, transport, authenticated=False)
        assert kind == ALLOCATE | ERROR and error_code(answer) == 401, answer
        self.realm, self.nonce = answer[REALM], answer[NONCE]
        kind, answer = self.request(ALLOCATE, transport)
        assert kind == ALLOCATE | SUCCESS, f"allocation refused: {answer}"

    def permit(self, peer: str) -> tuple[bool, int, str]:
        """``(granted, error code, reason)`` for a permission to reach ``peer``."""
        kind, answer = self.request(
            CREATE_PERMISSION,
            lambda transaction: attribute(XOR_PEER_ADDRESS, xor_peer_address(peer, 9, transaction)),
        )
        if kind == CREATE_PERMISSION | SUCCESS:
            return True, 0, ""
        assert kind == CREATE_PERMISSION | ERROR, hex(kind)
        return False, error_code(answer), answer[ERROR_CODE][4:].decode(errors="replace")


def error_code(answer: dict[int, bytes]) -> int:
    value = answer[ERROR_CODE]
    return (value[2] & 0x7) * 100 + value[3]


def stun_binding_answered(port: int) -> bool:
    transaction = os.urandom(12)
    request = struct.pack("!HHI", BINDING, 0, COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            data = sock.recv(2048)
        except OSError:
            return False
    return data[:2] == b"\x01\x01" and data[8:20] == transaction


@pytest.fixture
def coturn_port(tmp_path: Path) -> Iterator[int]:
    binary = require_tool("turnserver", "apt-get install coturn")
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        break
    low = random.randrange(50000, 60000)
    overrides = {
        "listening-port": str(port),
        "min-port": str(low),
        "max-port": str(low + 20),
        "pidfile": str(tmp_path / "turnserver.pid"),
    }
    lines = []
    for option, value in turnserver_options(TURNSERVER_CONF):
        value = overrides.pop(option, value)
        lines.append(f"{option}={value}" if value else option)
    assert not overrides, f"turnserver.conf no longer sets {sorted(overrides)}"
    lines += [
        f"static-auth-secret={SECRET}",
        "listening-ip=127.0.0.1",
        "relay-ip=127.0.0.1",
        f"userdb={tmp_path / 'turndb'}",
    ]
    config = tmp_path / "turnserver.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = tmp_path / "turnserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 15
        while not stun_binding_answered(port):
            tail = log.read_text(errors="replace")[-3000:]
            assert process.poll() is None, f"coturn exited:\n{tail}"
            assert time.monotonic() < deadline, f"coturn did not answer:\n{tail}"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


REFUSED_PEERS = [
    "127.0.0.1",  # this server itself
    "10.1.2.3",
    "172.17.0.2",  # Docker's default bridge: the database's neighbourhood
    "172.30.80.10",  # the compose edge network
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "0.0.0.1",
    "224.0.0.1",  # multicast
]


PUBLIC_PEER = "8.8.8.8"


def test_the_relay_refuses_internal_peers_and_allows_public_ones(coturn_port: int) -> None:
    username, password = turn.credentials(
        SECRET, "c-1", dt.datetime.now(dt.UTC), dt.timedelta(minutes=10)
    )
    client = TurnClient(coturn_port, username, password)
    try:
        client.allocate()
        results = {peer: client.permit(peer) for peer in REFUSED_PEERS}
        mapped = client.permit("::ffff:10.1.2.3")
        # A permission only tells coturn which peer may be relayed to; creating it sends
        # nothing to that peer. A public one must be allowed, or no call could be relayed.
        public = client.permit(PUBLIC_PEER)
    finally:
        client.close()
    assert public == (True, 0, ""), f"a public peer is refused: {public}"
    granted = [peer for peer, (ok, _code, _reason) in results.items() if ok]
    assert granted == [], f"coturn would relay to {granted}"
    assert {code for _ok, code, _reason in results.values()} == {403}, results
    assert not mapped[0], "an IPv4-mapped IPv6 peer was allowed"
