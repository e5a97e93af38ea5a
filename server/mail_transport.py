"""Where rendered e-mails go: an SMTP server, or ``.eml`` files for a local run.

``ALCOVE_SMTP_HOST`` empty means no e-mail leaves the machine: each message is written to
``<data dir>/outbox/<timestamp>-<kind>-<id>.eml``, readable only by Alcove's account, where a
developer can open it in any mail program.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from server.keys import Clock
from server.settings import Settings, SmtpTls

SMTP_TIMEOUT_SECONDS = 30.0


class Transport(Protocol):
    async def send(self, message: EmailMessage, label: str) -> None:
        """Deliver ``message`` or raise; ``label`` (``<kind>-<id>``) names it locally."""

    async def close(self) -> None:
        """Let go of any connection; the next ``send`` opens a new one."""


class SmtpTransport:
    """One SMTP connection, opened on the first message and reused until ``close``."""

    def __init__(self, settings: Settings, *, timeout: float = SMTP_TIMEOUT_SECONDS) -> None:
        self._settings = settings
        self._timeout = timeout
        self._smtp: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            timeout=self._timeout,
            use_tls=settings.smtp_tls is SmtpTls.TLS,
            # True: STARTTLS is required (an error if the server lacks it); False: never.
            start_tls=settings.smtp_tls is SmtpTls.STARTTLS,
        )
        await smtp.connect()
        if settings.smtp_username:
            await smtp.login(settings.smtp_username, settings.smtp_password)
        return smtp

    async def send(self, message: EmailMessage, label: str) -> None:
        if self._smtp is None or not self._smtp.is_connected:
            self._smtp = await self._connect()
        try:
            await self._smtp.send_message(message)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


class FileTransport:
    """Writes each message as an ``.eml`` file (mode 0600) in ``directory`` (mode 0700)."""

    def __init__(self, directory: Path, clock: Clock) -> None:
        self.directory = directory
        self._clock = clock

    async def send(self, message: EmailMessage, label: str) -> None:
        stamp = self._clock().astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{label}.eml"
        await asyncio.to_thread(_write_private, path, bytes(message))

    async def close(self) -> None:
        return None


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
        os.replace(partial, path)
    finally:
        if fd != -1:
            os.close(fd)
        partial.unlink(missing_ok=True)


def transport_for(settings: Settings, clock: Clock) -> Transport:
    directory = settings.local_mail_dir
    if directory is None:
        return SmtpTransport(settings)
    return FileTransport(directory, clock)
