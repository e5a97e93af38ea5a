"""Two browsers (pycrdt docs speaking y-protocols) edit one worksheet through the server."""

from __future__ import annotations

import json
import random
import string
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text, create_update_message, merge_updates, write_message
from pycrdt import get_update as pycrdt_get_update

from server.worksheets import (
    LimitError,
    Reply,
    SharedWorksheet,
    SyncError,
    add_row,
    builtin_template,
    check_limits,
    compact,
    new_document,
    parse_template,
    render,
)
from server.worksheets import sync as sync_module
from server.worksheets.document import ROOT
from server.worksheets.sync_messages import (
    decode_message,
    sync_step1_message,
    sync_step2_message,
    update_message,
)
from server.worksheets.templates import Template
from tests.server.worksheets.peers import Peer, connect

CHECK_IN = builtin_template("weekly-check-in")
SMALL = parse_template(
    {
        "id": "small",
        "title": "Small",
        "fields": [
            {"id": "word", "label": "Word", "kind": "short_text", "max_length": 10},
            {"id": "story", "label": "Story", "kind": "long_text", "max_length": 20000},
            {"id": "mood", "label": "Mood", "kind": "scale"},
            {
                "id": "rows",
                "label": "Rows",
                "kind": "group",
                "max_rows": 50,
                "fields": [
                    {"id": "note", "label": "Note", "kind": "long_text", "max_length": 20000}
                ],
            },
        ],
    }
)


class Call:
    """A server and two connected peers, with a queue for each direction of each link."""

    def __init__(self, template: Template = CHECK_IN) -> None:
        self.template = template
        self.server = SharedWorksheet(template, new_document(template))
        self.a = Peer("a")
        self.b = Peer("b")
        connect(self.server, self.a, self.b)
        connect(self.server, self.b, self.a)
        self.to_peer: dict[Peer, list[bytes]] = {self.a: [], self.b: []}

    def other(self, peer: Peer) -> Peer:
        return self.b if peer is self.a else self.a

    def send(self, peer: Peer) -> None:
        """Deliver `peer`'s oldest queued message to the server, and queue the answers."""
        message = peer.outbox.pop(0)
        reply = self.server.receive(message)
        if reply.reply is not None:
            self.to_peer[peer].append(reply.reply)
        if reply.broadcast is not None:
            self.to_peer[self.other(peer)].append(reply.broadcast)

    def deliver(self, peer: Peer) -> None:
        """Deliver the server's oldest queued message to `peer`."""
        answer = peer.receive(self.to_peer[peer].pop(0))
        assert answer is None

    def flush(self) -> None:
        while self.a.outbox or self.b.outbox or self.to_peer[self.a] or self.to_peer[self.b]:
            for peer in (self.a, self.b):
                if peer.outbox:
                    self.send(peer)
                if self.to_peer[peer]:
                    self.deliver(peer)

    def rendered(self) -> dict[str, Any]:
        return render(self.template, self.server.doc)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_200_interleaved_edits_to_one_text_converge_without_losing_a_character(
    seed: int,
) -> None:
    rng = random.Random(seed)
    call = Call()
    alphabet = {call.a: string.ascii_lowercase, call.b: string.ascii_uppercase + string.digits}
    typed: Counter[str] = Counter()
    edits = 0
    while edits < 200 or any([call.a.outbox, call.b.outbox, *call.to_peer.values()]):
        peer = rng.choice([call.a, call.b])
        action = rng.random()
        if edits < 200 and action < 0.4:
            text = peer.text("went_well")
            chars = "".join(rng.choices(alphabet[peer], k=rng.randint(1, 3)))
            text.insert(rng.randint(0, len(str(text))), chars)
            typed.update(chars)
            edits += 1
        elif action < 0.7 and peer.outbox:
            call.send(peer)
        elif call.to_peer[peer]:
            call.deliver(peer)

    seen_by_a = str(call.a.text("went_well"))
    assert seen_by_a == str(call.b.text("went_well"))
    assert call.rendered()["went_well"] == seen_by_a
    assert Counter(seen_by_a) == typed
    assert render(CHECK_IN, call.a.doc) == render(CHECK_IN, call.b.doc) == call.rendered()


