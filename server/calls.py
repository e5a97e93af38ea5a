"""The app's side of the signalling core: seats from the database, audit, and the switchboard.

``signalling`` knows nothing of the database or of aiohttp.  This module builds the
``Seat`` a socket speaks for from the records the cookie authenticated, owns the
``Switchboard`` for the app's lifetime, and writes the audit trail and the appointment's
status when the room reports a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.orm import selectinload

from server import audit, metrics, shutdown, turn
from server.audit import Actor
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import Appointment, AppointmentStatus, IllegalTransition, Therapist
from signalling import events
from signalling.errors import ErrorCode, ProtocolError
from signalling.fanout import Fanout, FanoutUnavailable, LocalFanout
from signalling.lobby import Watcher
from signalling.messages import Hello
from signalling.namespace import NamespacedFanout, namespace_for
from signalling.participants import Seat
from signalling.parts import IceServer, Role
from signalling.rooms import Registry
from signalling.switchboard import Switchboard

if TYPE_CHECKING:
    from signalling.redis_fanout import RedisFanout

log = logging.getLogger(__name__)

SWITCHBOARD = web.AppKey("switchboard", Switchboard)
#: The fan-out between instances, set when ``ALCOVE_REDIS_URL`` is: ``/readyz`` asks it.
REDIS_FANOUT: web.AppKey[RedisFanout] = web.AppKey("redis_fanout")


def appointment_ref(appointment_id: int) -> str:
    return f"a-{appointment_id}"


#: Record ids are INTEGER columns: anything larger names no record (and PostgreSQL refuses it).
MAX_RECORD_ID = 2**31 - 1
_MAX_RECORD_DIGITS = len(str(MAX_RECORD_ID))


def parse_record_id(number: str) -> int | None:
    """``number`` as a record id, if it is one written the one way the server writes it."""
    if not (number.isascii() and number.isdigit()) or len(number) > _MAX_RECORD_DIGITS:
        return None
    value = int(number)
    if str(value) != number or not 0 < value <= MAX_RECORD_ID:
        return None
    return value


@functools.lru_cache(maxsize=1024)  # every worksheet keystroke asks, for the same few calls
def parse_appointment_ref(ref: str) -> int | None:
    """The appointment id in ``ref``, if ``ref`` is exactly what ``appointment_ref`` makes."""
    prefix, _, number = ref.partition("-")
    return parse_record_id(number) if prefix == "a" else None


def therapist_ref(therapist_id: int) -> str:
    return f"t-{therapist_id}"


def client_participant(appointment_id: int) -> str:
    return f"c-{appointment_id}"


def therapist_participant(therapist_id: int, appointment_id: int) -> str:
    return f"t-{therapist_id}-a-{appointment_id}"


def ice_servers(app: web.Application, participant: str) -> tuple[IceServer, ...]:
    """The ICE servers for ``participant``'s ``welcome``, with TURN credentials of their own."""
    return turn.ice_servers_for(app[SETTINGS], participant, app[CLOCK]())


def client_seat(appointment: Appointment) -> Seat:
    return Seat(
        participant=client_participant(appointment.id),
        role=Role.CLIENT,
        appointment=appointment_ref(appointment.id),
        therapist=therapist_ref(appointment.therapist_id),
        name=appointment.client.name,
        start=appointment.starts_at,
        end=appointment.ends_at,
        welcome=appointment.therapist.welcome_text,
        admitted=appointment.admitted_at is not None,
    )


def therapist_seat(appointment: Appointment, therapist_id: int, name: str) -> Seat:
    return Seat(
        participant=therapist_participant(therapist_id, appointment.id),
        role=Role.THERAPIST,
        appointment=appointment_ref(appointment.id),
        therapist=therapist_ref(therapist_id),
        name=name,
        start=appointment.starts_at,
        end=appointment.ends_at,
    )


