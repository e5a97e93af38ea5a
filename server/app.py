"""The application factory."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from babel.dates import format_date, format_time

from server import (
    api,
    auth_views,
    booking_pages,
    call_views,
    calls,
    dashboard,
    echo,
    health,
    homework,
    homework_socket,
    i18n,
    join,
    logs,
    mailer,
    manage_pages,
    metrics,
    shutdown,
    template_pages,
    therapist_pages,
    therapist_record,
    worksheet_calls,
    worksheet_pages,
    ws,
)
from server.db import create_engine, sessionmaker, utcnow
from server.keys import CLOCK, ENGINE, LANG, REQUEST_ID, SESSIONMAKER, SETTINGS, Clock
from server.middleware import CATALOGS, request_context
from server.settings import Settings

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
MAX_REQUEST_BYTES = 64 * 1024


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url)
    app[ENGINE] = engine
    app[SESSIONMAKER] = sessionmaker(engine)
    yield
    await engine.dispose()


def _setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
        extensions=["jinja2.ext.i18n"],
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        context_processors=[_page_context],
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    env.filters["local_time"] = _local_time
    env.filters["local_date"] = _local_date
    env.globals["asset"] = lambda path: app.router["static"].url_for(filename=path)


async def _page_context(request: web.Request) -> dict[str, object]:
    return {"lang": request.get(LANG, i18n.DEFAULT_LOCALE), "request_id": request[REQUEST_ID]}


def _local_time(value: dt.datetime, tz: zoneinfo.ZoneInfo) -> str:
    return format_time(value.astimezone(tz), format="short", locale=i18n.current_locale())


def _local_date(value: dt.date, fmt: str = "full") -> str:
    return format_date(value, format=fmt, locale=i18n.current_locale())


def create_app(
    settings: Settings, *, clock: Clock = utcnow, catalogs: i18n.Catalogs | None = None
) -> web.Application:
    """Build the Alcove application for ``settings``; ``clock`` returns the current UTC instant.

    ``catalogs`` are the translations to serve, by default those under ``web/locale``.
    """
    app = web.Application(middlewares=[request_context], client_max_size=MAX_REQUEST_BYTES)
    logs.guard_access_log()  # whichever runner serves the app, no token reaches its log
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[CATALOGS] = catalogs if catalogs is not None else i18n.Catalogs()
    _setup_templates(app)
    metrics.setup(app)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(calls.switchboard_ctx)
    app.cleanup_ctx.append(worksheet_calls.worksheets_ctx)
    app.cleanup_ctx.append(mailer.mailer_ctx)
    shutdown.setup(app)
    health.setup(app)
    auth_views.setup(app)
    dashboard.setup(app)
    join.setup(app)
    echo.setup(app)
    call_views.setup(app)
    ws.setup(app)
    api.setup(app)
    booking_pages.setup(app)
    manage_pages.setup(app)
    therapist_pages.setup(app)
    therapist_record.setup(app)
    worksheet_pages.setup(app)
    template_pages.setup(app)
    homework_socket.setup(app)  # before homework: /homework/{token} must not catch /homework/ws
    homework.setup(app)
    app.router.add_static(
        "/static/", WEB_DIR / "static", name="static", follow_symlinks=False, append_version=True
    )
    return app
