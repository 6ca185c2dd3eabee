"""What every part of ``Store`` may use of the others: declarations for the type checker, nothing at run time.

``Store`` (store.py) is assembled from parts by job (``StoreFormat``, ``StoreCells``,
``StoreHistory``, ``StoreBlobs``, ``StoreCheck``, ``StoreMaintenance``), each in its own
module and each a subclass of ``StorePart``. ``StorePart`` only *declares* the state
``Store.__init__`` sets up and the core methods a part calls on another: the
attributes are bare annotations and the methods exist only for the type checker
(``TYPE_CHECKING``), so at run time the class is empty and every call reaches the
real implementation in ``Store`` or in the part that defines it. mypy checks those
implementations against these signatures (an override that no longer matches is an error).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ahead import AheadSlot
from .authentication import Authenticator
from .blobfiles import BlobFiles
from .errors import StoreWriteError
from .storekeys import T

if TYPE_CHECKING:
    import lmdb


class StorePart:
    """The state and core methods of ``Store`` that its parts use (declared here, defined in ``Store``)."""

    # -- set by Store.__init__ -----------------------------------------------------------
    path: Path
    _owner: bool  # the kernel holding the session: only it writes what a reading finds (a slot, seals)
    _lock: threading.RLock  # serializes writes (and the write-ahead)
    _dirty: threading.Event  # something was written since the last sync
    _closed: threading.Event
    _key: bytes  # the user's key
    _auth: Authenticator | None  # None: an unauthenticated (older) store, read as it is
    authenticated: bool
    refusals: dict[str, None]  # what failed authentication, in the order found
    _authentic_blobs: set[bytes]  # blobs this process wrote or found authentic
    _refused_versions: set[bytes]
    _env: lmdb.Environment
    # The databases (``storekeys``: META, CELLS, …).
    _meta: lmdb._Database
    _cells: lmdb._Database
    _outcomes: lmdb._Database
    _versions: lmdb._Database
    _names: lmdb._Database
    _blobs: lmdb._Database
    _tags: lmdb._Database
    files: BlobFiles  # the large blobs' files
    slot: AheadSlot  # the write-ahead slot
    _floor: int  # records below this were cleared while they ran (%persist forget)
    _next_seq: int
    _running: tuple[int, bytes] | None  # the record this store wrote to the slot
    _unrecorded: tuple[int, bytes] | None  # a cell that ran, its outcome lost in a failed settle
    _seen_running: tuple[int, bytes, bytes | None] | None  # a non-owner's view of the kernel's slots
    outcome_slot: AheadSlot  # a cell's commit, made after its reply (``outcomeframe``)
    _pending: tuple[int, list[Any]] | None  # the commit in the outcome slot, not yet in LMDB
    on_settle_failed: Callable[[StoreWriteError], None] | None
    _by_kind: dict[bytes, lmdb._Database]  # tagged kind -> its database

    if TYPE_CHECKING:
        # -- defined in Store (store.py) -------------------------------------------------

        def _write(self, body: Callable[[Any], T]) -> T:
            """Run ``body(txn)`` in one write transaction; grow the map when it is full."""

        def _put(self, txn: Any, kind: bytes, db: Any, key: bytes, value: Any) -> None:
            """Put a value with its tag (in the same transaction)."""

        def _get(self, txn: Any, kind: bytes, db: Any, key: bytes, what: str) -> bytes | None:
            """A value, if it is there and authentic; a value that fails is refused (and reads as None)."""

        def _authentic(self, txn: Any, kind: bytes, key: bytes, value: Any) -> bool: ...

        def _refuse(self, what: str) -> None: ...

        def _tagged_values(self, txn: Any) -> Iterator[tuple[bytes, bytes, Any, str]]:
            """(kind, key, value, what) of every LMDB value that carries a tag."""

        def get_meta(self, key: str, default: Any = None) -> Any: ...

        # -- defined in StoreBlobs (storeblobs.py) ---------------------------------------

        def _check_file(self, blob_digest: bytes, mapping: Any) -> None:
            """Raise ``Unauthentic`` unless a large file's bytes are the ones this user's kernel wrote."""
