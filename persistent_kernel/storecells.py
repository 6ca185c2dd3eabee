"""The write-ahead protocol for cells, part of ``Store``: a cell's record in the slot before it runs, then its outcome and its checkpoint in one transaction, the marks of large values landing, and reading the records back."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from .authentication import TAG_BYTES, Authenticator
from .blobfiles import write_failure
from .errors import (
    StoreWriteError,
)
from .records import UNRECORDED, CellRecord, Pointer, Version
from .storebase import StorePart
from .storekeys import (
    AS_BLOB,
    AS_CELL,
    AS_META,
    AS_NAME,
    AS_OUTCOME,
    AS_SLOT,
    AS_VERSION,
    BLOB_CHUNK,
    UNTAGGED_META,
    chunk_key,
    json_bytes,
    name_key,
    seq_key,
)


class StoreCells(StorePart):
    """The write-ahead protocol for cells, part of ``Store``: a cell's record in the slot before it runs, then its outcome and its checkpoint in one transaction, the marks of large values landing, and reading the records back."""

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
        if self._auth is not None and not self._auth.is_authentic(AS_SLOT, seq_key(seq), ahead, tag):
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

    def append(self, record: CellRecord, *, ahead: bool = True) -> CellRecord:
        """Give ``record`` the next sequence number and write it ahead (to the slot); returns it.

        It reaches LMDB with its outcome (``set_outcome``, ``commit_checkpoint``),
        or, if the kernel dies first, when the store is next opened. ``ahead=False``
        (an event: no code runs between its record and its outcome, so a kill in
        between leaves nothing a restore must know) only numbers the record; it reaches
        LMDB with its outcome, in one transaction, or not at all.
        """
        with self._lock:
            if self._closed.is_set():
                raise StoreWriteError(f"the store at {self.path} is closed")
            if self._running is not None:
                # The previous cell ran but its outcome could not be committed (a full disk): keep
                # its record, saying so, not "started" (which a restore takes for a cell the kernel died in).
                running = self._running
                self._write(lambda txn: self._put_unrecorded(txn, *running))
                self._running = None
            record.seq = self._next_seq
            if not ahead:
                self._next_seq += 1
                return record
            encoded = record.encode_ahead()
            try:
                framed = encoded if self._auth is None else self._auth.tag(AS_SLOT, seq_key(record.seq), encoded) + encoded
                self.slot.write(framed)
            except (OSError, ValueError) as exc:  # a full disk; growing the slot for a very large cell can fail
                raise StoreWriteError(write_failure(f"writing the cell ahead to {self.slot.path}", exc)) from exc
            self._next_seq += 1
            self._running = (record.seq, encoded)
            self._dirty.set()  # the flusher msyncs the slot too
            return record

    def _put_ahead(self, txn: Any, seq: int, ahead: bytes) -> None:
        """A record with no outcome (it was running when the kernel died, or its commit failed)."""
        if seq >= self._floor:
            self._put(txn, AS_CELL, self._cells, seq_key(seq), ahead)

    def _put_unrecorded(self, txn: Any, seq: int, ahead: bytes) -> None:
        if seq >= self._floor:
            record = CellRecord.decode(ahead)
            record.status = UNRECORDED
            self._put(txn, AS_CELL, self._cells, seq_key(seq), ahead)
            self._put(txn, AS_OUTCOME, self._outcomes, seq_key(seq), record.encode_outcome())

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
        key = seq_key(record.seq)
        if self._running is not None and self._running[0] == record.seq:
            ahead = self._running[1]
        else:
            # Never re-sign what is there unless it is authentic: this kernel's own record otherwise.
            ahead = self._get(txn, AS_CELL, self._cells, key, f"cell record #{record.seq}") or record.encode_ahead()
        self._put(txn, AS_CELL, self._cells, key, ahead)
        self._put(txn, AS_OUTCOME, self._outcomes, key, record.encode_outcome())
        return True

    def _stored_next_seq(self, txn: Any) -> int:
        raw = self._get(txn, AS_META, self._meta, b"next_seq", "metadata 'next_seq'")
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
        versions: dict[bytes, Version],
        pointers: dict[str, Pointer],
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
                    self._put(txn, AS_BLOB, self._blobs, blob_digest + chunk_key(index), view[index * BLOB_CHUNK : (index + 1) * BLOB_CHUNK])
                self._authentic_blobs.add(blob_digest)  # if the transaction aborts, the blob's absence says so
            for version_key, version in versions.items():
                self._put(txn, AS_VERSION, self._versions, version_key, version.encode())
            for name, pointer in pointers.items():
                self._put(txn, AS_NAME, self._names, name_key(name, record.seq), pointer.encode())
            self._put_record(txn, record)
            if context is not None:
                self._put(txn, AS_META, self._meta, b"context", json_bytes(context))
            return True

        return self._commit_outcome(record, body)

    def _stored_blob_is_authentic(self, txn: Any, blob_digest: bytes) -> bool:
        """Whether a blob is stored, whole and authentic (else it is written again, over what is there).

        Checked once per process: a reused buffer (an unchanged DataFrame block beside a
        changed column) must not cost an HMAC over it with every cell. Later tampering is
        still refused when the blob is read.
        """
        if blob_digest in self._authentic_blobs:
            if txn.get(blob_digest + chunk_key(0), db=self._blobs) is not None:
                return True
            self._authentic_blobs.discard(blob_digest)  # removed since (a forget)
        index = 0
        while (part := txn.get(blob_digest + chunk_key(index), db=self._blobs)) is not None:
            if not self._authentic(txn, AS_BLOB, blob_digest + chunk_key(index), part):
                return False
            index += 1
        if index == 0:
            return False
        self._authentic_blobs.add(blob_digest)
        return True

    def mark_landed(self, key: bytes) -> bool:
        """A version's large blobs are durable: from now on it is restorable as stored."""

        def body(txn):
            raw = self._get(txn, AS_VERSION, self._versions, key, f"version {key.hex()}")
            if raw is None:
                return False  # the session was forgotten meanwhile (or the record is not ours: never re-signed)
            version = Version.decode(raw)
            version.landed = True
            self._put(txn, AS_VERSION, self._versions, key, version.encode())
            return True

        return self._write(body)

    def mark_dropped(self, key: bytes, reason: str) -> None:
        """A version whose large blobs will never land: say why, for "state as of cell N"."""

        def body(txn):
            raw = self._get(txn, AS_VERSION, self._versions, key, f"version {key.hex()}")
            if raw is None:
                return
            version = Version.decode(raw)
            if not version.landed:
                version.dropped = reason[:200]
                self._put(txn, AS_VERSION, self._versions, key, version.encode())

        self._write(body)

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
                kept: list[tuple[bytes, bytes]] = []
                dropped: list[tuple[bytes, bytes]] = []
                for key, value in txn.cursor(db=self._meta):
                    key = bytes(key)
                    if key in UNTAGGED_META:
                        continue
                    authentic = key == b"next_seq" or self._authentic(txn, AS_META, key, value)
                    (kept if authentic else dropped).append((key, bytes(value)))
                txn.drop(self._tags, delete=False)
                for key, value in kept:
                    txn.put(AS_META + key, new_auth.tag(AS_META, key, value), db=self._tags)
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
                if self._authentic(txn, AS_CELL, key, ahead) and (outcome is None or self._authentic(txn, AS_OUTCOME, key, outcome)):
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
        key = seq_key(running[0])
        if items and items[-1][0] >= key:
            return None
        return key, running[1]

    def count(self) -> int:
        """Cell records, the one running now included."""
        with self._env.begin() as txn:
            entries = txn.stat(self._cells)["entries"]
            cursor = txn.cursor(db=self._cells)
            last = [(bytes(cursor.key()), b"")] if cursor.last() else []
        return entries + (self._running_record(last) is not None)
