"""A cell's commit as bytes: the puts of its outcome and checkpoint, for the outcome slot.

A cell's outcome is committed in one LMDB transaction. Made on the reply path, that
transaction cost ~0.45 ms of a trivial cell's ~7 ms in a kernel (measured: ~70 µs
outside one): each ``put`` and the commit release the GIL, and ipykernel's IOPub
thread, busy with the cell's messages, takes it each time. So a small commit is
first copied into the outcome slot (``ahead.AheadSlot``, a memory copy: no system
call, no GIL hand-off; in the page cache, it survives the death of the process) and
applied to LMDB when the kernel is next idle (``Store.settle``), or by the next
kernel when this one died first. This module only turns the commit into bytes and
back; it makes no LMDB call.

Frame: ``MAGIC (4) | seq (8) | count (4)`` then, per item,
``op (1) | kind (1) | key length (4) | key | value length (4) | value``.
"""

from __future__ import annotations

import struct
from typing import Any

from .storekeys import AS_CELL, AS_OUTCOME

MAGIC = b"PKo1"

# What an item is:
PUT = 0  # a tagged value put in its kind's database
BLOB = 1  # a content-addressed blob: stored in chunks, unless an authentic copy is there
AHEAD = 2  # a cell's record as written ahead: an authentic stored record is kept as it is

Item = tuple[int, bytes, bytes, Any]  # (op, kind, key, value)

_HEAD = struct.Struct(">4sQI")
_ITEM = struct.Struct(">BcI")
_LENGTH = struct.Struct(">I")


def encode(seq: int, items: list[Item]) -> bytes:
    parts: list[Any] = [_HEAD.pack(MAGIC, seq, len(items))]
    for op, kind, key, value in items:
        parts.append(_ITEM.pack(op, kind, len(key)))
        parts.append(key)
        parts.append(_LENGTH.pack(memoryview(value).nbytes))
        parts.append(value)
    return b"".join(parts)


def is_frame(payload: bytes) -> bool:
    return payload[:4] == MAGIC


def decode(payload: bytes) -> tuple[int, list[Item]]:
    """(seq, items); ValueError when the bytes are not a whole frame."""
    view = memoryview(payload)
    try:
        magic, seq, count = _HEAD.unpack_from(view, 0)
        if magic != MAGIC:
            raise ValueError("not an outcome frame")
        at = _HEAD.size
        items: list[Item] = []
        for _ in range(count):
            op, kind, key_length = _ITEM.unpack_from(view, at)
            at += _ITEM.size
            key = bytes(view[at : at + key_length])
            at += key_length
            (value_length,) = _LENGTH.unpack_from(view, at)
            at += _LENGTH.size
            value = bytes(view[at : at + value_length])
            at += value_length
            if op not in (PUT, BLOB, AHEAD) or len(key) != key_length or len(value) != value_length:
                raise ValueError("a damaged outcome frame")
            items.append((op, kind, key, value))
    except struct.error as exc:
        raise ValueError(f"a short outcome frame: {exc}") from exc
    if at != len(view):
        raise ValueError("an outcome frame with bytes after its items")
    return seq, items


def record_parts(items: list[Item]) -> tuple[bytes | None, bytes | None]:
    """The cell's record (as written ahead) and its outcome, among a frame's items."""
    ahead = next((value for _op, kind, _key, value in items if kind == AS_CELL), None)
    outcome = next((value for op, kind, _key, value in items if op == PUT and kind == AS_OUTCOME), None)
    return (None if ahead is None else bytes(ahead)), (None if outcome is None else bytes(outcome))
