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
import os
import secrets
import struct
import threading
from collections.abc import Callable, Iterator
from hmac import compare_digest as hmac_equal
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from .ahead import AheadSlot
from .authentication import TAG_BYTES, Authenticator, load_key, segment_hashes
from .blobfiles import BlobFiles, write_failure
from .errors import (
    NotPrivate,
    StoreFormatError,
    StoreFromNewerVersion,
    StoreNotAuthenticated,
    StoreUnavailable,
    StoreWriteError,
    Unauthentic,
)
from .privatefiles import check_private
from .records import UNRECORDED, CellRecord

# 1: journal only (replay); 2: + versions, names, blobs (snapshots);
# 3: + large blobs as files, versions that land later ("files", "landed", "pruned");
# 4: + an HMAC-SHA256 tag for every record, blob and file ("tags", "store_id")
FORMAT_VERSION = 4
FIRST_AUTHENTICATED_FORMAT = 4
DEFAULT_MAP_SIZE = 256 * 1024**2  # reserves address space only; the file grows as needed
_MAX_DBS = 8  # meta, cells, and room for what later formats add

_META = b"meta"  # format version, session identity, restore markers and reports (JSON values)
_CELLS = b"cells"  # seq -> the cell as written ahead (JSON)
_OUTCOMES = b"outcomes"  # seq -> how it ended (small JSON), written after it ran
_VERSIONS = b"versions"  # seq + ordinal -> one group version (JSON: names, method, blob digests, or recompute)
_NAMES = b"names"  # name NUL seq -> where that name stood after cell seq (JSON pointer)
_BLOBS = b"blobs"  # digest (16 bytes) + chunk (4 bytes) -> content-addressed bytes
_TAGS = b"tags"  # kind (1 byte) + the key of a value in another database -> its HMAC-SHA256 tag

# Kinds of tagged values (the first byte of a tag's key, and part of what the tag covers).
_AS_CELL, _AS_OUTCOME, _AS_VERSION, _AS_NAME, _AS_BLOB, _AS_META, _AS_FILE, _AS_SLOT = b"c", b"o", b"v", b"n", b"b", b"m", b"f", b"s"
_UNTAGGED_META = (b"format_version", b"store_id")  # the inputs of verification itself
_REFUSED_ORDINAL = 0xFFFFFFFF  # the version key a refused pointer points to: never written

BLOB_CHUNK = 256 * 1024**2  # LMDB values must stay under 4 GiB; chunks keep each put moderate

T = TypeVar("T")


def _seq_key(seq: int) -> bytes:
    # Big-endian so LMDB's byte order is sequence order.
    return seq.to_bytes(8, "big")


def version_key(seq: int, ordinal: int) -> bytes:
    """Key of the ``ordinal``-th group version a cell created."""
    return _seq_key(seq) + ordinal.to_bytes(4, "big")


def _refused_pointer(seq: int) -> dict[str, Any]:
    # A name whose pointer failed authentication: live, at a version that does not exist,
    # so it is rebuilt from its cells like any value whose version is missing.
    return {"state": "live", "version": version_key(seq, _REFUSED_ORDINAL).hex(), "refused": True}


def _chunk_key(index: int) -> bytes:
    return index.to_bytes(4, "big")


def _name_key(name: str, seq: int) -> bytes:
    # Names are identifiers (no NUL); surrogatepass keeps even globals()['\udcff'] storable.
    return name.encode("utf-8", "surrogatepass") + b"\x00" + _seq_key(seq)