def test_an_offline_peer_s_twenty_edits_merge_when_it_syncs_again() -> None:
    rng = random.Random(7)
    call = Call()
    typed: dict[str, Counter[str]] = {
        key: Counter() for key in ("went_well", "was_hard", "bring_to_session")
    }

    def type_into(peer: Peer, key: str, chars: str) -> None:
        text = peer.text(key)
        text.insert(rng.randint(0, len(str(text))), chars)
        typed[key].update(chars)

    type_into(call.a, "was_hard", "Sunday. ")
    call.flush()

    # b goes offline: what it types stays in its document, and what a types meanwhile
    # does not reach it.
    for index in range(19):
        type_into(call.b, rng.choice(list(typed)), f"b{index}")
    call.b.fields["sleep"] = 6
    call.b.take_outbox()
    for index in range(10):
        type_into(call.a, "was_hard", f"A{index}")
    call.a.fields["mood"] = 4
    while call.a.outbox:
        call.send(call.a)
    call.to_peer[call.b].clear()

    connect(call.server, call.b, call.a)

    expected = call.rendered()
    assert render(CHECK_IN, call.a.doc) == render(CHECK_IN, call.b.doc) == expected
    for key, chars in typed.items():
        assert Counter(str(expected[key])) == chars
    assert (expected["sleep"], expected["mood"]) == (6, 4)


def test_rows_added_concurrently_by_both_peers_are_all_kept() -> None:
    call = Call(builtin_template("cbt-thought-record"))
    for peer, words in ((call.a, "therapist"), (call.b, "client")):
        rows = peer.fields["entries"]
        rows.append(
            Map(
                {
                    sub: Text()
                    for sub in (
                        "situation",
                        "automatic_thought",
                        "feeling",
                        "evidence_for",
                        "evidence_against",
                        "balanced_thought",
                    )
                }
            )
        )
        rows[len(rows) - 1]["situation"].insert(0, words)
        rows[len(rows) - 1]["intensity"] = 8
    call.flush()

    entries = call.rendered()["entries"]
    assert sorted(row["situation"] for row in entries) == ["client", "therapist"]
    assert render(call.template, call.a.doc) == render(call.template, call.b.doc)


def test_sync_step1_is_answered_with_exactly_what_the_sender_lacks() -> None:
    server = SharedWorksheet(CHECK_IN, new_document(CHECK_IN))
    peer = Peer("late")
    reply = server.receive(peer.sync_step1())
    assert reply.broadcast is None
    assert reply.reply is not None
    assert decode_message(reply.reply).step == 1
    peer.receive(reply.reply)
    assert render(CHECK_IN, peer.doc) == render(CHECK_IN, server.doc)


def test_an_update_beyond_a_text_s_max_length_is_refused_and_changes_nothing() -> None:
    call = Call(SMALL)
    call.a.text("word").insert(0, "fine")
    call.flush()
    call.server.mark_clean()
    before = compact(call.server.doc)

    call.b.text("word").insert(4, " and dandy")
    with pytest.raises(LimitError) as caught:
        call.send(call.b)

    assert caught.value.field_path == "word"
    assert str(caught.value) == "word: is 14 characters long, more than the limit of 10"
    assert compact(call.server.doc) == before
    assert call.rendered()["word"] == "fine"
    assert call.to_peer[call.a] == []
    assert not call.server.dirty


def test_a_text_within_its_limit_in_characters_but_not_in_bytes_is_accepted() -> None:
    call = Call(SMALL)
    call.a.text("word").insert(0, "😀é" * 5)  # 10 characters, 30 bytes in UTF-8
    call.send(call.a)
    assert call.rendered()["word"] == "😀é" * 5
    call.b.text("word").insert(0, "é")
    with pytest.raises(LimitError, match="word: is 11 characters long"):
        call.send(call.b)


LINE = parse_template(
    {
        "id": "line",
        "title": "Line",
        "fields": [
            {"id": "line", "label": "Line", "kind": "short_text", "max_length": 100},
            {"id": "other", "label": "Other", "kind": "short_text", "max_length": 100},
        ],
    }
)


def test_keystrokes_one_at_a_time_fill_a_text_to_its_limit_and_no_further() -> None:
    # A keystroke is checked against what is left of each text's room (an update adds at
    # most its own length), the texts measured again whenever that is not enough.
    call = Call(LINE)
    for n in range(100):
        call.a.text("line").insert(n, "x")
        call.send(call.a)
    assert call.rendered()["line"] == "x" * 100

    call.a.text("line").insert(0, "z")
    with pytest.raises(LimitError, match="line: is 101 characters long"):
        call.send(call.a)
    assert call.rendered()["line"] == "x" * 100


