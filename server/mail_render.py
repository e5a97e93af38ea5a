"""Rendering one outbox message into an e-mail, at the moment it is sent.

The text comes from the plain-text templates in ``web/templates/email/`` (every sentence
through gettext) and shows the appointment in the client's time zone, with the zone named.
Confirmations, moves, resent invites and cancellations carry an RFC 5545 invite.

What goes in is chosen here, field by field, so nothing clinical can slip through: the
templates see the therapist's name, the time, the links and the therapist's contact text --
never the appointment or client records themselves, so never an intake note, and the
client's name appears nowhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from babel.dates import format_date, format_skeleton, format_time
from babel.support import NullTranslations

from server import i18n, ics
from server.models import Appointment, Client, Therapist
from server.outbox import ANNOUNCEMENTS, MailKind
from server.settings import Settings

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "web" / "templates" / "email"


@dataclass(frozen=True)
class Links:
    join: str | None = None
    manage: str | None = None


@dataclass(frozen=True)
class HomeworkMail:
    """Everything a homework e-mail may say: no worksheet title, no answers, no client name."""

    to: str
    therapist: str
    due_on: dt.date | None
    expires_at: dt.datetime
    link: str
    zone: ZoneInfo


def public_host(settings: Settings) -> str:
    return urlsplit(settings.public_url).hostname or "localhost"


def message_id(idempotency_key: str, settings: Settings) -> str:
    """The same ``Message-ID`` every time a message is (re)sent, so receivers can drop repeats."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}.alcove@{public_host(settings)}>"


def invite_uid(appointment_id: int, settings: Settings) -> str:
    """One calendar event per appointment, for life: later invites update or cancel it."""
    return f"appointment-{appointment_id}@{public_host(settings)}"


def client_zone(appointment: Appointment) -> ZoneInfo:
    """The client's zone, else the therapist's, else UTC (a stored zone may have gone stale)."""
    return client_zone_of(appointment.client, appointment.therapist)


def client_zone_of(client: Client, therapist: Therapist) -> ZoneInfo:
    """``client_zone`` for a message about no appointment (a homework link)."""
    for name in (client.timezone, therapist.timezone):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        extensions=["jinja2.ext.i18n"],
        autoescape=False,  # noqa: S701 -- plain text, never HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    return env


