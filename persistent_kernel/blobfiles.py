"""Large blobs as content-addressed files beside the LMDB environment.

A buffer of ``large_blob_bytes`` or more (a big numpy array, a DataFrame's
block) is not put into LMDB: without ``writemap`` LMDB copies a value into
freshly allocated dirty pages before writing it, a second copy of the data in
RAM; with ``writemap`` an OS crash under ``sync=False`` can corrupt the file.
A file written straight from the array's memory costs no copy, lands in the
background (see ``writer``), and is loaded back by mapping it (pages come in on
first access), so a restore does not read gigabytes it may never touch.

A file appears under its final name only after its bytes were fsynced *and*
found to hash to the digest computed at the end of the cell: a value the next
cell changed while it was being written is never taken for the cell's state.

No LMDB here, no IPython.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import xxhash

from .authentication import SegmentHasher
from .privatefiles import open_private

COPY_CHUNK = 16 * 1024**2  # the only extra memory a write uses: one chunk


# mmap(2)'s flag to place a mapping at a given address (Python's mmap module cannot): the same value on Linux and macOS.
_MAP_FIXED = 0x10 if sys.platform.startswith(("linux", "darwin")) else 0


def _libc_mmap() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.mmap
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_void_p
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    return function


_mmap_at = _libc_mmap() if _MAP_FIXED else None


def _map_file_at(address: int, size: int, fd: int) -> bool:
    """Map a file privately over ``size`` bytes at ``address`` (page-aligned, inside a mapping
    this process owns). False where that cannot be done here: the caller copies instead."""
    if _mmap_at is None or address % mmap.PAGESIZE:
        return False
    placed = _mmap_at(address, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | _MAP_FIXED, fd, 0)
    if placed != address:
        number = ctypes.get_errno()
        raise OSError(number, f"mapping a piece of a large value failed: {os.strerror(number)}")
    return True


class TornWrite(Exception):
    """The value changed while it was being written; what was written is not any one state of it."""


class WriteCancelled(Exception):
    """The write was called off (the session is being forgotten or the kernel is stopping)."""


def write_failure(doing: str, exc: BaseException, where: Path | None = None) -> str:
    """What a failed write tells the user: a full disk in plain words, anything else as it is.

    LMDB can report a commit on a full disk as an I/O error: with ``where`` given,
    a file system with no space left counts as full whatever the error says.
    """
    if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc):
        return f"the disk holding the session's store is full ({doing} failed: No space left on device)"
    if where is not None and _no_space_left(where):
        return f"the disk holding the session's store is full ({doing} failed: {exc})"
    return f"{doing} failed: {exc}"


def _no_space_left(where: Path) -> bool:
    try:
        room = os.statvfs(where)
    except OSError:
        return False
    return room.f_blocks > 0 and room.f_bavail * room.f_frsize < 1024**2


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobFiles:
    """The directory ``<store>/blobs``: one file per large blob, named by its digest."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, blob_digest: bytes) -> Path:
        return self.directory / blob_digest.hex()

    def exists(self, blob_digest: bytes) -> bool:
        return self.path(blob_digest).is_file()

    def size(self, blob_digest: bytes) -> int | None:
        try:
            return self.path(blob_digest).stat().st_size
        except FileNotFoundError:
            return None

    def write(
        self,
        blob_digest: bytes,
        data: Any,
        *,
        throttle: Callable[[int], None] | None = None,
        chunk_size: int = COPY_CHUNK,
        cancelled: Callable[[], bool] | None = None,
        seal: Callable[[list[bytes]], None] | None = None,
        stamped: Callable[[os.stat_result], None] | None = None,
    ) -> int:
        """Write ``data`` (bytes-like) durably under ``blob_digest``; returns the bytes written.

        Each chunk is copied once into a reusable buffer, hashed and written from
        that copy, so the file holds exactly the bytes that were hashed. If their
        hash is not ``blob_digest`` the data changed meanwhile: the temporary
        file is removed and ``TornWrite`` raised. ``throttle(n)`` is called after
        each chunk (to leave disk bandwidth to the user; pass a small ``chunk_size`` with it).
        ``seal(segment_hashes)`` is called with the SHA-256 of each 16 MiB segment
        of what was written (``authentication.SegmentHasher``), after the fsync and
        before the file appears: a complete file always has its tag. ``stamped(info)`` is
        then called with the file's ``fstat`` once it is in place (see ``Authenticator.file_seal``).
        """
        final = self.path(blob_digest)
        if final.is_file():
            return 0  # content-addressed: these bytes are already stored
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        view = memoryview(data).cast("B")
        room = os.statvfs(self.directory)
        if room.f_blocks and view.nbytes > room.f_bavail * room.f_frsize:
            # It cannot fit: filling the disk to find out would make the kernel's next commits fail too.
            raise OSError(errno.ENOSPC, "No space left on device", str(self.directory))
        temporary = self.directory / f".{blob_digest.hex()}.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)  # a killed write of this process id; never written through
        fd = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            hasher = xxhash.xxh3_128()
            segments = SegmentHasher() if seal is not None else None
            chunk = bytearray(min(chunk_size, max(view.nbytes, 1)))
            for start in range(0, view.nbytes, chunk_size):
                if cancelled is not None and cancelled():
                    raise WriteCancelled(f"the write of blob {blob_digest.hex()} was called off")
                part = view[start : start + chunk_size]
                size = part.nbytes
                copy = memoryview(chunk)[:size]
                copy[:] = part
                hasher.update(copy)
                if segments is not None:
                    segments.update(copy)
                written = 0
                while written < size:
                    written += os.write(fd, copy[written:])
                if throttle is not None:
                    throttle(size)
            if hasher.digest() != blob_digest:
                raise TornWrite(f"blob {blob_digest.hex()} changed while it was being written")
            os.fsync(fd)
            if seal is not None and segments is not None:
                seal(segments.finish())
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        try:
            os.replace(temporary, final)  # the commit point of the file
            _fsync_dir(self.directory)
            info = os.fstat(fd)  # after the rename, which sets the ctime: the identity the file keeps
        finally:
            os.close(fd)
        if stamped is not None:
            stamped(info)
        return view.nbytes

    def map(self, blob_digest: bytes, stats: dict[bytes, os.stat_result] | None = None) -> mmap.mmap | bytes:
        """The blob as a private, writable mapping: pages load on first access; writes stay in memory.

        An empty blob is ``b""`` (``mmap`` refuses length 0).

        Raises FileNotFoundError when the blob is not (or no longer) stored, and
        ``NotPrivate`` when it is not a private regular file of this user's: the
        mapping shows later changes to the file, so only a file no one else can
        write stays as it was verified. ``stats`` gets the ``fstat`` of the file mapped.
        """
        fd = open_private(self.path(blob_digest), os.O_RDONLY)
        try:
            info = os.fstat(fd)
            if stats is not None:
                stats[blob_digest] = info
            if info.st_size == 0:
                return mmap.mmap(-1, 1)[:0]  # an empty buffer (mmap refuses length 0)
            return mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)  # the mapping keeps the file alive, even if it is deleted later

    def map_pieces(
        self, digests: list[bytes], copied: dict[bytes, Any], stats: dict[bytes, os.stat_result] | None = None
    ) -> tuple[mmap.mmap | bytes, list[tuple[int, int]]]:
        """Blobs laid end to end in one private, writable mapping, and where each one lies (offset, size).

        Each blob's file is mapped in place (pages load on first access; writes stay in
        memory), so an array stored as pieces comes back as lazily as one stored whole;
        the blobs in ``copied`` (kept in LMDB) are copied in. The mapping is an anonymous
        one the pieces are placed over: when it is freed, they all go with it.

        Raises FileNotFoundError and ``NotPrivate`` like ``map``; ``stats`` as in ``map``.
        """
        fds: dict[bytes, int] = {}
        try:
            sizes = []
            for blob_digest in digests:
                if blob_digest in copied:
                    sizes.append(memoryview(copied[blob_digest]).nbytes)
                    continue
                if blob_digest not in fds:
                    fds[blob_digest] = open_private(self.path(blob_digest), os.O_RDONLY)
                info = os.fstat(fds[blob_digest])
                if stats is not None:
                    stats[blob_digest] = info
                sizes.append(info.st_size)
            total = sum(sizes)
            spans = []
            offset = 0
            for size in sizes:
                spans.append((offset, size))
                offset += size
            if total == 0:
                return b"", spans
            region = mmap.mmap(-1, total, flags=mmap.MAP_PRIVATE)
            start = ctypes.c_char.from_buffer(region)
            address = ctypes.addressof(start)
            del start  # its hold on the region: the region must stay closable
            for blob_digest, (offset, size) in zip(digests, spans):
                if blob_digest in copied:
                    region[offset : offset + size] = copied[blob_digest]
                elif size and not _map_file_at(address + offset, size, fds[blob_digest]):
                    with mmap.mmap(fds[blob_digest], 0, access=mmap.ACCESS_READ) as piece:
                        region[offset : offset + size] = piece
            return region, spans
        finally:
            for fd in fds.values():
                os.close(fd)  # the mappings keep the files alive

    def remove(self, blob_digest: bytes) -> int:
        """Delete a blob file; returns the bytes freed."""
        path = self.path(blob_digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def digests(self) -> Iterator[bytes]:
        """Every complete blob file (temporary files of an interrupted write are not blobs)."""
        if not self.directory.is_dir():
            return
        for entry in os.scandir(self.directory):
            if entry.name.startswith("."):
                continue
            try:
                yield bytes.fromhex(entry.name)
            except ValueError:
                continue

    def remove_leftovers(self) -> None:
        """Delete temporary files of writes a killed kernel left behind (only the session's owner calls this)."""
        if not self.directory.is_dir():
            return
        for entry in os.scandir(self.directory):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
