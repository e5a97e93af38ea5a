"""``/metrics``: the instance's health in the Prometheus text format, for operators only.

Every app has its own ``CollectorRegistry`` (never the process-wide default), so tests can
build many apps.  The endpoint exists only when ``ALCOVE_METRICS_TOKEN`` is set, and then
answers only requests with ``Authorization: Bearer <token>``.

No label ever carries personal data: no names, e-mail addresses, tokens or record ids.
Labels are closed sets: a message type or error code of the protocol, a participant state,
a booking result.

What is measured, and where:

- gauges computed at scrape time: sockets with a seat, rooms by their client's state, and
  the e-mail outbox's pending rows;
- the time a client waited, observed when they are admitted (the registry's ``Admitted``
  event and the participant's ``waiting_since``, both on the app clock);
- signalling messages received by type, and ``error``s sent by code
  (``MeteredSwitchboard``: it sees every parsed message after ``hello``, every ``hello``
  that resolved to a seat or lobby, and every ``error`` delivered through the switchboard);
- booking outcomes (``counts_bookings`` around the API's and the booking page's views);
- the fan-out's lag between instances, for a sample of the payloads (``TimedFanout``).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import hmac
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from server import outbox
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.problems import Problem
from signalling import events
from signalling.delivery import Connection
from signalling.effects import Handle
from signalling.fanout import Callback, Fanout, Subscription
from signalling.lobby import Watcher
from signalling.messages import CallConnected, Error, Message
from signalling.participants import Seat, StateChange
from signalling.parts import DeviceSummary, IceServer, ParticipantState, Role
from signalling.rooms import Registry
from signalling.routing import Leases
from signalling.switchboard import Switchboard

ROOM_STATES = (ParticipantState.WAITING, ParticipantState.ADMITTED, ParticipantState.IN_CALL)
BOOKING_RESULTS = ("booked", "slot_taken", "invalid")
WAIT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
CONNECT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
LAG_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


class Metrics:
    """The app's metrics, in a registry of their own."""

    def __init__(self, clock: Callable[[], dt.datetime]) -> None:
        self._clock = clock
        self._rooms: Registry | None = None
        #: Participants the registry has reported, to read their live state at scrape time
        #: (the registry offers no iteration); forgotten once the registry has pruned them.
        self._seen: set[str] = set()
        self.registry = CollectorRegistry()
        r = self.registry
        self.participants = Gauge(
            "alcove_connected_participants",
            "Sockets with a seat in a room (lobby sockets not included).",
            registry=r,
        )
        self.rooms = Gauge(
            "alcove_rooms", "Rooms by the state of their client.", ["state"], registry=r
        )
        self.outbox_depth = Gauge(
            "alcove_outbox_pending", "E-mails in the outbox waiting to be sent.", registry=r
        )
        self.waiting = Histogram(
            "alcove_waiting_room_seconds",
            "How long a client waited before being admitted.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.messages = Counter(
            "alcove_signalling_messages_received",
            "Signalling messages received, by type.",
            ["type"],
            registry=r,
        )
        #: Messages received since the last scrape, by type: counted in a plain dict, since
        #: this runs for every message and ``Counter.inc`` takes a lock; added to
        #: ``messages`` when the metrics are read.
        self.received: collections.Counter[str] = collections.Counter()
        self.errors = Counter(
            "alcove_signalling_errors", "Signalling errors sent, by code.", ["code"], registry=r
        )
        self.bookings = Counter(
            "alcove_booking_outcomes", "Booking attempts, by result.", ["result"], registry=r
        )
        self.fanout_lag = Histogram(
            "alcove_fanout_lag_seconds",
            "Time from publishing an effect for another instance to its delivery there.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.admit_to_connected = Histogram(
            "alcove_admit_to_connected_seconds",
            "From a client's admission to their call's media connecting, as their browser saw it.",
            buckets=CONNECT_BUCKETS,
            registry=r,
        )
        for state in ROOM_STATES:
            self.rooms.labels(state=state.value)
        for result in BOOKING_RESULTS:
            self.bookings.labels(result=result)

    # Rooms

    def watch(self, rooms: Registry) -> None:
        """Follow ``rooms``: its participants, and the wait of each client admitted."""
        self._rooms = rooms
        rooms.add_listener(self._on_change)
        rooms.add_event_listener(self._on_event)

    def _on_change(self, change: StateChange) -> None:
        self._seen.add(change.participant)

    def _on_event(self, event: events.RoomEvent) -> None:
        if not isinstance(event, events.Admitted) or self._rooms is None:
            return
        client = self._rooms.participant(event.participant)
        if client is not None:
            waited = (self._clock() - client.waiting_since).total_seconds()
            self.waiting.observe(max(waited, 0.0))

    def _sample_rooms(self) -> None:
        online = 0
        rooms = dict.fromkeys(ROOM_STATES, 0)
        for participant_id in list(self._seen):
            participant = self._rooms.participant(participant_id) if self._rooms else None
            if participant is None:
                self._seen.discard(participant_id)  # pruned
                continue
            online += participant.online
            if participant.role is Role.CLIENT and participant.state in rooms:
                rooms[participant.state] += 1
        self.participants.set(online)
        for state, count in rooms.items():
            self.rooms.labels(state=state.value).set(count)

    # Exposition

    def _add_received(self) -> None:
        received, self.received = self.received, collections.Counter()
        for kind, count in received.items():
            self.messages.labels(type=kind).inc(count)

    async def render(self, app: web.Application) -> bytes:
        self._add_received()
        self._sample_rooms()
        async with app[SESSIONMAKER]() as db:
            self.outbox_depth.set(await outbox.pending_count(db))
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


