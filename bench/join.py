"""Benchmark: how long from the therapist's "admit" until the call is up.

Two aiortc peers on loopback, the therapist and the client, speak the documented protocol
to a running app.  For each of N runs: a new appointment, the client joins and waits, the
therapist admits; we time admit → both peer connections ``connected`` and admit → the
first video frame received on both sides.

    python -m bench.join [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import time

import aioice.ice

from bench.common import machine, running_app, summary_ms
from server.db import create_engine, sessionmaker
from tests.support.arrange import make_appointment, make_therapist
from tests.support.rtc import Peer
from tests.support.signalling_client import SignallingClient, client_session, sign_in_session

PASSWORD = "benchmark password"  # noqa: S105  (a throw-away account in a temp database)


def _loopback(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    return ["127.0.0.1"]


async def main(runs: int) -> None:
    aioice.ice.get_host_addresses = _loopback
    logging.basicConfig(level=logging.WARNING)
    connected: list[float] = []
    first_frame: list[float] = []
    async with running_app() as settings:
        url = settings.public_url
        engine = create_engine(settings.database_url)
        db = sessionmaker(engine)
        therapist = await make_therapist(db, email="bench@example.com", password=PASSWORD)
        therapist_http = await sign_in_session(url, "bench@example.com", PASSWORD)
        try:
            for _ in range(runs):
                now = dt.datetime.now(dt.UTC)
                appointment, token = await make_appointment(db, therapist.id, starts_at=now)
                client_http = await client_session(url, token)
                client = SignallingClient(client_http, url)
                host = SignallingClient(therapist_http, url)
                peers: list[Peer] = []
                try:
                    await client.connect()
                    await client.hello(devices={"camera": "ok", "microphone": "ok"})
                    await host.connect()
                    await host.hello(appointment=f"a-{appointment.id}")
                    lobby = await host.expect("lobby")
                    participant = next(
                        entry["participant"]
                        for entry in lobby["participants"]
                        if entry["appointment"] == f"a-{appointment.id}"
                    )
                    therapist_peer = Peer(host, polite=False)
                    client_peer = Peer(client, polite=True)
                    peers = [therapist_peer, client_peer]
                    therapist_peer.start_pump()
                    client_peer.start_pump()

                    started = time.perf_counter()
                    await host.send({"type": "admit", "participant": participant})
                    await host.expect("peer-joined")
                    await therapist_peer.offer()
                    await asyncio.gather(
                        therapist_peer.connected.wait(), client_peer.connected.wait()
                    )
                    connected.append(time.perf_counter() - started)
                    await asyncio.gather(
                        therapist_peer.first_frame.wait(), client_peer.first_frame.wait()
                    )
                    first_frame.append(time.perf_counter() - started)
                finally:
                    for peer in peers:
                        await peer.close()
                    await client.close()
                    await host.close()
                    await client_http.close()
        finally:
            await therapist_http.close()
            await engine.dispose()

    print(f"bench/join: {runs} runs, two aiortc peers on loopback")
    print(f"machine: {machine()}")
    print(f"admit -> both peers connected      {summary_ms(connected)}")
    print(f"admit -> first video frame (both)  {summary_ms(first_frame)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    asyncio.run(main(parser.parse_args().runs))
