"""The write-ahead protocol for cells, part of ``Store``: a cell's record in the slot before it runs, then its outcome and its checkpoint in one transaction, the marks of large values landing, and reading the records back."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

from . import outcomeframe
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

DEFER_MAX_BYTES = 256 * 1024  # a larger commit is made on the reply path (the slot would copy it twice)
OUTCOME_SLOT_KEY = b"outcome:"  # what the outcome slot's tag covers besides the frame: this prefix and the seq


class StoreCells(StorePart):
    """The write-ahead protocol for cells, part of ``Store``: a cell's record in the slot before it runs, then its outcome and its checkpoint in one transaction, the marks of large values landing, and reading the records back."""

    def _slot_record(self, next_seq: int) -> tuple[int, bytes, bytes | None] | None:
        """The cell in the slots whose outcome LMDB does not have: (seq, record, outcome or None).

        The outcome slot holds a cell's whole commit made while the kernel was busy and not
        yet applied (its outcome is known); the ahead slot, a cell that was running.
        """
        waiting = self._slot_commit()
        if waiting is not None:
            seq, items = waiting
            ahead, outcome = outcomeframe.record_parts(items)
            if ahead is not None:
                return seq, ahead, outcome
            next_seq = max(next_seq, seq + 1)
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
        return seq, ahead, None

    def _slot_commit(self) -> tuple[int, list[outcomeframe.Item]] | None:
        """The commit in the outcome slot, if it is authentic and LMDB does not have it yet.

        LMDB has it when it holds the cell's outcome, authentic (the commit puts it), or when
        the records were forgotten past it (``next_seq`` in meta). Not by comparing with the
        last record: a record planted beyond it must not hide a genuine commit.
        """
        payload = self.outcome_slot.read()
        if payload is None:
            return None
        tag, frame = (payload[:TAG_BYTES], payload[TAG_BYTES:]) if self._auth is not None else (None, payload)
        if not outcomeframe.is_frame(frame):
            return None
        try:
            seq, items = outcomeframe.decode(frame)
        except ValueError:
            return None  # not a frame this code wrote whole
        if self._auth is not None and not self._auth.is_authentic(AS_SLOT, OUTCOME_SLOT_KEY + seq_key(seq), frame, tag):
            self._refuse(f"the outcome of cell #{seq}, made as the kernel stopped")
            return None
        key = seq_key(seq)
        with self._env.begin() as txn:
            if seq < self._stored_next_seq(txn):
                return None  # forgotten since
            outcome = txn.get(key, db=self._outcomes)
            if outcome is not None and self._authentic(txn, AS_OUTCOME, key, outcome):
                return None  # applied
        return seq, items

    def _take_in_slot(self) -> int:
        """Read ``next_seq``; apply an outcome left in the outcome slot, and record a cell left in the
        ahead slot (it ran when the kernel died)."""
        with self._env.begin() as txn:
            next_seq = self._next_seq_in(txn)
        waiting = self._slot_commit()
        if waiting is not None:
            seq, items = waiting
            if self._write(lambda txn: self._apply(txn, seq, items)):
                next_seq = max(next_seq, seq + 1)
        found = self._slot_record(next_seq)
        if found is None:
            return next_seq
        seq, payload, _outcome = found
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
            unrecorded = [cell for cell in (self._unrecorded, self._running) if cell is not None]
            if unrecorded:
                # Earlier cells ran but their outcomes could not be committed (a full disk): keep
                # their records, saying so, not "started" (which a restore takes for a cell the kernel died in).

                def body(txn: Any) -> None:
                    for cell in unrecorded:
                        self._put_unrecorded(txn, *cell)

                self._write(body)
                self._unrecorded = self._running = None
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

    def _commit_outcome(self, record: CellRecord, items: list[outcomeframe.Item], defer: bool) -> bool:
        with self._lock:
            settled = self.settle()  # an earlier cell's outcome goes in first
            if record.seq < self._floor:
                return False  # forgotten while it ran
            # After a failed settle this commit is made now: whether it fails too must be known before the reply.
            if defer and settled and self._defer(record, items):
                return True
            try:
                return self._committed(record, self._write(lambda txn: self._apply(txn, record.seq, items)))
            except StoreWriteError:
                if self._running is not None and self._running[0] == record.seq:
                    self.slot.clear()  # it ran: a kill now must not make it "running when the kernel died"
                raise

    def _committed(self, record: CellRecord, committed: bool) -> bool:
        if committed and self._running is not None and self._running[0] == record.seq:
            self._running = None  # in LMDB now
        return committed

    def _defer(self, record: CellRecord, items: list[outcomeframe.Item]) -> bool:
        """Put the commit in the outcome slot, for ``settle`` to apply; False: commit it now instead.

        Not for a large commit (copied twice), nor behind an earlier cell whose outcome
        failed to commit (``_running`` is then that cell: ``append`` records it first).
        """
        if self._running is not None and self._running[0] != record.seq:
            return False
        frame = outcomeframe.encode(record.seq, items)
        if len(frame) > DEFER_MAX_BYTES:
            return False
        framed = frame if self._auth is None else self._auth.tag(AS_SLOT, OUTCOME_SLOT_KEY + seq_key(record.seq), frame) + frame
        try:
            self.outcome_slot.write(framed)
        except (OSError, ValueError):  # a full disk (reserving blocks): the transaction says so, now
            self.outcome_slot.clear()
            return False
        # Copies: a blob may be a view of a live buffer (an array's), which the next cell can change
        # in place before the settle. What is applied must be what the digest was taken of.
        self._pending = (record.seq, [(op, kind, key, value if type(value) is bytes else bytes(value)) for op, kind, key, value in items])
        self._running = None  # its record is in the outcome slot
        self._dirty.set()  # the flusher msyncs the slots
        return True

    def settle(self) -> bool:
        """Apply the outcome waiting in the outcome slot to LMDB (the kernel calls it once idle); False: it failed.

        A failure (a full disk) is told through ``on_settle_failed``: the cell ran and was
        answered, but its changes are not stored; the caller stores the namespace whole
        with the next cell, and the next ``append`` records this cell as "ran, outcome not
        recorded", as when its commit fails on the reply path.
        """
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None or self._closed.is_set():
                return True
            seq, items = pending
            try:
                self._write(lambda txn: self._apply(txn, seq, items))
                return True
            except StoreWriteError as exc:
                ahead, _outcome = outcomeframe.record_parts(items)
                self.outcome_slot.clear()  # not applied: a kill now must not apply it later, out of order
                if ahead is not None:
                    if self._running is None:
                        self._running = (seq, ahead)
                    else:  # a later cell runs (this failed as its commit began): recorded with the next append
                        self._unrecorded = (seq, ahead)
                if self.on_settle_failed is not None:
                    self.on_settle_failed(exc)
                return False

    def _outcome_items(
        self,
        record: CellRecord,
        versions: dict[bytes, Version] | None = None,
        pointers: dict[str, Pointer] | None = None,
        blobs: dict[bytes, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> list[outcomeframe.Item]:
        """What committing a cell's outcome puts, in order: its blobs, versions, pointers, record and outcome."""
        items: list[outcomeframe.Item] = []
        for blob_digest, data in (blobs or {}).items():
            items.append((outcomeframe.BLOB, AS_BLOB, blob_digest, data))
        for version_key, version in (versions or {}).items():
            items.append((outcomeframe.PUT, AS_VERSION, version_key, version.encode()))
        for name, pointer in (pointers or {}).items():
            items.append((outcomeframe.PUT, AS_NAME, name_key(name, record.seq), pointer.encode()))
        key = seq_key(record.seq)
        if self._running is not None and self._running[0] == record.seq:
            items.append((outcomeframe.PUT, AS_CELL, key, self._running[1]))
        else:
            # Never re-sign what is there unless it is authentic: this kernel's own record otherwise.
            items.append((outcomeframe.AHEAD, AS_CELL, key, record.encode_ahead()))
        items.append((outcomeframe.PUT, AS_OUTCOME, key, record.encode_outcome()))
        if context is not None:
            items.append((outcomeframe.PUT, AS_META, b"context", json_bytes(context)))
        return items

    def _apply(self, txn: Any, seq: int, items: list[outcomeframe.Item]) -> bool:
        """A cell's commit into ``txn``; False when the cell was cleared (forgotten) since."""
        if seq < self._floor:
            return False
        for op, kind, key, value in items:
            db = self._by_kind[kind]
            if op == outcomeframe.BLOB:
                if self._stored_blob_is_authentic(txn, key):
                    continue  # content-addressed: already stored by some earlier version
                view = memoryview(value).cast("B")
                chunks = max(1, -(-view.nbytes // BLOB_CHUNK))
                for index in range(chunks):
                    self._put(txn, AS_BLOB, db, key + chunk_key(index), view[index * BLOB_CHUNK : (index + 1) * BLOB_CHUNK])
                self._authentic_blobs.add(key)  # if the transaction aborts, the blob's absence says so
            elif op == outcomeframe.AHEAD:
                self._put(txn, kind, db, key, self._get(txn, kind, db, key, f"cell record #{seq}") or value)
            else:
                self._put(txn, kind, db, key, value)
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

    def set_outcome(self, record: CellRecord, *, defer: bool = False) -> bool:
        """Store how a cell ended (with its record); False when the session was forgotten meanwhile.

        ``defer``: the outcome may wait in the outcome slot for ``settle`` (see ``outcomeframe``).
        """
        return self._commit_outcome(record, self._outcome_items(record), defer)

    def commit_checkpoint(
        self,
        record: CellRecord,
        versions: dict[bytes, Version],
        pointers: dict[str, Pointer],
        blobs: dict[bytes, Any],
        context: dict[str, Any] | None = None,
        *,
        defer: bool = False,
    ) -> bool:
        """Commit a cell's outcome with everything it changed, in ONE transaction.

        ``versions``: version key -> group version; ``pointers``: name -> where it
        now stands; ``blobs``: digest -> bytes-like (stored once; a digest already
        stored and authentic is not written again; its tag is checked once per process).
        Returns False, storing nothing, when the cell's
        record is gone (the session was forgotten while it ran). ``defer``: as in ``set_outcome``.
        """
        return self._commit_outcome(record, self._outcome_items(record, versions, pointers, blobs, context), defer)

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
            self._running = self._unrecorded = None
            self.slot.clear()
            self.outcome_slot.clear()
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
            items.append(running)
        return (
            CellRecord.decode(ahead, outcome) if ahead is not None else CellRecord.refused(int.from_bytes(key, "big"))
            for key, ahead, outcome in items
        )

    def _running_record(self, items: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes, bytes | None] | None:
        """(key, record, outcome) of the cell in the slots (running now, or its outcome not applied
        yet), unless it is already in LMDB or forgotten."""
        running = (*self._running, None) if self._running is not None else self._seen_running
        if running is None or running[0] < self._floor:
            return None
        key = seq_key(running[0])
        if items and items[-1][0] >= key:
            return None
        return key, running[1], running[2]

    def count(self) -> int:
        """Cell records, the one running now included."""
        with self._env.begin() as txn:
            entries = txn.stat(self._cells)["entries"]
            cursor = txn.cursor(db=self._cells)
            last = [(bytes(cursor.key()), b"")] if cursor.last() else []
        return entries + (self._running_record(last) is not None)
