"""The Yjs sync protocol (y-protocols/sync) for one shared worksheet, without any I/O.

Its messages are written and read by ``server.worksheets.sync_messages``. `SharedWorksheet`
holds the authoritative document. Every incoming update is applied to it
once and the fields it touched are checked with `check_limits`; an update that fails is
undone (the document is built afresh from a checkpoint of its state and the changes
accepted since), so a refused update leaves it exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from pycrdt import (
    Doc,
    Map,
    Subscription,
    TransactionEvent,
    YSyncMessageType,
    create_sync_message,
    get_update,
    merge_updates,
)

from server.worksheets.document import (
    DOCUMENT_LIMIT,
    ROOT,
    LimitError,
    check_limits,
    has_only_its_root,
    text_rooms,
)
from server.worksheets.sync_messages import (
    EMPTY_UPDATE,
    SyncError,
    decode_message,
    short_update,
    sync_step2_message,
    update_message,
)
from server.worksheets.templates import Template, TextField

__all__ = ["Reply", "SharedWorksheet"]

_BOOKKEEPING_BYTES = 32  # a new client's entry in the state, at most, besides the update
_CHECKPOINT_EVERY = 256  # accepted changes kept for undoing, before a fresh checkpoint


def _is_decode_failure(error: BaseException) -> bool:
    """Whether `error` is pycrdt refusing its input.

    Besides ordinary exceptions, the Rust decoder can panic on some corrupted updates;
    pyo3 raises that as ``pyo3_runtime.PanicException``, a `BaseException` that cannot be
    imported by name. Anything else (KeyboardInterrupt, cancellation) is not ours to catch.
    """
    return isinstance(error, Exception) or type(error).__name__ == "PanicException"


class Reply(NamedTuple):
    """What to do after `SharedWorksheet.receive`.

    `reply` goes back to the sender; `broadcast` goes to every other participant.
    """

    reply: bytes | None = None
    broadcast: bytes | None = None


class SharedWorksheet:
    """The server's side of the Yjs sync protocol for one worksheet document.

    `doc` is the authoritative document (from `new_document` or `load`). The caller sends
    `sync_step1()` to each participant that subscribes and passes every message it receives
    to `receive`. `dirty` is set by every change (call `mark_clean` after saving), and
    `on_change`, if given, is called with each change's update: both are for debouncing
    persistence. `on_change` must not raise.

    A refused update is undone by building the document afresh from a checkpoint of its
    state and the changes accepted since, so `doc` may be replaced by an equal document:
    read it from here each time rather than keeping it.

    Raises `LimitError` if `doc` does not fit `template` to begin with.
    """

    def __init__(
        self,
        template: Template,
        doc: Doc[Any],
        *,
        on_change: Callable[[bytes], None] | None = None,
        limit: int = DOCUMENT_LIMIT,
    ) -> None:
        check_limits(template, doc, limit=limit)
        #: An upper bound of the encoded document's size: each accepted update adds at most
        #: its own length (and a little bookkeeping), so the document need not be encoded
        #: on every keystroke to know it is within the limit.
        self._size_bound = len(doc.get_update())
        self.template = template
        self.limit = limit
        self._texts = tuple(field for field in template.fields if isinstance(field, TextField))
        self._text_ids = frozenset(field.id for field in self._texts)
        #: How much more each text field can surely take: its limit less an upper bound of
        #: its length. An update adds at most its own length to any text it touches, so a
        #: keystroke is checked against these instead of measuring the texts; measured after
        #: each full check, None when unknown (a full check then comes first).
        self._rooms: dict[str, int] | None = None
        self.dirty = False
        self._on_change = on_change
        self._receiving = False
        self._received: list[bytes] = []
        #: The fields the update being received touched; None: the root map itself changed.
        self._touched: set[str] | None = set()
        self._subscriptions: list[Subscription] = []
        self._attach(doc)

    def _attach(self, doc: Doc[Any]) -> None:
        self.doc = doc
        self._rooms = None
        #: The state a refused update is undone to: this, then `_since`, in order.
        self._checkpoint = doc.get_update()
        self._since: list[bytes] = []
        root: Map[Any] = doc.get(ROOT, type=Map)
        # pycrdt's own `observe_deep` wraps every event in Python objects, which cost more
        # than applying the update; only the path of each event is needed here.
        self._subscriptions = [
            doc.observe(self._observe),
            root.integrated.observe_deep(self._record),
        ]

    def close(self) -> None:
        """Stop observing the document."""
        subscriptions, self._subscriptions = self._subscriptions, []
        if subscriptions:
            self.doc.unobserve(subscriptions[0])
            subscriptions[1].drop()

    def mark_clean(self) -> None:
        """Say that the current state has been stored."""
        self.dirty = False

    def sync_step1(self) -> bytes:
        """The sync step 1 message (the server's state vector) to send on subscribe."""
        return create_sync_message(self.doc)

    def receive(self, message: bytes) -> Reply:
        """Handle one message from a participant.

        Sync step 1 is answered with sync step 2. Sync step 2 and updates are checked and
        applied; `broadcast` is then the update message to relay (None if nothing changed).
        An update that needs changes the server has not seen yet is not applied: the reply
        is the server's sync step 1, so that the participant sends everything missing.

        Raises `SyncError` for a malformed message or payload, and `LimitError` for an
        update that would break a limit of the template; the document is then unchanged.
        """
        update = short_update(message)
        if update is not None:  # a keystroke: passed on as the message it came in, if it can be
            return self._apply(update, message)
        decoded = decode_message(message)
        if decoded.step == YSyncMessageType.SYNC_STEP1:
            try:
                missing = self.doc.get_update(decoded.payload)
            except BaseException as error:
                if not _is_decode_failure(error):
                    raise
                raise SyncError(f"not a valid state vector: {error}") from None
            return Reply(reply=sync_step2_message(missing))
        return self._apply(decoded.payload)

    def _apply(self, update: bytes, message: bytes | None = None) -> Reply:
        """Apply `update` once, then check what it touched; undo it if it is refused.
        `message` is the update message that carried it, if one did: passed on itself
        when the change it made is written exactly as it is."""
        if update == EMPTY_UPDATE:
            return Reply()
        if len(update) > self.limit:
            raise LimitError(
                "document",
                f"an update of {len(update)} bytes is more than the limit of {self.limit} bytes",
            )
        dirty = self.dirty
        self._touched = set()
        self._receiving = True
        try:
            # One transaction for applying the update and reading the roots it left: pycrdt's
            # own, without its Python wrapper (nothing here reads the document through
            # pycrdt's Python types, and the observers are this class's own).
            raw = self.doc._doc
            txn = raw.create_transaction()
            try:
                raw.apply_update(txn, update)
                one_root = has_only_its_root(self.doc, txn)
                txn.commit()
            finally:
                txn.drop()
            received = self._received
            if len(received) == 1 and received[0] == update:
                # The document wrote the change back exactly as it came: all of it was
                # taken, nothing is left pending (a keystroke).
                leftover = EMPTY_UPDATE
            else:
                leftover = get_update(update, self.doc.get_state())
        except BaseException as error:
            if not _is_decode_failure(error):
                raise
            self._undo(dirty)
            raise SyncError(f"not a valid update: {error}") from None
        finally:
            self._receiving = False
            changes, self._received = self._received, []
        if leftover[:1] != b"\x00":
            # Some of it depends on changes the server has not seen: Yjs would keep it
            # pending, invisible and unsaved. Ask for everything missing instead.
            self._undo(dirty)
            return Reply(reply=self.sync_step1())
        if not changes:
            return Reply()
        size = len(update)
        bound = self._size_bound + size + _BOOKKEEPING_BYTES
        touched, rooms = self._touched, self._rooms
        if (
            one_root
            and bound <= self.limit
            and touched is not None
            and rooms is not None
            and touched <= self._text_ids
            and min(map(rooms.__getitem__, touched), default=size) >= size
        ):
            # A keystroke: it touched texts only, each with room for all of it.
            for field in touched:
                rooms[field] -= size
            return self._accept(bound, changes, update, message)
        try:
            if bound > self.limit:
                bound = len(self.doc.get_update())  # measure, and start counting afresh
            check_limits(
                self.template, self.doc, limit=self.limit, size_bound=bound, fields=self._touched
            )
        except LimitError:
            self._undo(dirty)
            raise
        self._rooms = self._measure_rooms()
        return self._accept(bound, changes, update, message)

    def _measure_rooms(self) -> dict[str, int] | None:
        raw = self.doc._doc
        txn = raw.create_transaction()  # changes nothing: no observer is called
        try:
            return text_rooms(self._texts, self.doc, txn)
        finally:
            txn.drop()

    def _accept(
        self, bound: int, changes: list[bytes], update: bytes, message: bytes | None
    ) -> Reply:
        self._size_bound = bound
        self._keep(changes)
        change = changes[0] if len(changes) == 1 else merge_updates(*changes)
        if self._on_change is not None:
            self._on_change(change)
        # What is passed on is the change as the document wrote it, never what the sender
        # wrote: the same bytes, for a keystroke, and then the message that carried them.
        if message is not None and change == update:
            return Reply(broadcast=message)
        return Reply(broadcast=update_message(change))

    def merge(self, state: bytes) -> bytes | None:
        """Bring in a state of this worksheet saved elsewhere (by another instance's copy):
        the update message that brings a participant up to date, None if it held nothing
        new.  What was saved passed the limits where it was made, so it is not checked."""
        before = self.doc.get_state()
        self.doc.apply_update(state)
        change = self.doc.get_update(before)
        return None if change == EMPTY_UPDATE else update_message(change)

    def _keep(self, changes: list[bytes]) -> None:
        """Note accepted changes for `_undo`, folding them into the checkpoint now and then."""
        self._since.extend(changes)
        if len(self._since) >= _CHECKPOINT_EVERY:
            self._checkpoint = self.doc.get_update()
            self._since = []

    def _undo(self, dirty: bool) -> None:
        """Put back the document as it was before the update being received."""
        doc: Doc[Any] = Doc()
        doc.apply_update(self._checkpoint)
        for change in self._since:
            doc.apply_update(change)
        self.close()
        self._attach(doc)
        self.dirty = dirty

    def _record(self, events: list[Any]) -> None:
        touched = self._touched
        for event in events:
            path = event.path
            if not path:
                self._touched = touched = None
            elif touched is not None:
                touched.add(str(path[0]))

    def _observe(self, event: TransactionEvent) -> None:
        self.dirty = True
        if self._receiving:
            self._received.append(event.update)
            return
        self._keep([event.update])
        self._size_bound += len(event.update) + _BOOKKEEPING_BYTES
        self._rooms = None  # a change made here (or merged) is not counted against them
        if self._on_change is not None:
            self._on_change(event.update)
