"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from sqlalchemy import text

from server.calls import REDIS_FANOUT
from server.keys import ENGINE
from server.shutdown import DRAIN

log = logging.getLogger(__name__)
READY_TIMEOUT = 2.0


async def healthz(_request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The process can do useful work: it is not draining, the database answers, and
    Redis is reachable when the instances pass signalling through it."""
    if request.app[DRAIN].draining:
        return web.json_response({"status": "draining"}, status=503)
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with request.app[ENGINE].connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the reason is logged
        log.warning("readiness check failed: database: %s", type(exc).__name__)
        return web.json_response({"status": "unavailable", "database": "down"}, status=503)
    # With several instances, one that cannot reach Redis cannot reach the others' sockets.
    redis = request.app.get(REDIS_FANOUT)
    if redis is not None and not redis.healthy:
        log.warning("readiness check failed: redis at %s", redis.location)
        body = {"status": "unavailable", "database": "ok", "redis": "down"}
        return web.json_response(body, status=503)
    if redis is not None:
        return web.json_response({"status": "ready", "database": "ok", "redis": "ok"})
    return web.json_response({"status": "ready", "database": "ok"})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
