"""Worksheets being edited right now: one authoritative document each, saved as edits flow.

``LiveWorksheets`` loads a worksheet when its first subscriber attaches (a participant of a
call, or the client's homework page), applies every incoming Yjs message to the document,
answers the sender and relays the change to the other subscribers.

Saving is debounced, and batched across worksheets: the first change after a save puts the
worksheet in the next batch, which is written at most ``save_delay`` seconds later, every
worksheet of the batch in one transaction, with one audit event per person who edited
(never the content). A save is announced to every subscriber with ``worksheet-saved``: an
edit is *acknowledged* once a save covering it was announced, and from then on survives any
restart. ``flush`` saves at once; it runs when a call ends, when the last subscriber
leaves, and when the server shuts down.

A save that fails (the database is away) keeps the changes unsaved and is tried again on
its own, after a back-off that doubles from the save delay up to ``MAX_RETRY_SECONDS``: the
last words typed before the connection went are stored once it is back, without anyone
typing again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable, Hashable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import audit, worksheet_store
from server.audit import Actor
from server.live_document import LiveDocument, Subscriber, WorksheetGone
from server.worksheets import SharedWorksheet, compact, load, render
from signalling.worksheet_messages import (
    Editing,
    Yjs,
    worksheet_ref,
)

log = logging.getLogger(__name__)

SAVE_DELAY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


class LiveWorksheets:
    """The documents of this instance's open worksheets."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Callable[[], dt.datetime],
        *,
        save_delay: float = SAVE_DELAY_SECONDS,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._save_delay = save_delay
        self._live: dict[int, LiveDocument] = {}
        self._loading: dict[int, asyncio.Lock] = {}
        self._saves: set[asyncio.Task[None]] = set()
        #: Worksheets whose save delay has passed, waiting for the saving task.
        self._due: dict[int, LiveDocument] = {}
        #: Worksheets changed since they were last saved, for the next batch.
        self._waiting: dict[int, LiveDocument] = {}
        self._batch: asyncio.TimerHandle | None = None
        #: While saves fail: the wait before the next try.
        self._retry_delay: float | None = None
        self._closed = False

    def is_live(self, worksheet_id: int) -> bool:
        return worksheet_id in self._live

    def subscribers(self, worksheet_id: int) -> list[str]:
        live = self._live.get(worksheet_id)
        return sorted(live.subscribers) if live is not None else []

    def is_subscribed(self, worksheet_id: int, key: str) -> bool:
        live = self._live.get(worksheet_id)
        return live is not None and key in live.subscribers

    async def attach(self, worksheet_id: int, subscriber: Subscriber) -> None:
        """Open the worksheet for ``subscriber``: it is sent ``worksheet``, the server's sync
        step 1 and, if nothing is waiting to be saved, ``worksheet-saved``; then every
        change.  Audited as a read.

        While a save is being written, nothing is claimed yet: the document it stores may
        hold changes that are not stored until it has been written, and the subscriber is
        sent its ``worksheet-saved`` with the others once it has.

        Attached again on the connection it was shown the worksheet on, it is sent nothing
        more: it has it already."""
        live = await self._load(worksheet_id)
        key, connection = subscriber.key, subscriber.connection
        if connection is not None and key in live.subscribers and live.shown_on[key] == connection:
            return  # shown on this connection already (opened in the call as they joined)
        live.subscribers[key] = subscriber
        live.shown_on[key] = connection
        await self._audit(worksheet_id, [subscriber.actor], "worksheet.open")
        await subscriber.deliver(live.shown())
        await subscriber.deliver(Yjs(worksheet=live.ref, data=live.shared.sync_step1()))
        if not live.shared.dirty and not live.saving:  # all the server has is stored: say so
            await subscriber.deliver(live.saved(subscriber, live.revision, live.received))

    async def detach(self, worksheet_id: int, key: str) -> None:
        """``key`` no longer has the worksheet open; the last one out saves and unloads it
        (once saved: a document whose save failed stays loaded until a retry stores it)."""
        live = self._live.get(worksheet_id)
        if live is None or live.subscribers.pop(key, None) is None:
            return
        live.received.pop(key, None)
        live.shown_on.pop(key, None)
        if not live.subscribers:
            await self.flush(worksheet_id)
            self._unload_if_done(live)

    def _unload_if_done(self, live: LiveDocument) -> None:
        unused = not live.subscribers and not live.shared.dirty
        if unused and self._live.get(live.worksheet_id) is live:
            del self._live[live.worksheet_id]

    async def receive(
        self, worksheet_id: int, subscriber: Subscriber, data: bytes, frame: str | None = None
    ) -> None:
        """Apply one Yjs message from ``subscriber``.  ``frame``, if given, is the ``yjs``
        frame that carried ``data``, written as ``encode`` would write it: when the change
        is passed on as ``data`` itself, the others are sent the frame as it came.

        Raises ``SyncError`` or ``LimitError`` (the document is then unchanged) and
        ``WorksheetGone``; the caller tells the sender.
        """
        live = self._live.get(worksheet_id)
        key = subscriber.key
        if live is None or key not in live.subscribers:
            raise WorksheetGone(worksheet_ref(worksheet_id))
        # Counted before it is applied: a refused message was received all the same.
        connection = subscriber.connection
        seen = live.received.get(key)
        count = seen[1] + 1 if seen is not None and seen[0] == connection else 1
        live.received[key] = (connection, count)
        reply = live.shared.receive(data)
        if reply.reply is not None:
            await subscriber.deliver(Yjs(worksheet=live.ref, data=reply.reply))
        if reply.broadcast is None:
            return
        live.editors.add(subscriber.actor)
        live.applied += 1
        live.last_change[key] = live.applied
        self._schedule_save(live)
        if frame is not None and reply.broadcast is data:
            for other_key, other in tuple(live.subscribers.items()):
                if other_key != key:
                    await other.relay(frame)
            return
        update = Yjs(worksheet=live.ref, data=reply.broadcast)
        for other_key, other in tuple(live.subscribers.items()):
            if other_key != key:
                await other.deliver(update)

    async def editing(self, worksheet_id: int, subscriber: Subscriber, path: str | None) -> None:
        """Tell the others which field ``subscriber`` is in."""
        live = self._live.get(worksheet_id)
        if live is None or subscriber.key not in live.subscribers:
            raise WorksheetGone(worksheet_ref(worksheet_id))
        message = Editing(worksheet=live.ref, field=path)
        for key, other in list(live.subscribers.items()):
            if key != subscriber.key:
                await other.deliver(message)

    async def flush(self, worksheet_id: int | None = None) -> None:
        """Save now what has not been saved (of one worksheet, or of all)."""
        targets = list(self._live.values())
        if worksheet_id is not None:
            targets = [live for live in targets if live.worksheet_id == worksheet_id]
        for live in targets:
            await self._save(live)

    async def close(self) -> None:
        """Save everything and stop (the server is shutting down)."""
        self._closed = True
        if self._batch is not None:
            self._batch.cancel()
            self._batch = None
        await self.flush()
        for task in list(self._saves):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._live.clear()

    # Loading and saving

    async def _load(self, worksheet_id: int) -> LiveDocument:
        live = self._live.get(worksheet_id)
        if live is not None:
            return live
        lock = self._loading.setdefault(worksheet_id, asyncio.Lock())
        async with lock:
            live = self._live.get(worksheet_id)
            if live is not None:
                return live
            async with self._sessionmaker() as db:
                worksheet = await worksheet_store.find_worksheet(db, worksheet_id)
                if worksheet is None:
                    raise WorksheetGone(worksheet_ref(worksheet_id))
                template = worksheet_store.worksheet_template(worksheet)
                doc = load(template, worksheet.state)
                live = LiveDocument(
                    worksheet_id=worksheet_id,
                    title=worksheet.title,
                    template=template,
                    shared=SharedWorksheet(template, doc),
                    revision=worksheet.revision,
                )
            self._live[worksheet_id] = live
        self._loading.pop(worksheet_id, None)
        return live

    def _schedule_save(self, live: LiveDocument, delay: float | None = None) -> None:
        """Save ``live`` with the next batch: one timer for the whole instance, so that the
        worksheets changed within one delay are saved in one transaction, not one each."""
        if live.worksheet_id in self._waiting or self._closed:
            return
        self._waiting[live.worksheet_id] = live
        if self._batch is None:
            loop = asyncio.get_running_loop()
            wait = self._save_delay if delay is None else delay
            self._batch = loop.call_later(wait, self._start_saves)

    def _retry_later(self, lives: list[LiveDocument], error: Exception) -> None:
        """A save failed: try these again after the back-off, whether or not they change."""
        if self._retry_delay is None:
            self._retry_delay = self._save_delay
            log.error(
                "could not save %d worksheets (%s); retrying in %g s",
                len(lives),
                type(error).__name__,
                self._retry_delay,
                exc_info=error,
            )
        else:
            self._retry_delay = min(2 * self._retry_delay, MAX_RETRY_SECONDS)
            log.warning(
                "still cannot save %d worksheets (%s); retrying in %g s",
                len(lives),
                type(error).__name__,
                self._retry_delay,
            )
        for live in lives:
            self._schedule_save(live, self._retry_delay)

    def _start_saves(self) -> None:
        """Queue the waiting worksheets for the one saving task: saves run one batch after
        another, so a busy instance never needs more database connections than one."""
        self._batch = None
        self._due.update(self._waiting)
        self._waiting.clear()
        if not self._saves:
            task = asyncio.get_running_loop().create_task(self._save_due())
            self._saves.add(task)
            task.add_done_callback(self._saves.discard)

    async def _save_due(self) -> None:
        while self._due:
            due = sorted(self._due.values(), key=lambda live: live.worksheet_id)
            self._due.clear()
            try:
                await self._save(*due)
            except Exception:
                log.exception("could not save %d worksheets", len(due))

    async def _save(self, *lives: LiveDocument) -> None:
        """Save the worksheets in one transaction (the caller passes them in the order of
        their ids, the order their locks are taken in), then announce each save: to every
        subscriber whose changes it stored all of.  One whose change arrived while it was
        being written hears from the next save, which stores that change too."""
        saved: list[tuple[LiveDocument, int, int]] = []
        merged: list[tuple[LiveDocument, bytes]] = []
        changed: list[tuple[LiveDocument, set[tuple[Actor, int]], bytes, str]] = []
        # Of each worksheet saved, what was received from whom when its state was taken.
        counts: dict[int, dict[str, tuple[Hashable, int]]] = {}
        try:
            async with contextlib.AsyncExitStack() as locks:
                for live in lives:
                    await locks.enter_async_context(live.lock)
                    self._waiting.pop(live.worksheet_id, None)  # saved here, not in the batch
                    if not live.shared.dirty:
                        continue
                    live.shared.mark_clean()
                    live.covered, live.saving = live.applied, True
                    counts[live.worksheet_id] = dict(live.received)
                    editors, live.editors = live.editors, set()
                    state = compact(live.shared.doc)
                    content = json.dumps(render(live.template, live.shared.doc), ensure_ascii=False)
                    changed.append((live, editors, state, content))
                    if len(lives) > 1:
                        await asyncio.sleep(0)  # a batch must not hold up the keystrokes meanwhile
                if not changed:
                    return
                try:
                    saved = await self._write(changed, merged)
                except Exception as error:
                    # Keep the changes marked unsaved, and try again later.
                    for live, editors, _, _ in changed:
                        live.shared.dirty = True
                        live.editors |= editors
                    self._retry_later([live for live, _, _, _ in changed], error)
                    return
                for live, revision, _ in saved:
                    live.revision = revision
                    self._unload_if_done(live)
                if self._retry_delay is not None:
                    self._retry_delay = None
                    log.info("worksheets are saved again")
        finally:
            for live, _, _, _ in changed:
                live.saving = False
        for live, change in merged:
            update = Yjs(worksheet=live.ref, data=change)
            for subscriber in tuple(live.subscribers.values()):
                await subscriber.deliver(update)
        for live, revision, covered in saved:
            taken = counts[live.worksheet_id]
            for key, subscriber in tuple(live.subscribers.items()):
                if live.last_change.get(key, 0) <= covered:
                    await subscriber.deliver(live.saved(subscriber, revision, taken))
            if len(saved) > 1:
                await asyncio.sleep(0)  # nor must telling everyone of it

    async def _write(
        self,
        changed: list[tuple[LiveDocument, set[tuple[Actor, int]], bytes, str]],
        merged: list[tuple[LiveDocument, bytes]],
    ) -> list[tuple[LiveDocument, int, int]]:
        """Store the documents' states (in one statement) and their audit events in one
        transaction; for each document stored, its new revision and the changes the save
        covers.  One saved elsewhere meanwhile is merged and stored on its own."""
        saved: list[tuple[LiveDocument, int, int]] = []
        now = self._clock()
        async with self._sessionmaker() as db, db.begin():
            writes: list[audit.Write] = []
            saves = [
                worksheet_store.Save(live.worksheet_id, state, content, expected=live.revision)
                for live, _, state, content in changed
            ]
            stored = await worksheet_store.save_states(db, saves, now=now)
            for live, editors, _, _ in changed:
                revision = stored.get(live.worksheet_id)
                if revision is None:
                    revision = await self._merge_and_save(db, live, now, merged)
                writes += (
                    audit.Write(actor, actor_id, "worksheet", live.worksheet_id)
                    for actor, actor_id in sorted(editors)
                )
                if revision is not None:
                    saved.append((live, revision, live.covered))
            await audit.record_writes(db, now, "worksheet.write", writes)
        return saved

    async def _merge_and_save(
        self,
        db: AsyncSession,
        live: LiveDocument,
        now: dt.datetime,
        merged: list[tuple[LiveDocument, bytes]],
    ) -> int | None:
        """Someone else saved this worksheet since this document was loaded or saved (its
        copy on another instance: the homework page there, say).  Merge what they stored
        into this document — a CRDT loses neither side's edits — and store the union."""
        stored = await worksheet_store.stored_state(db, live.worksheet_id)
        if stored is None:
            return None  # deleted meanwhile
        state, revision = stored
        change = live.shared.merge(state)
        if change is not None:
            merged.append((live, change))
            log.info("worksheet %s: merged a copy saved elsewhere", live.worksheet_id)
        live.shared.mark_clean()
        live.covered = live.applied  # what arrived while the other copy was read, too
        save = worksheet_store.Save(
            live.worksheet_id,
            compact(live.shared.doc),
            json.dumps(render(live.template, live.shared.doc), ensure_ascii=False),
            expected=revision,
        )
        revisions = await worksheet_store.save_states(db, [save], now=now)
        return revisions.get(live.worksheet_id)

    async def _audit(self, worksheet_id: int, actors: list[tuple[Actor, int]], action: str) -> None:
        async with self._sessionmaker() as db, db.begin():
            for actor, actor_id in actors:
                audit.record(
                    db,
                    at=self._clock(),
                    actor=actor,
                    actor_id=actor_id,
                    action=action,
                    record_type="worksheet",
                    record_id=worksheet_id,
                )