def _split_name_key(key: bytes) -> tuple[str, int]:
    return key[:-9].decode("utf-8", "surrogatepass"), int.from_bytes(key[-8:], "big")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def _json_object(value: Any) -> dict[str, Any] | None:
    """A stored JSON object, or None when the bytes are not one (for ``check``, which reports, never raises)."""
    try:
        decoded = json.loads(bytes(value))
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if isinstance(decoded, dict) else None


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
            for name, info in before.items():
                now = check_private(self.path / name)
                if info is not None and (now is None or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino)):
                    raise StoreUnavailable(f"{self.path / name} was replaced while the store was being opened")
            self._env.reader_check()  # frees reader slots of killed processes
            self._meta = self._env.open_db(_META)
            self._cells = self._env.open_db(_CELLS)
            self._outcomes = self._env.open_db(_OUTCOMES)
            self._versions = self._env.open_db(_VERSIONS)
            self._names = self._env.open_db(_NAMES)
            self._blobs = self._env.open_db(_BLOBS)
            self._tags = self._env.open_db(_TAGS)
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

    def _check_format(self, *, owner: bool, trust: bool) -> bool:
        """Read the format version and set up authentication; True when the store must be signed whole."""
        with self._env.begin(db=self._meta) as txn:
            raw = txn.get(b"format_version")
            raw_id = txn.get(b"store_id")
            has_records = txn.stat(self._cells)["entries"] > 0 or txn.stat(self._versions)["entries"] > 0
        if raw is None:
            if has_records:
                raise StoreFormatError(f"the store at {self.path} has cells but no format version; it was not written by persistent_kernel")
            self._start_format()
            return False
        try:
            version = int(bytes(raw))
        except ValueError:
            raise StoreFormatError(f"the store at {self.path} has an unreadable format version {bytes(raw)!r}") from None
        if version > FORMAT_VERSION:
            raise StoreFromNewerVersion(
                f"the store at {self.path} has format version {version}, written by a newer persistent_kernel; "
                f"this one reads version {FORMAT_VERSION} and older. Upgrade persistent-kernel to use it."
            )
        if version < FIRST_AUTHENTICATED_FORMAT:
            if not has_records:
                self._start_format()  # nothing in it to trust
                return False
            if owner and trust:
                return True  # signed whole once the write-ahead record is taken in
            if owner:
                raise StoreNotAuthenticated(
                    f"the store at {self.path} was written by an earlier persistent-kernel (format {version}), "
                    "before stores were authenticated, so this kernel does not load it on its own. If it is yours, "
                    f"run `persistent-kernel trust {self.path.name}` and restart the kernel"
                )
            self.authenticated = False  # a reader: shown as it is, never loaded
            return False
        try:
            store_id = bytes.fromhex(json.loads(bytes(raw_id))) if raw_id is not None else b""
        except (TypeError, ValueError):
            store_id = b""
        if len(store_id) != 16:
            raise StoreFormatError(f"the store at {self.path} has no valid store id; it is damaged")
        self._auth = Authenticator(self._key, store_id)
        return trust and owner

    def _start_format(self) -> None:
        """Make this (empty or record-less) store one of the current format, with a fresh id."""
        store_id = secrets.token_bytes(16)

        def body(txn):
            txn.put(b"store_id", json.dumps(store_id.hex()).encode(), db=self._meta)
            txn.put(b"format_version", str(FORMAT_VERSION).encode(), db=self._meta)

        self._write(body)
        self._auth = Authenticator(self._key, store_id)

    def sign_all(self) -> int:
        """Tag every value and large file in the store with this user's key, in one transaction; returns how many.

        Only on the user's word that the store is theirs (``trust``): whatever is
        in it now is from then on as trusted as what this kernel writes. The store
        gets a new id, so tags made under any other key or id no longer verify.
        """
        store_id = secrets.token_bytes(16)
        auth = Authenticator(self._key, store_id)
        file_tags = {}
        for blob_digest in list(self.files.digests()):
            try:
                mapping = self.files.map(blob_digest)
            except FileNotFoundError:
                continue
            try:
                file_tags[blob_digest] = auth.file_tag(blob_digest, segment_hashes(mapping))
            finally:
                if hasattr(mapping, "close"):
                    mapping.close()
        def body(txn):
            txn.drop(self._tags, delete=False)
            count = 0
            for kind, key, value, _what in self._tagged_values(txn):
                txn.put(kind + key, auth.tag(kind, key, value), db=self._tags)
                count += 1
            for blob_digest, tag in file_tags.items():
                txn.put(_AS_FILE + blob_digest, tag, db=self._tags)
            txn.put(b"store_id", json.dumps(store_id.hex()).encode(), db=self._meta)
            txn.put(b"format_version", str(FORMAT_VERSION).encode(), db=self._meta)
            return count + len(file_tags)

        with self._lock:
            count = self._write(body)
            self._auth = auth
            self.authenticated = True
            self.refusals.clear()
            self._refused_versions.clear()
        return count

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
        for kind, db, what in (
            (_AS_CELL, self._cells, "cell record"),
            (_AS_OUTCOME, self._outcomes, "outcome"),
            (_AS_VERSION, self._versions, "version"),
            (_AS_NAME, self._names, "pointer"),
            (_AS_BLOB, self._blobs, "blob chunk"),
            (_AS_META, self._meta, "metadata"),
        ):
            for key, value in txn.cursor(db=db):
                key = bytes(key)
                if kind == _AS_META and key in _UNTAGGED_META:
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

    def has_file_tag(self, blob_digest: bytes) -> bool:
        with self._env.begin(db=self._tags) as txn:
            return self._auth is None or txn.get(_AS_FILE + blob_digest) is not None

    def put_file_tag(self, blob_digest: bytes, hashes: list[bytes]) -> None:
        """Tag a large file from its segments' digests (the writer calls this before the file appears)."""
        if self._auth is None:
            return
        tag = self._auth.file_tag(blob_digest, hashes)
        self._write(lambda txn: txn.put(_AS_FILE + blob_digest, tag, db=self._tags))

    def _check_file(self, blob_digest: bytes, mapping: Any) -> None:
        """Raise ``Unauthentic`` unless a large file's bytes are the ones this user's kernel wrote."""
        if self._auth is None:
            return
        with self._env.begin(db=self._tags) as txn:
            tag = txn.get(_AS_FILE + blob_digest)
            tag = None if tag is None else bytes(tag)
        if tag is None or not hmac_equal(self._auth.file_tag(blob_digest, segment_hashes(mapping)), tag):
            self._refuse(f"large value file {blob_digest.hex()}")
            raise Unauthentic(f"the file of blob {blob_digest.hex()} in {self.path} failed authentication")

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
                    self._delete(txn, _AS_META, self._meta, key.encode())
                else:
                    self._put(txn, _AS_META, self._meta, key.encode(), json.dumps(value).encode())

        self._write(body)

    def _slot_record(self, next_seq: int) -> tuple[int, bytes] | None:
        """The record in the write-ahead slot, if it is a cell whose outcome is not committed."""
        payload = self.slot.read()
        if payload is None:
            return None
        tag, ahead = (payload[:TAG_BYTES], payload[TAG_BYTES:]) if self._auth is not None else (None, payload)
        try:
            seq = CellRecord.decode(ahead).seq  # JSON: decoding runs nothing; the tag is checked before it is used
        except (ValueError, TypeError):
            return None  # not a record this code wrote: nothing ran
        if seq < next_seq:
            return None  # its outcome is committed
        if self._auth is not None and not self._auth.is_authentic(_AS_SLOT, _seq_key(seq), ahead, tag):
            self._refuse(f"the record of the cell running when the kernel stopped (#{seq})")
            return None
        return seq, ahead

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

    @property
    def next_seq(self) -> int:
        """The sequence number ``append`` gives next."""
        with self._lock:
            return self._next_seq

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
                framed = ahead if self._auth is None else self._auth.tag(_AS_SLOT, _seq_key(record.seq), ahead) + ahead
                self.slot.write(framed)
            except (OSError, ValueError) as exc:  # a full disk; growing the slot for a very large cell can fail
                raise StoreWriteError(write_failure(f"writing the cell ahead to {self.slot.path}", exc)) from exc
            self._next_seq += 1
            self._running = (record.seq, ahead)
            self._dirty.set()  # the flusher msyncs the slot too
            return record

    def _put_ahead(self, txn: Any, seq: int, ahead: bytes) -> None:
        """A record with no outcome (it was running when the kernel died, or its commit failed)."""
        if seq >= self._floor:
            self._put(txn, _AS_CELL, self._cells, _seq_key(seq), ahead)

    def _put_unrecorded(self, txn: Any, seq: int, ahead: bytes) -> None:
        if seq >= self._floor:
            record = CellRecord.decode(ahead)
            record.status = UNRECORDED
            self._put(txn, _AS_CELL, self._cells, _seq_key(seq), ahead)
            self._put(txn, _AS_OUTCOME, self._outcomes, _seq_key(seq), record.encode_outcome())

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
            # Never re-sign what is there unless it is authentic: this kernel's own record otherwise.
            ahead = self._get(txn, _AS_CELL, self._cells, key, f"cell record #{record.seq}") or record.encode_ahead()
        self._put(txn, _AS_CELL, self._cells, key, ahead)
        self._put(txn, _AS_OUTCOME, self._outcomes, key, record.encode_outcome())
        return True

    def _stored_next_seq(self, txn: Any) -> int:
        raw = self._get(txn, _AS_META, self._meta, b"next_seq", "metadata 'next_seq'")
        return json.loads(raw) if raw is not None else 1

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
        stored and authentic is not written again; its tag is checked once per process).
        Returns False, storing nothing, when the cell's
        record is gone (the session was forgotten while it ran).
        """

        def body(txn):
            if record.seq < self._floor:
                return False
            for blob_digest, data in blobs.items():
                if self._stored_blob_is_authentic(txn, blob_digest):
                    continue  # content-addressed: already stored by some earlier version
                view = memoryview(data).cast("B")
                chunks = max(1, -(-view.nbytes // BLOB_CHUNK))
                for index in range(chunks):
                    self._put(txn, _AS_BLOB, self._blobs, blob_digest + _chunk_key(index), view[index * BLOB_CHUNK : (index + 1) * BLOB_CHUNK])
                self._authentic_blobs.add(blob_digest)  # if the transaction aborts, the blob's absence says so
            for version_key, version in versions.items():
                self._put(txn, _AS_VERSION, self._versions, version_key, _json(version))
            for name, pointer in pointers.items():
                self._put(txn, _AS_NAME, self._names, _name_key(name, record.seq), _json(pointer))
            self._put_record(txn, record)
            if context is not None:
                self._put(txn, _AS_META, self._meta, b"context", _json(context))
            return True

        return self._commit_outcome(record, body)

    def _stored_blob_is_authentic(self, txn: Any, blob_digest: bytes) -> bool:
        """Whether a blob is stored, whole and authentic (else it is written again, over what is there).

        Checked once per process: a reused buffer (an unchanged DataFrame block beside a
        changed column) must not cost an HMAC over it with every cell. Later tampering is
        still refused when the blob is read.
        """
        if blob_digest in self._authentic_blobs:
            if txn.get(blob_digest + _chunk_key(0), db=self._blobs) is not None:
                return True
            self._authentic_blobs.discard(blob_digest)  # removed since (a forget)
        index = 0
        while (part := txn.get(blob_digest + _chunk_key(index), db=self._blobs)) is not None:
            if not self._authentic(txn, _AS_BLOB, blob_digest + _chunk_key(index), part):
                return False
            index += 1
        if index == 0:
            return False
        self._authentic_blobs.add(blob_digest)
        return True

    def mark_landed(self, key: bytes) -> bool:
        """A version's large blobs are durable: from now on it is restorable as stored."""

        def body(txn):
            raw = self._get(txn, _AS_VERSION, self._versions, key, f"version {key.hex()}")
            if raw is None:
                return False  # the session was forgotten meanwhile (or the record is not ours: never re-signed)
            version = json.loads(raw)
            version["landed"] = True
            self._put(txn, _AS_VERSION, self._versions, key, _json(version))
            return True

        return self._write(body)

    def mark_dropped(self, key: bytes, reason: str) -> None:
        """A version whose large blobs will never land: say why, for "state as of cell N"."""

        def body(txn):
            raw = self._get(txn, _AS_VERSION, self._versions, key, f"version {key.hex()}")
            if raw is None:
                return
            version = json.loads(raw)
            if not version.get("landed", True):
                version["dropped"] = reason[:200]
                self._put(txn, _AS_VERSION, self._versions, key, _json(version))

        self._write(body)

    def prune_history(self, budget: int) -> int:
        """Delete the oldest large blobs that only past versions use, until those fit in ``budget`` bytes.

        Never touched: the versions the latest pointers name, and for a latest
        version that has not landed, the newest landed version before it (the
        restore starts from that one). Pruned versions stay in the history,
        marked ``pruned``, so "state as of cell N" can say what happened.
        Returns the bytes freed.

        The scan of every version reads LMDB snapshots without the store's lock, so a
        cell's write-ahead and commit never wait for it. Under the lock only what may
        have changed since is read again: the current pointers (what is protected now)
        and the versions committed after the scan (version keys begin with their cell's
        number), whose blobs are kept too.
        """
        versions = dict(self._authentic_versions())
        plan = self._prune_plan(versions, self.pointers_as_of(), budget)
        if not plan:
            return 0
        with self._lock:
            last_seq = max((int.from_bytes(key[:8], "big") for key in versions), default=0)
            newer = {key: version for key, version in self._authentic_versions(last_seq) if key not in versions}
            current = {**versions, **newer}
            still_used = self._protected_files(current, self.pointers_as_of())
            still_used |= {blob for version in newer.values() for blob in version.get("files", {})}
            drop = {blob: users for blob, users in plan.items() if blob not in still_used}
            if not drop:
                return 0
            pruned = {key for users in drop.values() for key in users}

            def body(txn):
                for key in pruned:
                    version = versions[key]
                    version["pruned"] = True
                    self._put(txn, _AS_VERSION, self._versions, key, _json(version))

            self._write(body)  # marked first: a crash before the unlink leaves a file, never a dangling version
            return sum(self.files.remove(bytes.fromhex(blob)) for blob in drop)

    def _protected_files(self, versions: dict[bytes, dict[str, Any]], pointers: dict[str, dict[str, Any]]) -> set[str]:
        """The blobs of the versions the latest pointers name, and of the landed version an unlanded one restores from."""
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
        return {blob for key in protected for blob in versions.get(key, {}).get("files", {})}

    def _prune_plan(
        self, versions: dict[bytes, dict[str, Any]], pointers: dict[str, dict[str, Any]], budget: int
    ) -> dict[str, list[bytes]]:
        """The blobs to delete (oldest last use first) and the versions using each; empty when within budget."""
        keep = self._protected_files(versions, pointers)
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
        drop: dict[str, list[bytes]] = {}
        for blob in sorted(on_disk, key=lambda b: max(users[b])):  # oldest last use first
            if total <= budget:
                break
            drop[blob] = users[blob]
            total -= sizes[blob]
        return drop

    def clear(self) -> int:
        """Drop every cell record and the session's history; returns how many were dropped.

        ``next_seq`` and the format version stay, so sequence numbers never repeat.
        The store gets a new id, so forgotten records put back by someone cannot verify.
        """
        new_auth = Authenticator(self._key, secrets.token_bytes(16)) if self._auth is not None else None

        def body(txn):
            count = txn.stat(self._cells)["entries"] + (self._running is not None)
            for db in (self._cells, self._outcomes, self._versions, self._names, self._blobs):
                txn.drop(db, delete=False)
            for key in (b"last_restore", b"replaying", b"context", b"loading", b"load_crashes"):
                txn.delete(key, db=self._meta)
            txn.put(b"next_seq", json.dumps(self._next_seq).encode(), db=self._meta)
            if new_auth is not None:
                kept, dropped = [], []
                for key, value in txn.cursor(db=self._meta):
                    key = bytes(key)
                    if key in _UNTAGGED_META:
                        continue
                    authentic = key == b"next_seq" or self._authentic(txn, _AS_META, key, value)
                    (kept if authentic else dropped).append((key, bytes(value)))
                txn.drop(self._tags, delete=False)
                for key, value in kept:
                    txn.put(_AS_META + key, new_auth.tag(_AS_META, key, value), db=self._tags)
                for key, _ in dropped:
                    txn.delete(key, db=self._meta)
                txn.put(b"store_id", json.dumps(new_auth.store_id.hex()).encode(), db=self._meta)
            return count

        with self._lock:
            count = self._write(body)
            if new_auth is not None:
                self._auth = new_auth
            self._floor = self._next_seq  # a cell running now is forgotten too
            self._running = None
            self.slot.clear()
        for blob in list(self.files.digests()):  # after the commit: nothing names them any more
            self.files.remove(blob)
        return count

    # -- reading ------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._env.begin(db=self._meta) as txn:
            if key.encode() in _UNTAGGED_META:
                raw = txn.get(key.encode())
                raw = None if raw is None else bytes(raw)
            else:
                raw = self._get(txn, _AS_META, self._meta, key.encode(), f"metadata {key!r}")
        return default if raw is None else json.loads(raw)

    def meta(self) -> dict[str, Any]:
        """Every metadata key that is authentic (and the untagged format version and id)."""
        found = {}
        with self._env.begin(db=self._meta) as txn:
            for key, value in txn.cursor():
                key = bytes(key)
                if key in _UNTAGGED_META or self._authentic(txn, _AS_META, key, value):
                    found[key.decode()] = json.loads(bytes(value))
                else:
                    self._refuse(f"metadata {key.decode(errors='replace')!r}")
        return found

    def records(self) -> Iterator[CellRecord]:
        """All cell records with their outcomes, in sequence order (one consistent snapshot).

        A record whose code or outcome fails authentication is a ``REFUSED``
        placeholder: no code, never replayed.
        """
        items: list[tuple[bytes, bytes | None, bytes | None]] = []
        with self._env.begin() as txn:
            for key, ahead in txn.cursor(db=self._cells):
                key = bytes(key)
                outcome = txn.get(key, db=self._outcomes)
                if self._authentic(txn, _AS_CELL, key, ahead) and (outcome is None or self._authentic(txn, _AS_OUTCOME, key, outcome)):
                    items.append((key, bytes(ahead), None if outcome is None else bytes(outcome)))
                else:
                    self._refuse(f"cell record #{int.from_bytes(key, 'big')}")
                    items.append((key, None, None))
        running = self._running_record([(key, b"") for key, _, _ in items])
        if running is not None:
            items.append((running[0], running[1], None))
        return (
            CellRecord.decode(ahead, outcome) if ahead is not None else CellRecord.refused(int.from_bytes(key, "big"))
            for key, ahead, outcome in items
        )

    def _running_record(self, items: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes] | None:
        """The record in the slot (a cell running now), unless it is already in LMDB or forgotten."""
        running = self._running or self._seen_running
        if running is None or running[0] < self._floor:
            return None
        key = _seq_key(running[0])
        if items and items[-1][0] >= key:
            return None
        return key, running[1]

    def _pointer(self, txn: Any, key: bytes, value: Any) -> dict[str, Any]:
        name, seq = _split_name_key(key)
        if self._authentic(txn, _AS_NAME, key, value):
            pointer = json.loads(bytes(value))
        else:
            self._refuse(f"where {name!r} stood after cell #{seq}")
            pointer = _refused_pointer(seq)
            self._refused_versions.add(bytes.fromhex(pointer["version"]))
        pointer["seq"] = seq
        return pointer

    def pointers_as_of(self, seq: int | None = None) -> dict[str, dict[str, Any]]:
        """Where every name stood after cell ``seq`` (default: the latest), deleted names included.

        Every version is kept, so this is the namespace "as of cell N". A pointer
        that fails authentication points at a version that does not exist: the
        name is rebuilt from its cells, or named as lost.
        """
        latest: dict[str, dict[str, Any]] = {}
        with self._env.begin(db=self._names) as txn:
            for key, value in txn.cursor():
                name, at = _split_name_key(bytes(key))
                if seq is None or at <= seq:
                    latest[name] = self._pointer(txn, bytes(key), value)
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
                    history.append(self._pointer(txn, bytes(key), value))
        return history

    def version(self, key: bytes) -> dict[str, Any] | None:
        """A group version, or None when it is not there or fails authentication (``missing_reason`` says which)."""
        with self._env.begin(db=self._versions) as txn:
            raw = self._get(txn, _AS_VERSION, self._versions, key, f"version {key.hex()}")
        if raw is None and key not in self._refused_versions and f"version {key.hex()}" in self.refusals:
            self._refused_versions.add(key)
        return None if raw is None else json.loads(raw)

    def _authentic_versions(self, first: int = 0) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """(key, version) of every authentic version from cell ``first`` on, in order; the others are refused."""
        with self._env.begin(db=self._versions) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(_seq_key(first)):
                return
            for key, value in cursor:
                key = bytes(key)
                if self._authentic(txn, _AS_VERSION, key, value):
                    yield key, json.loads(bytes(value))
                else:
                    self._refuse(f"version {key.hex()}")
                    self._refused_versions.add(key)

    def versions_between(self, first: int, last: int) -> dict[int, list[dict[str, Any]]]:
        """The versions cells ``first`` … ``last`` created, by cell (for ``%persist history``)."""
        found: dict[int, list[dict[str, Any]]] = {}
        for key, version in self._authentic_versions(first):
            seq = int.from_bytes(key[:8], "big")
            if seq > last:
                break
            found.setdefault(seq, []).append(version)
        return found

    def versions_with_files(self, blobs: set[str], before: int) -> list[tuple[bytes, dict[str, Any], int]]:
        """Versions of cells before ``before`` that name any of these large blobs, newest first."""
        found = []
        for key, version in self._authentic_versions():
            seq = int.from_bytes(key[:8], "big")
            if seq >= before:
                break
            if blobs & set(version.get("files", {})):
                found.append((key, version, seq))
        return found[::-1]

    def read_blob(self, blob_digest: bytes) -> bytearray | Any:
        """A blob's bytes, in one writable buffer (arrays loaded from it are writable).

        A large blob is a file, returned as a private mapping: its bytes are read
        once to check its tag (on every core), then stay in the page cache;
        changes to the mapping never reach the file. Raises ``Unauthentic`` when
        the blob fails authentication, KeyError when it is not stored.
        """
        with self._env.begin(db=self._blobs, buffers=True) as txn:
            parts = []
            index = 0
            while (part := txn.get(blob_digest + _chunk_key(index))) is not None:
                parts.append((blob_digest + _chunk_key(index), part, txn.get(_AS_BLOB + blob_digest + _chunk_key(index), db=self._tags)))
                index += 1
            if parts:
                # Copied out of the map first, then the copy is verified: what is checked is what is used.
                data = bytearray(sum(len(p) for _, p, _ in parts))
                offset = 0
                for key, part, tag in parts:
                    end = offset + len(part)
                    data[offset:end] = part
                    if self._auth is not None and not self._auth.is_authentic(_AS_BLOB, key, memoryview(data)[offset:end], tag):
                        self._refuse(f"blob {blob_digest.hex()}")
                        raise Unauthentic(f"blob {blob_digest.hex()} in {self.path} failed authentication")
                    offset = end
                return data
        try:
            mapping = self.files.map(blob_digest)
        except FileNotFoundError:
            raise KeyError(f"blob {blob_digest.hex()} is missing from {self.path}") from None
        except NotPrivate as exc:
            self._refuse(f"large value file {blob_digest.hex()}")
            raise Unauthentic(str(exc)) from None
        self._check_file(blob_digest, mapping)
        return mapping

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

    def check(self, *, authentication: bool = True) -> list[str]:
        """Verify the store's invariants; returns the problems found (empty when sound).

        Tests call this after each scenario, like python-diskcache's ``Cache.check``.
        ``authentication``: also verify every tag (``authentication_problems``).
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
                version = _json_object(value)
                if version is None:
                    problems.append(f"version {bytes(key).hex()} does not decode")
                    continue
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
                pointer = _json_object(value)
                if pointer is None:
                    problems.append(f"name {_split_name_key(bytes(key))} has a pointer that does not decode")
                    continue
                if pointer.get("version") and txn.get(bytes.fromhex(pointer["version"]), db=self._versions) is None:
                    problems.append(f"name {_split_name_key(bytes(key))} points to a missing version")
            if authentication:
                problems += self._authentication_problems(txn)
        return problems

    def authentication_problems(self) -> list[str]:
        """What in the store fails authentication (empty when everything verifies under this user's key)."""
        with self._env.begin() as txn:
            return self._authentication_problems(txn)

    def _authentication_problems(self, txn: Any) -> list[str]:
        """Every tagged value and every large file a landed version names must verify."""
        if self._auth is None:
            return ["the store is from before authentication (not signed)"]
        problems = []
        for kind, key, value, what in self._tagged_values(txn):
            if not self._authentic(txn, kind, key, value):
                problems.append(f"{what} {key.hex()} fails authentication")
        landed_files = {
            blob
            for _, value in txn.cursor(db=self._versions)
            for version in [_json_object(value) or {"landed": False}]
            if version.get("landed", True) and not version.get("pruned")
            for blob in version.get("files", {})
        }
        for blob in sorted(landed_files):
            try:
                mapping = self.files.map(bytes.fromhex(blob))
            except FileNotFoundError:
                continue  # reported above as an incomplete file
            try:
                self._check_file(bytes.fromhex(blob), mapping)
            except Unauthentic:
                problems.append(f"large value file {blob} fails authentication")
            finally:
                if hasattr(mapping, "close"):
                    mapping.close()
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
        try:
            self.slot.flush()
        except (OSError, ValueError) as exc:
            self._durability_failed(f"msync of {self.slot.path}", exc)

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
            self._dirty.clear()
            self._sync_environment()
            self._sync_slot()
            self._closed.set()
            self._env.close()
            self.slot.close()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=2)

