"""Sign-in throttling per account and per source address, shared by every instance."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.models import LoginFailure
from server.settings import Settings
from server.tokens import keyed_hash


def keys(settings: Settings, email: str, ip: str) -> tuple[str, str]:
    """The throttle keys for an account and an address; neither is readable in the database."""
    return (
        keyed_hash(settings.secret_key, "login-account", email.strip().lower()),
        keyed_hash(settings.secret_key, "login-ip", ip),
    )


async def retry_after(
    db: AsyncSession, settings: Settings, throttle_keys: Sequence[str], now: dt.datetime
) -> int | None:
    """Seconds until a sign-in may be tried again, or ``None`` when it may be tried now."""
    window = dt.timedelta(minutes=settings.login_window_minutes)
    limit = settings.login_max_failures
    wait = 0.0
    for key in throttle_keys:
        rows = await db.scalars(
            select(LoginFailure.at)
            .where(LoginFailure.key == key, LoginFailure.at > now - window)
            .order_by(LoginFailure.at.desc())
            .limit(limit)
        )
        recent = list(rows)
        if len(recent) >= limit:
            wait = max(wait, (recent[-1] + window - now).total_seconds())
    return max(1, math.ceil(wait)) if wait > 0 else None


async def record_failure(
    db: AsyncSession, settings: Settings, throttle_keys: Sequence[str], now: dt.datetime
) -> None:
    window = dt.timedelta(minutes=settings.login_window_minutes)
    await db.execute(
        delete(LoginFailure).where(
            LoginFailure.key.in_(list(throttle_keys)), LoginFailure.at <= now - window
        )
    )
    db.add_all([LoginFailure(key=key, at=now) for key in throttle_keys])


async def clear(db: AsyncSession, key: str) -> None:
    await db.execute(delete(LoginFailure).where(LoginFailure.key == key))
