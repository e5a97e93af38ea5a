"""Opaque bearer tokens: 256 random bits, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32  # 256 bits


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def keyed_hash(secret: str, purpose: str, value: str) -> str:
    """An HMAC of ``value`` for ``purpose``, for keys that must not be readable in the database."""
    message = f"{purpose}\x00{value}".encode()
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
