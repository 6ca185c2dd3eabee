"""The journal's record types and their encoding.

Records are JSON, never pickle: reading the journal must not run code, and a
human with ``mdb_dump`` can still read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

# A cell's status moves from STARTED (committed before it runs) to one final state.
STARTED = "started"  # written ahead; still running, or the kernel died while it ran
OK = "ok"
ERROR = "error"  # raised; its effects up to the exception are part of the state
INTERRUPTED = "interrupted"  # KeyboardInterrupt / cancelled: never replayed (could run forever)
DIED = "died"  # the kernel died while it ran: never replayed (it may be what killed it)
SKIPPED = "skipped"  # killed a restore while being replayed: never replayed again

FINAL_STATUSES = frozenset({OK, ERROR, INTERRUPTED, DIED, SKIPPED})
# The outcomes whose effects are part of the session and are rebuilt by replay.
REPLAYED_STATUSES = frozenset({OK, ERROR})


@dataclass
class CellRecord:
    """One execution of user code, as journaled."""

    seq: int
    code: str
    execution_count: int
    silent: bool = False
    store_history: bool = True
    cell_id: str | None = None
    started_at: float = 0.0  # unix time, written ahead
    status: str = STARTED
    duration: float | None = None  # seconds, with the outcome
    ename: str | None = None
    evalue: str | None = None
    kind: str = "cell"
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How the user knows this cell: ``[15]``, or ``silent #7``."""
        if self.silent or not self.store_history:
            return f"silent execution #{self.seq}"
        return f"[{self.execution_count}]"

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> CellRecord:
        raw = json.loads(bytes(data).decode("utf-8"))
        known = {f.name for f in fields(cls)}
        # Unknown keys come from a newer minor writer; keep what we understand.
        return cls(**{k: v for k, v in raw.items() if k in known})
