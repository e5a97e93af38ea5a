"""Therapist accounts: validation and the queries that read and write them."""

from __future__ import annotations

import re
import zoneinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.models import SessionType, Therapist
from server.passwords import check_strength, hash_password

#: What every new therapist offers until they change it: (name, minutes, buffer, price text).
DEFAULT_SESSION_TYPES: tuple[tuple[str, int, int, str], ...] = (
    ("Free consultation", 15, 0, "Free"),
    ("Individual session", 50, 10, ""),
)
DEFAULT_MIN_NOTICE_MINUTES = 24 * 60
DEFAULT_HORIZON_DAYS = 60

_EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]{1,189}\.[^@\s<>\".]{2,63}$")


class InvalidAccount(ValueError):
    """A field of a new account is wrong; the message names the field."""


def normalize_email(email: str) -> str:
    return email.strip().lower()


def validate_email(email: str) -> str:
    email = normalize_email(email)
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidAccount(f"email: {email!r} is not an e-mail address")
    return email


def validate_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidAccount(
            f"timezone: {name!r} is not an IANA time zone (e.g. Europe/Berlin)"
        ) from None
    return name


def validate_name(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 120:
        raise InvalidAccount("name: use between 1 and 120 characters")
    return name


async def by_email(db: AsyncSession, email: str) -> Therapist | None:
    return await db.scalar(select(Therapist).where(Therapist.email == normalize_email(email)))


async def create_therapist(
    db: AsyncSession, *, email: str, name: str, timezone: str, password: str
) -> Therapist:
    """Validate and add a therapist; raises ``InvalidAccount`` naming the bad field."""
    email = validate_email(email)
    therapist = Therapist(
        email=email,
        display_name=validate_name(name),
        timezone=validate_timezone(timezone),
        password_hash="",
        is_active=True,
    )
    try:
        check_strength(password)
    except ValueError as exc:
        raise InvalidAccount(f"password: {exc}") from None
    if await by_email(db, email) is not None:
        raise InvalidAccount(f"email: an account for {email} already exists")
    therapist.password_hash = hash_password(password)
    db.add(therapist)
    await db.flush()
    await add_default_session_types(db, therapist.id)
    return therapist


async def add_default_session_types(db: AsyncSession, therapist_id: int) -> list[SessionType]:
    """Give a new therapist the public session types every practice starts with.

    A free 15-minute consultation and a 50-minute individual session with 10 minutes kept
    free after it; both bookable from 24 hours to 60 days ahead.
    """
    added = [
        SessionType(
            therapist_id=therapist_id,
            name=name,
            duration_minutes=minutes,
            buffer_minutes=buffer,
            price_text=price,
            min_notice_minutes=DEFAULT_MIN_NOTICE_MINUTES,
            horizon_days=DEFAULT_HORIZON_DAYS,
            is_public=True,
            is_active=True,
            position=position,
        )
        for position, (name, minutes, buffer, price) in enumerate(DEFAULT_SESSION_TYPES)
    ]
    db.add_all(added)
    await db.flush()
    return added
