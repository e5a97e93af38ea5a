"""The app as ``alcove serve`` runs it, for the fan-out benchmark, with no per-socket rate limit.

The benchmark measures how many relayed messages the server can carry, so each socket sends
far more than the protocol's 20 messages a second (``signalling.protocol.RATE_PER_SECOND``);
the limiter still runs for every message, with a bucket that never empties.  The reference
server has no such limit.

    python -m bench.fanout.serve     (settings from the ALCOVE_* environment, as alcove serve)
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from signalling import session
from signalling.session import RateLimiter


class Unlimited(RateLimiter):
    """A token bucket too large to run dry."""

    def __init__(self, rate: float = 0.0, burst: int = 0, **kwargs: Callable[[], float]) -> None:
        super().__init__(1e12, 10**12, **kwargs)


def main() -> int:
    session.RateLimiter = Unlimited  # type: ignore[misc]
    from server.cli import main as alcove

    return alcove(["serve"])


if __name__ == "__main__":
    sys.exit(main())
