"""Worksheets in a call: who may open, read and write them, and who is sent what.

The switchboard hands this module every worksheet message from a live participant. Only
the appointment's therapist and its client may touch the worksheet open in the call, and
the client only while admitted: a client in the waiting room is refused (``not-admitted``)
and is sent nothing — every delivery checks the recipient's state at that moment.

Which worksheet is open in which appointment is stored (``call_worksheets``), so after a
restart, or on another instance, a participant who reconnects gets it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from sqlalchemy import delete, select

from server import worksheet_store
from server.audit import Actor
from server.calls import SWITCHBOARD, appointment_ref, parse_appointment_ref
from server.keys import CLOCK, SESSIONMAKER
from server.live_document import WorksheetGone
from server.models import Appointment
from server.worksheet_live import LiveWorksheets
from server.worksheet_models import CallWorksheet
from server.worksheets import LimitError, SyncError
from signalling import events
from signalling.effects import Handle
from signalling.errors import ErrorCode, ProtocolError
from signalling.messages import Message
from signalling.participants import ADMITTED, IN_CALL, Participant
from signalling.parts import Role
from signalling.switchboard import Switchboard
from signalling.worksheet_messages import (
    BASE64,
    Editing,
    WorksheetClose,
    WorksheetClosed,
    WorksheetCommand,
    WorksheetOpen,
    Yjs,
    parse_worksheet_ref,
    worksheet_ref,
)

log = logging.getLogger(__name__)

LIVE_WORKSHEETS = web.AppKey("live_worksheets", LiveWorksheets)

_NOT_FOUND = "no such worksheet in this call"


def _named(message: Message) -> int | None:
    """The worksheet ``message`` names, if it names one."""
    return parse_worksheet_ref(getattr(message, "worksheet", "") or "")


def _may_see(participant: Participant | None) -> bool:
    return participant is not None and participant.state in (ADMITTED, IN_CALL)


@dataclass(frozen=True)
class _People:
    therapist_id: int
    client_id: int


class CallSubscriber:
    """A call participant as a worksheet subscriber, reached through the switchboard."""

    def __init__(self, switchboard: Switchboard, participant: str, actor: tuple[Actor, int]):
        self._switchboard = switchboard
        self._participant = participant
        #: The participant id (read on every keystroke: an attribute, not a property).
        self.key: Final = participant
        self.actor: Final = actor

    @property
    def connection(self) -> Handle | None:
        participant = self._switchboard.registry.participant(self._participant)
        return participant.handle if participant is not None else None

    async def deliver(self, message: Message) -> None:
        handle = self._reachable()
        if handle is not None:
            await self._switchboard.send(handle, message)

    async def relay(self, frame: str) -> None:
        handle = self._reachable()
        if handle is not None:
            await self._switchboard.send_frame(handle, Yjs.TYPE, frame)

    def _reachable(self) -> Handle | None:
        """The participant's connection, if they are on one and may see the worksheet now."""
        participant = self._switchboard.registry.participant(self._participant)
        return participant.handle if participant is not None and _may_see(participant) else None


