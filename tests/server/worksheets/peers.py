"""A browser's side of the Yjs sync protocol, built only from pycrdt's own helpers.

It stands in for y-websocket in the browser: it answers the server's sync step 1, applies
step 2 and updates, and queues an update message for every local change.
"""

from __future__ import annotations

from typing import Any

from pycrdt import (
    Doc,
    Map,
    Text,
    TransactionEvent,
    YMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

from server.worksheets import SharedWorksheet


class Peer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.doc: Doc[Any] = Doc()
        self.outbox: list[bytes] = []
        self._applying_remote = False
        self.doc.observe(self._local_change)

    def _local_change(self, event: TransactionEvent) -> None:
        if not self._applying_remote:
            self.outbox.append(create_update_message(event.update))

    @property
    def fields(self) -> Map[Any]:
        fields: Map[Any] = self.doc.get("fields", type=Map)
        return fields

    def text(self, field_id: str) -> Text:
        text = self.fields[field_id]
        assert isinstance(text, Text)
        return text

    def sync_step1(self) -> bytes:
        return create_sync_message(self.doc)

    def receive(self, message: bytes) -> bytes | None:
        """Handle a message from the server; returns the reply, if any."""
        assert message[0] == YMessageType.SYNC
        self._applying_remote = True
        try:
            return handle_sync_message(message[1:], self.doc)
        finally:
            self._applying_remote = False

    def take_outbox(self) -> list[bytes]:
        messages, self.outbox = self.outbox, []
        return messages


def connect(server: SharedWorksheet, peer: Peer, *others: Peer) -> None:
    """Run both handshakes between `peer` and the server; relay what changed to `others`."""
    reply = peer.receive(server.sync_step1())
    assert reply is not None
    answer = server.receive(reply)
    assert answer.reply is None
    if answer.broadcast is not None:
        for other in others:
            assert other.receive(answer.broadcast) is None
    answer = server.receive(peer.sync_step1())
    assert answer.broadcast is None
    assert answer.reply is not None
    assert peer.receive(answer.reply) is None