def test_a_text_grown_on_the_server_is_measured_again_before_the_next_keystroke() -> None:
    call = Call(LINE)
    call.a.text("line").insert(0, "a")
    call.send(call.a)  # the texts are measured: plenty of room
    line = call.server.doc.get(ROOT, type=Map)["line"]
    line.insert(1, "b" * 98)  # a change made on the server, which no keystroke counted

    call.b.text("line").insert(0, "cc")
    with pytest.raises(LimitError, match="line: is 101 characters long"):
        call.send(call.b)


def test_flattening_a_shared_text_is_refused() -> None:
    call = Call(SMALL)
    call.a.text("story").insert(0, "typed together")
    call.flush()
    before = compact(call.server.doc)
    call.b.fields["story"] = "overwritten"
    with pytest.raises(LimitError, match="story: is not a shared text"):
        call.send(call.b)
    assert compact(call.server.doc) == before


def test_adding_a_root_is_refused() -> None:
    call = Call(SMALL)
    call.b.doc["notes"] = Text("elsewhere")
    with pytest.raises(LimitError, match="unexpected roots"):
        call.send(call.b)


def test_a_refused_peer_is_stuck_until_it_loads_the_worksheet_afresh() -> None:
    call = Call(SMALL)
    call.b.fields["mood"] = 42
    with pytest.raises(LimitError):
        call.send(call.b)

    # b's next change builds on the refused one: the server asks for what it lacks, and
    # b's answer carries the refused change again.
    call.b.text("story").insert(0, "lost")
    call.send(call.b)
    assert call.to_peer[call.b] == [call.server.sync_step1()]
    answer = call.b.receive(call.to_peer[call.b].pop())
    assert answer is not None
    with pytest.raises(LimitError, match="mood"):
        call.server.receive(answer)

    fresh = Peer("b again")
    connect(call.server, fresh, call.a)
    fresh.text("story").insert(0, "kept")
    call.server.receive(fresh.take_outbox()[0])
    assert call.rendered()["story"] == "kept"


def test_the_other_peer_keeps_editing_after_a_refusal() -> None:
    call = Call(SMALL)
    call.b.fields["mood"] = 11
    with pytest.raises(LimitError, match="mood"):
        call.send(call.b)
    call.a.text("story").insert(0, "still here")
    call.flush()
    assert call.rendered()["story"] == "still here"
    assert call.rendered()["mood"] is None
    assert str(call.b.text("story")) == "still here"


def test_a_refusal_after_many_accepted_edits_and_server_changes_keeps_them_all() -> None:
    call = Call(SMALL)
    for number in range(300):
        peer = call.a if number % 2 == 0 else call.b
        peer.text("story").insert(0, "ab"[number % 2])
        call.flush()
    add_row(SMALL, call.server.doc, "rows")
    call.a.text("word").insert(0, "ok")
    call.flush()
    before = compact(call.server.doc)

    call.b.fields["mood"] = 12
    with pytest.raises(LimitError, match="mood"):
        call.send(call.b)

    assert compact(call.server.doc) == before
    rendered = call.rendered()
    assert rendered["story"] == "ba" * 150
    assert (rendered["word"], len(rendered["rows"]), rendered["mood"]) == ("ok", 1, None)
    call.a.text("word").insert(2, "!")
    call.flush()
    assert call.rendered()["word"] == "ok!"


def test_an_update_larger_than_the_document_limit_is_refused_before_it_is_applied() -> None:
    call = Call(SMALL)
    rows = call.b.fields["rows"]
    for _ in range(20):
        rows.append(Map({"note": Text("x" * 15000)}))
    huge = create_update_message(compact(call.b.doc))
    before = compact(call.server.doc)
    with pytest.raises(LimitError) as caught:
        call.server.receive(huge)
    assert caught.value.field_path == "document"
    assert "more than the limit of 262144 bytes" in caught.value.message
    assert compact(call.server.doc) == before


def test_growing_past_the_document_limit_is_refused_and_changes_nothing() -> None:
    call = Call(SMALL)
    rows = call.a.fields["rows"]
    accepted = 0
    with pytest.raises(LimitError) as caught:
        for _ in range(30):
            before = compact(call.server.doc)
            rows.append(Map({"note": Text("y" * 15000)}))
            call.send(call.a)
            accepted += 1
    assert caught.value.field_path == "document"
    assert 10 < accepted < 20
    assert compact(call.server.doc) == before
    assert len(call.rendered()["rows"]) == accepted


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\x00",
        b"\x00\x02",
        b"\x01\x00",
        b"\x05\x00\x00",
        b"\x00\x03\x00",
        b"\x00\x02\x05ab",
        b"\x00\x02\x02\x00\x00trailing",
        b"\x00\x02\x03abc",
        b"\x00\x01\x04\xff\xff\xff\xff",
        b"\x00\x00\x03\xff\xff\xff",
        b"\x00\x02" + b"\xff" * 12 + b"\x01",
        b"\x80\x80",
    ],
)
def test_malformed_messages_raise_sync_error_and_change_nothing(message: bytes) -> None:
    call = Call()
    call.a.text("went_well").insert(0, "a good walk")
    call.flush()
    before = compact(call.server.doc)
    with pytest.raises(SyncError):
        call.server.receive(message)
    assert compact(call.server.doc) == before
    call.b.text("went_well").insert(0, "Sunday: ")
    call.flush()
    assert call.rendered()["went_well"] == "Sunday: a good walk"


