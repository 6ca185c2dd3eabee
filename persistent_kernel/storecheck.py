"""Integrity checks, part of ``Store``: ``check()`` after each test scenario and by ``persistent-kernel``, and the authentication of every tagged value."""

from __future__ import annotations

from typing import Any

from .errors import (
    Unauthentic,
)
from .records import CellRecord, Pointer, Version
from .storebase import StorePart
from .storekeys import (
    chunk_key,
    split_name_key,
)


class StoreCheck(StorePart):
    """Integrity checks, part of ``Store``: ``check()`` after each test scenario and by ``persistent-kernel``, and the authentication of every tagged value."""

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
                cell_key = bytes(key)[:8]
                if txn.get(cell_key, db=self._outcomes) is None:
                    problems.append(f"version {bytes(key).hex()} has no outcome for its cell")
                version = _decoded(Version, value)
                if version is None:
                    problems.append(f"version {bytes(key).hex()} does not decode")
                    continue
                files = version.files
                payload = None if version.inline is not None else version.payload
                for blob in [payload, *version.buffer_blobs]:
                    if blob and blob not in files and txn.get(bytes.fromhex(blob) + chunk_key(0), db=self._blobs) is None:
                        problems.append(f"version {bytes(key).hex()} names missing blob {blob}")
                if version.landed and not version.pruned:
                    # Landed means durable: every large blob is a complete file.
                    for blob, size in files.items():
                        if self.files.size(bytes.fromhex(blob)) != size:
                            problems.append(f"landed version {bytes(key).hex()} lacks a complete file for blob {blob}")
            for key, value in txn.cursor(db=self._names):
                name, seq = split_name_key(bytes(key))
                pointer = _decoded(Pointer, value, seq)
                if pointer is None:
                    problems.append(f"name {(name, seq)} has a pointer that does not decode")
                    continue
                if pointer.version_key is not None and txn.get(pointer.version_key, db=self._versions) is None:
                    problems.append(f"name {split_name_key(bytes(key))} points to a missing version")
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
            for version in [_decoded(Version, value)]
            if version is not None and version.landed and not version.pruned
            for blob in version.files
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


def _decoded(kind: Any, value: Any, *args: Any) -> Any:
    """A stored record decoded, or None when its bytes are not one (``check`` reports, never raises)."""
    try:
        return kind.decode(bytes(value), *args)
    except (ValueError, TypeError):
        return None
