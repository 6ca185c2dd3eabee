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
- Opt-in (``PersistentKernel.settle_delay``, off by default): a cell's outcome small
  enough for the outcome slot (``outcomeframe``) is copied there on the reply path
  and applied to LMDB when the kernel is next idle
  (``settle``; any read or write of the store settles first): in the page cache,
  the slot survives the death of the process like a ``sync=False`` commit, the
  next kernel applies a frame it finds there, and the flusher msyncs it with the
  environment.
- A failed background sync is kept (``durability_problem``) and told, never
  retried away: after an I/O error the OS may have dropped the dirty pages.
- ``writemap`` is never used: together with ``sync=False`` it can corrupt the file
  on an OS crash.
- Large blobs (``blobfiles``) are files beside the environment, each fsynced
  before the version that names them is marked landed; a version that never
  landed is restored from the one before it plus replay.

Authentication (see ``authentication`` and docs/security.md): every value in
``cells``, ``outcomes``, ``versions``, ``names``, ``blobs`` and ``meta`` (but the
format version and the store's id) has an HMAC-SHA256 tag in ``tags``, put in
the same transaction; so has every large file. A reader checks the tag before it
decodes a value: one that fails is refused (named in ``refusals``), never
decoded, and reads as missing, so a restore rebuilds it by replay or names it lost.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb

from .ahead import AheadSlot
from .authentication import Authenticator, load_key
from .blobfiles import BlobFiles, write_failure
from .errors import (
    NotPrivate,
    StoreUnavailable,
    StoreWriteError,
)
from .privatefiles import check_private
from .storeblobs import StoreBlobs
from .storecells import StoreCells
from .storecheck import StoreCheck
from .storeformat import StoreFormat
from .storehistory import StoreHistory
from .storekeys import (
    AS_BLOB,
    AS_CELL,
    AS_META,
    AS_NAME,
    AS_OUTCOME,
    AS_VERSION,
    BLOBS,
    CELLS,
    DEFAULT_MAP_SIZE,
    FORMAT_VERSION,
    MAX_DBS,
    META,
    NAMES,
    OUTCOMES,
    TAGS,
    UNTAGGED_META,
    VERSIONS,
    T,
    truncation,
    version_key,
)
from .storemaintenance import StoreMaintenance
from .storereplica import StoreReplica

# The tagged kinds of value kept in LMDB databases, in the order they are checked, and what each is called.
TAGGED_KINDS = {
    AS_CELL: "cell record",
    AS_OUTCOME: "outcome",
    AS_VERSION: "version",
    AS_NAME: "pointer",
    AS_BLOB: "blob chunk",
    AS_META: "metadata",
}

# What the rest of the package uses of the store; the layout itself is in ``storekeys``.
__all__ = ["DEFAULT_MAP_SIZE", "FORMAT_VERSION", "Store", "version_key"]


class SettlingEnvironment:
    """The LMDB environment, settling a deferred outcome before any transaction or copy begins.

    Every read and write of the store goes through ``begin`` (or ``copy``): so nothing,
    in this process, sees the store without the last cell's outcome.
    """

    def __init__(self, env: lmdb.Environment, store: Store) -> None:
        self._raw = env
        self._store = store

    def begin(self, **kwargs: Any) -> Any:
        if self._store._pending is not None:
            self._store.settle()
        return self._raw.begin(**kwargs)

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        if self._store._pending is not None:
            self._store.settle()
        return self._raw.copy(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class Store(StoreFormat, StoreCells, StoreHistory, StoreBlobs, StoreCheck, StoreMaintenance, StoreReplica):
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
        key: bytes | None = None,
        trust: bool = False,
    ) -> None:
        """``owner``: the caller holds the session (the kernel, through its ``SessionLock``).

        Only an owner takes in a record left in the write-ahead slot and removes the
        temporary files of a killed background write; anyone else (a command-line
        tool, a test after the kernel died) opens the store to read it.

        ``key``: the user's key (default: ``authentication.load_key()``). ``trust``
        (an owner only, on the user's word: ``persistent-kernel trust`` or
        ``import --trust``): sign everything in the store with this key, whoever
        wrote it. Without it, an owner refuses a store from before authentication
        (``StoreNotAuthenticated``); a reader reads one unverified
        (``authenticated`` is then False).
        """
        self.path = Path(path)
        self._owner = owner
        self.max_map_size = max_map_size  # 0: no limit but the disk
        self.sync_interval = sync_interval
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()  # one sync at a time, and close() waits for it; taken before _lock
        self.durability_problem: str | None = None  # a failed fsync/msync: kept, never retried away
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._key = load_key() if key is None else key
        self._auth: Authenticator | None = None  # None: an unauthenticated (older) store, read as it is
        self.authenticated = True
        self.refusals: dict[str, None] = {}  # what failed authentication, in the order found (told by the restore)
        # Blobs this process wrote or found authentic: a later version reusing one is not hashed again.
        self._authentic_blobs: set[bytes] = set()
        self._refused_versions: set[bytes] = set()
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            damage = truncation(self.path)
            if damage:
                raise StoreUnavailable(f"cannot open the store at {self.path}: {damage}")
            # LMDB opens and maps these itself: checked before, and the same files after.
            before = {name: check_private(self.path / name) for name in ("data.mdb", "lock.mdb")}
            self._env = lmdb.open(  # wrapped below, once open
                str(self.path),
                subdir=True,
                map_size=map_size if not max_map_size else min(map_size, max_map_size),
                max_dbs=MAX_DBS,
                sync=sync_interval <= 0,
                metasync=True,
                writemap=False,
                readahead=False,
                mode=0o600,
                create=True,
            )
        except (lmdb.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the store at {self.path}: {exc}") from exc
        self._pending: tuple[int, list[Any]] | None = None  # an outcome in the outcome slot, not yet in LMDB
        self.on_settle_failed: Callable[[StoreWriteError], None] | None = None
        self._env = SettlingEnvironment(self._env, self)  # type: ignore[assignment]
        try:
            for name, info in before.items():
                now = check_private(self.path / name)
                if info is not None and (now is None or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino)):
                    raise StoreUnavailable(f"{self.path / name} was replaced while the store was being opened")
            self._env.reader_check()  # frees reader slots of killed processes
            self._meta = self._env.open_db(META)
            self._cells = self._env.open_db(CELLS)
            self._outcomes = self._env.open_db(OUTCOMES)
            self._versions = self._env.open_db(VERSIONS)
            self._names = self._env.open_db(NAMES)
            self._blobs = self._env.open_db(BLOBS)
            self._tags = self._env.open_db(TAGS)
            databases = {
                AS_CELL: self._cells,
                AS_OUTCOME: self._outcomes,
                AS_VERSION: self._versions,
                AS_NAME: self._names,
                AS_BLOB: self._blobs,
                AS_META: self._meta,
            }
            self._by_kind = {kind: databases[kind] for kind in TAGGED_KINDS}  # the check's order; a kind with no database fails here
            needs_signing = self._check_format(owner=owner, trust=trust)
        except (lmdb.Error, StoreUnavailable, OSError) as exc:
            self._env.close()
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"cannot read the store at {self.path}: {exc}") from exc
        self.files = BlobFiles(self.path / "blobs")
        if owner:
            self.files.remove_leftovers()  # a killed writer's temporary files
        self._floor = 0  # records below this were cleared while they ran (%persist forget)
        self._running: tuple[int, bytes] | None = None  # the record this store wrote to the slot
        # A cell whose commit failed in the outcome slot's settle while a later cell ran: the next append records it.
        self._unrecorded: tuple[int, bytes] | None = None
        # A non-owner's view of the kernel's slots: (seq, record, outcome once known).
        self._seen_running: tuple[int, bytes, bytes | None] | None = None
        try:
            self.slot = AheadSlot(self.path / "ahead")
            self.outcome_slot = AheadSlot(self.path / "outcome")
            if owner:
                self._next_seq = self._take_in_slot()
            else:
                with self._env.begin() as txn:
                    self._next_seq = self._next_seq_in(txn)
                # Shown by records(), never written by this store: the cell running now, or the one its kernel died in.
                self._seen_running = self._slot_record(self._next_seq)
        except NotPrivate:
            self._env.close()
            raise
        except (OSError, ValueError, StoreWriteError) as exc:
            self._env.close()
            raise StoreUnavailable(f"cannot open the write-ahead slot of the store at {self.path}: {exc}") from exc
        self.signed = 0  # values and files ``trust`` signed
        if needs_signing:
            try:
                self.signed = self.sign_all()
            except (StoreWriteError, OSError) as exc:
                self._env.close()
                raise StoreUnavailable(f"cannot sign the store at {self.path} with your key: {exc}") from exc
        self._flusher: threading.Thread | None = None
        if sync_interval > 0:
            self._flusher = threading.Thread(target=self._flush_loop, name="persistent-kernel-sync", daemon=True)
            self._flusher.start()

    # -- format -----------------------------------------------------------------

    # -- authentication -------------------------------------------------------------

    def _put(self, txn: Any, kind: bytes, db: Any, key: bytes, value: Any) -> None:
        """Put a value with its tag (in the same transaction)."""
        txn.put(key, value, db=db)
        if self._auth is not None:
            txn.put(kind + key, self._auth.tag(kind, key, value), db=self._tags)

    def _delete(self, txn: Any, kind: bytes, db: Any, key: bytes) -> None:
        txn.delete(key, db=db)
        txn.delete(kind + key, db=self._tags)

    def _tagged_values(self, txn: Any) -> Iterator[tuple[bytes, bytes, Any, str]]:
        """(kind, key, value, what) of every LMDB value that carries a tag."""
        for kind, db in self._by_kind.items():
            what = TAGGED_KINDS[kind]
            for key, value in txn.cursor(db=db):
                key = bytes(key)
                if kind == AS_META and key in UNTAGGED_META:
                    continue
                yield kind, key, value, what

    def _authentic(self, txn: Any, kind: bytes, key: bytes, value: Any) -> bool:
        if self._auth is None:
            return True  # an older store, opened to be read (never loaded)
        return self._auth.is_authentic(kind, key, value, txn.get(kind + key, db=self._tags))

    def _refuse(self, what: str) -> None:
        self.refusals[what] = None

    def _get(self, txn: Any, kind: bytes, db: Any, key: bytes, what: str) -> bytes | None:
        """A value, if it is there and authentic; a value that fails is refused (and reads as None)."""
        raw = txn.get(key, db=db)
        if raw is None:
            return None
        if not self._authentic(txn, kind, key, raw):
            self._refuse(what)
            return None
        return bytes(raw)

    def missing_reason(self, version_hex: str) -> str:
        """Why ``version()`` gave None for this key: refused, or not there."""
        if bytes.fromhex(version_hex) in self._refused_versions:
            return "its stored record failed authentication and was not loaded"
        return "its stored version is missing"

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
                    self._delete(txn, AS_META, self._meta, key.encode())
                else:
                    self._put(txn, AS_META, self._meta, key.encode(), json.dumps(value).encode())

        self._write(body)

    # -- reading ------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._env.begin(db=self._meta) as txn:
            if key.encode() in UNTAGGED_META:
                raw = txn.get(key.encode())
                raw = None if raw is None else bytes(raw)
            else:
                raw = self._get(txn, AS_META, self._meta, key.encode(), f"metadata {key!r}")
        return default if raw is None else json.loads(raw)

    def meta(self) -> dict[str, Any]:
        """Every metadata key that is authentic (and the untagged format version and id)."""
        found = {}
        with self._env.begin(db=self._meta) as txn:
            for key, value in txn.cursor():
                key = bytes(key)
                if key in UNTAGGED_META or self._authentic(txn, AS_META, key, value):
                    found[key.decode()] = json.loads(bytes(value))
                else:
                    self._refuse(f"metadata {key.decode(errors='replace')!r}")
        return found

    def size_bytes(self) -> int:
        """Bytes the store occupies on disk (the data file grows as pages are used; large blobs are files)."""
        files = sum(f.stat().st_size for f in self.files.directory.iterdir() if f.is_file()) if self.files.directory.is_dir() else 0
        return files + sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    # -- life cycle ---------------------------------------------------------------

    def _flush_loop(self) -> None:
        # Group commit for the OS-crash case: one fsync per interval, only when dirty.
        while not self._closed.wait(self.sync_interval):
            if self._dirty.is_set():
                self.sync()

    def sync(self) -> None:
        """fsync the environment and msync the write-ahead slot (the flusher, every interval, when dirty).

        Not under the store's lock: a commit, or a cell's write-ahead, never waits for the
        disk. (LMDB's ``mdb_env_sync`` without ``MDB_WRITEMAP`` is an ``fdatasync`` of the
        data file, safe beside a write transaction; the slot is msynced under the lock,
        since a write may remap it.) A failed sync is never retried as if nothing happened:
        after an I/O error Linux may drop the dirty pages, and a retry would then report
        success for data that is gone. The failure is kept (``durability_problem``), the
        user is told, and later writes are synced as usual.
        """
        with self._sync_lock:
            if self._closed.is_set():
                return
            self._dirty.clear()
            self._sync_environment()
            with self._lock:
                if not self._closed.is_set():
                    self._sync_slot()

    def _sync_environment(self) -> None:
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            self._durability_failed(f"fsync of {self.path / 'data.mdb'}", exc)

    def _sync_slot(self) -> None:
        for slot in (self.slot, self.outcome_slot):
            try:
                slot.flush()
            except (OSError, ValueError) as exc:
                self._durability_failed(f"msync of {slot.path}", exc)

    def _durability_failed(self, what: str, exc: BaseException) -> None:
        if self.durability_problem is None:
            self.durability_problem = (
                f"the {what} failed ({exc}); what was committed before it may not survive an OS crash or power loss"
            )

    def close(self) -> None:
        """Flush to disk and close; later writes raise StoreWriteError."""
        with self._sync_lock, self._lock:
            if self._closed.is_set():
                return
            self.settle()
            self._dirty.clear()
            self._sync_environment()
            self._sync_slot()
            self._closed.set()
            self._env.close()
            self.slot.close()
            self.outcome_slot.close()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=2)

