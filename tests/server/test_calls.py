"""Rooms through the running app: the waiting room, who may act on whose client, media
signalling before admission, the audit trail of each act, and the end of an appointment."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.models import Appointment, AppointmentStatus, AuditEvent, Therapist
from tests.conftest import FakeClock, sign_in
from tests.server.test_ws import (
    Cast,
    kinds,
    ref,
    round_trip,
    serving,
    therapist_with,
)
from tests.support.arrange import make_appointment
from tests.support.signalling_client import Json, SignallingClient

HttpClient = TestClient[Any, Any]
SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CANDIDATE: Json = {
    "candidate": "candidate:1 1 udp 2122260223 192.0.2.7 54400 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}
#: What a client who waits, untouched, has received.
WAITED = ["welcome", "waiting"]


@pytest.fixture
async def cast(migrated_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    async with serving(migrated_url, tmp_path / "var", clock) as served:
        yield served


def instant(value: dt.datetime) -> str:
    """How the protocol writes ``value``."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def lobby_entry(socket: SignallingClient, appointment: Appointment) -> Json:
    """The appointment's client in the next ``lobby`` the socket receives."""
    lobby = await socket.expect("lobby")
    entries: list[Json] = [e for e in lobby["participants"] if e["appointment"] == ref(appointment)]
    assert len(entries) == 1, lobby
    return entries[0]


async def latest_lobby(socket: SignallingClient) -> list[Json]:
    """The lobby as the socket last heard it, once everything sent to it has arrived."""
    await round_trip(socket)
    lobbies = socket.of_type("lobby")
    assert lobbies, "no lobby was received"
    participants: list[Json] = lobbies[-1]["participants"]
    return participants


async def appointment_status(db: async_sessionmaker[AsyncSession], appointment: Appointment) -> str:
    async with db() as session:
        status = await session.scalar(
            select(Appointment.status).where(Appointment.id == appointment.id)
        )
    assert status is not None
    return status


async def audit_trail(db: async_sessionmaker[AsyncSession]) -> list[AuditEvent]:
    async with db() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all())


# --- another therapist ---------------------------------------------------------------


async def test_another_therapists_dashboard_can_neither_admit_message_send_back_nor_end(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(waiting_room, waiting_token), (in_call, in_call_token)] = await therapist_with(
        db, clock, "sam@example.com", "Alex Morgan", "Jordan Lee"
    )
    await therapist_with(db, clock, "bea@example.com")
    waiting = await cast.client(waiting_token)
    admitted = await cast.client(in_call_token)
    owner = await cast.therapist("sam@example.com")
    ids = {e["appointment"]: e["participant"] for e in await latest_lobby(owner)}
    await owner.send({"type": "admit", "participant": ids[ref(in_call)]})
    await admitted.expect("admitted")
    intruder = await cast.therapist("bea@example.com")

    assert (await intruder.expect("lobby"))["participants"] == []
    attempts: list[Json] = [
        {"type": "admit", "participant": ids[ref(waiting_room)]},
        {"type": "message", "participant": ids[ref(waiting_room)], "text": "Come in"},
        {"type": "send-back", "participant": ids[ref(in_call)]},
        {"type": "end", "appointment": ref(waiting_room)},
        {"type": "end", "appointment": ref(in_call)},
    ]
    for number, attempt in enumerate(attempts):
        await intruder.send({**attempt, "id": f"m-{number}"})
        error = await intruder.expect("error")
        assert (error["error"], error["id"]) == ("not-found", f"m-{number}")

    await round_trip(intruder, waiting, admitted)
    assert intruder.close_code is None
    assert kinds(waiting) == WAITED
    assert kinds(admitted) == [*WAITED, "admitted"]
    states = {e["appointment"]: (e["state"], e["online"]) for e in await latest_lobby(owner)}
    assert states == {ref(waiting_room): ("waiting", True), ref(in_call): ("admitted", True)}
    assert await appointment_status(db, waiting_room) == AppointmentStatus.SCHEDULED
    assert await appointment_status(db, in_call) == AppointmentStatus.SCHEDULED


