"""The connection test before joining: a WebRTC peer that sends the client's media back.

A client about to join sends their camera and microphone to ``POST /join/echo``; the server
answers with a peer connection that returns every track it receives, frame for frame.  The
browser then measures what a call would get — round trip, loss, bitrate — over the same
network path and the same ICE servers (TURN included) the call will use, and can tell the
client before they join that their connection is poor, or that a firewall blocks calls.

Media does pass through the server here, unlike in a call, so every test is bounded:

- at most ``Limits.max_concurrent`` tests at once per instance; one more is refused with
  503 and a problem telling the browser to skip the test (the client can still join);
- every peer connection is closed ``Limits.timeout_seconds`` after it was created, whatever
  it is doing (the browser's test takes 10 seconds);
- a peer whose connection fails or is closed by the browser is closed and frees its place
  at once, and stopping the app closes every peer that is left (``cleanup_ctx``);
- a draining instance starts no new test.

The exchange is not trickled: the browser sends an offer with its candidates, and the answer
is sent once the server's candidates are gathered.  ``GET /join/echo/config`` gives the
browser the ICE servers to use, as the call's ``welcome`` would.  Both need the participant
cookie; the POST must also come from an allowed ``Origin`` and be JSON, so no other site can
make a client's browser start one.
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from server import join
from server.calls import Resolver
from server.keys import CLOCK, REQUEST_ID, SETTINGS
from server.problems import PROBLEM_JSON, TYPE_PREFIX
from server.shutdown import DRAIN
from signalling.parts import MAX_SDP_CHARS, IceServer
from signalling.wire import encode_struct

if TYPE_CHECKING:
    from server.echo_peer import EchoPeer

log = logging.getLogger(__name__)

#: The offer's SDP, JSON-escaped, fits with room to spare.
MAX_BODY_BYTES = 64 * 1024
#: How long the browser's test lasts; the server's bound is ``Limits.timeout_seconds``.
TEST_SECONDS = 10
#: When the connection test's peer (and aiortc) is loaded, after start-up.
PRELOAD_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class Limits:
    """How many tests may run at once, and how long any one peer may live."""

    max_concurrent: int = 4
    timeout_seconds: float = 15.0


class EchoState(enum.StrEnum):
    """Where one echo peer stands.  ``closed`` is final; any other state may go there."""

    NEW = "new"
    ANSWERING = "answering"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


_NEXT: dict[EchoState, frozenset[EchoState]] = {
    EchoState.NEW: frozenset({EchoState.ANSWERING, EchoState.CLOSED}),
    EchoState.ANSWERING: frozenset({EchoState.CONNECTING, EchoState.CLOSED}),
    EchoState.CONNECTING: frozenset({EchoState.CONNECTED, EchoState.CLOSED}),
    EchoState.CONNECTED: frozenset({EchoState.CLOSED}),
    EchoState.CLOSED: frozenset(),
}


class BadOffer(Exception):
    """The offer cannot be answered: the browser sent something that is not a media offer."""


class Unavailable(Exception):
    """The server could not answer (ICE gathering failed, or the peer timed out meanwhile)."""


class EchoService:
    """The echo peers of one instance, within ``limits``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.peers: set[EchoPeer] = set()
        self.stopped = False

    def start(self, servers: tuple[IceServer, ...]) -> EchoPeer | None:
        """A new peer, or ``None`` when ``limits.max_concurrent`` are already running.

        The place is taken before anything is awaited, so concurrent requests cannot
        overshoot the limit.
        """
        if self.stopped or len(self.peers) >= self.limits.max_concurrent:
            return None
        from server.echo_peer import EchoPeer  # aiortc: imported at the first test, not at start

        peer = EchoPeer(self, servers)
        self.peers.add(peer)
        return peer

    def release(self, peer: EchoPeer) -> None:
        self.peers.discard(peer)

    async def close_all(self) -> None:
        """Refuse new tests and close every peer there is."""
        self.stopped = True
        peers = list(self.peers)
        if peers:
            log.info("closing %d echo peers", len(peers))
        await asyncio.gather(*(peer.close("shutdown") for peer in peers))


LIMITS = web.AppKey("echo_limits", Limits)
ECHO = web.AppKey("echo", EchoService)


async def echo_ctx(app: web.Application) -> AsyncIterator[None]:
    service = EchoService(app[LIMITS])
    app[ECHO] = service
    # The echo peer's module (aiortc) loads in a thread once the app has started serving,
    # so that neither start-up nor the first test waits for it.
    loop = asyncio.get_running_loop()
    preload: list[asyncio.Future[None]] = []
    timer = loop.call_later(
        PRELOAD_AFTER_SECONDS, lambda: preload.append(loop.run_in_executor(None, _load_peer))
    )
    yield
    timer.cancel()
    await service.close_all()
    await asyncio.gather(*preload)


def _load_peer() -> None:
    try:
        importlib.import_module("server.echo_peer")
    except Exception:
        log.exception("the connection test's peer could not be loaded")


# --- HTTP ------------------------------------------------------------------------------------

