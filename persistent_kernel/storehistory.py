"""Version history, part of ``Store``: where each name stood after each cell, the versions, and the pruning of old large values by a budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .records import STORED, Pointer, Version
from .storebase import StorePart
from .storekeys import (
    AS_NAME,
    AS_VERSION,
    refused_pointer,
    refused_version_key,
    seq_key,
    split_name_key,
)


class StoreHistory(StorePart):
    """Version history, part of ``Store``: where each name stood after each cell, the versions, and the pruning of old large values by a budget."""

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
            still_used |= {blob for version in newer.values() for blob in version.files}
            drop = {blob: users for blob, users in plan.items() if blob not in still_used}
            if not drop:
                return 0
            pruned = {key for users in drop.values() for key in users}

            def body(txn):
                for key in pruned:
                    version = versions[key]
                    version.pruned = True
                    self._put(txn, AS_VERSION, self._versions, key, version.encode())

            self._write(body)  # marked first: a crash before the unlink leaves a file, never a dangling version
            return sum(self.files.remove(bytes.fromhex(blob)) for blob in drop)

    def _protected_files(self, versions: dict[bytes, Version], pointers: dict[str, Pointer]) -> set[str]:
        """The blobs of the versions the latest pointers name, and of the landed version an unlanded one restores from."""
        protected: set[bytes] = set()
        for name, pointer in pointers.items():
            key = pointer.version_key
            if key is None:
                continue
            protected.add(key)
            version = versions.get(key)
            if version is not None and version.kind == STORED and not version.is_landed:
                for older in reversed(self.name_history(name)):
                    older_key = older.version_key
                    if older.seq < pointer.seq and older_key is not None and _landed(versions.get(older_key)):
                        protected.add(older_key)
                        break
        return {blob for key in protected if key in versions for blob in versions[key].files}

    def _prune_plan(self, versions: dict[bytes, Version], pointers: dict[str, Pointer], budget: int) -> dict[str, list[bytes]]:
        """The blobs to delete (oldest last use first) and the versions using each; empty when within budget."""
        keep = self._protected_files(versions, pointers)
        users: dict[str, list[bytes]] = {}
        sizes: dict[str, int] = {}
        for key, version in versions.items():
            if version.pruned:
                continue
            for blob, size in version.files.items():
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

    def _pointer(self, txn: Any, key: bytes, value: Any) -> Pointer:
        name, seq = split_name_key(key)
        if self._authentic(txn, AS_NAME, key, value):
            return Pointer.decode(bytes(value), seq)
        self._refuse(f"where {name!r} stood after cell #{seq}")
        self._refused_versions.add(refused_version_key(seq))
        return refused_pointer(seq)

    def pointers_as_of(self, seq: int | None = None) -> dict[str, Pointer]:
        """Where every name stood after cell ``seq`` (default: the latest), deleted names included.

        Every version is kept, so this is the namespace "as of cell N". A pointer
        that fails authentication points at a version that does not exist: the
        name is rebuilt from its cells, or named as lost.
        """
        latest: dict[str, Pointer] = {}
        with self._env.begin(db=self._names) as txn:
            for key, value in txn.cursor():
                name, at = split_name_key(bytes(key))
                if seq is None or at <= seq:
                    latest[name] = self._pointer(txn, bytes(key), value)
        return latest

    def name_history(self, name: str) -> list[Pointer]:
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

    def version(self, key: bytes) -> Version | None:
        """A group version, or None when it is not there or fails authentication (``missing_reason`` says which)."""
        with self._env.begin(db=self._versions) as txn:
            raw = self._get(txn, AS_VERSION, self._versions, key, f"version {key.hex()}")
        if raw is None and key not in self._refused_versions and f"version {key.hex()}" in self.refusals:
            self._refused_versions.add(key)
        return None if raw is None else Version.decode(raw)

    def _authentic_versions(self, first: int = 0) -> Iterator[tuple[bytes, Version]]:
        """(key, version) of every authentic version from cell ``first`` on, in order; the others are refused."""
        with self._env.begin(db=self._versions) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(seq_key(first)):
                return
            for key, value in cursor:
                key = bytes(key)
                if self._authentic(txn, AS_VERSION, key, value):
                    yield key, Version.decode(bytes(value))
                else:
                    self._refuse(f"version {key.hex()}")
                    self._refused_versions.add(key)

    def versions_between(self, first: int, last: int) -> dict[int, list[Version]]:
        """The versions cells ``first`` … ``last`` created, by cell (for ``%persist history``)."""
        found: dict[int, list[Version]] = {}
        for key, version in self._authentic_versions(first):
            seq = int.from_bytes(key[:8], "big")
            if seq > last:
                break
            found.setdefault(seq, []).append(version)
        return found

    def versions_with_files(self, blobs: set[str], before: int) -> list[tuple[bytes, Version, int]]:
        """Versions of cells before ``before`` that name any of these large blobs, newest first."""
        found = []
        for key, version in self._authentic_versions():
            seq = int.from_bytes(key[:8], "big")
            if seq >= before:
                break
            if blobs & set(version.files):
                found.append((key, version, seq))
        return found[::-1]


def _landed(version: Version | None) -> bool:
    return version is not None and version.is_landed