@dataclass(frozen=True)
class Resolver:
    """Turns a ``hello`` into the seat the authenticated person may take.

    It lives as long as the socket, so it keeps the little it needs of the rows it was made
    from, never the rows themselves (with everything they loaded)."""

    app: web.Application
    #: A therapist's id and name; for a client, None and "".
    therapist_id: int | None = None
    therapist_name: str = ""
    #: A client's seat, taken from their appointment when the socket opened: their
    #: ``hello`` names nothing.
    seat: Seat | None = None

    @classmethod
    def for_therapist(cls, app: web.Application, therapist: Therapist) -> Resolver:
        return cls(app, therapist_id=therapist.id, therapist_name=therapist.display_name)

    @classmethod
    def for_client(cls, app: web.Application, appointment: Appointment) -> Resolver:
        return cls(app, seat=client_seat(appointment))

    def ice_servers(self) -> tuple[IceServer, ...]:
        """The ICE servers for this socket, asked for before its ``hello``.

        A client's participant id is known from the cookie; a therapist's names the
        appointment, which only ``hello`` says, so their TURN user is the therapist's
        reference (``t-<id>``): opaque either way, since coturn logs user names.
        """
        if self.seat is not None:
            return ice_servers(self.app, self.seat.participant)
        assert self.therapist_id is not None
        return ice_servers(self.app, therapist_ref(self.therapist_id))

    async def resolve(self, hello: Hello) -> Seat | Watcher:
        if self.seat is not None:
            return self.seat
        therapist_id = self.therapist_id
        assert therapist_id is not None
        if hello.appointment is None:
            return Watcher(therapist=therapist_ref(therapist_id), name=self.therapist_name)
        appointment_id = parse_appointment_ref(hello.appointment or "")
        appointment = None
        if appointment_id is not None:
            async with self.app[SESSIONMAKER]() as db:
                appointment = await db.get(
                    Appointment,
                    appointment_id,
                    options=[
                        selectinload(Appointment.client),
                        selectinload(Appointment.therapist),
                    ],
                )
        if appointment is None or appointment.therapist_id != therapist_id:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such appointment")
        if appointment.state is not AppointmentStatus.SCHEDULED:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"the appointment is {appointment.status}")
        return therapist_seat(appointment, therapist_id, self.therapist_name)


def _ref_id(ref: str) -> int | None:
    """The number at the end of ``a-12``, ``t-3`` or ``c-12``."""
    number = ref.rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else None


#: How long the audit writer may take to write what is queued when the app stops.
STOP_TIMEOUT_SECONDS = 5.0