#: code -> (status, title).  Stable: the browser reads ``code`` and ``skip``.
PROBLEMS: dict[str, tuple[int, str]] = {
    "bad-offer": (400, "The offer is not valid"),
    "malformed-json": (400, "The request body is not valid JSON"),
    "not-a-participant": (401, "Open your join link first"),
    "forbidden-origin": (403, "Not allowed from this page"),
    "session-over": (403, "This session is over"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "Send JSON"),
    "echo-busy": (503, "Too many connection tests are running"),
    "echo-unavailable": (503, "The connection test is not available"),
}


def problem(request: web.Request, code: str, detail: str) -> web.Response:
    """An RFC 9457 problem, shaped like the API's.  5xx ones say ``skip``: the browser should
    let the client join without the test rather than retry it."""
    status, title = PROBLEMS[code]
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request.get(REQUEST_ID, ""),
    }
    headers = None
    if status >= 500:
        body["skip"] = True
        headers = {"Retry-After": "30"}
    return web.Response(
        status=status,
        body=json.dumps(body).encode("utf-8"),
        content_type=PROBLEM_JSON,
        charset="utf-8",
        headers=headers,
    )


async def _participant(request: web.Request) -> tuple[Resolver | None, web.Response | None]:
    appointment = await join.participant_appointment(request)
    if appointment is None:
        return None, problem(request, "not-a-participant", "No valid participant cookie.")
    verdict = join.classify(appointment, request.app[SETTINGS], request.app[CLOCK]())
    if verdict in (join.Window.OVER, join.Window.CANCELLED):
        return None, problem(request, "session-over", "The appointment is over.")
    return Resolver.for_client(request.app, appointment), None


async def _read_limited(request: web.Request) -> bytes | None:
    """The body, or ``None`` if it is larger than ``MAX_BODY_BYTES`` (read no further)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _offer_sdp(raw: bytes) -> str:
    """The offer's SDP from ``{"type": "offer", "sdp": "..."}``; ``BadOffer`` otherwise."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ValueError("The body is not valid UTF-8 JSON.") from None
    if not isinstance(value, dict):
        raise ValueError("The body must be a JSON object.")
    unknown = sorted(set(value) - {"type", "sdp"})
    if unknown:
        raise BadOffer(f"unknown field {unknown[0]!r}")
    if value.get("type") != "offer":
        raise BadOffer('type must be "offer"')
    sdp = value.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise BadOffer("sdp must be a session description beginning with v=0")
    if len(sdp) > MAX_SDP_CHARS:
        raise BadOffer(f"sdp is longer than {MAX_SDP_CHARS} characters")
    return sdp


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def offer(request: web.Request) -> web.StreamResponse:
    """``POST /join/echo``: answer the browser's offer with an echoing peer."""
    origin = request.headers.get("Origin")
    if origin is None or origin not in request.app[SETTINGS].allowed_origins:
        return problem(request, "forbidden-origin", "The Origin header is missing or not allowed.")
    resolver, refusal = await _participant(request)
    if resolver is None:
        assert refusal is not None
        return refusal
    if request.content_type != "application/json":
        return problem(request, "unsupported-media-type", "Send the offer as application/json.")
    raw = await _read_limited(request)
    if raw is None:
        return problem(request, "payload-too-large", f"At most {MAX_BODY_BYTES} bytes.")
    try:
        sdp = _offer_sdp(raw)
    except BadOffer as exc:
        return problem(request, "bad-offer", str(exc))
    except ValueError as exc:
        return problem(request, "malformed-json", str(exc))
    service = request.app[ECHO]
    if request.app[DRAIN].draining:
        return problem(request, "echo-unavailable", "This server is restarting.")
    peer = service.start(resolver.ice_servers())
    if peer is None:
        return problem(request, "echo-busy", "Skip the test and join; it is not needed.")
    answered = False
    try:
        answer_sdp = await peer.answer(sdp)
        answered = True
    except BadOffer as exc:
        return problem(request, "bad-offer", str(exc))
    except Unavailable as exc:
        return problem(request, "echo-unavailable", str(exc))
    finally:
        if not answered:
            await peer.close("not answered")
    return web.json_response({"type": "answer", "sdp": answer_sdp})


async def config(request: web.Request) -> web.StreamResponse:
    """``GET /join/echo/config``: the ICE servers for the browser's side of the test, the
    same (with TURN credentials of the participant's own) as the call's ``welcome`` gives."""
    resolver, refusal = await _participant(request)
    if resolver is None:
        assert refusal is not None
        return refusal
    servers = [encode_struct(server) for server in resolver.ice_servers()]
    return web.json_response({"iceServers": servers, "seconds": TEST_SECONDS})


def setup(app: web.Application, limits: Limits | None = None) -> None:
    """Routes and the peers' lifetime.  ``app[LIMITS]`` may be replaced before the app
    starts (the tests shorten the timeout)."""
    app[LIMITS] = limits or Limits()
    app.cleanup_ctx.append(echo_ctx)
    app.router.add_post("/join/echo", offer, name="echo")
    app.router.add_get("/join/echo/config", config, name="echo-config")
