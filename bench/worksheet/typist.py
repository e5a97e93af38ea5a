"""One simulated participant: a pycrdt document that types into a worksheet's text field.

Both servers are driven by the same typists, so that the only difference between the two
measurements is the server (and the few bytes of envelope around each message).

Each local change inserts exactly one character at the end of the field and is sent as a
y-protocols update message. Nothing but typing changes the field, so the number of
characters a remote message adds is the number of the peer's updates it brought: since a
websocket keeps order, the *n*-th character received from the peer is the peer's *n*-th
update, whose send time the peer recorded. (Counting characters is far cheaper than
observing the text's deltas, which would make the load generator the bottleneck.) An update
that the server lost or reordered would leave the later ones pending in our copy: they
would count as lost, and `converged` checks at the end that both copies agree.
"""

from __future__ import annotations

import time
from typing import Any

from pycrdt import (
    Doc,
    Map,
    Subscription,
    Text,
    TransactionEvent,
    YMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

from server.worksheets.document import ROOT


def _letter(sequence: int) -> str:
    return chr(ord("a") + sequence % 26)


class Typist:
    """A participant's Yjs document and what it measured.

    Messages in and out are whole y-protocols messages (``0 · step · payload``); the
    transport wraps them in whatever envelope its server wants.
    """

    def __init__(self, field: str, doc: Doc[Any] | None = None) -> None:
        self.field = field
        self.doc: Doc[Any] = doc if doc is not None else Doc()
        self.peer: Typist | None = None
        #: perf_counter() at each of our updates' send, by sequence number.
        self.sent_at: list[float] = []
        #: Latencies (seconds) of the peer's updates that reached us, with their send time.
        self.latencies: list[tuple[float, float]] = []
        self.received = 0
        self._text: Text | None = None
        self._remote = False
        self._local_updates: list[bytes] = []
        self._subscription: Subscription = self.doc.observe(self._on_transaction)

    @property
    def ready(self) -> bool:
        """Whether the field exists in our copy: a participant types only after that."""
        return self._find_text() is not None

    def sync_step1(self) -> bytes:
        return create_sync_message(self.doc)

    def receive(self, message: bytes) -> bytes | None:
        """Apply one sync message from the server; returns the reply to send, if any."""
        if not message or message[0] != YMessageType.SYNC:
            return None  # awareness and anything else: not part of this benchmark
        text = self._find_text()
        before = len(text) if text is not None else 0
        self._remote = True
        try:
            reply = handle_sync_message(message[1:], self.doc)
        finally:
            self._remote = False
        if text is not None and self.peer is not None:
            added = len(text) - before
            if added > 0:
                now = time.perf_counter()
                sent_at = self.peer.sent_at
                for sequence in range(self.received, self.received + added):
                    if sequence < len(sent_at):
                        self.latencies.append((sent_at[sequence], now - sent_at[sequence]))
                self.received += added
        return reply

    def content(self) -> str:
        text = self._find_text()
        return "" if text is None else str(text)

    def type_one(self) -> bytes:
        """Insert the next character at the end of the field; returns the update message,
        which the caller sends at once (its send time is taken here)."""
        text = self._find_text()
        assert text is not None
        text.insert(len(text), _letter(len(self.sent_at)))
        updates, self._local_updates = self._local_updates, []
        (update,) = updates
        message = create_update_message(update)
        self.sent_at.append(time.perf_counter())
        return message

    def _find_text(self) -> Text | None:
        if self._text is None:
            root = self.doc.get(ROOT, type=Map)
            text = root.get(self.field)
            if isinstance(text, Text):
                self._text = text
        return self._text

    def _on_transaction(self, event: TransactionEvent) -> None:
        if not self._remote:
            self._local_updates.append(event.update)


def converged(first: Typist, second: Typist) -> bool:
    """Whether both copies of the field agree and hold every update of both typists."""
    content = first.content()
    expected = len(first.sent_at) + len(second.sent_at)
    return content == second.content() and len(content) == expected
