"""Blobs, part of ``Store``: the bytes of stored values read back (chunks in LMDB, or a large
value's file, each checked against its tag first), and the large files the writer writes."""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from hmac import compare_digest as hmac_equal
from pathlib import Path
from typing import Any

from .authentication import segment_hashes, segment_hashes_of
from .blobfiles import COPY_CHUNK
from .errors import NotPrivate, StoreWriteError, Unauthentic
from .storebase import StorePart
from .storekeys import AS_BLOB, AS_FILE, AS_FILE_SEAL, chunk_key

SEAL_AFTER = 1.0  # seconds a verified file must have been unchanged to be sealed by a restore


class StoreBlobs(StorePart):
    """Blobs, part of ``Store``: the bytes of stored values read back, and the large files the writer writes."""

    def read_blob(self, blob_digest: bytes) -> bytearray | mmap.mmap | bytes:
        """A blob's bytes, in one writable buffer (arrays loaded from it are writable).

        A large blob is a file, returned as a private mapping: its bytes are read
        once to check its tag (on every core), then stay in the page cache;
        changes to the mapping never reach the file. Raises ``Unauthentic`` when
        the blob fails authentication, KeyError when it is not stored.
        """
        with self._env.begin(db=self._blobs, buffers=True) as txn:
            parts = []
            index = 0
            while (part := txn.get(blob_digest + chunk_key(index))) is not None:
                parts.append((blob_digest + chunk_key(index), part, txn.get(AS_BLOB + blob_digest + chunk_key(index), db=self._tags)))
                index += 1
            if parts:
                # Copied out of the map first, then the copy is verified: what is checked is what is used.
                data = bytearray(sum(len(p) for _, p, _ in parts))
                offset = 0
                for key, part, tag in parts:
                    end = offset + len(part)
                    data[offset:end] = part
                    if self._auth is not None and not self._auth.is_authentic(AS_BLOB, key, memoryview(data)[offset:end], tag):
                        self._refuse(f"blob {blob_digest.hex()}")
                        raise Unauthentic(f"blob {blob_digest.hex()} in {self.path} failed authentication")
                    offset = end
                return data
        stats: dict[bytes, os.stat_result] = {}
        try:
            mapping = self.files.map(blob_digest, stats)
        except FileNotFoundError:
            raise KeyError(f"blob {blob_digest.hex()} is missing from {self.path}") from None
        except NotPrivate as exc:
            self._refuse(f"large value file {blob_digest.hex()}")
            raise Unauthentic(str(exc)) from None
        if not self._sealed_files(stats):
            self._check_file(blob_digest, mapping)
            self._seal_verified(stats)
        return mapping

    def read_pieces(self, digests: list[bytes]) -> mmap.mmap | bytes:
        """A buffer stored as pieces (``serialize.PIECE_BYTES``), in one writable buffer.

        The pieces' files are mapped in place, one after the other, into one private
        mapping (see ``BlobFiles.map_pieces``), and each is checked against its tag
        where it lies: what is checked is what is used. A piece kept in LMDB (smaller
        than ``large_blob_bytes``) is read and checked like any blob, then copied in.
        Raises ``Unauthentic`` and KeyError like ``read_blob``.
        """
        copied = {blob: self.read_blob(blob) for blob in set(digests) if not self.files.exists(blob)}
        stats: dict[bytes, os.stat_result] = {}
        try:
            region, spans = self.files.map_pieces(digests, copied, stats)
        except FileNotFoundError:
            raise KeyError(f"a piece of a large value is missing from {self.path}") from None
        except NotPrivate as exc:
            self._refuse("a piece of a large value")
            raise Unauthentic(str(exc)) from None
        view = memoryview(region)
        sealed = self._sealed_files(stats)
        checked = [
            (blob, view[offset : offset + size])
            for blob, (offset, size) in zip(digests, spans)
            if blob not in copied and blob not in sealed
        ]
        try:
            # Every piece hashed at once, on every core (one piece is one segment: one by one, one core).
            hashes: list[list[bytes] | None] = [None] * len(checked)
            if self._auth is not None:
                hashes = list(segment_hashes_of([part for _, part in checked]))
            for (blob, part), part_hashes in zip(checked, hashes):
                self._check_file(blob, part, part_hashes)
            self._seal_verified({blob: stats[blob] for blob, _ in checked})
        finally:
            for _, part in checked:
                part.release()
            view.release()
        return region

    def blob_bytes(self) -> int:
        """Bytes held by blobs (content-addressed, so shared data counts once)."""
        total = sum(self.files.size(blob) or 0 for blob in self.files.digests())
        with self._env.begin(db=self._blobs, buffers=True) as txn:
            for _, value in txn.cursor():
                total += len(value)
        return total

    @property
    def blob_directory(self) -> Path:
        return self.files.directory

    def has_file(self, blob_digest: bytes) -> bool:
        """Whether a large blob's file is stored (a file appears only complete)."""
        return self.files.exists(blob_digest)

    def write_file(
        self,
        blob_digest: bytes,
        buffer: Any,
        *,
        throttle: Callable[[int], None] | None = None,
        chunk_size: int = COPY_CHUNK,
        cancelled: Callable[[], bool] | None = None,
    ) -> int:
        """Write a large blob's file, fsynced and tagged; returns the bytes written (0: it was there).

        A file found without its tag (a kill between a forget's steps) is written again.
        Raises ``TornWrite`` if the buffer changed meanwhile, ``WriteCancelled``, ``OSError``.
        """
        if not self.has_file_tag(blob_digest):
            self.files.remove(blob_digest)
        return self.files.write(
            blob_digest,
            buffer,
            throttle=throttle,
            chunk_size=chunk_size,
            cancelled=cancelled,
            seal=lambda hashes: self.put_file_tag(blob_digest, hashes),
            stamped=lambda info: self._put_file_seals({blob_digest: info}),
        )

    def has_file_tag(self, blob_digest: bytes) -> bool:
        with self._env.begin(db=self._tags) as txn:
            return self._auth is None or txn.get(AS_FILE + blob_digest) is not None

    def put_file_tag(self, blob_digest: bytes, hashes: list[bytes]) -> None:
        """Tag a large file from its segments' digests (the writer calls this before the file appears)."""
        if self._auth is None:
            return
        tag = self._auth.file_tag(blob_digest, hashes)
        self._write(lambda txn: txn.put(AS_FILE + blob_digest, tag, db=self._tags))

    # -- sealed files: verified once, not hashed again while unchanged (docs/security.md) -----

    def _sealed_files(self, stats: dict[bytes, os.stat_result]) -> set[bytes]:
        """The files among ``stats`` (digest -> the ``fstat`` of the file mapped) with a seal that
        still holds: not written since this user's kernel wrote or verified them."""
        if self._auth is None or not stats:
            return set()
        sealed = set()
        with self._env.begin(db=self._tags) as txn:
            for blob_digest, info in stats.items():
                seal = txn.get(AS_FILE_SEAL + blob_digest)
                if seal is not None and hmac_equal(self._auth.file_seal(blob_digest, info), bytes(seal)):
                    sealed.add(blob_digest)
        return sealed

    def _seal_verified(self, stats: dict[bytes, os.stat_result]) -> None:
        """Seal files just hashed and found authentic, if unchanged for ``SEAL_AFTER`` seconds.

        Their ``fstat`` was taken before the hash: a write during or after it sets a ctime
        the seal does not hold. One a moment old could still be written within the same
        clock tick, unseen: it is hashed again next time.
        """
        now = time.time_ns()
        self._put_file_seals({blob: info for blob, info in stats.items() if now - info.st_ctime_ns > SEAL_AFTER * 1e9})

    def _put_file_seals(self, stats: dict[bytes, os.stat_result]) -> None:
        if self._auth is None or not self._owner or not stats:
            return  # a reader writes nothing
        auth = self._auth
        seals = {AS_FILE_SEAL + blob: auth.file_seal(blob, info) for blob, info in stats.items()}

        def body(txn: Any) -> None:
            for key, seal in seals.items():
                txn.put(key, seal, db=self._tags)

        try:
            self._write(body)
        except StoreWriteError:
            pass  # only the next restore's time is lost: it hashes the file again

    def _check_file(self, blob_digest: bytes, mapping: Any, hashes: list[bytes] | None = None) -> None:
        """Raise ``Unauthentic`` unless a large file's bytes are the ones this user's kernel wrote
        (``hashes``: its segments' digests, when the caller computed them with others)."""
        if self._auth is None:
            return
        with self._env.begin(db=self._tags) as txn:
            tag = txn.get(AS_FILE + blob_digest)
            tag = None if tag is None else bytes(tag)
        if hashes is None:
            hashes = segment_hashes(mapping)
        if tag is None or not hmac_equal(self._auth.file_tag(blob_digest, hashes), tag):
            self._refuse(f"large value file {blob_digest.hex()}")
            raise Unauthentic(f"the file of blob {blob_digest.hex()} in {self.path} failed authentication")
