"""The journal as plain rows: what ``%persist history`` prints and the session panel lists.

One place computes, for each journaled execution, what it changed, what was stored and
what a restart would recompute; the magic renders the rows as a table, the panel
(``panel``) sends them as JSON. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .records import RECOMPUTE, STORED, CellRecord


@dataclass
class ExecutionRow:
    """One journaled execution, newest last in ``execution_rows``."""

    seq: int
    label: str  # ``[15]``, ``silent execution #7``, ``comm message #9``
    kind: str  # "cell", or an event's kind ("comm": widget callbacks, "verify", "resume")
    execution_count: int | None  # the ``[N]`` a user checks out (cells kept in history only)
    started_at: float
    duration: float | None
    status: str  # ok, error, interrupted, running (this cell), died (its kernel died in it) …
    changed: list[str]  # names bound, changed or deleted (a deleted one as ``-name``)
    stored: list[str]
    stored_bytes: int  # of the versions this execution stored
    recompute: list[str]  # names a restart rebuilds by replay (`` (excluded)`` when excluded)
    what: str  # the cell's first line, or what set an event off

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def what_ran(record: CellRecord) -> str:
    """A cell's first line (and the comm messages handled while it ran), or what set an event off."""
    if record.kind != "cell":
        return record.trigger or f"({record.kind})"
    text = record.code.strip().splitlines()[0] if record.code.strip() else ""
    if record.handled_during:  # first: the line is shortened to the column
        text = f"(+{len(record.handled_during)} comm) {text}"
    return text


def shown_records(records: list[CellRecord], limit: int) -> list[CellRecord]:
    """The last ``limit`` executions worth showing (empty cells left out)."""
    return [r for r in records if r.kind != "cell" or r.code.strip()][-limit:] if limit > 0 else []


def execution_rows(store: Any, records: list[CellRecord]) -> list[ExecutionRow]:
    """A row for each of ``records`` (oldest first), with the versions each created in ``store``."""
    if not records:
        return []
    versions = store.versions_between(records[0].seq, records[-1].seq) if store is not None else {}
    rows = []
    for record in records:
        made = versions.get(record.seq, [])
        deleted = set(record.deletes or ())
        changed = sorted(set(record.writes or ()) | deleted | {n for v in made for n in v.names})
        status = record.status
        if status == "started":  # this cell, running now; any other was running when its kernel died
            status = "running" if record is records[-1] else "died"
        counted = record.kind == "cell" and record.store_history and not record.silent
        rows.append(
            ExecutionRow(
                seq=record.seq,
                label=record.label,
                kind=record.kind,
                execution_count=record.execution_count if counted else None,
                started_at=record.started_at,
                duration=record.duration,
                status=status,
                changed=[f"-{n}" if n in deleted else n for n in changed],
                stored=sorted(n for v in made if v.kind == STORED for n in v.names),
                stored_bytes=sum(v.nbytes or 0 for v in made if v.kind == STORED),
                recompute=sorted(n + (" (excluded)" if v.excluded else "") for v in made if v.kind == RECOMPUTE for n in v.names),
                what=what_ran(record),
            )
        )
    return rows