class CallWorksheets:
    """The ``WorksheetHandler`` of the app's switchboard."""

    def __init__(self, app: web.Application, live: LiveWorksheets) -> None:
        self._app = app
        self._live = live
        self._switchboard = app[SWITCHBOARD]
        self._people: dict[int, _People] = {}
        #: The worksheet open in each call this instance has seen (None: none is).
        self._open_ids: dict[int, int | None] = {}
        #: Each call's participants as subscribers, made once (every keystroke needs one).
        self._subscribers: dict[int, dict[str, CallSubscriber]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # Messages

    async def handle(self, sender: Participant, message: WorksheetCommand) -> None:
        appointment_id = parse_appointment_ref(sender.appointment)
        if appointment_id is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, _NOT_FOUND)
        if not _may_see(sender):
            raise ProtocolError(
                ErrorCode.NOT_ADMITTED, f"{message.TYPE} refused: you have not been admitted"
            )
        match message:
            case WorksheetOpen():
                if message.appointment != sender.appointment:
                    raise ProtocolError(ErrorCode.NOT_FOUND, "no such appointment")
                await self._open(appointment_id, message)
            case WorksheetClose():
                await self._close(appointment_id, await self._current(appointment_id, message))
            case Yjs():
                worksheet_id = await self._current(appointment_id, message)
                subscriber = await self._subscriber(appointment_id, sender)
                if not self._live.is_subscribed(worksheet_id, sender.id):
                    await self._attach(appointment_id, worksheet_id, sender)
                await self._receive(worksheet_id, subscriber, message.data)
            case Editing():
                worksheet_id = await self._current(appointment_id, message)
                subscriber = await self._subscriber(appointment_id, sender)
                try:
                    await self._live.editing(worksheet_id, subscriber, message.field)
                except WorksheetGone:
                    raise ProtocolError(ErrorCode.NOT_FOUND, _NOT_FOUND) from None

    async def keystroke(
        self, sender: Participant, worksheet: str, data: str, frame: str | None = None
    ) -> bool:
        """A ``yjs`` message not parsed, taken if the worksheet it names (as
        ``worksheet_ref`` writes it) is open in the call and ``sender`` may write it and has
        it open here: everything a keystroke needs is then known without awaiting anything.
        ``False`` (having done nothing) otherwise, and for data its decoder refuses:
        ``handle`` says what is wrong.  ``frame``, the frame itself, may be passed on."""
        appointment_id = parse_appointment_ref(sender.appointment)
        if appointment_id is None or not _may_see(sender):
            return False
        worksheet_id = self._open_ids.get(appointment_id)
        if worksheet_id is None or worksheet != worksheet_ref(worksheet_id):
            return False
        subscriber = self._known_subscriber(appointment_id, sender.id)
        if subscriber is None or not self._live.is_subscribed(worksheet_id, sender.id):
            return False
        try:
            update = BASE64.decode(data, "data")
        except ProtocolError:
            return False
        await self._receive(worksheet_id, subscriber, update, frame)
        return True

    async def _receive(
        self, worksheet_id: int, subscriber: CallSubscriber, data: bytes, frame: str | None = None
    ) -> None:
        try:
            await self._live.receive(worksheet_id, subscriber, data, frame)
        except WorksheetGone:
            raise ProtocolError(ErrorCode.NOT_FOUND, _NOT_FOUND) from None
        except (SyncError, LimitError) as error:
            raise ProtocolError(ErrorCode.WORKSHEET_REFUSED, str(error)) from None

    async def _open(self, appointment_id: int, message: WorksheetOpen) -> None:
        people = await self._people_of(appointment_id)
        async with self._app[SESSIONMAKER]() as db, db.begin():
            if message.worksheet is not None:
                number = parse_worksheet_ref(message.worksheet)
                found = (
                    None
                    if number is None
                    else await worksheet_store.find_worksheet(
                        db, number, therapist_id=people.therapist_id
                    )
                )
                if found is None or found.client_id != people.client_id:
                    raise ProtocolError(ErrorCode.NOT_FOUND, "no such worksheet for this client")
                worksheet_id = found.id
            else:
                assert message.template is not None
                template = await worksheet_store.find_template(
                    db, people.therapist_id, message.template
                )
                if template is None:
                    raise ProtocolError(ErrorCode.NOT_FOUND, "no such template")
                created = await worksheet_store.create_worksheet(
                    db,
                    therapist_id=people.therapist_id,
                    client_id=people.client_id,
                    appointment_id=appointment_id,
                    template_key=message.template,
                    template=template,
                    now=self._app[CLOCK](),
                )
                worksheet_id = created.id
            previous = await db.get(CallWorksheet, appointment_id)
            if previous is None:
                db.add(CallWorksheet(appointment_id=appointment_id, worksheet_id=worksheet_id))
                previous_id = None
            else:
                previous_id, previous.worksheet_id = previous.worksheet_id, worksheet_id
        self._open_ids[appointment_id] = worksheet_id
        if previous_id is not None and previous_id != worksheet_id:
            await self._put_away(appointment_id, previous_id)
        for participant in self._members(appointment_id):
            await self._attach(appointment_id, worksheet_id, participant)

    async def _close(self, appointment_id: int, worksheet_id: int) -> None:
        async with self._app[SESSIONMAKER]() as db, db.begin():
            await db.execute(
                delete(CallWorksheet).where(CallWorksheet.appointment_id == appointment_id)
            )
        self._open_ids[appointment_id] = None
        await self._put_away(appointment_id, worksheet_id)

    async def _put_away(self, appointment_id: int, worksheet_id: int) -> None:
        """Take the worksheet out of the call: saved, and the participants told."""
        await self._live.flush(worksheet_id)
        closed = WorksheetClosed(worksheet=worksheet_ref(worksheet_id))
        for participant in self._members(appointment_id, all_states=True):
            if participant.id in self._live.subscribers(worksheet_id):
                await self._live.detach(worksheet_id, participant.id)
                subscriber = await self._subscriber(appointment_id, participant)
                await subscriber.deliver(closed)

    # Who is in it

    async def _current(self, appointment_id: int, message: Message) -> int:
        """The id of the worksheet open in the call, which ``message`` must name."""
        open_id = await self._open_worksheet(appointment_id)
        if open_id is None or _named(message) != open_id:
            raise ProtocolError(ErrorCode.NOT_FOUND, _NOT_FOUND)
        return open_id

    async def _open_worksheet(self, appointment_id: int) -> int | None:
        """The worksheet open in the call: remembered once read, since every keystroke asks."""
        if appointment_id in self._open_ids:
            return self._open_ids[appointment_id]
        async with self._app[SESSIONMAKER]() as db:
            found = await db.scalar(
                select(CallWorksheet.worksheet_id).where(
                    CallWorksheet.appointment_id == appointment_id
                )
            )
        # A worksheet opened or closed while this was read is newer than what was read.
        return self._open_ids.setdefault(appointment_id, found)

    def _members(self, appointment_id: int, *, all_states: bool = False) -> list[Participant]:
        room = self._switchboard.registry.room(appointment_ref(appointment_id))
        if room is None:
            return []
        return [p for p in room.members() if all_states or _may_see(p)]

    async def _people_of(self, appointment_id: int) -> _People:
        people = self._people.get(appointment_id)
        if people is None:
            async with self._app[SESSIONMAKER]() as db:
                appointment = await db.get(Appointment, appointment_id)
            if appointment is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, "no such appointment")
            people = _People(appointment.therapist_id, appointment.client_id)
            self._people[appointment_id] = people
        return people

    def _known_subscriber(self, appointment_id: int, participant_id: str) -> CallSubscriber | None:
        return self._subscribers.get(appointment_id, {}).get(participant_id)

    async def _subscriber(self, appointment_id: int, participant: Participant) -> CallSubscriber:
        subscriber = self._known_subscriber(appointment_id, participant.id)
        if subscriber is None:
            people = await self._people_of(appointment_id)
            actor = (
                (Actor.THERAPIST, people.therapist_id)
                if participant.role is Role.THERAPIST
                else (Actor.CLIENT, people.client_id)
            )
            subscriber = CallSubscriber(self._switchboard, participant.id, actor)
            self._subscribers.setdefault(appointment_id, {})[participant.id] = subscriber
        return subscriber

    async def _attach(
        self, appointment_id: int, worksheet_id: int, participant: Participant
    ) -> None:
        subscriber = await self._subscriber(appointment_id, participant)
        try:
            await self._live.attach(worksheet_id, subscriber)
        except WorksheetGone:
            log.info("worksheet %s is gone; not shown", worksheet_id)

    # Room events

    def on_event(self, event: events.RoomEvent) -> None:
        """Called by the registry after each act: (re)joins and admissions get the open
        worksheet, an ended call saves and puts it away."""
        match event:
            case events.Joined() | events.Admitted():
                self._spawn(self._rejoin(event.appointment, event.participant))
            case events.SentBack() | events.Left():
                self._spawn(self._leave(event.appointment, event.participant))
            case events.Ended():
                self._spawn(self._ended(event.appointment))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rejoin(self, appointment: str, participant_id: str) -> None:
        appointment_id = parse_appointment_ref(appointment)
        participant = self._switchboard.registry.participant(participant_id)
        if appointment_id is None or not _may_see(participant) or participant is None:
            return
        worksheet_id = await self._open_worksheet(appointment_id)
        if worksheet_id is not None:
            await self._attach(appointment_id, worksheet_id, participant)

    async def _leave(self, appointment: str, participant_id: str) -> None:
        appointment_id = parse_appointment_ref(appointment)
        if appointment_id is None:
            return
        worksheet_id = await self._open_worksheet(appointment_id)
        if worksheet_id is not None:
            await self._live.detach(worksheet_id, participant_id)

    async def _ended(self, appointment: str) -> None:
        appointment_id = parse_appointment_ref(appointment)
        if appointment_id is None:
            return
        worksheet_id = await self._open_worksheet(appointment_id)
        if worksheet_id is not None:
            await self._close(appointment_id, worksheet_id)
        self._people.pop(appointment_id, None)
        self._open_ids.pop(appointment_id, None)
        self._subscribers.pop(appointment_id, None)

    async def drain(self) -> None:
        """Wait for the event work under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def worksheets_ctx(app: web.Application) -> AsyncIterator[None]:
    live = LiveWorksheets(app[SESSIONMAKER], app[CLOCK])
    handler = CallWorksheets(app, live)
    app[LIVE_WORKSHEETS] = live
    switchboard = app[SWITCHBOARD]
    switchboard.worksheets = handler
    switchboard.registry.add_event_listener(handler.on_event)
    yield
    switchboard.worksheets = None
    with contextlib.suppress(Exception):
        await handler.drain()
    await live.close()