def test_corrupted_updates_raise_only_sync_or_limit_errors_and_change_nothing() -> None:
    rng = random.Random(5)
    call = Call()
    call.a.text("went_well").insert(0, "base")
    valid = call.a.outbox[-1]
    call.flush()
    refused = 0
    for _ in range(500):
        mutated = bytearray(valid)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        before = compact(call.server.doc)
        try:
            call.server.receive(bytes(mutated))
        except (SyncError, LimitError):
            refused += 1
            assert compact(call.server.doc) == before
        check_limits(CHECK_IN, call.server.doc)
    assert refused > 250


def test_an_update_that_builds_on_unseen_changes_asks_for_them_instead() -> None:
    call = Call(SMALL)
    call.a.text("story").insert(0, "one")
    call.a.text("story").insert(3, " two")
    first, second = call.a.take_outbox()
    before = compact(call.server.doc)

    reply = call.server.receive(second)

    assert reply.broadcast is None
    assert reply.reply == call.server.sync_step1()
    assert compact(call.server.doc) == before
    answer = call.a.receive(reply.reply)
    assert answer is not None
    healed = call.server.receive(answer)
    assert healed.broadcast is not None
    assert call.rendered()["story"] == "one two"
    assert call.server.receive(first).broadcast is None


def test_an_update_received_twice_is_broadcast_once() -> None:
    call = Call(SMALL)
    call.a.text("story").insert(0, "again")
    message = call.a.outbox[0]
    assert call.server.receive(message).broadcast is not None
    assert call.server.receive(message) == Reply(reply=None, broadcast=None)
    assert call.server.receive(create_update_message(b"\x00\x00")) == Reply()
    assert call.server.receive(sync_step2_message(b"\x00\x00")) == Reply()


def test_changes_set_dirty_and_call_on_change_and_sync_step1_does_not() -> None:
    changes: list[bytes] = []
    server = SharedWorksheet(SMALL, new_document(SMALL), on_change=changes.append)
    peer = Peer("p")
    server.receive(peer.sync_step1())
    connect(server, peer)
    assert (server.dirty, changes) == (False, [])

    initial = compact(server.doc)
    peer.text("story").insert(0, "hello")
    server.receive(peer.take_outbox()[0])
    assert server.dirty
    assert len(changes) == 1
    replica: Doc[Any] = Doc()
    replica.apply_update(initial)
    replica.apply_update(changes[0])
    assert render(SMALL, replica)["story"] == "hello"
    server.mark_clean()
    assert not server.dirty


def test_a_change_made_on_the_server_document_is_seen_by_later_checks() -> None:
    changes: list[bytes] = []
    call = Call(SMALL)
    call.server = SharedWorksheet(SMALL, call.server.doc, on_change=changes.append)
    for _ in range(49):
        add_row(SMALL, call.server.doc, "rows")
    assert call.server.dirty
    assert len(changes) == 49
    for update in changes:
        call.a.receive(create_update_message(update))
    rows = call.a.fields["rows"]
    assert isinstance(rows, Array)
    rows.append(Map({"note": Text()}))
    call.send(call.a)
    rows.append(Map({"note": Text()}))
    with pytest.raises(LimitError, match="51 rows, more than the limit of 50"):
        call.send(call.a)


def test_a_document_that_does_not_fit_the_template_is_not_shared() -> None:
    with pytest.raises(LimitError):
        SharedWorksheet(SMALL, new_document(CHECK_IN))


def test_close_stops_observing_the_document() -> None:
    server = SharedWorksheet(SMALL, new_document(SMALL))
    server.close()
    server.close()
    add_row(SMALL, server.doc, "rows")
    assert not server.dirty