# --- signalling ------------------------------------------------------------------------------


class MeteredSwitchboard(Switchboard):
    """A switchboard that counts the messages it is given and the errors it delivers.

    Not counted: frames the ``Session`` refuses before they reach the switchboard (not
    JSON, unknown type, a refused ``hello``, rate-limited frames) and the errors it answers
    those with on the raw connection.
    """

    def __init__(
        self, fanout: Fanout, registry: Registry, metrics: Metrics, leases: Leases | None = None
    ) -> None:
        super().__init__(fanout, registry, leases=leases)
        self._metrics = metrics
        metrics.watch(registry)

    def _count(self, kind: str) -> None:
        self._metrics.received[kind] += 1

    relaying = _count  # a message passed on unparsed: counted as ``receiving`` would

    async def join(
        self,
        seat: Seat,
        connection: Connection,
        *,
        ice_servers: Sequence[IceServer] = (),
        devices: DeviceSummary | None = None,
    ) -> Handle:
        self._count("hello")
        return await super().join(seat, connection, ice_servers=ice_servers, devices=devices)

    async def watch(self, watcher: Watcher, connection: Connection) -> Handle:
        self._count("hello")
        return await super().watch(watcher, connection)

    def receiving(self, handle: Handle, message: Message) -> None:
        self._metrics.received[message.TYPE] += 1  # ``_count`` in line: every message
        if type(message) is CallConnected and self.role_of(handle) is Role.CLIENT:
            self._metrics.admit_to_connected.observe(message.admit_to_connected_ms / 1000)

    def delivering_error(self, error: Error) -> None:
        self._metrics.errors.labels(code=error.error.value).inc()


#: One payload in this many is stamped, and its lag observed (the first always is).  Stamping
#: and observing every one cost about a twentieth of a message's way between instances.
LAG_SAMPLE = 16
#: The stamp of a payload that is not timed.
UNTIMED = "0"


class TimedFanout:
    """A ``Fanout`` that stamps payloads when published and observes their delivery lag.

    Each payload travels as ``<stamp> <payload>``: the wall clock at publication for one in
    ``LAG_SAMPLE``, else ``0`` (not timed).  The stamp is the wall clock, so between
    instances on different hosts the lag is only as true as their clocks agree (keep them in
    sync with NTP, as the outbox leases need anyway).  Effects for sockets of the same
    instance skip the fan-out, so what is observed is the lag between instances.
    """

    def __init__(self, inner: Fanout, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._published = 0

    async def publish(self, channel: str, payload: str) -> None:
        await self._inner.publish(channel, self._stamped(payload))

    def publish_now(self, channel: str, payload: str) -> bool:
        return self._inner.publish_now(channel, self._stamped(payload))

    def _stamped(self, payload: str) -> str:
        count = self._published
        self._published = count + 1
        if count % LAG_SAMPLE:
            return f"{UNTIMED} {payload}"
        return f"{time.time()!r} {payload}"

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        lag = self._metrics.fanout_lag

        def timed(stamped: str) -> Awaitable[object] | None:
            stamp, _, payload = stamped.partition(" ")
            if stamp != UNTIMED:
                lag.observe(max(time.time() - float(stamp), 0.0))
            return callback(payload)

        return await self._inner.subscribe(channel, timed)


def switchboard(
    app: web.Application, fanout: Fanout, registry: Registry, leases: Leases | None = None
) -> Switchboard:
    """The app's switchboard, metered."""
    metrics = app[METRICS]
    return MeteredSwitchboard(TimedFanout(fanout, metrics), registry, metrics, leases)


# --- bookings --------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_RESULTS = {201: "booked", 303: "booked", 409: "slot_taken", 400: "invalid", 422: "invalid"}


def counts_bookings(view: Handler) -> Handler:
    """Count the outcome of each booking ``view`` answers: by its status, raised or not."""

    def count(request: web.Request, status: int) -> None:
        result = _RESULTS.get(status)
        if result is not None:
            request.app[METRICS].bookings.labels(result=result).inc()

    @functools.wraps(view)
    async def counted(request: web.Request) -> web.StreamResponse:
        try:
            response = await view(request)
        except (web.HTTPException, Problem) as exc:
            count(request, exc.status)
            raise
        count(request, response.status)
        return response

    return counted


# --- the endpoint ----------------------------------------------------------------------------


def _authorized(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    scheme, _, credentials = given.partition(" ")
    expected = token.encode()
    ok = hmac.compare_digest(credentials.strip().encode(), expected)
    return ok and scheme.lower() == "bearer"


async def metrics_view(request: web.Request) -> web.StreamResponse:
    if not _authorized(request, request.app[SETTINGS].metrics_token):
        return web.Response(
            status=401, text="401: Unauthorized\n", headers={"WWW-Authenticate": "Bearer"}
        )
    body = await request.app[METRICS].render(request.app)
    return web.Response(
        body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
    )


def setup(app: web.Application) -> None:
    """Give the app its metrics; serve them at ``/metrics`` if a token is set (else 404)."""
    app[METRICS] = Metrics(app[CLOCK])
    if app[SETTINGS].metrics_token:
        app.router.add_get("/metrics", metrics_view, name="metrics")
