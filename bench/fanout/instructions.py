"""Instructions a relayed message: our relay counted by callgrind, not timed.

On a shared machine a relay's throughput, and even its CPU time, move by a tenth from one
run to the next with what else runs, so a change of a few per cent cannot be seen in them.
The number of instructions the servers execute for a relayed message moves by a fraction
of a per cent. Each instance of ``bench.fanout.serve`` runs under
``valgrind --tool=callgrind`` with its instrumentation off while it starts and while the
pairs are set up; it is switched on (``callgrind_control``) only while the pairs relay, in a
closed loop as in the timed relay, then the counts are dumped and summed over the instances.

What is counted is the servers' own instructions in user space: not the kernel's work for
their sockets, which is the same for any server, and not the load's. Under valgrind the
servers run some fifty times slower, so fewer pairs suffice; what runs on a timer (leases,
pings) is then a larger share of the count, but it is a few thousand instructions a second
against tens of millions.

    python -m bench.fanout --instructions [--pairs 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.fanout import alcove, relay

#: The label and the number of instances of each relay counted.
RELAYS = {"ours (in-process fan-out)  ": 1, "ours (two instances, Redis)": 2}


@dataclass(frozen=True)
class Count:
    messages: int
    instructions: int

    @property
    def per_message(self) -> float:
        return self.instructions / self.messages if self.messages else 0.0


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def _control(option: str, pid: int) -> None:
    """``callgrind_control option pid``: switch the instrumentation, or dump the counts."""
    control = shutil.which("callgrind_control")
    if control is None:
        raise RuntimeError("callgrind_control is not installed")
    arguments = [control, option, str(pid)]
    subprocess.run(arguments, check=True, capture_output=True)  # noqa: S603 - fixed arguments


def _totals(directory: Path) -> int:
    """The instructions in every dump callgrind wrote to ``directory`` (its last ``totals:``
    line each: the dumps hold only what ran while instrumented)."""
    total = 0
    for dump in directory.iterdir():
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


def _wrapper(directory: Path) -> Sequence[str]:
    return (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={directory}/callgrind.%p",
        "-q",
    )


async def count(instances: int, args: argparse.Namespace, redis_url: str) -> Count:
    """Run ``args.pairs`` pairs through ``instances`` instances under callgrind for
    ``args.seconds``, instrumented while they relay; the messages relayed and the servers'
    instructions meanwhile."""
    env = {"ALCOVE_REDIS_URL": redis_url} if instances > 1 else {}
    with tempfile.TemporaryDirectory(prefix="alcove-callgrind-") as tmp:
        directory = Path(tmp)
        async with alcove.running_servers(instances, wrapper=_wrapper(directory), **env) as servers:
            people = alcove.People()
            try:
                pairs = await alcove.pairs_in_calls(
                    servers[0], people, args.pairs, args.size, clients_on=servers[-1]
                )
                for server in servers:
                    _control("--instr=on", server.pid)
                try:
                    result = await relay.run(
                        pairs,
                        alcove.is_relayed,
                        alcove.answer_pings,
                        warmup=0.0,
                        seconds=args.seconds,
                    )
                finally:
                    for server in servers:
                        _control("--instr=off", server.pid)
                        _control("--dump", server.pid)
            finally:
                await people.close()
        return Count(len(result.latencies), _totals(directory))


async def report(args: argparse.Namespace, redis_url: str) -> None:
    print(f"instructions a relayed message, by callgrind ({args.pairs} pairs, {args.seconds:g} s)")
    if not available():
        print("  not counted: valgrind (with callgrind_control) is not installed")
        return
    counts: dict[str, Count] = {}
    for label, instances in RELAYS.items():
        counts[label] = found = await count(instances, args, redis_url)
        print(
            f"  {label}  {found.per_message:9,.0f} instructions a message "
            f"(servers, user space; {found.messages} messages)"
        )
    one, two = (counts[label].per_message for label in RELAYS)
    print(f"  two instances / one: {two / one:.2f}x")
