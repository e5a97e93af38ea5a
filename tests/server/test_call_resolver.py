"""server.calls.Resolver: the seat a socket's ``hello`` may take, kept without the rows it
was made from (a resolver lives as long as its socket)."""

from __future__ import annotations

import datetime as dt
import gc
import weakref
from typing import Any

from aiohttp import web

from server.calls import Resolver
from server.models import Appointment, Client, Therapist
from signalling.lobby import Watcher
from signalling.messages import Hello
from signalling.participants import Seat
from signalling.parts import Role

START = dt.datetime(2026, 12, 7, 18, 0, tzinfo=dt.UTC)


def rows() -> tuple[Therapist, Appointment]:
    therapist = Therapist(id=3, display_name="Sam Rivera", welcome_text="Take a seat.")
    client = Client(id=5, name="Alex Morgan")
    appointment = Appointment(
        id=12,
        therapist_id=3,
        client_id=5,
        starts_at=START,
        ends_at=START + dt.timedelta(minutes=50),
        admitted_at=None,
    )
    appointment.therapist = therapist
    appointment.client = client
    return therapist, appointment


async def test_a_clients_resolver_keeps_their_seat_and_none_of_the_rows() -> None:
    appointment = rows()[1]
    held: list[weakref.ref[Any]] = [weakref.ref(appointment), weakref.ref(appointment.client)]
    resolver = Resolver.for_client(web.Application(), appointment)
    del appointment
    gc.collect()

    assert [ref() for ref in held] == [None, None]
    seat = await resolver.resolve(Hello(version=1))
    assert seat == Seat(
        participant="c-12",
        role=Role.CLIENT,
        appointment="a-12",
        therapist="t-3",
        name="Alex Morgan",
        start=START,
        end=START + dt.timedelta(minutes=50),
        welcome="Take a seat.",
    )


async def test_a_therapists_resolver_keeps_their_name_and_not_their_row() -> None:
    therapist = rows()[0]
    held = weakref.ref(therapist)
    resolver = Resolver.for_therapist(web.Application(), therapist)
    del therapist
    gc.collect()

    assert held() is None
    assert await resolver.resolve(Hello(version=1)) == Watcher(therapist="t-3", name="Sam Rivera")
