"""Give a freshly unshared network namespace a network, then run a command in it.

Run as ``unshare --net --pid --fork --kill-child --mount-proc -- python tests/e2e/netns.py
COMMAND…`` (see ``test_browser.py``).  Chromium gathers no ICE candidates on a loopback-only
network, so the namespace gets ``lo``, a veth pair ``v0``/``v1`` (10.99.0.1 and 10.99.0.2)
and a default route through it.  The pair leads nowhere: no packet leaves the namespace.

This script refuses to touch a namespace that has any interface besides ``lo``, so started
by mistake in the host's namespace it changes nothing there.  In the new PID namespace it is
process 1: it runs ``COMMAND`` as its child, reaps orphans (Chromium's helpers), passes
SIGINT/SIGTERM on, and exits with the command's status, whereupon the kernel kills whatever
is left in the namespace.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

MARKER = "ALCOVE_E2E_NETNS"
INTERFACES = frozenset({"lo", "v0", "v1"})
SETUP = (
    ("link", "set", "lo", "up"),
    ("link", "add", "v0", "type", "veth", "peer", "name", "v1"),
    ("addr", "add", "10.99.0.1/24", "dev", "v0"),
    ("addr", "add", "10.99.0.2/24", "dev", "v1"),
    ("link", "set", "v0", "up"),
    ("link", "set", "v1", "up"),
    ("route", "add", "default", "via", "10.99.0.2"),
)


def is_marked() -> bool:
    """Whether this process was started by this script (its environment says so)."""
    return os.environ.get(MARKER) == "1"


def interfaces() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


def set_up_network() -> None:
    found = interfaces()
    if found != {"lo"}:
        raise SystemExit(
            f"netns.py: refusing to configure a network namespace with interfaces {sorted(found)};"
            " run it under `unshare --net`"
        )
    for args in SETUP:
        subprocess.run(["ip", *args], check=True)
    if interfaces() != INTERFACES:
        raise SystemExit(f"netns.py: unexpected interfaces after set-up: {sorted(interfaces())}")


def run_as_init(command: list[str]) -> int:
    """Run ``command`` as a child, reaping every other process until it exits."""
    child = os.fork()
    if child == 0:
        os.execvp(command[0], command)  # noqa: S606 - the command is ours, no shell

    def forward(signum: int, _frame: object) -> None:
        os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit("usage: netns.py COMMAND [ARG…]")
    set_up_network()
    os.environ[MARKER] = "1"
    if os.getpid() != 1:
        os.execvp(argv[0], argv)  # noqa: S606 - the command is ours, no shell
    return run_as_init(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
