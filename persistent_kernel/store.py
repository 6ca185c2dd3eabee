"""The session store: one LMDB environment per session.

This is the only module that imports ``lmdb``. It knows records and metadata,
not IPython. Every transaction is a ``with`` block; a write that finds the map
full grows the map and runs again from the start, so a transaction is applied
whole or not at all.

Durability, flag by flag (see docs/architecture.md):

- ``sync_interval > 0`` (default 1 s): commits are made with ``sync=False`` and a
  background thread calls ``env.sync()`` when something was written. A committed
  transaction is in the OS page cache the moment ``commit`` returns, so the death
  of the kernel process (kill -9, OOM, segfault) loses nothing. An OS crash or
  power loss can lose the transactions of the last ``sync_interval`` seconds;
  because ``writemap`` is off, it cannot corrupt the file.
- ``sync_interval == 0``: every commit waits for ``fsync`` (about 0.3 ms here);
  an OS crash loses nothing that was committed.
- ``writemap`` is never used: together with ``sync=False`` it can corrupt the file
  on an OS crash.
- Large blobs (``blobfiles``) are files beside the environment, each fsynced
  before the version that names them is marked landed; a version that never
  landed is restored from the one before it plus replay.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from .ahead import HEADER as SLOT_HEADER
from .ahead import INITIAL_SIZE as SLOT_INITIAL_SIZE
from .ahead import AheadSlot
from .blobfiles import BlobFiles, write_failure
from .errors import (
    StoreFormatError,
    StoreFromNewerVersion,
    StoreUnavailable,
    StoreWriteError,
)
from .records import UNRECORDED, CellRecord

# 1: journal only (replay); 2: + versions, names, blobs (snapshots);
# 3: + large blobs as files, versions that land later ("files", "landed", "pruned")
FORMAT_VERSION = 3
DEFAULT_MAP_SIZE = 256 * 1024**2  # reserves address space only; the file grows as needed
_MAX_DBS = 8  # meta, cells, and room for what later formats add

_META = b"meta"  # format version, session identity, restore markers and reports (JSON values)
_CELLS = b"cells"  # seq -> the cell as written ahead (JSON)
_OUTCOMES = b"outcomes"  # seq -> how it ended (small JSON), written after it ran
_VERSIONS = b"versions"  # seq + ordinal -> one group version (JSON: names, method, blob digests, or recompute)
_NAMES = b"names"  # name NUL seq -> where that name stood after cell seq (JSON pointer)
_BLOBS = b"blobs"  # digest (16 bytes) + chunk (4 bytes) -> content-addressed bytes

BLOB_CHUNK = 256 * 1024**2  # LMDB values must stay under 4 GiB; chunks keep each put moderate

T = TypeVar("T")


def _seq_key(seq: int) -> bytes:
    # Big-endian so LMDB's byte order is sequence order.
    return seq.to_bytes(8, "big")


def version_key(seq: int, ordinal: int) -> bytes:
    """Key of the ``ordinal``-th group version a cell created."""
    return _seq_key(seq) + ordinal.to_bytes(4, "big")


def _chunk_key(index: int) -> bytes:
    return index.to_bytes(4, "big")


def _name_key(name: str, seq: int) -> bytes:
    # Names are identifiers (no NUL); surrogatepass keeps even globals()['\udcff'] storable.
    return name.encode("utf-8", "surrogatepass") + b"\x00" + _seq_key(seq)


def _split_name_key(key: bytes) -> tuple[str, int]:
    return key[:-9].decode("utf-8", "surrogatepass"), int.from_bytes(key[-8:], "big")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def _is_blob_name(name: str) -> bool:
    """A large blob's file name: the 32 hex digits of its xxh3-128 digest."""
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


_LMDB_MAGIC = 0xBEEFC0DE


