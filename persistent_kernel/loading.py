"""Loading a stored version: whether it can be loaded, its values, and the landed one a restore starts from.

Shared by the restore, time travel and the replay engine (which binds what a cell read from them).
"""

from __future__ import annotations

import base64
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .records import LIVE, STORED, Version
from .serialize import loads


def loadable(store: Any, version: Version | None) -> bool:
    """A stored version whose bytes are all there (a crash can come between a file's landing and its mark)."""
    return version is not None and version.loadable(store.has_file)


def base_by_content(store: Any, version: Version, before: int) -> tuple[str, tuple[str, Version, int], int] | None:
    """For a value that never landed and has no earlier version of its own: an earlier
    unlanded version of another name holding the same large bytes, and that name's
    newest landed version. Returns (that name, its base, the seq of the shared version)."""
    wanted = set(version.files)
    for key, other, seq in store.versions_with_files(wanted, before):
        for other_name in other.names:
            base = landed_base(store, other_name, seq)
            if base is not None:
                return other_name, base, seq
    return None


def landed_base(store: Any, name: str, before: int) -> tuple[str, Version, int] | None:
    """The newest version of ``name`` from before cell ``before`` whose bytes are all stored."""
    for pointer in reversed(store.name_history(name)):
        if pointer.seq >= before:
            continue
        if pointer.state != LIVE:
            return None  # deleted in between: what came before is not its history
        version = store.version(pointer.version_key)
        if loadable(store, version):
            return pointer.version, version, pointer.seq
        if version is None or version.kind != STORED:
            return None  # a recompute version: the full rebuild replays its cells anyway
    return None


@contextmanager
def _collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while a value is unpickled: it allocates objects by the
    million, none of them garbage, and each full collection would walk them all again (and
    everything the kernel holds). The collector's state is put back as it was.

    Everything the load made is then handed to the oldest generation, where the next full
    collection looks at it, as it would at any value that survived a few collections:
    re-enabled as it was, the first allocation would set off a young-generation pass over
    every loaded object at once (~0.05 s for a million records, on the restore's critical
    path). ``gc.freeze`` then ``gc.unfreeze`` moves the young generations to the oldest, two
    list splices; skipped when the process froze objects of its own (``unfreeze`` would let
    them go too).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def load_version(main: Any, store: Any, version: Version) -> dict[str, Any] | Exception:
    with _collection_paused():
        return _load_version(main, store, version)


def _load_version(main: Any, store: Any, version: Version) -> dict[str, Any] | Exception:
    try:
        inline = version.inline
        payload = base64.b64decode(inline) if inline is not None else store.read_blob(version.payload_digest)
        buffers = [
            store.read_pieces([bytes.fromhex(p) for p in version.pieces[b]]) if b in version.pieces else store.read_blob(bytes.fromhex(b))
            for b in version.buffers
        ]
        values = loads(version.pickler, bytes(payload), buffers, main)
        if not isinstance(values, dict):
            return TypeError("a stored group is not a dict")
        return values
    except Exception as exc:  # noqa: BLE001 - a bad blob costs only its own variables
        return exc
