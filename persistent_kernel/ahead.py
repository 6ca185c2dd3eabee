"""The write-ahead slot: the record of the cell about to run, in a memory-mapped file.

A cell's record must be on record before the cell runs, so that a cell that
kills the kernel is known (and never replayed). Committing it to LMDB costs a
transaction whose ``put`` and ``commit`` release the GIL; in a kernel, whose
IOPub thread is busy exactly when a cell starts, each release can wait for that
thread. Copying the record into a shared file mapping is a plain memory copy:
no system call, no GIL hand-off, and the bytes are in the OS page cache the
moment they are copied, so they survive the death of the process (an OS crash
can lose them, like an LMDB commit made with ``sync=False``; the store's
flusher msyncs the slot with the environment).

The slot holds one record: the cell's ahead part is committed to LMDB with its
outcome, and a record still in the slot whose sequence number LMDB has not
reached is a cell that was running when the kernel died (``Store`` takes it in
at the next open). A kill in the middle of the copy leaves a frame whose
checksum fails: nothing was running yet.

Frame: ``MAGIC (4) | length (4, little-endian) | xxh3_64 of the payload (8) | payload``.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import xxhash

from .privatefiles import open_private

MAGIC = b"PKa1"
HEADER = 16
INITIAL_SIZE = 64 * 1024


class AheadSlot:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fd = open_private(self.path, os.O_RDWR | os.O_CREAT)  # never through a symlink: every cell's code goes here
        try:
            size = os.fstat(fd).st_size
            if size < INITIAL_SIZE:
                os.ftruncate(fd, INITIAL_SIZE)
                size = INITIAL_SIZE
            self._map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)

    def read(self) -> bytes | None:
        """The payload in the slot, or None when it is empty or incomplete."""
        header = self._map[:HEADER]
        if header[:4] != MAGIC:
            return None
        length = int.from_bytes(header[4:8], "little")
        if length > len(self._map) - HEADER:
            return None
        payload = self._map[HEADER : HEADER + length]
        if xxhash.xxh3_64_digest(payload) != header[8:16]:
            return None
        return payload

    def write(self, payload: bytes) -> None:
        """Put ``payload`` in the slot (replacing what was there)."""
        needed = HEADER + len(payload)
        if needed > len(self._map):
            self._grow(needed)
        self._map[:4] = b"\0\0\0\0"  # invalid while the payload is copied
        self._map[HEADER:needed] = payload
        self._map[4:HEADER] = len(payload).to_bytes(4, "little") + xxhash.xxh3_64_digest(payload)
        self._map[:4] = MAGIC

    def clear(self) -> None:
        self._map[:4] = b"\0\0\0\0"

    def _grow(self, needed: int) -> None:
        size = max(needed, 2 * len(self._map))
        self._map.resize(size)

    def flush(self) -> None:
        """msync: make the slot survive an OS crash too."""
        self._map.flush()

    def close(self) -> None:
        if not self._map.closed:
            self._map.close()