async def test_another_therapist_naming_the_appointment_in_hello_gets_not_found_and_1008(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(theirs, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    _, [(own, _)] = await therapist_with(db, clock, "bea@example.com", "Jordan Lee")
    client = await cast.client(token)
    owner = await cast.therapist("sam@example.com")
    target = await lobby_entry(owner, theirs)
    http = await cast.therapist_http("bea@example.com")
    intruding = await cast.connect(http)

    await intruding.send({"type": "hello", "version": 1, "appointment": ref(theirs), "id": "h"})

    assert await intruding.wait_closed() == 1008
    assert [(m["type"], m.get("error"), m.get("id")) for m in intruding.received] == [
        ("error", "not-found", "h")
    ]
    own_page = await cast.connect(http)
    await own_page.hello(appointment=ref(own))
    for attempt in (
        {"type": "admit", "participant": target["participant"]},
        {"type": "message", "participant": target["participant"], "text": "Come in"},
        {"type": "send-back", "participant": target["participant"]},
        {"type": "end", "appointment": ref(theirs)},
    ):
        await own_page.send(attempt)
        assert (await own_page.expect("error"))["error"] == "not-found"
    await round_trip(client)
    assert kinds(client) == WAITED
    [entry] = await latest_lobby(owner)
    assert (entry["state"], entry["online"]) == ("waiting", True)


# --- media signalling before admission -----------------------------------------------


async def test_an_unadmitted_clients_offers_and_candidates_reach_nobody(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(appointment, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    call_page = await cast.therapist("sam@example.com", appointment)
    dashboard = await cast.therapist("sam@example.com")
    client = await cast.client(token)
    [entry] = await latest_lobby(call_page)

    sent: list[Json] = [
        {"type": "offer", "sdp": SDP, "id": "o-1"},
        {"type": "candidate", "candidate": CANDIDATE, "id": "c-1"},
        {"type": "answer", "sdp": SDP, "id": "a-1"},
        {"type": "candidate", "candidate": None, "id": "c-2"},
    ]
    for message in sent:
        await client.send(message)
    errors = [await client.expect("error") for _ in sent]

    assert [(e["error"], e["id"]) for e in errors] == [("not-admitted", m["id"]) for m in sent]
    await round_trip(call_page, dashboard)
    for therapist in (call_page, dashboard):
        assert therapist.of_type("offer", "answer", "candidate") == []
    # Nothing was held back for later either: once in the call, the first thing relayed
    # is what the client sends then.
    await call_page.send({"type": "admit", "participant": entry["participant"]})
    await call_page.expect("peer-joined")
    await client.send({"type": "candidate", "candidate": None})
    assert await call_page.expect("candidate") == {"type": "candidate", "candidate": None}
    await round_trip(call_page)
    assert len(call_page.of_type("offer", "answer", "candidate")) == 1


# --- early arrivals ------------------------------------------------------------------


@pytest.mark.parametrize("first", ["therapist", "client"])
async def test_a_client_ten_minutes_early_waits_although_the_call_page_is_open(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock, first: str
) -> None:
    _, [(appointment, token)] = await therapist_with(
        db, clock, "sam@example.com", "Alex Morgan", starts_in=dt.timedelta(minutes=10)
    )
    if first == "therapist":
        call_page = await cast.therapist("sam@example.com", appointment)
        client = await cast.connect(await cast.client_http(token))
        welcome = await client.hello()
    else:
        client = await cast.connect(await cast.client_http(token))
        welcome = await client.hello()
        call_page = await cast.therapist("sam@example.com", appointment)

    entry = (await latest_lobby(call_page))[0]
    await call_page.send({"type": "message", "participant": entry["participant"], "text": "Soon"})
    await client.expect("message-to-waiting")

    assert welcome["state"] == "waiting"
    assert kinds(client) == [*WAITED, "message-to-waiting"]
    assert call_page.of_type("peer-joined") == []
    assert (entry["state"], entry["online"]) == ("waiting", True)


# --- the waiting room ----------------------------------------------------------------


async def test_the_therapists_message_reaches_the_waiting_client_at_once(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(appointment, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    client = await cast.client(token)
    dashboard = await cast.therapist("sam@example.com")
    entry = await lobby_entry(dashboard, appointment)
    text = "I'm running five minutes late, sorry!"

    await dashboard.send({"type": "message", "participant": entry["participant"], "text": text})

    assert await client.expect("message-to-waiting", within=2) == {
        "type": "message-to-waiting",
        "text": text,
    }


async def test_the_waiting_message_carries_the_therapists_welcome_text(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    welcome = "Welcome! Make yourself comfortable, I will let you in shortly."
    _, [(_, token)] = await therapist_with(
        db, clock, "sam@example.com", "Alex Morgan", welcome=welcome
    )

    client = await cast.client(token)

    assert (await client.expect("waiting"))["welcome"] == welcome


async def test_the_dashboard_lobby_shows_the_clients_name_devices_and_waiting_since(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(appointment, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    dashboard = await cast.therapist("sam@example.com")
    assert (await dashboard.expect("lobby"))["participants"] == []
    arrived = clock.now = clock.now + dt.timedelta(minutes=2, seconds=30)

    await cast.client(token, devices={"camera": "ok", "microphone": "denied"})

    entry = await lobby_entry(dashboard, appointment)
    assert entry == {
        "participant": entry["participant"],
        "appointment": ref(appointment),
        "name": "Alex Morgan",
        "start": instant(appointment.starts_at),
        "end": instant(appointment.ends_at),
        "waitingSince": instant(arrived),
        "devices": {"camera": "ok", "microphone": "denied"},
        "state": "waiting",
        "online": True,
    }


async def test_send_back_moves_an_admitted_client_back_to_the_waiting_room(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    welcome = "Make yourself comfortable."
    _, [(appointment, token)] = await therapist_with(
        db, clock, "sam@example.com", "Alex Morgan", welcome=welcome
    )
    client = await cast.client(token)
    call_page = await cast.therapist("sam@example.com", appointment)
    entry = await lobby_entry(call_page, appointment)
    await call_page.send({"type": "admit", "participant": entry["participant"]})
    await client.expect("peer-joined")
    await call_page.expect("peer-joined")

    await call_page.send({"type": "send-back", "participant": entry["participant"]})

    await call_page.expect("peer-left")
    await client.expect("sent-back")
    await client.expect("waiting")
    assert kinds(client) == [*WAITED, "admitted", "peer-joined", "sent-back", "waiting"]
    assert client.received[-1]["welcome"] == welcome
    [entry] = await latest_lobby(call_page)
    assert entry["state"] == "waiting"


# --- the audit trail and the end -----------------------------------------------------


class Trail:
    """The audit events written since the last look."""

    def __init__(self, cast: Cast, db: async_sessionmaker[AsyncSession]) -> None:
        self._cast = cast
        self._db = db
        self._seen = 0

    async def since(self) -> list[tuple[str, str, str | None, str | None]]:
        await self._cast.flush_audit()
        events = [e for e in await audit_trail(self._db) if e.record_type == "appointment"]
        new, self._seen = events[self._seen :], len(events)
        return [(e.action, e.actor_type, e.actor_id, e.record_id) for e in new]


async def test_join_admit_send_back_leave_and_end_each_write_exactly_one_audit_event(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    therapist, [(appointment, token)] = await therapist_with(
        db, clock, "sam@example.com", "Alex Morgan"
    )
    trail = Trail(cast, db)
    http = await cast.client_http(token)
    assert [action for action, *_ in await trail.since()] == ["join_link_opened"]
    me, them, record = str(therapist.id), str(appointment.client_id), str(appointment.id)
    text = "Alex, I'm running five minutes late"

    client = await cast.connect(http)
    await client.hello(devices={"camera": "ok", "microphone": "ok"})
    assert await trail.since() == [("join", "client", them, record)]
    call_page = await cast.therapist("sam@example.com", appointment)
    assert await trail.since() == [("join", "therapist", me, record)]
    dashboard = await cast.therapist("sam@example.com")
    entry = await lobby_entry(dashboard, appointment)
    await dashboard.send({"type": "message", "participant": entry["participant"], "text": text})
    await client.expect("message-to-waiting")
    assert await trail.since() == []

    await dashboard.send({"type": "admit", "participant": entry["participant"]})
    await client.expect("peer-joined")
    await dashboard.send({"type": "admit", "participant": entry["participant"]})  # no change
    await round_trip(dashboard)
    assert await trail.since() == [("admit", "therapist", me, record)]

    await call_page.send({"type": "send-back", "participant": entry["participant"]})
    await client.expect("sent-back")
    assert await trail.since() == [("send_back", "therapist", me, record)]

    await client.send({"type": "leave"})
    assert await client.wait_closed() == 1000
    assert await trail.since() == [("leave", "client", them, record)]

    client = await cast.connect(http)  # back, with the cookie the link gave
    await client.hello()
    assert await trail.since() == [("join", "client", them, record)]
    await dashboard.send({"type": "end", "appointment": ref(appointment)})
    await client.expect("ended")
    await dashboard.send({"type": "end", "appointment": ref(appointment)})  # no change
    await round_trip(dashboard)
    assert await trail.since() == [("end", "therapist", me, record)]

    stored = json.dumps(
        [[getattr(e, c.key) for c in AuditEvent.__table__.columns] for e in await audit_trail(db)],
        default=str,
    )
    names = ("Alex", "Morgan", therapist.display_name, therapist.email, "example.com")
    for content in (*names, text, "late", token):
        assert content not in stored


async def test_end_completes_the_appointment_and_nobody_gets_back_into_it(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(appointment, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    http = await cast.client_http(token)
    client = await cast.connect(http)
    await client.hello()
    call_page = await cast.therapist("sam@example.com", appointment)
    dashboard = await cast.therapist("sam@example.com")
    await lobby_entry(dashboard, appointment)

    await dashboard.send({"type": "end", "appointment": ref(appointment)})

    for socket in (client, call_page):
        assert await socket.wait_closed() == 4003
        assert socket.received[-1] == {"type": "ended", "appointment": ref(appointment)}
    assert await latest_lobby(dashboard) == []
    assert dashboard.close_code is None
    await cast.flush_audit()
    assert await appointment_status(db, appointment) == AppointmentStatus.COMPLETED

    again = await cast.connect(http)
    assert await again.wait_closed() == 4003
    assert again.received == [{"type": "ended", "appointment": ref(appointment)}]

    async with http.get(f"{cast.url}/join/{token}", allow_redirects=False) as response:
        assert response.status == 200
        assert "This session is over" in await response.text()

    page_again = await cast.connect(await cast.therapist_http("sam@example.com"))
    await page_again.send({"type": "hello", "version": 1, "appointment": ref(appointment)})
    assert await page_again.wait_closed() == 1008
    assert [(m["type"], m.get("error")) for m in page_again.received] == [("error", "not-found")]


# --- appointment ids that are not what the server hands out --------------------------


async def test_a_therapist_hello_naming_a_malformed_appointment_gets_not_found_and_1008(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(appointment, _)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    assert ref(appointment) == "a-1"  # so that "a-01" or "a-١" look like this one
    http = await cast.therapist_http("sam@example.com")
    named = ["a-01", "a-١", "a-²", "a-+1", "a-99999999999", "a-" + "9" * 19, "a-", "a-1-2", "A-1"]
    outcomes = {}

    for appointment_ref in named:
        socket = await cast.connect(http)
        await socket.send({"type": "hello", "version": 1, "appointment": appointment_ref})
        code = await socket.wait_closed()
        outcomes[appointment_ref] = (code, [(m["type"], m.get("error")) for m in socket.received])

    assert outcomes == {n: (1008, [("error", "not-found")]) for n in named}


async def test_the_call_page_of_a_malformed_appointment_id_is_404(
    client: HttpClient, therapist: Therapist, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    mine, _ = await make_appointment(db, therapist.id, starts_at=clock.now)
    assert mine.id == 1
    assert (await sign_in(client)).status == 303
    raws = ["01", "١", "²", "+1", "99999999999", "9" * 30]

    statuses = {
        raw: (await client.get(f"/call/{raw}", allow_redirects=False)).status for raw in raws
    }

    assert statuses == dict.fromkeys(raws, 404)
    assert (await client.get("/call/1", allow_redirects=False)).status == 200


async def test_a_therapist_sees_their_own_call_page_but_not_someone_elses(
    client: HttpClient,
    therapist: Therapist,
    db: async_sessionmaker[AsyncSession],
    clock: FakeClock,
) -> None:
    _, [(theirs, _)] = await therapist_with(db, clock, "bea@example.com", "Jordan Lee")
    mine, _ = await make_appointment(db, therapist.id, starts_at=clock.now)
    assert (await sign_in(client)).status == 303

    own = await client.get(f"/call/{mine.id}", allow_redirects=False)
    other = await client.get(f"/call/{theirs.id}", allow_redirects=False)

    assert own.status == 200
    assert other.status == 404
    assert "Jordan Lee" not in await other.text()