def truncation(path: Path) -> str | None:
    """Why ``data.mdb`` is shorter than its own meta page says it is, or None.

    LMDB maps the file and trusts its meta page: reading a page past the end of a
    truncated file kills the process with SIGBUS instead of raising. The two meta
    pages (page 0 and 1) hold the page size and the last page in use; the newer
    one (higher transaction id) is the one LMDB would use. Offsets are those of
    64-bit builds (``MDB_meta`` after a 16-byte page header).
    """
    try:
        with open(path / "data.mdb", "rb") as data:
            head = data.read(2 * 65536)
            size = os.fstat(data.fileno()).st_size
    except FileNotFoundError:
        return None
    if size == 0 or len(head) < 152 or struct.unpack_from("<I", head, 16)[0] != _LMDB_MAGIC:
        return None  # a new file, or not LMDB's: lmdb.open says so itself
    page_size = struct.unpack_from("<I", head, 40)[0]
    if page_size not in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536):
        return None
    metas = []
    for offset in (0, page_size):
        if offset + 152 <= len(head) and struct.unpack_from("<I", head, offset + 16)[0] == _LMDB_MAGIC:
            last_page, txn_id = struct.unpack_from("<QQ", head, offset + 136)
            metas.append((txn_id, last_page))
    if not metas:
        return None
    _txn_id, last_page = max(metas)
    needed = (last_page + 1) * page_size
    if size < needed:
        return f"its data file is truncated ({size:,} bytes; its last page ends at {needed:,})"
    return None


def is_landed(version: dict[str, Any] | None) -> bool:
    """Whether a stored version's bytes are all on disk (large blobs land after the commit)."""
    return version is not None and version.get("kind") == "stored" and version.get("landed", True) and not version.get("pruned")