def test_messages_are_those_of_y_protocols() -> None:
    assert sync_step1_message(b"\x00") == b"\x00\x00\x01\x00"
    assert sync_step2_message(b"\x00\x00") == b"\x00\x01\x02\x00\x00"
    assert decode_message(b"\x00\x02\x02\x00\x00").payload == b"\x00\x00"
    long = bytes(200)
    decoded = decode_message(b"\x00\x02\xc8\x01" + long)
    assert (decoded.step, decoded.payload) == (2, long)


def test_an_update_on_which_the_decoder_panics_is_a_sync_error_and_changes_nothing() -> None:
    case = json.loads((Path(__file__).parent / "panicking_update.json").read_text())
    doc: Doc[Any] = Doc()
    doc.apply_update(bytes.fromhex(case["state"]))
    server = SharedWorksheet(CHECK_IN, doc)
    before = compact(server.doc)

    with pytest.raises(SyncError, match="not a valid update"):
        server.receive(create_update_message(bytes.fromhex(case["update"])))

    assert compact(server.doc) == before


@pytest.mark.parametrize("length", [0, 1, 127, 128, 129, 300, 16383, 16384, 70000])
@pytest.mark.parametrize("step", [0, 1, 2])
def test_sync_messages_are_written_as_pycrdt_writes_them_and_read_back(
    step: int, length: int
) -> None:
    payload = bytes(random.Random(length).randrange(256) for _ in range(length))
    written = {0: sync_step1_message, 1: sync_step2_message, 2: update_message}[step](payload)
    assert written == bytes([0, step]) + write_message(payload)
    decoded = decode_message(written)
    assert (int(decoded.step), decoded.payload) == (step, payload)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"\x00\x02\x03ab", "only 2 follow"),
        (b"\x00\x02\x01abc", "2 bytes after the end"),
        (b"\x00\x02\x81", "ends inside the length"),
        (b"\x00\x03\x01a", "unknown sync message type 3"),
        (b"\x01\x00\x01a", "awareness messages are not supported"),
    ],
)
def test_a_short_malformed_sync_message_is_refused_saying_why(message: bytes, error: str) -> None:
    with pytest.raises(SyncError, match=error):
        decode_message(message)


def test_a_length_written_with_more_bytes_than_needed_still_reads() -> None:
    assert decode_message(b"\x00\x02\x82\x00ab").payload == b"ab"
    assert decode_message(b"\x00\x02\x82\x80\x00ab").payload == b"ab"


def test_a_keystroke_is_passed_on_as_the_message_that_carried_it() -> None:
    call = Call(SMALL)
    call.a.text("story").insert(0, "one")
    message = call.a.take_outbox()[0]

    assert call.server.receive(message).broadcast is message


def test_anything_else_is_passed_on_as_the_document_wrote_the_change() -> None:
    call = Call(SMALL)
    call.a.text("story").insert(0, "one")
    first = call.a.take_outbox()[0]
    call.a.text("story").insert(3, " two")
    second = call.a.take_outbox()[0]
    call.a.text("story").insert(0, "x" * 200)  # a message whose length takes two bytes
    long = call.a.take_outbox()[0]
    assert call.server.receive(first).broadcast is first

    # The same update in a sync step 2 is passed on as an update message.
    as_step2 = sync_step2_message(second[3:])
    assert call.server.receive(as_step2).broadcast == update_message(second[3:])
    # An update holding one change already applied and one new: only the new one.
    both = merge_updates(second[3:], decode_message(long).payload)
    broadcast = call.server.receive(create_update_message(both)).broadcast
    assert broadcast is not None
    assert broadcast != create_update_message(both)
    assert broadcast == long
    assert call.rendered()["story"] == "x" * 200 + "one two"


def test_a_keystroke_written_back_as_it_came_is_not_decoded_again_to_find_a_leftover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call = Call(SMALL)
    call.a.text("story").insert(0, "one")
    first = call.a.take_outbox()[0]
    call.a.text("story").insert(3, " two")
    second = call.a.take_outbox()[0]
    looked: list[bytes] = []
    original = pycrdt_get_update

    def leftover(update: bytes, state: bytes) -> bytes:
        looked.append(update)
        return original(update, state)

    monkeypatch.setattr(sync_module, "get_update", leftover)

    assert call.server.receive(first).broadcast is first
    assert looked == []
    # One that needs a change the server has not seen is written back otherwise: looked at.
    call.a.text("story").insert(0, "x")
    third = call.a.take_outbox()[0]
    assert call.server.receive(third).reply == call.server.sync_step1()
    assert looked == [third[3:]]
    assert call.server.receive(second).broadcast is second
    assert call.server.receive(third).broadcast is third
    assert call.rendered()["story"] == "xone two"
