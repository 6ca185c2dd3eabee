"""The journal's record types and their encoding.

Records are JSON, never pickle: reading the journal must not run code, and a
human with ``mdb_dump`` can still read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A cell's status moves from STARTED (committed before it runs) to one final state.
STARTED = "started"  # written ahead; still running, or the kernel died while it ran
OK = "ok"
ERROR = "error"  # raised; its effects up to the exception are part of the state
INTERRUPTED = "interrupted"  # KeyboardInterrupt / cancelled: never replayed (could run forever)
DIED = "died"  # the kernel died while it ran: never replayed (it may be what killed it)
SKIPPED = "skipped"  # killed a restore while being replayed: never replayed again
UNRECORDED = "unrecorded"  # ran, but its outcome could not be committed (a full disk): never replayed, never "died";
# what it changed is stored by the next cell that commits
REFUSED = "refused"  # its stored record failed authentication: its code is never read, never replayed

# Journal entries that are not cells: changes stored outside a cell's code (never replayed).
EVENT_NAMES = {"verify": "idle check", "resume": "resume", "refused": "refused record", "comm": "comm message"}

# The outcomes whose effects are part of the session and are rebuilt by replay.
REPLAYED_STATUSES = frozenset({OK, ERROR})


# Written ahead, before the cell runs, and never rewritten.
_AHEAD_FIELDS = ("seq", "code", "execution_count", "silent", "store_history", "cell_id", "started_at", "kind", "random_state_before", "trigger")
# Written after it runs, in a small record of its own: finishing a cell never rewrites its code.
_OUTCOME_FIELDS = (
    "status", "duration", "ename", "evalue", "random_state_after", "reads", "writes", "deletes", "checkpointed", "handled_during", "result",
)


@dataclass
class CellRecord:
    """One execution of user code, as journaled: what ran, and how it ended."""

    seq: int
    code: str
    execution_count: int
    silent: bool = False
    store_history: bool = True
    cell_id: str | None = None
    started_at: float = 0.0  # unix time, written ahead
    kind: str = "cell"  # "cell"; "verify": an idle full check that stored what cells did not show; "resume": %persist on;
    # "comm": comm messages from the frontend whose handlers (widget callbacks) changed the namespace
    random_state_before: dict | None = None  # the global generators as the cell found them (when changed)
    trigger: str | None = None  # for an event: what set it off (``IntSlider update value=42``)
    status: str = STARTED
    duration: float | None = None  # seconds, with the outcome
    ename: str | None = None
    evalue: str | None = None
    random_state_after: dict | None = None  # as the cell left them (when changed)
    reads: list[str] | None = None  # user names the cell read (statically, widened through notebook code)
    writes: list[str] | None = None  # names it bound (identity changed or new)
    deletes: list[str] | None = None
    checkpointed: bool = False  # its namespace changes were committed with this outcome
    # Comm messages handled while the cell ran (an awaiting cell, a subshell): their changes are part of
    # this cell's transaction, so the journal keeps one order and never half of either.
    handled_during: list[str] | None = None
    # Its result (``Out[n]``): {"n", "alias": a variable holding that very object} | {"n", "method", "payload"} |
    # {"n", "dropped": why it was not kept}
    result: dict | None = None

    @property
    def label(self) -> str:
        """How the user knows this cell: ``[15]``, ``silent execution #7``, ``idle check #9``."""
        if self.kind != "cell":
            return f"{EVENT_NAMES.get(self.kind, self.kind)} #{self.seq}"
        if self.silent or not self.store_history:
            return f"silent execution #{self.seq}"
        return f"[{self.execution_count}]"

    def encode_ahead(self) -> bytes:
        return _encode({name: getattr(self, name) for name in _AHEAD_FIELDS})

    def encode_outcome(self) -> bytes:
        return _encode({name: getattr(self, name) for name in _OUTCOME_FIELDS})

    @classmethod
    def refused(cls, seq: int) -> CellRecord:
        """A placeholder for a record that failed authentication: nothing of it is used."""
        return cls(seq=seq, code="", execution_count=0, silent=True, store_history=False, kind="refused", status=REFUSED)

    @classmethod
    def decode(cls, ahead: bytes, outcome: bytes | None = None) -> CellRecord:
        values = _decode(ahead, _AHEAD_FIELDS)
        if outcome is not None:
            values.update(_decode(outcome, _OUTCOME_FIELDS))
        return cls(**values)


# ASCII escapes keep lone surrogates (from odd user strings) encodable; str() anything exotic.
# One encoder for every record: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str)


def _encode(values: dict) -> bytes:
    return _ENCODER.encode(values).encode("ascii")


def _decode(data: bytes, names: tuple[str, ...]) -> dict:
    raw = json.loads(bytes(data).decode("utf-8"))
    if not isinstance(raw, dict):
        raise ValueError("a journal record must be a JSON object")
    # Unknown keys come from a newer minor writer; keep what we understand.
    return {k: v for k, v in raw.items() if k in names}


# What a group version holds: its pickled values, or the cells that rebuild them.
STORED = "stored"
RECOMPUTE = "recompute"


