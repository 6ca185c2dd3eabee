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

import errno
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
        # Never through a symlink: every cell's code goes here. Kept open to reserve blocks (``_reserve``).
        self._fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        try:
            size = os.fstat(self._fd).st_size
            if size < INITIAL_SIZE:
                os.ftruncate(self._fd, INITIAL_SIZE)
                size = INITIAL_SIZE
            self._map = mmap.mmap(self._fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self._fd)
            raise
        self._reserved = 0  # bytes at the start of the file known to have disk blocks

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
        """Put ``payload`` in the slot (replacing what was there); OSError (ENOSPC) when the disk is full."""
        needed = HEADER + len(payload)
        self._reserve(needed)
        if needed > len(self._map):
            self._grow(needed)
        self._map[:4] = b"\0\0\0\0"  # invalid while the payload is copied
        self._map[HEADER:needed] = payload
        self._map[4:HEADER] = len(payload).to_bytes(4, "little") + xxhash.xxh3_64_digest(payload)
        self._map[:4] = MAGIC

    def clear(self) -> None:
        self._map[:4] = b"\0\0\0\0"

    def _reserve(self, needed: int) -> None:
        """Give the file disk blocks for its first ``needed`` bytes before they are copied in.

        The slot is a shared mapping of a sparse file: the first write to a page
        with no block behind it allocates one, and on a full disk that is a SIGBUS,
        the kernel's death, not an error. ``posix_fallocate`` says ENOSPC instead
        (the cell then runs unjournaled). Done once per size the slot reaches.
        """
        if needed <= self._reserved:
            return
        target = max(needed, INITIAL_SIZE)
        try:
            os.posix_fallocate(self._fd, 0, target)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            # A file system that cannot reserve blocks: write as before (a full disk can still SIGBUS there).
        self._reserved = target

    def _grow(self, needed: int) -> None:
        size = max(needed, 2 * len(self._map))
        self._map.resize(size)

    def flush(self) -> None:
        """msync: make the slot survive an OS crash too."""
        self._map.flush()

    def close(self) -> None:
        if not self._map.closed:
            self._map.close()
            os.close(self._fd)
