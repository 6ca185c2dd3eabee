"""The store's format version and the trust migration: part of ``Store``."""

from __future__ import annotations

import json
import secrets

from .authentication import Authenticator, segment_hashes
from .errors import (
    StoreFormatError,
    StoreFromNewerVersion,
    StoreNotAuthenticated,
)
from .storebase import StorePart
from .storekeys import (
    AS_FILE,
    FIRST_AUTHENTICATED_FORMAT,
    FORMAT_VERSION,
)


class StoreFormat(StorePart):
    """The store's format version and the trust migration: part of ``Store``."""

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
                txn.put(AS_FILE + blob_digest, tag, db=self._tags)
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

    @property
    def format_version(self) -> int:
        return int(self.get_meta("format_version", FORMAT_VERSION))