class AuditWriter:
    """Writes one audit event per room event, in order, off the signalling path.

    ``Ended`` also completes the appointment, so its join link stops working and a new
    socket for it is told the session is over.
    """

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._queue: asyncio.Queue[events.RoomEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def __call__(self, event: events.RoomEvent) -> None:
        self._queue.put_nowait(event)

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._write(event)
            except Exception:
                log.exception("could not write the audit event for %s", type(event).__name__)
            finally:
                self._queue.task_done()

    async def _write(self, event: events.RoomEvent) -> None:
        appointment_id = _ref_id(event.appointment)
        if appointment_id is None:
            return
        now = self._app[CLOCK]()
        async with self._app[SESSIONMAKER]() as db, db.begin():
            appointment = await db.get(Appointment, appointment_id)
            if appointment is None:
                return
            actor, actor_id = Actor.THERAPIST, appointment.therapist_id
            match event:
                case events.Joined(role=role) | events.Left(role=role):
                    action = "join" if isinstance(event, events.Joined) else "leave"
                    if role is Role.CLIENT:
                        actor, actor_id = Actor.CLIENT, appointment.client_id
                        if action == "leave":
                            appointment.admitted_at = None
                case events.Admitted():
                    action = "admit"
                    appointment.admitted_at = now
                case events.SentBack():
                    action = "send_back"
                    appointment.admitted_at = None
                case events.Ended():
                    action = "end"
                    appointment.admitted_at = None
                    with contextlib.suppress(IllegalTransition):
                        appointment.transition_to(AppointmentStatus.COMPLETED)
            audit.record(
                db,
                at=now,
                actor=actor,
                actor_id=actor_id,
                action=action,
                record_type="appointment",
                record_id=appointment.id,
            )

    async def flush(self) -> None:
        """Wait until every event so far is written."""
        await self._queue.join()

    async def stop(self, grace_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=grace_seconds)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


AUDIT_WRITER = web.AppKey("room_audit", AuditWriter)


async def switchboard_ctx(app: web.Application) -> AsyncIterator[None]:
    # The rooms read the app's clock, as the join window does: ``waitingSince`` and the
    # "you are early" status must agree with the appointment times they are compared to.
    fanout: Fanout
    redis_url = app[SETTINGS].redis_url
    # The instances sharing a database are one deployment: they share their rooms, and see
    # nothing of another deployment's on the same Redis.
    namespace = namespace_for(app[SETTINGS].database_url)
    if redis_url:
        # Imported only when configured: redis-py comes with the optional ``redis`` extra.
        from signalling.redis_fanout import RedisFanout

        redis_fanout = RedisFanout(redis_url)
        await redis_fanout.start()  # an unreachable Redis is retried, and shown by /readyz
        app[REDIS_FANOUT] = redis_fanout
        fanout = NamespacedFanout(redis_fanout, namespace)
    else:
        fanout = LocalFanout()
    leases = None
    if redis_url:
        from signalling.redis_leases import RedisLeases

        leases = RedisLeases(redis_url, namespace=namespace)
    switchboard = metrics.switchboard(app, fanout, Registry(clock=app[CLOCK]), leases)
    if redis_url:
        app[REDIS_FANOUT].on_reconnect.append(switchboard.resync)
    writer = AuditWriter(app)
    writer.start()
    switchboard.registry.add_event_listener(writer)
    app[SWITCHBOARD] = switchboard
    app[AUDIT_WRITER] = writer
    loop = asyncio.get_running_loop()
    limit = dt.timedelta(seconds=app[SETTINGS].reconnect_limit_seconds)
    sweepers = [
        loop.create_task(_prune_forever(switchboard)),
        loop.create_task(_give_up_forever(switchboard, limit)),
    ]
    if leases is not None:
        sweepers.append(loop.create_task(_keep_leases_forever(switchboard)))
    yield
    for sweeper in sweepers:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
    if leases is not None:
        # After the worksheets were saved (their context closes first): the rooms held here
        # are built again wherever their sockets reconnect.
        try:
            await switchboard.hand_over()
        except Exception:
            log.exception("could not hand the rooms over; their leases lapse on their own")
        await leases.aclose()
    await writer.stop(shutdown.grace(app, STOP_TIMEOUT_SECONDS))
    if redis_url:
        await app[REDIS_FANOUT].aclose()


PRUNE_INTERVAL = 60.0
GIVE_UP_INTERVAL = 1.0


async def _give_up_forever(switchboard: Switchboard, limit: dt.timedelta) -> None:
    """Once a second, mark as left whoever has been disconnected for ``limit`` (the room's
    clock decides), so that the other side is told."""
    while True:
        await asyncio.sleep(GIVE_UP_INTERVAL)
        try:
            await switchboard.give_up(limit)
        except Exception:
            log.exception("could not give up on disconnected participants")


async def _keep_leases_forever(switchboard: Switchboard) -> None:
    """Take the commands forwarded from other instances (as soon as the fan-out allows), and
    renew the leases of the rooms held here every few seconds."""
    from signalling.redis_leases import RENEW_SECONDS

    while True:
        try:
            await switchboard.start()
            await switchboard.keep_leases()
        except FanoutUnavailable as exc:
            log.warning("rooms across instances: %s", exc)
        except Exception:
            log.exception("could not renew the leases of the rooms held here")
        await asyncio.sleep(RENEW_SECONDS)


async def _prune_forever(switchboard: Switchboard) -> None:
    """Forget rooms nobody needs any more, so memory does not grow with every appointment.

    Ended rooms go too; their appointments are completed in the database, which is what
    refuses new sockets for them from then on.
    """
    while True:
        await asyncio.sleep(PRUNE_INTERVAL)
        gone = switchboard.registry.prune()
        if gone:
            log.info("pruned %d idle rooms", gone)