class Store:
    """A session's journal and metadata in LMDB.

    Not a context manager on purpose: the kernel keeps it open for its life.
    Thread-safe: writes are serialized by a lock (ipykernel runs the control
    channel and subshells on other threads).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = 0,
        sync_interval: float = 1.0,
        owner: bool = False,
    ) -> None:
        """``owner``: the caller holds the session (the kernel, through its ``SessionLock``).

        Only an owner takes in a record left in the write-ahead slot and removes the
        temporary files of a killed background write; anyone else (a command-line
        tool, a test after the kernel died) opens the store to read it.
        """
        self.path = Path(path)
        self.max_map_size = max_map_size  # 0: no limit but the disk
        self.sync_interval = sync_interval
        self._lock = threading.RLock()
        self._dirty = threading.Event()
        self._closed = threading.Event()
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            damage = truncation(self.path)
            if damage:
                raise StoreUnavailable(f"cannot open the store at {self.path}: {damage}")
            self._env = lmdb.open(
                str(self.path),
                subdir=True,
                map_size=map_size if not max_map_size else min(map_size, max_map_size),
                max_dbs=_MAX_DBS,
                sync=sync_interval <= 0,
                metasync=True,
                writemap=False,
                readahead=False,
                mode=0o600,
                create=True,
            )
        except (lmdb.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the store at {self.path}: {exc}") from exc
        try:
            self._env.reader_check()  # frees reader slots of killed processes
            self._meta = self._env.open_db(_META)
            self._cells = self._env.open_db(_CELLS)
            self._outcomes = self._env.open_db(_OUTCOMES)
            self._versions = self._env.open_db(_VERSIONS)
            self._names = self._env.open_db(_NAMES)
            self._blobs = self._env.open_db(_BLOBS)
            self._check_format()
        except (lmdb.Error, StoreUnavailable) as exc:
            self._env.close()
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"cannot read the store at {self.path}: {exc}") from exc
        self.files = BlobFiles(self.path / "blobs")
        if owner:
            self.files.remove_leftovers()  # a killed writer's temporary files
        self._floor = 0  # records below this were cleared while they ran (%persist forget)
        self._running: tuple[int, bytes] | None = None  # the record this store wrote to the slot
        self._slot_reserved = 0  # bytes at the start of the slot's file known to have disk blocks
        self._seen_running: tuple[int, bytes] | None = None  # a non-owner's view of the kernel's slot
        try:
            self.slot = AheadSlot(self.path / "ahead")
            if owner:
                self._next_seq = self._take_in_slot()
            else:
                with self._env.begin() as txn:
                    self._next_seq = self._next_seq_in(txn)
                # Shown by records(), never written by this store: the cell running now, or the one its kernel died in.
                self._seen_running = self._slot_record(self._next_seq)
        except (OSError, ValueError, StoreWriteError) as exc:
            self._env.close()
            raise StoreUnavailable(f"cannot open the write-ahead slot of the store at {self.path}: {exc}") from exc
        self._flusher: threading.Thread | None = None
        if sync_interval > 0:
            self._flusher = threading.Thread(target=self._flush_loop, name="persistent-kernel-sync", daemon=True)
            self._flusher.start()

    # -- format -----------------------------------------------------------------

    def _check_format(self) -> None:
        with self._env.begin(db=self._meta) as txn:
            raw = txn.get(b"format_version")
            has_cells = txn.stat(self._cells)["entries"] > 0
        if raw is None:
            if has_cells:
                raise StoreFormatError(f"the store at {self.path} has cells but no format version; it was not written by persistent_kernel")
            self._write(lambda txn: txn.put(b"format_version", str(FORMAT_VERSION).encode(), db=self._meta))
            return
        try:
            version = int(bytes(raw))
        except ValueError:
            raise StoreFormatError(f"the store at {self.path} has an unreadable format version {bytes(raw)!r}") from None
        if version > FORMAT_VERSION:
            raise StoreFromNewerVersion(
                f"the store at {self.path} has format version {version}, written by a newer persistent_kernel; "
                f"this one reads version {FORMAT_VERSION} and older. Upgrade persistent-kernel to use it."
            )
        if version < FORMAT_VERSION:
            # Every older format is a subset of this one: say so, so older code refuses what it cannot read.
            self._write(lambda txn: txn.put(b"format_version", str(FORMAT_VERSION).encode(), db=self._meta))

    @property
    def format_version(self) -> int:
        return int(self.get_meta("format_version", FORMAT_VERSION))

    # -- writing ------------------------------------------------------------------

    def _write(self, body: Callable[[Any], T]) -> T:
        """Run ``body(txn)`` in one write transaction; grow the map when it is full."""
        with self._lock:
            if self._closed.is_set():
                raise StoreWriteError(f"the store at {self.path} is closed")
            while True:
                try:
                    with self._env.begin(write=True) as txn:
                        result = body(txn)
                    self._dirty.set()
                    return result
                except lmdb.MapFullError:
                    # The `with` aborted the transaction; grow and run it again whole.
                    self._grow()
                except lmdb.Error as exc:
                    raise StoreWriteError(write_failure(f"writing to the store at {self.path}", exc, self.path)) from exc

    def _grow(self) -> None:
        current = self._env.info()["map_size"]
        wanted = current * 2
        if self.max_map_size and current >= self.max_map_size:
            raise StoreWriteError(
                f"the store at {self.path} reached its size limit of {self.max_map_size:,} bytes "
                "(PersistentKernel.max_store_size)"
            )
        if self.max_map_size:
            wanted = min(wanted, self.max_map_size)
        try:
            self._env.set_mapsize(wanted)
        except lmdb.Error as exc:
            raise StoreWriteError(write_failure(f"growing the store at {self.path} to {wanted:,} bytes", exc, self.path)) from exc

    def set_meta(self, **items: Any) -> None:
        """Set several metadata keys in one transaction (values are JSON)."""

        def body(txn):
            for key, value in items.items():
                if value is None:
                    txn.delete(key.encode(), db=self._meta)
                else:
                    txn.put(key.encode(), json.dumps(value).encode(), db=self._meta)

        self._write(body)

    def _slot_record(self, next_seq: int) -> tuple[int, bytes] | None:
        """The record in the write-ahead slot, if it is a cell whose outcome is not committed."""
        payload = self.slot.read()
        if payload is None:
            return None
        try:
            seq = CellRecord.decode(payload).seq
        except (ValueError, TypeError):
            return None  # not a record this code wrote: nothing ran
        return (seq, payload) if seq >= next_seq else None  # else its outcome is committed

    def _take_in_slot(self) -> int:
        """Read ``next_seq``; a record left in the slot beyond it ran when the kernel died: record it."""
        with self._env.begin() as txn:
            next_seq = self._next_seq_in(txn)
        found = self._slot_record(next_seq)
        if found is None:
            return next_seq
        seq, payload = found
        self._write(lambda txn: self._put_ahead(txn, seq, payload))
        return seq + 1

    def append(self, record: CellRecord) -> CellRecord:
        """Give ``record`` the next sequence number and write it ahead (to the slot); returns it.

        It reaches LMDB with its outcome (``set_outcome``, ``commit_checkpoint``),
        or, if the kernel dies first, when the store is next opened.
        """
        with self._lock:
            if self._closed.is_set():
                raise StoreWriteError(f"the store at {self.path} is closed")
            if self._running is not None:
                # The previous cell ran but its outcome could not be committed (a full disk): keep
                # its record, saying so, not "started" (which a restore takes for a cell the kernel died in).
                self._write(lambda txn: self._put_unrecorded(txn, *self._running))
                self._running = None
            record.seq = self._next_seq
            ahead = record.encode_ahead()
            try:
                self._reserve_slot(SLOT_HEADER + len(ahead))
                self.slot.write(ahead)
            except (OSError, ValueError) as exc:  # growing the slot for a very large cell can fail
                raise StoreWriteError(write_failure(f"writing the cell ahead to {self.slot.path}", exc)) from exc
            self._next_seq += 1
            self._running = (record.seq, ahead)
            self._dirty.set()  # the flusher msyncs the slot too
            return record

    def _reserve_slot(self, needed: int) -> None:
        """Give the slot's file disk blocks for its first ``needed`` bytes before they are copied in.

        The slot is a shared mapping of a sparse file: the first write to a page
        with no block behind it allocates one, and on a full disk that is a SIGBUS,
        the kernel's death, not an error. ``posix_fallocate`` says ENOSPC instead
        (the cell then runs unjournaled). Done once per size the slot reaches.
        """
        if needed <= self._slot_reserved:
            return
        target = max(needed, SLOT_INITIAL_SIZE)  # never past the mapping's size: the file is not made longer than it
        fd = os.open(self.slot.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        try:
            os.posix_fallocate(fd, 0, target)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            # A file system that cannot reserve blocks: write as before (a full disk can still SIGBUS there).
        finally:
            os.close(fd)
        self._slot_reserved = target

    def _put_ahead(self, txn: Any, seq: int, ahead: bytes) -> None:
        """A record with no outcome (it was running when the kernel died, or its commit failed)."""
        if seq >= self._floor:
            txn.put(_seq_key(seq), ahead, db=self._cells)

    def _put_unrecorded(self, txn: Any, seq: int, ahead: bytes) -> None:
        if seq >= self._floor:
            record = CellRecord.decode(ahead)
            record.status = UNRECORDED
            txn.put(_seq_key(seq), ahead, db=self._cells)
            txn.put(_seq_key(seq), record.encode_outcome(), db=self._outcomes)

    def _commit_outcome(self, record: CellRecord, body: Callable[[Any], bool]) -> bool:
        with self._lock:
            try:
                return self._committed(record, self._write(body))
            except StoreWriteError:
                if self._running is not None and self._running[0] == record.seq:
                    self.slot.clear()  # it ran: a kill now must not make it "running when the kernel died"
                raise

    def _committed(self, record: CellRecord, committed: bool) -> bool:
        if committed and self._running is not None and self._running[0] == record.seq:
            self._running = None  # in LMDB now
        return committed

    def _put_record(self, txn: Any, record: CellRecord) -> bool:
        """The record's ahead part and outcome into ``txn``; False when it was cleared (forgotten) since."""
        if record.seq < self._floor:
            return False
        key = _seq_key(record.seq)
        if self._running is not None and self._running[0] == record.seq:
            ahead = self._running[1]
        else:
            ahead = bytes(txn.get(key, db=self._cells) or b"") or record.encode_ahead()
        txn.put(key, ahead, db=self._cells)
        txn.put(key, record.encode_outcome(), db=self._outcomes)
        return True

    def _stored_next_seq(self, txn: Any) -> int:
        raw = txn.get(b"next_seq", db=self._meta)
        return json.loads(bytes(raw)) if raw is not None else 1

    def _next_seq_in(self, txn: Any) -> int:
        """The next sequence number: past the last record, and past ``next_seq`` in meta.

        Meta's ``next_seq`` is written only when records go away (``clear``), not
        with every cell: numbers never repeat, and a cell's commit has one put fewer.
        """
        cursor = txn.cursor(db=self._cells)
        last = int.from_bytes(bytes(cursor.key()), "big") if cursor.last() else 0
        return max(self._stored_next_seq(txn), last + 1)

    def set_outcome(self, record: CellRecord) -> bool:
        """Store how a cell ended (with its record); False when the session was forgotten meanwhile."""
        return self._commit_outcome(record, lambda txn: self._put_record(txn, record))

    def commit_checkpoint(
        self,
        record: CellRecord,
        versions: dict[bytes, dict[str, Any]],
        pointers: dict[str, dict[str, Any]],
        blobs: dict[bytes, Any],
        context: dict[str, Any] | None = None,
    ) -> bool:
        """Commit a cell's outcome with everything it changed, in ONE transaction.

        ``versions``: version key -> group version; ``pointers``: name -> where it
        now stands; ``blobs``: digest -> bytes-like (stored once; a digest already
        present costs nothing). Returns False, storing nothing, when the cell's
        record is gone (the session was forgotten while it ran).
        """

        def body(txn):
            if record.seq < self._floor:
                return False
            for blob_digest, data in blobs.items():
                if txn.get(blob_digest + _chunk_key(0), db=self._blobs) is not None:
                    continue  # content-addressed: already stored by some earlier version
                view = memoryview(data).cast("B")
                chunks = max(1, -(-view.nbytes // BLOB_CHUNK))
                for index in range(chunks):
                    txn.put(blob_digest + _chunk_key(index), view[index * BLOB_CHUNK : (index + 1) * BLOB_CHUNK], db=self._blobs)
            for version_key, version in versions.items():
                txn.put(version_key, _json(version), db=self._versions)
            for name, pointer in pointers.items():
                txn.put(_name_key(name, record.seq), _json(pointer), db=self._names)
            self._put_record(txn, record)
            if context is not None:
                txn.put(b"context", _json(context), db=self._meta)
            return True

        return self._commit_outcome(record, body)

    def mark_landed(self, key: bytes) -> bool:
        """A version's large blobs are durable: from now on it is restorable as stored."""

        def body(txn):
            raw = txn.get(key, db=self._versions)
            if raw is None:
                return False  # the session was forgotten meanwhile
            version = json.loads(bytes(raw))
            version["landed"] = True
            txn.put(key, _json(version), db=self._versions)
            return True

        return self._write(body)

    def mark_dropped(self, key: bytes, reason: str) -> None:
        """A version whose large blobs will never land: say why, for "state as of cell N"."""

        def body(txn):
            raw = txn.get(key, db=self._versions)
            if raw is None:
                return
            version = json.loads(bytes(raw))
            if not version.get("landed", True):
                version["dropped"] = reason[:200]
                txn.put(key, _json(version), db=self._versions)

        self._write(body)

    def prune_history(self, budget: int) -> int:
        """Delete the oldest large blobs that only past versions use, until those fit in ``budget`` bytes.

        Never touched: the versions the latest pointers name, and for a latest
        version that has not landed, the newest landed version before it (the
        restore starts from that one). Pruned versions stay in the history,
        marked ``pruned``, so "state as of cell N" can say what happened.
        Returns the bytes freed.
        """
        with self._lock:
            with self._env.begin() as txn:
                versions = {bytes(k): json.loads(bytes(v)) for k, v in txn.cursor(db=self._versions)}
            pointers = self.pointers_as_of()
            protected: set[bytes] = set()
            for name, pointer in pointers.items():
                if not pointer.get("version"):
                    continue
                key = bytes.fromhex(pointer["version"])
                protected.add(key)
                if versions.get(key, {}).get("kind") == "stored" and not is_landed(versions.get(key)):
                    for older in reversed(self.name_history(name)):
                        older_key = bytes.fromhex(older["version"]) if older.get("version") else None
                        if older["seq"] < pointer["seq"] and older_key is not None and is_landed(versions.get(older_key)):
                            protected.add(older_key)
                            break
            keep = {blob for key in protected for blob in versions.get(key, {}).get("files", {})}
            users: dict[str, list[bytes]] = {}
            sizes: dict[str, int] = {}
            for key, version in versions.items():
                if version.get("pruned"):
                    continue
                for blob, size in version.get("files", {}).items():
                    if blob not in keep:
                        users.setdefault(blob, []).append(key)
                        sizes[blob] = size
            on_disk = {blob for blob in users if self.files.exists(bytes.fromhex(blob))}
            total = sum(sizes[blob] for blob in on_disk)
            if total <= budget:
                return 0
            drop: list[str] = []
            for blob in sorted(on_disk, key=lambda b: max(users[b])):  # oldest last use first
                if total <= budget:
                    break
                drop.append(blob)
                total -= sizes[blob]
            pruned = {key for blob in drop for key in users[blob]}

            def body(txn):
                for key in pruned:
                    version = versions[key]
                    version["pruned"] = True
                    txn.put(key, _json(version), db=self._versions)

            self._write(body)  # marked first: a crash before the unlink leaves a file, never a dangling version
            return sum(self.files.remove(bytes.fromhex(blob)) for blob in drop)

    def clear(self) -> int:
        """Drop every cell record and the session's history; returns how many were dropped.

        ``next_seq`` and the format version stay, so sequence numbers never repeat.
        """

        def body(txn):
            count = txn.stat(self._cells)["entries"] + (self._running is not None)
            txn.drop(self._cells, delete=False)
            txn.drop(self._outcomes, delete=False)
            for db in (self._versions, self._names, self._blobs):
                txn.drop(db, delete=False)
            for key in (b"last_restore", b"replaying", b"context", b"loading", b"load_crashes"):
                txn.delete(key, db=self._meta)
            txn.put(b"next_seq", json.dumps(self._next_seq).encode(), db=self._meta)
            return count

        with self._lock:
            count = self._write(body)
            self._floor = self._next_seq  # a cell running now is forgotten too
            self._running = None
            self.slot.clear()
        for blob in list(self.files.digests()):  # after the commit: nothing names them any more
            self.files.remove(blob)
        return count

    # -- reading ------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._env.begin(db=self._meta) as txn:
            raw = txn.get(key.encode())
        return default if raw is None else json.loads(bytes(raw))

    def meta(self) -> dict[str, Any]:
        with self._env.begin(db=self._meta) as txn:
            return {bytes(k).decode(): json.loads(bytes(v)) for k, v in txn.cursor()}

    def records(self) -> Iterator[CellRecord]:
        """All cell records with their outcomes, in sequence order (one consistent snapshot)."""
        with self._env.begin() as txn:
            outcomes = {bytes(k): bytes(v) for k, v in txn.cursor(db=self._outcomes)}
            items = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=self._cells)]
        running = self._running_record(items)
        if running is not None:
            items.append(running)
        return (CellRecord.decode(ahead, outcomes.get(key)) for key, ahead in items)

    def _running_record(self, items: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes] | None:
        """The record in the slot (a cell running now), unless it is already in LMDB or forgotten."""
        running = self._running or self._seen_running
        if running is None or running[0] < self._floor:
            return None
        key = _seq_key(running[0])
        if items and items[-1][0] >= key:
            return None
        return key, running[1]

    def pointers_as_of(self, seq: int | None = None) -> dict[str, dict[str, Any]]:
        """Where every name stood after cell ``seq`` (default: the latest), deleted names included.

        Every version is kept, so this is the namespace "as of cell N".
        """
        latest: dict[str, dict[str, Any]] = {}
        with self._env.begin(db=self._names) as txn:
            for key, value in txn.cursor():
                name, at = _split_name_key(bytes(key))
                if seq is None or at <= seq:
                    pointer = json.loads(bytes(value))
                    pointer["seq"] = at
                    latest[name] = pointer
        return latest

    def name_history(self, name: str) -> list[dict[str, Any]]:
        """Every pointer of one name, oldest first."""
        prefix = name.encode("utf-8", "surrogatepass") + b"\x00"
        history = []
        with self._env.begin(db=self._names) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not bytes(key).startswith(prefix):
                        break
                    pointer = json.loads(bytes(value))
                    pointer["seq"] = _split_name_key(bytes(key))[1]
                    history.append(pointer)
        return history

    def version(self, key: bytes) -> dict[str, Any] | None:
        with self._env.begin(db=self._versions) as txn:
            raw = txn.get(key)
        return None if raw is None else json.loads(bytes(raw))

    def versions_between(self, first: int, last: int) -> dict[int, list[dict[str, Any]]]:
        """The versions cells ``first`` … ``last`` created, by cell (for ``%persist history``)."""
        found: dict[int, list[dict[str, Any]]] = {}
        with self._env.begin(db=self._versions) as txn:
            cursor = txn.cursor()
            if cursor.set_range(_seq_key(first)):
                for key, value in cursor:
                    seq = int.from_bytes(bytes(key)[:8], "big")
                    if seq > last:
                        break
                    found.setdefault(seq, []).append(json.loads(bytes(value)))
        return found

    def versions_with_files(self, blobs: set[str], before: int) -> list[tuple[bytes, dict[str, Any], int]]:
        """Versions of cells before ``before`` that name any of these large blobs, newest first."""
        found = []
        with self._env.begin(db=self._versions) as txn:
            for key, value in txn.cursor():
                seq = int.from_bytes(bytes(key)[:8], "big")
                if seq >= before:
                    break
                version = json.loads(bytes(value))
                if blobs & set(version.get("files", {})):
                    found.append((bytes(key), version, seq))
        return found[::-1]

    def read_blob(self, blob_digest: bytes) -> bytearray | Any:
        """A blob's bytes, in one writable buffer (arrays loaded from it are writable).

        A large blob is a file, returned as a private mapping: nothing is read
        until it is used, and changes to it never reach the file.
        """
        with self._env.begin(db=self._blobs, buffers=True) as txn:
            parts = []
            index = 0
            while (part := txn.get(blob_digest + _chunk_key(index))) is not None:
                parts.append(part)
                index += 1
            if not parts:
                try:
                    return self.files.map(blob_digest)
                except FileNotFoundError:
                    raise KeyError(f"blob {blob_digest.hex()} is missing from {self.path}") from None
            data = bytearray(sum(len(p) for p in parts))
            offset = 0
            for part in parts:
                data[offset : offset + len(part)] = part
                offset += len(part)
        return data

    def blob_bytes(self) -> int:
        """Bytes held by blobs (content-addressed, so shared data counts once)."""
        total = sum(self.files.size(blob) or 0 for blob in self.files.digests())
        with self._env.begin(db=self._blobs, buffers=True) as txn:
            for _, value in txn.cursor():
                total += len(value)
        return total

    def count(self) -> int:
        """Cell records, the one running now included."""
        with self._env.begin() as txn:
            entries = txn.stat(self._cells)["entries"]
            cursor = txn.cursor(db=self._cells)
            last = [(bytes(cursor.key()), b"")] if cursor.last() else []
        return entries + (self._running_record(last) is not None)

    def size_bytes(self) -> int:
        """Bytes the store occupies on disk (the data file grows as pages are used; large blobs are files)."""
        files = sum(f.stat().st_size for f in self.files.directory.iterdir() if f.is_file()) if self.files.directory.is_dir() else 0
        return files + sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def check(self) -> list[str]:
        """Verify the store's invariants; returns the problems found (empty when sound).

        Tests call this after each scenario, like python-diskcache's ``Cache.check``.
        """
        problems: list[str] = []
        with self._env.begin() as txn:
            raw_version = txn.get(b"format_version", db=self._meta)
            if raw_version is None:
                problems.append("no format version")
            previous = 0
            for key, value in txn.cursor(db=self._cells):
                seq = int.from_bytes(bytes(key), "big")
                outcome = txn.get(key, db=self._outcomes)
                try:
                    record = CellRecord.decode(value, outcome)
                except (ValueError, TypeError) as exc:
                    problems.append(f"record {seq} does not decode: {exc}")
                    continue
                if record.seq != seq:
                    problems.append(f"record under key {seq} says seq {record.seq}")
                if seq <= previous:
                    problems.append(f"record {seq} out of order")
                previous = seq
            for key, _ in txn.cursor(db=self._outcomes):
                if txn.get(key, db=self._cells) is None:
                    problems.append(f"outcome {int.from_bytes(bytes(key), 'big')} has no cell record")
            # Snapshots: a version exists only with its cell's outcome (one transaction),
            # every blob it names is stored, and every pointer names a stored version.
            for key, value in txn.cursor(db=self._versions):
                seq_key = bytes(key)[:8]
                if txn.get(seq_key, db=self._outcomes) is None:
                    problems.append(f"version {bytes(key).hex()} has no outcome for its cell")
                version = json.loads(bytes(value))
                files = version.get("files", {})
                payload = None if "inline" in version else version.get("payload")
                for blob in [payload, *version.get("buffers", [])]:
                    if blob and blob not in files and txn.get(bytes.fromhex(blob) + _chunk_key(0), db=self._blobs) is None:
                        problems.append(f"version {bytes(key).hex()} names missing blob {blob}")
                if version.get("landed", True) and not version.get("pruned"):
                    # Landed means durable: every large blob is a complete file.
                    for blob, size in files.items():
                        if self.files.size(bytes.fromhex(blob)) != size:
                            problems.append(f"landed version {bytes(key).hex()} lacks a complete file for blob {blob}")
            for key, value in txn.cursor(db=self._names):
                pointer = json.loads(bytes(value))
                if pointer.get("version") and txn.get(bytes.fromhex(pointer["version"]), db=self._versions) is None:
                    problems.append(f"name {_split_name_key(bytes(key))} points to a missing version")
        return problems

    # -- maintenance: the command line, on a session no kernel holds ---------------

    def referenced_files(self) -> dict[str, int]:
        """Large blobs (hex digest -> size) that a kept version names.

        A version that never landed still counts: a restore loads it when all its
        files are there (a kill can come between a file's rename and its mark).
        A pruned version names nothing: its files are gone on purpose.
        """
        referenced: dict[str, int] = {}
        with self._env.begin(db=self._versions) as txn:
            for _, value in txn.cursor():
                version = json.loads(bytes(value))
                if not version.get("pruned"):
                    referenced.update(version.get("files", {}))
        return referenced

    def unreferenced_files(self) -> list[Path]:
        """Files in ``blobs/`` that nothing needs.

        Large blobs no kept version names (a kill between a prune's mark and its
        unlink, or during a forget) and temporary files of a killed write. While
        a kernel holds the session its writer's temporary files are in use: only
        a caller holding the session's lock may delete what this returns.
        """
        directory = self.files.directory
        if not directory.is_dir():
            return []
        referenced = self.referenced_files()
        found = []
        for path in sorted(directory.iterdir()):
            if not path.is_file() or path.is_symlink():
                continue  # not something a writer made: leave it to its owner
            if path.name.startswith("."):
                if path.name.endswith(".tmp"):
                    found.append(path)
            elif _is_blob_name(path.name) and path.name not in referenced:
                found.append(path)
        return found

    def copy_to(self, directory: Path | str) -> Path:
        """A compacted copy of the LMDB environment in ``directory`` (existing, empty); returns its data file.

        One read transaction, so the copy is one committed state even while a
        kernel writes; large blobs are files and are not part of it.
        """
        try:
            self._env.copy(str(directory), compact=True)
        except lmdb.Error as exc:
            raise StoreUnavailable(f"cannot copy the store at {self.path} to {directory}: {exc}") from exc
        return Path(directory) / "data.mdb"

    # -- life cycle ---------------------------------------------------------------

    def _flush_loop(self) -> None:
        # Group commit for the OS-crash case: one fsync per interval, only when dirty.
        while not self._closed.wait(self.sync_interval):
            if self._dirty.is_set():
                self.sync()

    def sync(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._dirty.clear()
            try:
                self._env.sync(True)
                self.slot.flush()
            except (lmdb.Error, OSError):
                self._dirty.set()  # try again at the next interval

    def close(self) -> None:
        """Flush to disk and close; later writes raise StoreWriteError."""
        with self._lock:
            if self._closed.is_set():
                return
            self.sync()
            self._closed.set()
            self._env.close()
            self.slot.close()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=2)

