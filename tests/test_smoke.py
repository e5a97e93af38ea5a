"""End to end: a fresh checkout started exactly as the README's quick start says, ``make run``.

The repository's files are copied to an empty directory, where ``make run`` creates its own
virtual environment, installs Alcove, migrates the embedded database, adds the demo data and
serves.  A real browser-like client then signs in with the printed demo credentials and finds
the demo appointment on the dashboard.  A second ``make run`` in the same directory must
reuse the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from server.demo import DEMO_CLIENT_NAME, DEMO_NAME

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 240.0  # the first run creates a virtual environment and installs from PyPI
STOP_TIMEOUT = 30.0
POLL_SECONDS = 0.1
# Variables that would make the nested ``make`` differ from one a user starts by hand.
NOT_INHERITED = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VIRTUAL_ENV", "PYTHON"}
NOT_INHERITED |= {"VENV", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV"}

pytestmark = pytest.mark.slow


def tracked_and_unignored_files() -> list[str]:
    listed: list[str] = []
    for extra in ([], ["--others", "--exclude-standard"]):
        out = subprocess.run(
            ["git", "ls-files", "-z", *extra],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout
        listed.extend(name for name in out.decode().split("\0") if name)
    return sorted(set(listed))


def copy_checkout(target: Path) -> None:
    for name in tracked_and_unignored_files():
        source = REPO / name
        if not source.is_file():  # deleted in the working tree, not yet committed
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name, follow_symlinks=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def user_env(port: int) -> dict[str, str]:
    """A user's shell: no Alcove settings except the port, no make or venv leftovers."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ALCOVE_") and key not in NOT_INHERITED
    }
    env["ALCOVE_PORT"] = str(port)
    return env


@dataclass
class Run:
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])


async def _collect(run: Run) -> None:
    assert run.process.stdout is not None
    async for raw in run.process.stdout:
        run.lines.append(raw.decode(errors="replace").rstrip("\n"))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the whole process group (make and the server), SIGKILL whatever lingers."""
    pgid = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    for _ in range(int(STOP_TIMEOUT / POLL_SECONDS)):
        if not _group_alive(pgid):
            break
        await asyncio.sleep(POLL_SECONDS)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)


@contextlib.asynccontextmanager
async def make_run(checkout: Path, port: int) -> AsyncIterator[Run]:
    """``make run`` in ``checkout``; the whole process group is stopped on the way out."""
    process = await asyncio.create_subprocess_exec(
        "make",
        "run",
        cwd=checkout,
        env=user_env(port),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    run = Run(process)
    reader = asyncio.create_task(_collect(run))
    try:
        yield run
    finally:
        await _stop_group(process)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, STOP_TIMEOUT)
        reader.cancel()


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str
    join_link: str


_CREDENTIALS = re.compile(
    r"^\s*e-mail:\s+(?P<email>\S+)\s*$\n^\s*password:\s+(?P<password>\S+)\s*$"
    r".*?^\s*(?P<link>https?://\S+/join/\S+)\s*$",
    re.MULTILINE | re.DOTALL,
)


async def wait_until_ready(run: Run, base: str) -> Credentials:
    """Wait for the printed credentials and server address, and for ``/readyz`` to say 200."""
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while time.monotonic() < deadline:
            if run.process.returncode is not None:
                pytest.fail(f"make run exited with {run.process.returncode}:\n{run.tail()}")
            found = _CREDENTIALS.search(run.output)
            if found is not None and "Alcove is running at" in run.output:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            return Credentials(found["email"], found["password"], found["link"])
            await asyncio.sleep(0.5)
    pytest.fail(f"not ready within {START_TIMEOUT:.0f}s:\n{run.tail()}")


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "the sign-in form has no CSRF token"
    return found[1]


async def dashboard_after_signing_in(base: str, credentials: Credentials) -> str:
    """Sign in through the real form, as a browser would, and return the dashboard page."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1, as a browser keeps them
    async with aiohttp.ClientSession(
        base_url=base, cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        async with http.get("/login") as page:
            assert page.status == 200
            token = csrf_token(await page.text())
        form = {"csrf_token": token, "email": credentials.email, "password": credentials.password}
        async with http.post("/login", data=form, allow_redirects=False) as signed_in:
            assert signed_in.status == 303, await signed_in.text()
            assert signed_in.headers["Location"] == "/dashboard"
        async with http.get("/dashboard", allow_redirects=False) as dashboard:
            assert dashboard.status == 200
            return await dashboard.text()


def demo_counts(checkout: Path) -> tuple[int, int, int]:
    with contextlib.closing(sqlite3.connect(checkout / "var" / "alcove.db")) as db:
        return (
            db.execute("SELECT count(*) FROM therapists").fetchone()[0],
            db.execute("SELECT count(*) FROM clients").fetchone()[0],
            db.execute("SELECT count(*) FROM appointments").fetchone()[0],
        )


async def test_make_run_in_a_fresh_checkout_serves_the_demo_and_reuses_it_next_time(
    tmp_path: Path,
) -> None:
    checkout = tmp_path / "alcove"
    checkout.mkdir()
    copy_checkout(checkout)
    assert not (checkout / ".venv").exists()
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async with make_run(checkout, port) as first:
        credentials = await wait_until_ready(first, base)
        page = await dashboard_after_signing_in(base, credentials)
        assert DEMO_CLIENT_NAME in page
        assert DEMO_NAME in page
        assert f"Alcove is running at http://localhost:{port}/" in first.output
        assert credentials.join_link.startswith(f"http://localhost:{port}/join/")
    assert not _group_alive(first.process.pid), "make run left processes behind"
    assert (checkout / ".venv" / "bin" / "alcove").is_file()
    assert (checkout / "var" / "alcove.db").is_file()
    assert demo_counts(checkout) == (1, 1, 1)

    async with make_run(checkout, port) as second:
        again = await wait_until_ready(second, base)
        assert again == credentials
        page = await dashboard_after_signing_in(base, again)
        assert DEMO_CLIENT_NAME in page
    assert not _group_alive(second.process.pid), "make run left processes behind"
    assert demo_counts(checkout) == (1, 1, 1)
