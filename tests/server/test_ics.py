"""Calendar invites: the attendee's zone, a usable VTIMEZONE, stable UIDs, valid iCalendar."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from icalendar import Calendar, Event, Timezone

from server.ics import appointment_invite

START = dt.datetime(2026, 3, 30, 13, 0, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 3, 1, 8, 15, 30, tzinfo=dt.UTC)
UID = "appointment-42@alcove.example"


def invite(**changes: Any) -> bytes:
    arguments: dict[str, Any] = {
        "uid": UID,
        "sequence": 0,
        "start": START,
        "end": START + dt.timedelta(minutes=50),
        "summary": "Appointment with Sam Rivera",
        "description": "Join at https://alcove.example/join/abc a few minutes early.",
        "location_url": "https://alcove.example/join/abc",
        "organizer_email": "sam.rivera@example.com",
        "organizer_name": "Sam Rivera",
        "attendee_email": "client@example.org",
        "attendee_zone": "Europe/Berlin",
        "method": "REQUEST",
        "status": "CONFIRMED",
        "now": NOW,
    }
    arguments.update(changes)
    return appointment_invite(**arguments)


def parsed(body: bytes) -> tuple[Calendar, Event]:
    calendar = Calendar.from_ical(body)
    assert isinstance(calendar, Calendar)
    (event,) = calendar.walk("VEVENT")
    assert isinstance(event, Event)
    return calendar, event


def content_lines(body: bytes) -> list[str]:
    """The unfolded content lines."""
    return body.decode().replace("\r\n ", "").split("\r\n")


@pytest.mark.parametrize(
    ("zone", "line"),
    [
        ("Europe/Berlin", "DTSTART;TZID=Europe/Berlin:20260330T150000"),  # CEST, +02:00
        ("America/New_York", "DTSTART;TZID=America/New_York:20260330T090000"),  # EDT, -04:00
        ("Asia/Kathmandu", "DTSTART;TZID=Asia/Kathmandu:20260330T184500"),  # +05:45
        ("Australia/Lord_Howe", "DTSTART;TZID=Australia/Lord_Howe:20260331T000000"),  # +11:00
    ],
)
def test_dtstart_is_written_in_the_attendees_zone_and_converts_back_to_the_exact_instant(
    zone: str, line: str
) -> None:
    body = invite(attendee_zone=zone)
    calendar, event = parsed(body)

    assert line in content_lines(body)
    assert event["DTSTART"].params["TZID"] == zone
    assert event["DTEND"].params["TZID"] == zone
    assert event.decoded("DTSTART").astimezone(dt.UTC) == START
    assert event.decoded("DTEND") - event.decoded("DTSTART") == dt.timedelta(minutes=50)
    assert [tz.tz_name for tz in calendar.timezones] == [zone]


# Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC); 2026-10-25 03:00 CEST -> 02:00 CET
# (01:00 UTC), so 02:00-03:00 happens twice.  New York: 2026-11-01 02:00 EDT -> 01:00 EST.
@pytest.mark.parametrize(
    ("zone", "start", "line"),
    [
        ("Europe/Berlin", dt.datetime(2026, 3, 29, 0, 30), "TZID=Europe/Berlin:20260329T013000"),
        ("Europe/Berlin", dt.datetime(2026, 3, 29, 1, 0), "TZID=Europe/Berlin:20260329T030000"),
        ("Europe/Berlin", dt.datetime(2026, 10, 25, 0, 30), "TZID=Europe/Berlin:20261025T023000"),
        ("Europe/Berlin", dt.datetime(2026, 10, 25, 2, 0), "TZID=Europe/Berlin:20261025T030000"),
        (
            "America/New_York",
            dt.datetime(2026, 11, 1, 5, 30),
            "TZID=America/New_York:20261101T013000",
        ),
        ("America/New_York", dt.datetime(2026, 11, 2, 14), "TZID=America/New_York:20261102T090000"),
    ],
)
def test_the_embedded_vtimezone_alone_converts_a_start_near_a_change_to_the_exact_instant(
    zone: str, start: dt.datetime, line: str
) -> None:
    start = start.replace(tzinfo=dt.UTC)
    body = invite(attendee_zone=zone, start=start, end=start + dt.timedelta(minutes=50))
    calendar, event = parsed(body)

    assert f"DTSTART;{line}" in content_lines(body)
    (vtimezone,) = calendar.walk("VTIMEZONE")
    assert isinstance(vtimezone, Timezone)
    # Build the zone from the VTIMEZONE's own rules, not from the TZID name, as a
    # calendar without a zone database would; a wall time means its first occurrence.
    from_definition = vtimezone.to_tz(lookup_tzid=False)
    wall = event.decoded("DTSTART").replace(tzinfo=None)
    assert wall.replace(tzinfo=from_definition).astimezone(dt.UTC) == start


def test_a_start_in_the_second_occurrence_of_a_repeated_hour_is_written_in_utc() -> None:
    # 01:30 UTC on 2026-10-25 is the second 02:30 in Berlin; "TZID=...:02:30" would
    # mean the first, an hour earlier.
    start = dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)
    body = invite(start=start, end=start + dt.timedelta(minutes=50))
    calendar, event = parsed(body)

    assert "DTSTART:20261025T013000Z" in content_lines(body)
    assert "DTEND;TZID=Europe/Berlin:20261025T032000" in content_lines(body)
    assert event.decoded("DTSTART") == start
    assert [tz.tz_name for tz in calendar.timezones] == ["Europe/Berlin"]


def test_an_attendee_in_utc_gets_utc_times_and_no_vtimezone() -> None:
    body = invite(attendee_zone="UTC")
    calendar, event = parsed(body)

    assert "DTSTART:20260330T130000Z" in content_lines(body)
    assert calendar.timezones == []
    assert event.decoded("DTSTART") == START


def test_uid_sequence_method_status_and_dtstamp_are_as_given() -> None:
    calendar, event = parsed(invite(sequence=3))

    assert calendar["METHOD"] == "REQUEST"
    assert event["UID"] == UID
    assert event["SEQUENCE"] == 3
    assert event["STATUS"] == "CONFIRMED"
    assert event.decoded("DTSTAMP") == NOW
    assert "DTSTAMP:20260301T081530Z" in content_lines(invite(sequence=3))


def test_a_cancellation_keeps_the_uid_raises_the_sequence_and_says_cancel() -> None:
    _, booked = parsed(invite(sequence=1))
    cancelled_calendar, cancelled = parsed(invite(sequence=2, method="CANCEL", status="CANCELLED"))

    assert cancelled_calendar["METHOD"] == "CANCEL"
    assert cancelled["STATUS"] == "CANCELLED"
    assert cancelled["UID"] == booked["UID"] == UID
    assert (booked.sequence, cancelled.sequence) == (1, 2)
    assert cancelled.decoded("DTSTART") == booked.decoded("DTSTART")


def test_organizer_attendee_and_join_link_are_addressed_properly() -> None:
    _, event = parsed(invite())

    assert event["ORGANIZER"] == "mailto:sam.rivera@example.com"
    assert event["ORGANIZER"].params["CN"] == "Sam Rivera"
    assert event["ATTENDEE"] == "mailto:client@example.org"
    assert event["ATTENDEE"].params["RSVP"] == "FALSE"
    assert event["LOCATION"] == event["URL"] == "https://alcove.example/join/abc"
    assert event["CLASS"] == "PRIVATE"


def test_without_a_join_link_there_is_no_location() -> None:
    _, event = parsed(invite(location_url=None))

    assert "LOCATION" not in event and "URL" not in event


def test_the_output_is_valid_crlf_delimited_icalendar_folded_at_75_octets() -> None:
    body = invite(description="A long line of practical text. " * 10)

    assert body.startswith(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
    assert body.endswith(b"END:VCALENDAR\r\n")
    lines = body.split(b"\r\n")[:-1]
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert all(len(line) <= 75 for line in lines)
    assert any(line.startswith(b" ") for line in lines)  # the long description was folded
    assert parsed(body)[1]["DESCRIPTION"] == "A long line of practical text. " * 10


def test_text_is_escaped_so_it_cannot_add_properties() -> None:
    sneaky = "Session; notes, here\r\nDESCRIPTION:injected"

    body = invite(summary=sneaky)

    assert not any(line.startswith("DESCRIPTION:injected") for line in content_lines(body))
    assert parsed(body)[1]["SUMMARY"] == sneaky.replace("\r\n", "\n")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attendee_zone": "Mars/Olympus_Mons"}, "unknown time zone"),
        ({"attendee_zone": "America"}, "unknown time zone"),
        ({"method": "CANCEL"}, "METHOD:CANCEL goes with STATUS:CANCELLED"),
        ({"status": "CANCELLED"}, "METHOD:REQUEST goes with STATUS:CONFIRMED"),
        ({"start": dt.datetime(2026, 3, 30, 13)}, "start must be an aware datetime"),
        ({"end": START}, "must end after it starts"),
        ({"sequence": -1}, "SEQUENCE"),
        ({"uid": " "}, "UID"),
        ({"attendee_email": "client@example.org\r\nX-EVIL:1"}, "single line"),
        ({"organizer_name": "Sam\nRivera"}, "single line"),
        ({"attendee_email": "not an address"}, "not an e-mail address"),
    ],
)
def test_invalid_invites_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        invite(**changes)
