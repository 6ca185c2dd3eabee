"""The journal's record types and their encoding.

Records are JSON, never pickle: reading the journal must not run code, and a
human with ``mdb_dump`` can still read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

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


def _encode(values: dict) -> bytes:
    # ASCII escapes keep lone surrogates (from odd user strings) encodable; str() anything exotic.
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True, default=str).encode("ascii")


def _decode(data: bytes, names: tuple[str, ...]) -> dict:
    raw = json.loads(bytes(data).decode("utf-8"))
    if not isinstance(raw, dict):
        raise ValueError("a journal record must be a JSON object")
    # Unknown keys come from a newer minor writer; keep what we understand.
    return {k: v for k, v in raw.items() if k in names}
