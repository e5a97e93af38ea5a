"""The messages of the Yjs sync protocol (y-protocols/sync), written and read strictly.

A message is ``varuint(0 = sync) · varuint(step) · varbytes(payload)``, where the step is
0 (sync step 1: the sender's state vector), 1 (sync step 2: the update the other side is
missing) or 2 (an update). Incoming ones are decoded here, strictly, since pycrdt's decoder
trusts its input.
"""

from __future__ import annotations

from typing import NamedTuple

from pycrdt import YMessageType, YSyncMessageType

EMPTY_UPDATE = b"\x00\x00"
"""A Yjs update with no structs and no deletions."""

#: The message type of a sync message, and the step of an update, as numbers.
_SYNC = int(YMessageType.SYNC)
_STEP_UPDATE = int(YSyncMessageType.SYNC_UPDATE)
_MAX_VARUINT_BITS = 53  # as lib0: larger numbers are not safe integers in JavaScript
#: The sync steps by number (looking them up in the enum each time is slow).
_STEPS = tuple(sorted(YSyncMessageType, key=int))


class SyncError(ValueError):
    """A message that is not a well-formed Yjs sync message, or an undecodable payload."""


class SyncMessage(NamedTuple):
    step: YSyncMessageType
    payload: bytes


def sync_step1_message(state: bytes) -> bytes:
    """A sync step 1 message carrying a state vector."""
    return _message(YSyncMessageType.SYNC_STEP1, state)


def sync_step2_message(update: bytes) -> bytes:
    """A sync step 2 message carrying an update."""
    return _message(YSyncMessageType.SYNC_STEP2, update)


def update_message(update: bytes) -> bytes:
    """An update message, e.g. to relay a change made on the server to the participants."""
    return _message(YSyncMessageType.SYNC_UPDATE, update)


def _message(step: YSyncMessageType, payload: bytes) -> bytes:
    """``0 · step · varuint(length) · payload`` (as pycrdt's helpers write it, but at the
    cost of one concatenation: one is written for every keystroke)."""
    length = len(payload)
    if length < 0x80:
        return bytes((_SYNC, int(step), length)) + payload
    head = bytearray((_SYNC, int(step)))
    while length >= 0x80:
        head.append(length & 0x7F | 0x80)
        length >>= 7
    head.append(length)
    return bytes(head) + payload


def short_update(message: bytes) -> bytes | None:
    """The update in `message` if it is a short update message written exactly as
    `update_message` writes one (a keystroke's); None for anything else, to be decoded."""
    if (
        type(message) is bytes
        and 3 < len(message) < 0x83
        and message[0] == _SYNC
        and message[1] == _STEP_UPDATE
        and message[2] == len(message) - 3
    ):
        return message[3:]
    return None


def decode_message(message: bytes) -> SyncMessage:
    """Decode one sync message; `SyncError` for anything else (including awareness)."""
    # The common case, a keystroke's update: a sync message whose payload length fits in
    # one or two bytes, and nothing after the payload.
    if type(message) is bytes and len(message) > 3 and message[0] == _SYNC:
        step, length = message[1], message[2]
        start = 3
        if length >= 0x80 and len(message) > 4 and message[3] < 0x80:
            length = (length & 0x7F) | (message[3] << 7)
            start = 4
        whole = length < 0x80 << (7 * (start - 3)) and len(message) == start + length
        if whole and step < len(_STEPS):
            return SyncMessage(_STEPS[step], message[start:])
    reader = _Reader(message)
    kind = reader.var_uint("message type")
    if kind == YMessageType.AWARENESS:
        raise SyncError("awareness messages are not supported")
    if kind != YMessageType.SYNC:
        raise SyncError(f"unknown message type {kind}")
    step = reader.var_uint("sync message type")
    if step >= len(_STEPS):
        raise SyncError(f"unknown sync message type {step}")
    payload = reader.var_bytes("payload")
    if reader.remaining:
        raise SyncError(f"{reader.remaining} bytes after the end of the message")
    return SyncMessage(_STEPS[step], payload)


class _Reader:
    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SyncError(f"a message must be bytes, got {type(data).__name__}")
        self.data = bytes(data)
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def var_uint(self, what: str) -> int:
        value = 0
        shift = 0
        while True:
            if self.offset >= len(self.data):
                raise SyncError(f"the message ends inside the {what}")
            byte = self.data[self.offset]
            self.offset += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
            if shift >= _MAX_VARUINT_BITS:
                raise SyncError(f"the {what} is too large")
        if value >= 1 << _MAX_VARUINT_BITS:
            raise SyncError(f"the {what} is too large")
        return value

    def var_bytes(self, what: str) -> bytes:
        length = self.var_uint(f"length of the {what}")
        if length > self.remaining:
            raise SyncError(
                f"the {what} should be {length} bytes long, but only {self.remaining} follow"
            )
        start = self.offset
        self.offset += length
        return self.data[start : self.offset]
