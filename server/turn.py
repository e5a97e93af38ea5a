"""Time-limited TURN credentials, as coturn checks them with ``use-auth-secret``.

This is coturn's "TURN REST API" scheme: the user name is ``<expiry>:<participant>``, the
expiry in Unix seconds, and the password is ``base64(HMAC-SHA1(secret, user name))``.  coturn
holds the same secret (``static-auth-secret``), recomputes the password, and refuses the
credentials once the expiry has passed; nothing is stored on either side.

coturn logs user names, so ``participant`` must be an opaque reference, never a name or an
e-mail address.  The secret and the passwords are never logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

from server.settings import Settings
from signalling.parts import IceServer

#: coturn's default ``rest-api-separator``: what splits the expiry from the participant.
SEPARATOR = ":"


def credentials(
    secret: str, participant: str, now: dt.datetime, ttl: dt.timedelta
) -> tuple[str, str]:
    """``(username, password)`` for ``participant``, valid until ``now + ttl``."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if not participant or SEPARATOR in participant:
        raise ValueError(f"a participant reference is non-empty without {SEPARATOR!r}")
    expiry = int(now.timestamp()) + int(ttl.total_seconds())
    username = f"{expiry}{SEPARATOR}{participant}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_for(
    settings: Settings, participant: str, now: dt.datetime
) -> tuple[IceServer, ...]:
    """The ICE servers for one participant's ``welcome``: ``ALCOVE_ICE_URLS`` as they are,
    then ``ALCOVE_TURN_URLS`` with fresh credentials bound to ``participant``."""
    servers: list[IceServer] = []
    if settings.ice_urls:
        servers.append(IceServer(urls=settings.ice_urls))
    if settings.turn_urls:
        ttl = dt.timedelta(minutes=settings.turn_ttl_minutes)
        username, password = credentials(settings.turn_secret, participant, now, ttl)
        servers.append(IceServer(urls=settings.turn_urls, username=username, credential=password))
    return tuple(servers)
