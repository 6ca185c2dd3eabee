"""The restore plan: which names load, which are rebuilt, and which cells replay, in what order.

Pure functions of the session's history (the latest pointers, their versions and
the cell records); no store, no shell. ``restore.py`` carries the plan out: it
loads, and when a load fails it asks ``rebuild_after_failed_load`` for the name's
new place in the plan. Unit-tested against synthetic histories in
``tests/test_restore_plan.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from . import records as rec
from .checkpoint import NameState
from .records import DELETED, LIVE, MODULE, RECOMPUTE, STORED, CellRecord, Pointer, Version

_PERSIST_MAGIC_LINE = re.compile(r"^\s*%persist\b")


@dataclass
class NamesPlan:
    """What to do with each name the session had after its last cell."""

    live: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    modules: dict[str, Pointer] = field(default_factory=dict)  # imported again
    load: dict[str, list[str]] = field(default_factory=dict)  # version key -> the names bound from it
    rebuild: dict[str, str] = field(default_factory=dict)  # name -> why it is recomputed by replay
    cells: dict[str, set[int]] = field(default_factory=dict)  # name -> the cells that rebuild it
    excluded: set[str] = field(default_factory=set)  # never stored (%persist exclude): rebuilt only if cheap
    # Stored, but its bytes are not all there (never landed, pruned): rebuilt from an earlier version
    # and the cells since, if there is one (``loading.landed_base``), else from its cells.
    unlanded: dict[str, Pointer] = field(default_factory=dict)
    versions: dict[str, Version] = field(default_factory=dict)  # the versions ``load`` and ``unlanded`` name, by key
    recompute_states: dict[str, NameState] = field(default_factory=dict)  # what the store holds once rebuilt
    # Rebuilt although the store meant to hold their value (it never landed, is missing, failed to
    # load): the first checkpoint after the restore stores them again. A name whose version is a
    # recompute version needs no such look: once rebuilt, the store already says what it holds.
    stale: set[str] = field(default_factory=set)


def plan_names(
    pointers: dict[str, Pointer],
    versions: dict[str, Version | None],
    loadable: Callable[[Version], bool],
    missing_reason: Callable[[str], str],
) -> NamesPlan:
    """Sort every name by how it comes back: import, load, or rebuild (and why).

    ``versions`` holds the version of every live pointer (None: missing or refused,
    ``missing_reason`` says which); ``loadable`` says whether a stored version's bytes
    are all there.
    """
    plan = NamesPlan()
    plan.deleted = {name for name, pointer in pointers.items() if pointer.state == DELETED}
    plan.live = set(pointers) - plan.deleted
    for name, pointer in sorted(pointers.items()):
        if pointer.state == MODULE:
            plan.modules[name] = pointer
            continue
        if pointer.state != LIVE:
            continue
        key = pointer.live_version
        version = versions.get(key)
        if version is None:
            _rebuild(plan, name, pointer, missing_reason(key), frozenset({name}))
        elif version.kind == RECOMPUTE:
            cells = tuple(version.cells)
            _rebuild(plan, name, pointer, version.reason or "cannot be stored", frozenset(version.names), cells, as_stored=True)
            plan.cells[name] = set(cells)
            if version.excluded:
                plan.excluded.add(name)
        elif version.kind == STORED and loadable(version):
            plan.load.setdefault(key, []).append(name)
            plan.versions[key] = version
        else:
            # Its large blobs never landed (the kernel died while writing them) or were pruned:
            # start from the newest complete version before it and replay the cells since.
            _rebuild(plan, name, pointer, f"its value from cell {pointer.seq} never reached the disk", frozenset(version.names))
            plan.unlanded[name] = pointer
            plan.versions[key] = version
    return plan


def rebuild_after_failed_load(plan: NamesPlan, name: str, pointer: Pointer, version: Version, why: str) -> None:
    """A stored value that did not load (a class gone, a blob refused): it is rebuilt by replay instead."""
    _rebuild(plan, name, pointer, f"stored value failed to load ({why[:120]})", frozenset(version.names))


def _rebuild(
    plan: NamesPlan, name: str, pointer: Pointer, why: str, group: frozenset[str], cells: tuple[int, ...] = (), *, as_stored: bool = False
) -> None:
    """``as_stored``: the store's entry is a recompute version (``cells``), which the rebuilt value matches."""
    plan.rebuild[name] = why
    if not as_stored:
        plan.stale.add(name)
    state = NameState(RECOMPUTE, pointer.bound, pointer.version, group, None, cells)
    plan.recompute_states[name] = state


