"""The store's side of a replica: what the committed cells added, as raw LMDB entries, and
a store directory built back from such entries (``replica`` ships and fetches them).

An entry is ``(database, key, value)`` exactly as LMDB holds it, tags included (the
``tags`` database): a replica is a copy of records, never a re-encoding, so a store
built from it verifies with the same key as the store it came from (the store id is in
``meta``). Large blobs are files, shipped by ``replica`` beside the entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lmdb

from .records import STORED, Version
from .storebase import StorePart
from .storekeys import (
    AS_BLOB,
    AS_CELL,
    AS_FILE,
    AS_META,
    AS_NAME,
    AS_OUTCOME,
    AS_VERSION,
    BLOBS,
    CELLS,
    MAX_DBS,
    META,
    NAMES,
    OUTCOMES,
    TAGS,
    VERSIONS,
    chunk_key,
    seq_key,
)

Entry = tuple[bytes, bytes, bytes]  # database, key, value

DATABASES = (META, CELLS, OUTCOMES, VERSIONS, NAMES, BLOBS, TAGS)


def unsettled(version: Version) -> bool:
    """Its large files are still being written: not final, so not shipped yet."""
    return version.kind == STORED and bool(version.files) and not version.landed and version.dropped is None


class StoreReplica(StorePart):
    def last_committed_seq(self) -> int:
        """The newest cell with an outcome (0: none)."""
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._outcomes)
            return int.from_bytes(bytes(cursor.key()), "big") if cursor.last() else 0

    def replica_cut(self, after: int) -> int:
        """The last cell after ``after`` whose records are final: it has an outcome, and no
        version up to it is still waiting for its files (``after`` when there is none)."""
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._outcomes)
            through = int.from_bytes(bytes(cursor.key()), "big") if cursor.last() else 0
            versions = txn.cursor(db=self._versions)
            if versions.set_range(seq_key(after + 1)):
                for key, raw in versions:
                    seq = int.from_bytes(bytes(key[:8]), "big")
                    if seq > through:
                        break
                    if unsettled(Version.decode(bytes(raw))):
                        through = seq - 1
                        break
        return max(after, through)

    def replica_entries(self, after: int, through: int) -> tuple[list[Entry], dict[str, int]]:
        """The entries cells ``after+1 … through`` added (and the whole ``meta``), with
        their tags; and the large files their versions name (hex digest -> size)."""
        entries: list[Entry] = []
        files: dict[str, int] = {}
        first, last = seq_key(after + 1), seq_key(through)
        with self._env.begin() as txn:

            def add(db_name: bytes, db: Any, kind: bytes | None, key: bytes, value: Any) -> None:
                entries.append((db_name, key, bytes(value)))
                if kind is not None:
                    tag = txn.get(kind + key, db=self._tags)
                    if tag is not None:
                        entries.append((TAGS, kind + key, bytes(tag)))

            for key, value in txn.cursor(db=self._meta):
                add(META, self._meta, AS_META, bytes(key), value)
            for db_name, db, kind in ((CELLS, self._cells, AS_CELL), (OUTCOMES, self._outcomes, AS_OUTCOME)):
                cursor = txn.cursor(db=db)
                if cursor.set_range(first):
                    for key, value in cursor:
                        if bytes(key) > last:
                            break
                        add(db_name, db, kind, bytes(key), value)
            blobs: set[bytes] = set()
            cursor = txn.cursor(db=self._versions)
            if cursor.set_range(first):
                for key, value in cursor:
                    if bytes(key[:8]) > last:
                        break
                    add(VERSIONS, self._versions, AS_VERSION, bytes(key), value)
                    version = Version.decode(bytes(value))
                    if version.kind != STORED:
                        continue
                    files.update(version.files)
                    if version.inline is None and version.payload:
                        blobs.add(bytes.fromhex(version.payload))
                    blobs.update(bytes.fromhex(blob) for blob in version.buffer_blobs if blob not in version.files)
            for key, value in txn.cursor(db=self._names):
                key = bytes(key)
                if first <= key[-8:] <= last:
                    add(NAMES, self._names, AS_NAME, key, value)
            for blob in sorted(blobs):
                index = 0
                while (part := txn.get(blob + chunk_key(index), db=self._blobs)) is not None:
                    add(BLOBS, self._blobs, AS_BLOB, blob + chunk_key(index), part)
                    index += 1
            for file_hex in files:
                file_tag = txn.get(AS_FILE + bytes.fromhex(file_hex), db=self._tags)
                if file_tag is not None:
                    entries.append((TAGS, AS_FILE + bytes.fromhex(file_hex), bytes(file_tag)))
        return entries, files


def write_entries(path: Path, entries: Iterable[Entry]) -> int:
    """Put replica entries into the LMDB environment at ``path`` (made if new), in one
    transaction; returns how many. Later entries win (a newer ``meta``)."""
    entries = list(entries)  # a transaction that outgrew the map is run again whole
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = lmdb.open(str(path), subdir=True, max_dbs=MAX_DBS, map_size=1 << 30, mode=0o600, create=True, writemap=False)
    count = 0
    try:
        databases = {name: env.open_db(name) for name in DATABASES}
        while True:
            try:
                with env.begin(write=True) as txn:
                    count = 0
                    for db_name, key, value in entries:
                        txn.put(key, value, db=databases[db_name])
                        count += 1
                break
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)
        env.sync(True)
    finally:
        env.close()
    return count
