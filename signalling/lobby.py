"""Therapists' lobby sockets: the dashboard's live view of the waiting room.

A therapist's ``hello`` without an ``appointment`` opens a lobby socket: the server resolves
it to a ``Watcher``, not a ``Seat``.  A watcher is no participant: it is in no room, never
counts as the therapist being there, never receives media signalling, ``peer-joined`` or
``peer-left``, and is never replaced — a therapist may have several (one per dashboard tab).
It receives ``lobby`` after ``welcome`` and whenever the lobby changes, and may ``admit``,
``send-back``, ``message`` and ``end`` exactly as the therapist's call page may.

``Lobbies`` is the registry's book of watchers, and of the lobby each therapist was last
sent, so that a lobby goes out only when it changed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from signalling.effects import Deliver, Effect, Handle
from signalling.messages import Lobby
from signalling.parts import MAX_ID_CHARS, MAX_NAME_CHARS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watcher:
    """Who a lobby socket speaks for, as the server established it from the session cookie:
    the therapist's id and display name."""

    therapist: str
    name: str

    def __post_init__(self) -> None:
        for label, value, limit in (
            ("therapist", self.therapist, MAX_ID_CHARS),
            ("name", self.name, MAX_NAME_CHARS),
        ):
            if not 1 <= len(value) <= limit:
                raise ValueError(f"watcher {label} must be 1-{limit} characters")


class Lobbies:
    """The live lobby sockets of every therapist, and the lobby each was last sent."""

    def __init__(self) -> None:
        self._watchers: dict[Handle, Watcher] = {}
        self._by_therapist: dict[str, list[Handle]] = {}
        self._sent: dict[str, Lobby] = {}

    def watcher(self, handle: Handle) -> Watcher | None:
        """The watcher whose live lobby socket is ``handle``; ``None`` for anything else."""
        return self._watchers.get(handle)

    def watching(self, therapist: str) -> list[Handle]:
        """The therapist's live lobby sockets, oldest first."""
        return list(self._by_therapist.get(therapist, ()))

    def add(self, watcher: Watcher, handle: Handle) -> None:
        if not handle.watcher or handle.participant != watcher.therapist:
            raise ValueError("the handle is not a lobby socket of this therapist")
        if handle in self._watchers:
            raise ValueError(f"lobby socket {handle.token} is already watching")
        handles = self._by_therapist.setdefault(watcher.therapist, [])
        self._watchers[handle] = watcher
        handles.append(handle)
        self._log(watcher.therapist, len(handles) - 1, len(handles))

    def remove(self, handle: Handle) -> Watcher | None:
        """Forget the lobby socket ``handle``; ``None`` if it was not watching."""
        watcher = self._watchers.pop(handle, None)
        if watcher is None:
            return None
        handles = self._by_therapist[watcher.therapist]
        handles.remove(handle)
        self._log(watcher.therapist, len(handles) + 1, len(handles))
        if not handles:
            del self._by_therapist[watcher.therapist]
        return watcher

    def refresh(
        self,
        out: list[Effect],
        lobby: Lobby,
        therapist: str,
        pages: Iterable[Handle],
        *,
        also: Handle | None = None,
    ) -> None:
        """``lobby`` is the therapist's lobby now: if it changed, send it to the therapist's
        call ``pages`` and lobby sockets; send it to ``also`` (just arrived) in any case."""
        changed = self._sent.get(therapist) != lobby
        self._sent[therapist] = lobby
        for handle in [*pages, *self.watching(therapist)]:
            if changed or handle == also:
                out.append(Deliver(handle, lobby))

    def therapists(self) -> set[str]:
        """The therapists with a live lobby socket."""
        return set(self._by_therapist)

    def drop(self, therapist: str) -> None:
        """Forget the therapist's lobby sockets and lobby altogether."""
        for handle in self._by_therapist.pop(therapist, []):
            self._watchers.pop(handle, None)
        self._sent.pop(therapist, None)

    def forget(self, therapist: str) -> None:
        """The therapist has no room left: forget their lobby, unless a dashboard shows it."""
        if therapist not in self._by_therapist:
            self._sent.pop(therapist, None)

    @staticmethod
    def _log(therapist: str, old: int, new: int) -> None:
        log.info("therapist %s: lobby sockets %d -> %d", therapist, old, new)
