"""Calendar invites for appointments: RFC 5545 iCalendar, sent as iTIP (RFC 5546).

An invite is written in the *attendee's* zone: ``DTSTART;TZID=Europe/Berlin``
with a ``VTIMEZONE`` for Europe/Berlin generated from zoneinfo.  A client in
Berlin then sees Berlin time whatever the server's or the therapist's zone, and
a calendar that ignores ``TZID`` names and trusts only the embedded definition
still lands on the right instant.  UTC itself is written as UTC (``...Z``), and
so is the one instant a ``TZID`` cannot name: one in the second pass through
the hour repeated when clocks go back (see ``_in_zone``).

One appointment keeps one ``UID`` for life and each change raises ``SEQUENCE``,
so calendars update or remove the event they already hold instead of adding a
second one.  Cancelling sends ``METHOD:CANCEL`` with ``STATUS:CANCELLED``.

What goes in must not reveal therapy.  Invites pass through e-mail providers
and shared or synced calendars, so callers pass no clinical details: no
diagnosis, notes, worksheet names or reasons for the visit -- a neutral summary
("Appointment with Sam Rivera") and practical text (how to join) only.  This
module cannot tell the difference, so it takes exactly what it is given; the
event is also marked ``CLASS:PRIVATE`` so a calendar shared with others shows
the time as busy without the details.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event, vCalAddress

__all__ = ["PRODID", "Method", "Status", "appointment_invite"]

PRODID = "-//Alcove//Alcove appointments//EN"

Method = Literal["REQUEST", "CANCEL"]
Status = Literal["CONFIRMED", "CANCELLED"]

_STATUS_FOR_METHOD: dict[str, str] = {"REQUEST": "CONFIRMED", "CANCEL": "CANCELLED"}


def appointment_invite(
    *,
    uid: str,
    sequence: int,
    start: dt.datetime,
    end: dt.datetime,
    summary: str,
    description: str,
    location_url: str | None,
    organizer_email: str,
    organizer_name: str,
    attendee_email: str,
    attendee_zone: str,
    method: Method,
    status: Status,
    now: dt.datetime,
) -> bytes:
    """One appointment as a CRLF-delimited ``text/calendar`` body.

    ``uid`` is stable per appointment (e.g. ``appointment-42@alcove.example``);
    ``sequence`` starts at 0 and the caller raises it on every change, including
    the cancellation.  ``start``, ``end`` and ``now`` are aware instants;
    ``now`` becomes ``DTSTAMP``.  ``attendee_zone`` is the client's IANA zone.
    ``summary`` and ``description`` must carry no clinical details (see the
    module's docstring).  The attendee is not asked to reply (``RSVP=FALSE``):
    the booking is already made, and replies would only land in the
    organizer's mailbox.
    """
    if method not in _STATUS_FOR_METHOD:
        raise ValueError(f"METHOD must be REQUEST or CANCEL, not {method!r}")
    if _STATUS_FOR_METHOD[method] != status:
        raise ValueError(f"METHOD:{method} goes with STATUS:{_STATUS_FOR_METHOD[method]}")
    if not _one_line(uid, "uid").strip():
        raise ValueError("an invite needs a UID")
    if sequence < 0:
        raise ValueError("SEQUENCE must not be negative")
    start, end, now = _utc(start, "start"), _utc(end, "end"), _utc(now, "now")
    if end <= start:
        raise ValueError("an appointment must end after it starts")
    zone = _zone(attendee_zone)

    event = Event()
    event.add("uid", uid)
    event.add("sequence", sequence)
    event.add("dtstamp", now)
    event.add("dtstart", _in_zone(start, zone))
    event.add("dtend", _in_zone(end, zone))
    event.add("summary", summary)
    event.add("description", description)
    if location_url:
        _one_line(location_url, "location_url")
        event.add("location", location_url)
        event.add("url", location_url)
    event.add("status", status)
    event.add("class", "PRIVATE")
    event.add("transp", "OPAQUE")
    organizer = _address(organizer_email)
    organizer.params["CN"] = _one_line(organizer_name, "organizer_name")
    event.add("organizer", organizer)
    attendee = _address(attendee_email)
    attendee.params["ROLE"] = "REQ-PARTICIPANT"
    attendee.params["RSVP"] = "FALSE"
    event.add("attendee", attendee)

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    calendar.add_component(event)
    # A year either side of the event: a few lines rather than every change since
    # 1970, with a margin for clients that keep the definition when the event moves.
    # UTC is written as UTC ("...Z") and needs none.
    calendar.add_missing_timezones(
        first_date=dt.date(start.year - 1, 1, 1), last_date=dt.date(end.year + 2, 1, 1)
    )
    return bytes(calendar.to_ical())


def _in_zone(instant: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """``instant`` on the attendee's clock, or in UTC when that clock cannot say it.

    RFC 5545 reads a repeated wall time (the hour after clocks go back) as its
    first occurrence, so an instant in the second occurrence written with a
    ``TZID`` would be shown an hour early.  Such an instant is written in UTC;
    the attendee's calendar still shows it in their own zone.
    """
    local = instant.astimezone(zone)
    if local.fold and local.replace(fold=0).utcoffset() != local.utcoffset():
        return instant
    return local


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


def _address(email: str) -> vCalAddress:
    email = _one_line(email, "e-mail address").strip()
    if "@" not in email or any(c.isspace() for c in email):
        raise ValueError(f"not an e-mail address: {email!r}")
    return vCalAddress(f"mailto:{email}")


def _one_line(text: str, what: str) -> str:
    """``text``, refused if it holds a control character that could break a content line."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError(f"{what} must be a single line of text")
    return text


def _utc(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, not naive")
    return value.astimezone(dt.UTC)
