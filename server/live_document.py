"""A worksheet being edited: who has it open (its subscribers) and the state of its one
authoritative document, as ``server.worksheet_live`` keeps it between saves."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

from server.audit import Actor
from server.worksheets import SharedWorksheet, Template
from server.worksheets.templates import template_to_json
from signalling.messages import Message
from signalling.worksheet_messages import WorksheetSaved, WorksheetShown, worksheet_ref


class Subscriber(Protocol):
    """Someone with a worksheet open: a call participant, or a homework page."""

    @property
    def key(self) -> str:
        """Stable for the person across reconnects (their participant id, say)."""

    @property
    def actor(self) -> tuple[Actor, int]:
        """Who they are, for the audit trail."""

    @property
    def connection(self) -> Hashable:
        """The connection they are on now (None when they have none): what they send is
        counted per connection, for ``worksheet-saved``."""

    async def deliver(self, message: Message) -> None:
        """Send ``message`` to them; must not wait on a slow peer."""

    async def relay(self, frame: str) -> None:
        """Send them a ``yjs`` message another subscriber sent, as the ``frame`` it came in
        (which ``encode`` would write the same); must not wait on a slow peer."""


class WorksheetGone(LookupError):
    """The worksheet does not exist (any more)."""


@dataclass
class LiveDocument:
    """One open worksheet: its document, its subscribers, and what of its changes were
    applied, announced and saved."""

    worksheet_id: int
    title: str
    template: Template
    shared: SharedWorksheet
    revision: int
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    #: The connection each subscriber was shown the worksheet on.
    shown_on: dict[str, Hashable] = field(default_factory=dict)
    #: Who changed the document since the last save.
    editors: set[tuple[Actor, int]] = field(default_factory=set)
    #: How many changes from subscribers were applied, ever (a sequence, not a size).
    applied: int = 0
    #: Each subscriber's latest change: the value of ``applied`` just after it.
    last_change: dict[str, int] = field(default_factory=dict)
    #: While a save is being written: the changes it stores (``applied`` when it was
    #: taken); after it, those of the last save stored.
    covered: int = 0
    #: Whether a save of this document is being written now.
    saving: bool = False
    #: Each subscriber's connection, and how many ``yjs`` messages came from it.
    received: dict[str, tuple[Hashable, int]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The worksheet's id on the wire.
    ref: str = field(init=False)

    def __post_init__(self) -> None:
        self.ref = worksheet_ref(self.worksheet_id)

    def saved(
        self, subscriber: Subscriber, revision: int, counts: dict[str, tuple[Hashable, int]]
    ) -> WorksheetSaved:
        """``worksheet-saved`` for ``subscriber``, with how many of the messages from the
        connection it is on now the save covers (``counts``: ``received`` as it was taken)."""
        seen = counts.get(subscriber.key)
        covered = seen[1] if seen is not None and seen[0] == subscriber.connection else 0
        return WorksheetSaved(worksheet=self.ref, revision=revision, received=covered)

    def shown(self) -> WorksheetShown:
        return WorksheetShown(
            worksheet=self.ref, title=self.title, template=template_to_json(self.template)
        )
