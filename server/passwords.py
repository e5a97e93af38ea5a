"""Password hashing with argon2id, off the event loop."""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verifying against this when an account does not exist keeps the timing of
# "no such account" and "wrong password" alike.
_DUMMY_PASSWORD = "alcove-no-such-account"  # noqa: S105 - hashed for timing only, never accepted


@functools.cache
def _dummy_hash() -> str:
    """Hashed on first use rather than at import, which it would slow by a fifth of a
    second (every start of the server, every CLI command)."""
    return _hasher.hash(_DUMMY_PASSWORD)


MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


class WeakPassword(ValueError):
    pass


def check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"use at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        matched = _hasher.verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    # An empty stored hash (no password set) is checked against the dummy hash for
    # timing, like a missing account; it must never let the dummy password in.
    return matched and bool(stored)


async def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``; ``None`` stands for a missing account."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    return await asyncio.get_running_loop().run_in_executor(None, _verify, stored, password)