def full_rebuild_cells(pointer: Pointer, history: list[Pointer], known: AbstractSet[int] = frozenset()) -> set[int]:
    """The cells that rebuild a name from scratch: the one that bound it and every one that changed it since."""
    bound_at = pointer.bound
    return set(known) | {p.seq for p in history if p.seq >= bound_at and p.state == LIVE} | {bound_at}


def cells_for(rebuild: dict[str, str], cells: dict[str, set[int]], by_seq: dict[int, CellRecord], start: list[str] | None = None) -> set[int]:
    """The cells that rebuild ``start`` (default: all of ``rebuild``), plus the cells for what
    those cells read that is also being rebuilt."""
    needed: set[int] = set()
    pending = list(rebuild if start is None else start)
    planned: set[str] = set()
    while pending:
        name = pending.pop()
        if name in planned:
            continue
        planned.add(name)
        for seq in cells.get(name, ()):
            if seq in needed or seq not in by_seq:
                continue
            needed.add(seq)
            for dependency in by_seq[seq].reads or ():
                if dependency in rebuild and dependency not in planned:
                    pending.append(dependency)
    return needed


def costly_excluded(
    excluded: set[str], rebuild: dict[str, str], cells: dict[str, set[int]], by_seq: dict[int, CellRecord], limit: float
) -> dict[str, str]:
    """The excluded names left out (name -> why): their cells, and those of what they read that is
    rebuilt too (an excluded token a header is made from), took longer than ``limit`` seconds to run."""
    left_out = {}
    for name in sorted(excluded):
        seconds = sum(by_seq[seq].duration or 0.0 for seq in cells_for(rebuild, cells, by_seq, start=[name]))
        if seconds > limit:
            left_out[name] = f"not restored: its cells took {seconds:.1f} s to run"
    return left_out


def replayable(record: CellRecord) -> bool:
    """A cell that ran to its end (or its error), with code that builds state: not an event, not ``%persist``."""
    return record.status in rec.REPLAYED_STATUSES and record.kind == "cell" and not is_persist_command(record.code)


def is_persist_command(code: str) -> bool:
    """A cell made only of ``%persist`` lines: about the journal, not the namespace; never replayed."""
    lines = [line for line in code.splitlines() if line.strip()]
    return bool(lines) and all(_PERSIST_MAGIC_LINE.match(line) for line in lines)


def needed_cells(records: list[CellRecord], rebuild: dict[str, str], cells: dict[str, set[int]]) -> set[int]:
    """The cells the rebuilds need, and every cell whose changes were never checkpointed (an older
    store, a failed checkpoint): those are replayed whole."""
    by_seq = {record.seq: record for record in records}
    return {r.seq for r in records if r.status in rec.REPLAYED_STATUSES and not r.checkpointed} | cells_for(rebuild, cells, by_seq)


def cells_to_replay(
    by_seq: dict[int, CellRecord], needed: set[int], rebuild: dict[str, str], cells: dict[str, set[int]]
) -> tuple[list[CellRecord], dict[str, list[str]]]:
    """The needed cells that can run again, in order, and for each rebuilt name the cells it needs
    that never run again (died, interrupted, skipped: the user is told)."""
    to_replay = [by_seq[seq] for seq in sorted(needed) if seq in by_seq and replayable(by_seq[seq])]
    incomplete = {}
    for name in rebuild:
        never = [by_seq[c].label for c in sorted(cells.get(name, ())) if c in by_seq and by_seq[c].status not in rec.REPLAYED_STATUSES]
        if never:
            incomplete[name] = never
    return to_replay, incomplete
