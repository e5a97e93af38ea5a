"""The ``alcove`` command: migrate, manage therapists, seed demo data and serve."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import os
import sys
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from server import accounts, audit, logs, migrate, shutdown
from server.audit import Actor
from server.db import create_engine, sessionmaker, utcnow
from server.settings import Mode, Settings, SettingsError, load_settings


def _fail(message: str) -> int:
    print(f"alcove: {message}", file=sys.stderr)
    return 2


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise accounts.InvalidAccount("password: the two entries differ")
    return first


async def _create_therapist(settings: Settings, args: argparse.Namespace, password: str) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as db, db.begin():
            therapist = await accounts.create_therapist(
                db, email=args.email, name=args.name, timezone=args.timezone, password=password
            )
            audit.record(
                db,
                at=utcnow(),
                actor=Actor.SYSTEM,
                actor_id=None,
                action="therapist_created",
                record_type="therapist",
                record_id=therapist.id,
            )
            therapist_id = therapist.id
    finally:
        await engine.dispose()
    print(f"created therapist {therapist_id}")
    return 0


async def _demo(settings: Settings) -> int:
    from server.demo import ensure_demo

    engine = create_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as db, db.begin():
            state = await ensure_demo(db, settings.data_dir, utcnow())
    finally:
        await engine.dispose()
    base = settings.public_url
    print("Demo therapist")
    print(f"  e-mail:    {state.email}")
    print(f"  password:  {state.password}")
    print(f"Demo client join link (appointment starting now):\n  {base}/join/{state.join_token}")
    print(mail_destination(settings))
    return 0


def mail_destination(settings: Settings) -> str:
    """One line saying where e-mails to clients go."""
    directory = settings.local_mail_dir
    if directory is None:
        return f"E-mails are sent through {settings.smtp_host}:{settings.smtp_port}"
    return (
        f"E-mails are not sent: each one is written to {directory}{os.sep} as an .eml file "
        "(set ALCOVE_SMTP_HOST to send them)"
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop ``alcove serve`` runs on: uvloop where it is installed (a dependency except
    on Windows), whose sockets and scheduling cost the relay of each signalling message
    much less CPU (``bench/fanout``); asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _serve(settings: Settings) -> int:
    from server.app import create_app

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app(settings)
    base = settings.public_url

    def announce(_line: str) -> None:
        # Everything built while starting (modules, the app, the ORM's mappers) lives as long
        # as the process: keep it out of the collector's full passes, which would otherwise
        # walk it again and again while messages are relayed.
        gc.freeze()
        print(f"Alcove is running at {base}/  (sign in at {base}/login)", flush=True)
        print(f"Health: {base}/healthz  Ready: {base}/readyz  Stop with Ctrl+C", flush=True)
        print(mail_destination(settings), flush=True)

    web.run_app(
        app,
        loop=loop,
        host=settings.host,
        port=settings.port,
        access_log_class=logs.AccessLogger,
        print=announce,
        # Requests still in flight after the sockets are closed get part of the drain time;
        # the rest is for the outbox worker and the room audit writer (server/shutdown.py).
        shutdown_timeout=shutdown.requests_timeout(settings.shutdown_drain_seconds),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alcove", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="upgrade the database schema to the latest version")
    sub.add_parser("serve", help="serve the application")
    sub.add_parser("demo", help="create (or reuse) demo data and print how to use it")
    therapist = sub.add_parser("therapist", help="manage therapist accounts")
    therapist_sub = therapist.add_subparsers(dest="action", required=True)
    create = therapist_sub.add_parser(
        "create", help="create an account; the password is read from a prompt or stdin"
    )
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--timezone", required=True, help="IANA time zone, e.g. Europe/Berlin")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # the database, secrets and logs this process creates are its own
    try:
        settings = load_settings()
    except SettingsError as exc:
        return _fail(f"cannot start: {exc}")
    logs.configure(settings.log_level, settings.log_format)
    try:
        if args.command == "migrate":
            asyncio.run(_migrate(settings))
            print("database is up to date")
            return 0
        if args.command == "demo":
            if settings.mode is Mode.PRODUCTION:
                return _fail("demo: refused in production mode (it creates a demo account)")
            return asyncio.run(_demo(settings))
        if args.command == "serve":
            return _serve(settings)
        if args.command == "therapist" and args.action == "create":
            return asyncio.run(_create_therapist(settings, args, _read_password()))
    except accounts.InvalidAccount as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except (OSError, SQLAlchemyError) as exc:
        # One line for the operator; the database URL may hold a password, so it is not shown.
        return _fail(f"{args.command}: the database could not be used ({type(exc).__name__})")
    return _fail("unknown command")


if __name__ == "__main__":
    raise SystemExit(main())