class Renderer:
    """Builds ``EmailMessage`` objects; one per worker, templates loaded once."""

    def __init__(self, settings: Settings, translations: NullTranslations) -> None:
        self._settings = settings
        self._translations = translations
        self._env = _environment()

    def render(
        self,
        kind: MailKind,
        idempotency_key: str,
        appointment: Appointment,
        links: Links,
        now: dt.datetime,
    ) -> EmailMessage:
        """``appointment`` must have ``client`` and ``therapist`` loaded."""
        token = i18n.activate(i18n.DEFAULT_LOCALE, self._translations)
        try:
            return self._render(kind, idempotency_key, appointment, links, now)
        finally:
            i18n.deactivate(token)

    def _render(
        self,
        kind: MailKind,
        idempotency_key: str,
        appointment: Appointment,
        links: Links,
        now: dt.datetime,
    ) -> EmailMessage:
        settings = self._settings
        therapist = appointment.therapist
        zone = client_zone(appointment)
        start = appointment.starts_at.astimezone(zone)
        end = appointment.ends_at.astimezone(zone)
        locale = i18n.current_locale()
        times = {
            "date": format_date(start.date(), format="full", locale=locale),
            "time": (
                f"{format_time(start, format='short', locale=locale)} – "
                f"{format_time(end, format='short', locale=locale)}"
            ),
            "zone": zone.key,
        }
        context: dict[str, object] = {
            **times,
            "therapist": therapist.display_name,
            "join_link": links.join,
            "manage_link": links.manage,
            "contact_text": therapist.contact_text.strip(),
            "booking_link": (
                f"{settings.public_url}/book/{therapist.slug}" if therapist.slug else None
            ),
        }
        body = self._env.get_template(f"{kind.value}.txt").render(context)

        message = EmailMessage()
        message["Subject"] = _subject(
            kind,
            format_skeleton("MMMEd", start, locale=locale),
            format_time(start, format="short", locale=locale),
        )
        message["From"] = settings.mail_from
        message["To"] = appointment.client.email
        message["Date"] = format_datetime(now.astimezone(dt.UTC))
        message["Message-ID"] = message_id(idempotency_key, settings)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"
        message.set_content(body)

        method: ics.Method | None = None
        if kind in ANNOUNCEMENTS:
            method = "REQUEST"
        elif kind is MailKind.CANCELLATION:
            method = "CANCEL"
        if method is not None:
            invite = ics.appointment_invite(
                uid=invite_uid(appointment.id, settings),
                sequence=appointment.sequence,
                start=appointment.starts_at,
                end=appointment.ends_at,
                summary=i18n.gettext("Appointment with %(name)s")
                % {"name": therapist.display_name},
                description=_description(method, links),
                location_url=links.join if method == "REQUEST" else None,
                organizer_email=parseaddr(settings.mail_from)[1],
                organizer_name=therapist.display_name,
                attendee_email=appointment.client.email,
                attendee_zone=zone.key,
                method=method,
                status="CONFIRMED" if method == "REQUEST" else "CANCELLED",
                now=now,
            )
            message.add_attachment(
                invite,
                maintype="text",
                subtype="calendar",
                filename="invite.ics" if method == "REQUEST" else "cancel.ics",
                params={"method": method, "charset": "utf-8"},
            )
        return message

    def render_homework(
        self, idempotency_key: str, mail: HomeworkMail, now: dt.datetime
    ) -> EmailMessage:
        """The e-mail with a homework link (``web/templates/email/homework.txt``)."""
        token = i18n.activate(i18n.DEFAULT_LOCALE, self._translations)
        try:
            locale = i18n.current_locale()
            context: dict[str, object] = {
                "therapist": mail.therapist,
                "due": format_date(mail.due_on, format="full", locale=locale)
                if mail.due_on
                else None,
                # The last day it works (a link that expires at midnight is over that day).
                "expires": format_date(
                    (mail.expires_at - dt.timedelta(seconds=1)).astimezone(mail.zone).date(),
                    format="long",
                    locale=locale,
                ),
                "homework_link": mail.link,
                "join_link": mail.link,  # the footer's "personal link" line
            }
            body = self._env.get_template("homework.txt").render(context)
            message = EmailMessage()
            message["Subject"] = i18n.gettext("A worksheet to fill in before your next session")
            message["From"] = self._settings.mail_from
            message["To"] = mail.to
            message["Date"] = format_datetime(now.astimezone(dt.UTC))
            message["Message-ID"] = message_id(idempotency_key, self._settings)
            message["Auto-Submitted"] = "auto-generated"
            message["X-Auto-Response-Suppress"] = "All"
            message.set_content(body)
            return message
        finally:
            i18n.deactivate(token)


def _description(method: ics.Method, links: Links) -> str:
    if method == "CANCEL":
        return i18n.gettext("This appointment was cancelled.")
    lines = []
    if links.join:
        lines.append(i18n.gettext("Join the session: %(link)s") % {"link": links.join})
    if links.manage:
        lines.append(i18n.gettext("Cancel or move it: %(link)s") % {"link": links.manage})
    return "\n".join(lines)


def _subject(kind: MailKind, date: str, time: str) -> str:
    """A neutral subject: the time only, never a name (it shows on lock screens)."""
    values = {"date": date, "time": time}
    if kind is MailKind.CONFIRMATION:
        return i18n.gettext("Your appointment on %(date)s at %(time)s is booked") % values
    if kind is MailKind.RESCHEDULED:
        return i18n.gettext("Your appointment has moved to %(date)s at %(time)s") % values
    if kind is MailKind.CANCELLATION:
        return i18n.gettext("Your appointment on %(date)s at %(time)s is cancelled") % values
    if kind is MailKind.REMINDER:
        return i18n.gettext("Reminder: your appointment on %(date)s at %(time)s") % values
    return i18n.gettext("Your link for the appointment on %(date)s at %(time)s") % values