@dataclass
class Version:
    """One stored state of a group of names that share objects (a version record in the store).

    A STORED version names its pickle (``payload``, or ``inline`` when small) and
    its out-of-band ``buffers`` (a large one by its ``pieces``, each a blob of its own);
    large blobs are ``files`` written after the commit,
    so it is ``landed`` only once they are durable. A RECOMPUTE version names the
    ``cells`` that rebuild values that cannot be stored, and why (``reason``).
    Versions are never rewritten except to mark them landed, dropped or pruned.
    """

    kind: str  # STORED | RECOMPUTE
    names: list[str]
    method: str | None = None  # the pickler that wrote the payload (serialize.loads takes it back)
    payload: str | None = None  # hex digest of the pickle's blob
    inline: str | None = None  # base64 pickle, when small enough to travel in the record itself
    buffers: list[str] = field(default_factory=list)  # hex digests, in pickle-5 buffer order
    pieces: dict[str, list[str]] = field(default_factory=dict)  # a large buffer's digest -> its pieces' blobs, in order
    nbytes: int = 0
    digest: str | None = None  # hash of the whole group: unchanged groups are not stored again
    notes: dict[str, str] | None = None  # name -> what a restore must say about it (see serialize._copied_views)
    files: dict[str, int] = field(default_factory=dict)  # large blobs (hex digest -> size), written after the commit
    landed: bool = True  # False until every file is durable
    dropped: str | None = None  # why its files will never land
    pruned: bool = False  # its files were deleted to keep the store within its history budget
    cells: list[int] = field(default_factory=list)  # RECOMPUTE: the cells that rebuild it
    reason: str | None = None  # RECOMPUTE: why it was not stored
    excluded: bool = False  # RECOMPUTE: excluded by the user (%persist exclude), not unstorable

    @property
    def is_landed(self) -> bool:
        """Stored, with every byte durable and none pruned."""
        return self.kind == STORED and self.landed and not self.pruned

    def loadable(self, has_file: Callable[[bytes], bool]) -> bool:
        """Whether its values can be loaded: every byte there (a crash can come between a file's landing and its mark)."""
        if self.kind != STORED or self.pruned:
            return False
        return self.landed or all(has_file(bytes.fromhex(blob)) for blob in self.files)

    @property
    def buffer_blobs(self) -> list[str]:
        """The blobs holding its buffers: a buffer stored as pieces is held by its pieces."""
        return [blob for buffer in self.buffers for blob in self.pieces.get(buffer, [buffer])]

    @property
    def pickler(self) -> str:
        """The pickler of a STORED version's payload (``serialize.loads`` takes it): every stored version names one."""
        if self.method is None:
            raise ValueError(f"a stored version of {', '.join(self.names)} names no pickler")
        return self.method

    @property
    def payload_digest(self) -> bytes:
        """The blob key of a STORED version's pickle: every stored version names one (even when it is ``inline``)."""
        if self.payload is None:
            raise ValueError(f"a stored version of {', '.join(self.names)} names no payload")
        return bytes.fromhex(self.payload)

    @staticmethod
    def why_not(version: Version | None, seq: int) -> str:
        """In plain words, why the version a name had after cell ``seq`` cannot be loaded (None: it is missing)."""
        if version is None:
            return "its stored version is missing"
        if version.pruned:
            return f"its version from cell {seq} was pruned to keep the store within its history budget (PersistentKernel.history_budget)"
        return f"its version from cell {seq} never reached the disk ({version.dropped or 'the kernel stopped while writing it'})"

    def encode(self) -> bytes:
        return _encode({k: v for k, v in self._fields().items() if v != _VERSION_DEFAULTS.get(k, _ABSENT)})

    def _fields(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in _VERSION_FIELDS}
        if self.files:
            values["landed"] = self.landed  # written explicitly while a version has files: false until they land
        return values

    @classmethod
    def decode(cls, data: bytes) -> Version:
        return cls(**_decode(data, _VERSION_FIELDS))


_ABSENT = object()
_VERSION_FIELDS = tuple(Version.__dataclass_fields__)
_VERSION_DEFAULTS: dict[str, Any] = {
    "method": None, "payload": None, "inline": None, "buffers": [], "pieces": {}, "nbytes": 0, "digest": None, "notes": None,
    "files": {}, "landed": True, "dropped": None, "pruned": False, "cells": [], "reason": None, "excluded": False,
}


# Where a name stands after a cell.
LIVE = "live"  # bound to the value of ``version``
DELETED = "deleted"
MODULE = "module"  # bound to an imported module, imported again at a restore


@dataclass
class Pointer:
    """Where one name stood after one cell: live at a version, a module, or deleted.

    ``seq`` is the cell whose commit wrote it (part of its key, never encoded);
    ``bound_at`` the cell that last *bound* the name (a checkout rebinds without a
    new value). A pointer that failed authentication is ``refused``: live at a
    version that does not exist, so the name is rebuilt from its cells or named lost.
    """

    state: str  # LIVE | DELETED | MODULE
    version: str | None = None  # hex key of its group version
    module: str | None = None  # MODULE: the module's name
    module_state: dict | None = None  # MODULE: the user's own module: the variables cells set in it (localmodules)
    bound_at: int | None = None
    refused: bool = False
    seq: int = 0

    @property
    def bound(self) -> int:
        """The cell that last bound the name."""
        return self.seq if self.bound_at is None else self.bound_at

    @property
    def version_key(self) -> bytes | None:
        return bytes.fromhex(self.version) if self.version else None

    @property
    def live_version(self) -> str:
        """The hex key of the version a LIVE pointer stands at: every live pointer names one."""
        if self.version is None:
            raise ValueError(f"a live pointer (cell #{self.seq}) names no version")
        return self.version

    def encode(self) -> bytes:
        values = {"state": self.state, "version": self.version, "module": self.module, "bound_at": self.bound_at, "module_state": self.module_state}
        if self.refused:
            values["refused"] = True
        return _encode({k: v for k, v in values.items() if v is not None})

    @classmethod
    def decode(cls, data: bytes, seq: int) -> Pointer:
        return cls(**_decode(data, _POINTER_FIELDS), seq=seq)


_POINTER_FIELDS = ("state", "version", "module", "module_state", "bound_at", "refused")
