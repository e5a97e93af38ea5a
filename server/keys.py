"""Typed keys for the state shared through the ``web.Application``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.settings import Settings

Clock = Callable[[], dt.datetime]

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONMAKER = web.AppKey("sessionmaker", async_sessionmaker[AsyncSession])

REQUEST_ID = web.RequestKey("request_id", str)
LANG = web.RequestKey("lang", str)
