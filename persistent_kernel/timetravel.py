"""Time travel: the namespace as it stood after an earlier cell, and what differs between two cells.

Every version of every name is kept (large ones within the history budget), so
"the namespace after cell N" is the name pointers as of N. A checkout binds
those versions in the live namespace; only groups that could not be stored are
rebuilt, by replaying their cells with the stored values as of N around them.

The checkout is itself a cell: the checkpointer records its new pointers (to
the old versions, nothing is written twice) when the ``%persist checkout`` cell
ends, so a later checkout can go forward again, and a crash after a checkout
restores the checked-out state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .checkpoint import NameState
from .context import apply_random_state
from .definitions import key_in_scope, resolving
from .loading import load_version, loadable
from .records import DELETED, LIVE, MODULE, RECOMPUTE, STORED, CellRecord, Pointer, Version
from .replay import (
    ReplayPlan,
    bind_reads_as_of,
    definition_replayer,
    forward_rewound,
    quiet_output,
    random_state_at,
    replay_cell,
)
from .restoreplan import cells_for, replayable
from .restorereport import label_order
from .serialize import dumps, import_stored_module
from .tracking import user_names

_MISSING = object()
SHOWN_VALUE_BYTES = 256  # diff shows values this small (stored inline in their version record)


def cell_numbered(records: list[CellRecord], number: int) -> CellRecord:
    """The cell the user knows as ``[number]`` (the last one with that count, after a restore reused it)."""
    for record in reversed(records):
        if record.store_history and record.execution_count == number and record.kind == "cell":
            return record
    shown = [r.execution_count for r in records if r.store_history and r.kind == "cell"]
    span = f"cells [{min(shown)}] to [{max(shown)}]" if shown else "no cells yet"
    raise LookupError(f"there is no cell [{number}] in this session's journal ({span})")


@dataclass
class Checkout:
    """What ``checkout`` did, and the pointers the checkpointer records for it."""

    label: str
    bound: list[str] = field(default_factory=list)  # loaded from their versions as of the cell
    kept: list[str] = field(default_factory=list)  # unchanged since: the live objects stay
    removed: list[str] = field(default_factory=list)  # did not exist after the cell
    recomputed: dict[str, list[str]] = field(default_factory=dict)  # name -> cells replayed for it
    missing: dict[str, str] = field(default_factory=dict)  # name -> why it is not there
    # name -> (the object bound, its pointer, its state): recorded by the checkout cell's checkpoint
    pointers: dict[str, tuple[Any, Pointer, NameState]] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"Checked out the namespace as it was after cell {self.label}:"]
        changed = len(self.bound) + len(self.recomputed)
        parts.append(f"{changed} variable{'' if changed == 1 else 's'} restored, {len(self.kept)} unchanged, {len(self.removed)} removed.")
        if self.recomputed:
            cells = sorted({c for labels in self.recomputed.values() for c in labels}, key=label_order)
            parts.append(f"Recomputed {', '.join(sorted(self.recomputed))} by replaying {', '.join(cells)}.")
        if self.missing:
            parts.append(
                "Not restored, so not in the namespace: " + "; ".join(f"{name} ({why})" for name, why in sorted(self.missing.items())) + "."
            )
        parts.append("Outputs on screen are unchanged. This checkout is journaled: check out a later cell to go forward again.")
        return " ".join(parts)


def checkout(shell: Any, store: Any, records: list[CellRecord], target: CellRecord, checkpointer: Any) -> Checkout:
    """Make the live namespace what it was after ``target``.

    ``checkpointer`` says what the store holds now and what the namespace held at
    the last checkpoint; a live value is kept only if it is provably the value after
    ``target`` (same version, same object, same bytes). Notebook functions and
    classes stored by reference resolve to the live ones when those are the same
    definition, and are re-created from their cells otherwise.
    """
    replayer = definition_replayer(shell, store, {r.seq: r for r in records})
    with resolving(replayer, live=checkpointer.definitions):
        result = _checkout(shell, store, records, target, checkpointer)
    checkpointer.definitions.adopt(replayer.resolved)
    return result


def _checkout(shell: Any, store: Any, records: list[CellRecord], target: CellRecord, checkpointer: Any) -> Checkout:
    result = Checkout(label=target.label)
    ns = shell.user_ns
    as_of = {name: p for name, p in store.pointers_as_of(target.seq).items() if p.state != DELETED}
    live_now = set(user_names(ns, shell.user_ns_hidden))

    by_version: dict[str, list[str]] = {}
    rebuild: dict[str, Version] = {}
    values: dict[str, Any] = {}  # loaded or imported: bound below
    kept: dict[str, Any] = {}  # live objects that are the values after the target
    for name, pointer in sorted(as_of.items()):
        if pointer.state == MODULE:
            try:
                values[name] = import_stored_module(pointer.module)
            except Exception as exc:  # noqa: BLE001 - an uninstalled module costs only its name
                result.missing[name] = f"module {pointer.module}: {type(exc).__name__}"
                continue
            state = NameState(MODULE, 0, version=pointer.module)
            result.pointers[name] = (values[name], Pointer(MODULE, module=pointer.module), state)
        else:
            by_version.setdefault(pointer.version, []).append(name)

    stored_versions: dict[str, tuple[Version, list[str]]] = {}  # for undoing a replay's mutations
    for key, names in by_version.items():
        version = store.version(bytes.fromhex(key))
        if version is not None and version.kind == STORED:
            stored_versions[key] = (version, names)
        if _still_live(ns, checkpointer, key, names, version):
            result.kept.extend(names)
            kept.update((name, ns[name]) for name in names)
            continue
        if version is not None and version.kind == RECOMPUTE:
            for name in names:
                rebuild[name] = version
            continue
        pointer = as_of[names[0]]
        if not loadable(store, version):
            for name in names:
                result.missing[name] = Version.why_not(version, pointer.seq)
            continue
        loaded = load_version(shell.user_module, store, version)
        if isinstance(loaded, Exception):
            for name in names:
                result.missing[name] = f"its stored value failed to load ({type(loaded).__name__}: {loaded})"[:200]
            continue
        for name in names:
            values[name] = loaded[name]
            state = NameState(STORED, 0, key, frozenset(version.names), version.digest, nbytes=version.nbytes)
            result.pointers[name] = (loaded[name], Pointer(LIVE, version=key), state)
            result.bound.append(name)

    before = {name: ns[name] for name in live_now}
    try:
        _bind(shell, store, records, target, as_of, live_now, rebuild, values, kept, stored_versions, result)
    except KeyboardInterrupt:
        # All or nothing: an interrupted checkout leaves the namespace as it was.
        for name in set(user_names(ns, shell.user_ns_hidden)) - set(before):
            del ns[name]
        ns.update(before)
        raise
    random_state = random_state_at(records, target.seq + 1)
    if random_state:
        apply_random_state(random_state)
    result.removed.sort()
    result.kept.sort()
    return result


def _bind(
    shell: Any,
    store: Any,
    records: list[CellRecord],
    target: CellRecord,
    as_of: dict[str, Pointer],
    live_now: set[str],
    rebuild: dict[str, Version],
    values: dict[str, Any],
    kept: dict[str, Any],
    stored_versions: dict[str, tuple[Version, list[str]]],
    result: Checkout,
) -> None:
    """Bind the values after ``target`` in the namespace; rebuild what could not be stored."""
    ns = shell.user_ns
    # The namespace after the cell: what it had, nothing else. A value that cannot be
    # brought back is removed too (named in the summary), never left at a later value.
    for name in live_now - set(as_of):
        ns.pop(name, None)
        result.removed.append(name)
    for name in set(rebuild) | set(result.missing):
        ns.pop(name, None)
    ns.update(values)
    cells: dict[str, set[int]] = {}
    if rebuild:
        around = {**values, **kept}
        stored_at = {name: as_of[name].seq for name in around}
        touched = _rebuild(shell, store, records, target, rebuild, around, stored_at, cells, result)
        _reload_touched(shell, store, stored_versions, touched, result)
    for name, version in rebuild.items():
        if name in ns:
            key = as_of[name].version
            # The checkout cell's checkpoint writes a new recompute version naming every cell replayed here.
            state = NameState(RECOMPUTE, 0, key, frozenset(version.names), None, tuple(sorted(cells.get(name, ()))))
            result.pointers[name] = (ns[name], Pointer(LIVE, version=key), state)


def _still_live(ns: dict[str, Any], checkpointer: Any, key: str, names: list[str], version: Version | None) -> bool:
    """Whether the live objects of ``names`` are the values of version ``key``.

    The same version is not enough: the cell running the checkout (or cells run
    while persistence was paused) may have rebound or changed them since the last
    checkpoint. Same object as then, and for a stored version the same bytes.
    """
    for name in names:
        state = checkpointer.names.get(name)
        if state is None or state.version != key or name not in ns or checkpointer.scan.get(name) != id(ns[name]):
            return False
        if name in checkpointer.dirty:
            return False
    if version is None or version.kind != STORED:
        return version is not None
    try:
        return dumps({name: ns[name] for name in names}, key_in_scope).group_digest == version.digest
    except Exception:  # noqa: BLE001 - cannot tell: load it
        return False


def _reload_touched(
    shell: Any, store: Any, stored_versions: dict[str, tuple[Version, list[str]]], touched: set[str], result: Checkout
) -> None:
    """Stored values win in place too: a version whose names a replayed cell used is loaded again.

    (``a.append(3); g = (x for x in a)`` replayed to rebuild ``g`` appends to ``a`` a second time.)
    """
    ns = shell.user_ns
    for key, (version, names) in stored_versions.items():
        if not touched.intersection(names) or not loadable(store, version):
            continue
        loaded = load_version(shell.user_module, store, version)
        if isinstance(loaded, Exception):
            continue
        for name in names:
            ns[name] = loaded[name]
            state = NameState(STORED, 0, key, frozenset(version.names), version.digest, nbytes=version.nbytes)
            result.pointers[name] = (loaded[name], Pointer(LIVE, version=key), state)
            if name in result.kept:
                result.kept.remove(name)
                result.bound.append(name)


def _rebuild(
    shell: Any,
    store: Any,
    records: list[CellRecord],
    target: CellRecord,
    rebuild: dict[str, Version],
    stored: dict[str, Any],
    stored_at: dict[str, int],
    cells: dict[str, set[int]],
    result: Checkout,
) -> set[str]:
    """Replay the cells that made the unstorable names (up to ``target``); the values after it win after each.

    Before each replayed cell, what it reads is bound as it stood before that cell
    ran (as a restore does), so it computes what it computed then. Fills ``cells``
    (name -> the cells replayed for it); returns the names the replayed cells read,
    bound or deleted. An interrupt stops the checkout (``KeyboardInterrupt``).
    """
    by_seq = {r.seq: r for r in records if r.seq <= target.seq}
    for name, version in rebuild.items():
        history = {p.seq for p in store.name_history(name) if p.seq <= target.seq and p.state == LIVE}
        cells[name] = {c for c in set(version.cells) | history if c in by_seq and replayable(by_seq[c])}
    needed = cells_for({name: "" for name in rebuild}, cells, by_seq)
    replay = [by_seq[seq] for seq in sorted(needed) if replayable(by_seq[seq])]
    ns = shell.user_ns
    before = set(ns)
    plan = ReplayPlan(stored=dict(stored), stored_at=dict(stored_at))
    as_of_cache: dict[str, Any] = {}
    interrupted = False
    with quiet_output(shell) as tracebacks:
        for record in replay:
            bind_reads_as_of(shell.user_module, ns, store, plan, record, as_of_cache)
            # Never stored in history: this runs inside the user's %persist cell.
            error = replay_cell(shell, record, random_state_at(records, record.seq), in_history=False)
            tracebacks.clear()
            forward_rewound(ns, plan, {})  # objects given their earlier contents for the cell get theirs back
            stored.update((name, plan.stored[name]) for name in stored if name in plan.stored)
            for name, value in stored.items():
                if ns.get(name, _MISSING) is not value:
                    ns[name] = value  # the values after the target win over what a replayed cell made
            if error is not None and error[0] == "KeyboardInterrupt":
                interrupted = True
                break
    for name in set(ns) - before - set(rebuild):
        ns.pop(name, None)  # made only by the replay
    if interrupted:
        raise KeyboardInterrupt("the checkout was interrupted while replaying cells; the namespace is as it was before it")
    labels = {r.seq: r.label for r in replay}
    for name in rebuild:
        if name in ns:
            result.recomputed[name] = [labels[c] for c in sorted(cells[name]) if c in labels]
        else:
            result.missing[name] = f"{rebuild[name].reason or 'cannot be stored'}, and replaying its cells did not rebuild it"
    return {name for r in replay for name in (*(r.reads or ()), *(r.writes or ()), *(r.deletes or ()))}


def describe(store: Any, name: str, pointer: Pointer | None, cache: dict[Any, Any], main: Any = None) -> tuple[str, str | None]:
    """(how a name stood, a comparable identity of its value) from its pointer.

    A small value stored inside its version record is shown as its repr.
    """
    if pointer is None or pointer.state == DELETED:
        return "-", None
    if pointer.state == MODULE:
        return f"module {pointer.module}", f"module:{pointer.module}"
    key = pointer.live_version
    if key not in cache:
        cache[key] = store.version(bytes.fromhex(key))
    version = cache[key]
    if version is None:
        return "missing version", key
    if version.kind == RECOMPUTE:
        return "recompute", key
    identity = version.digest or key
    if version.inline is not None and version.nbytes <= SHOWN_VALUE_BYTES:
        values = cache.setdefault(("values", key), load_version(main, store, version))
        if isinstance(values, dict) and name in values:
            try:
                return _shorten(repr(values[name]), 40), identity
            except Exception:  # noqa: BLE001 - a user __repr__ may raise: fall back to the size
                pass
    return f"{_human(version.nbytes)} stored", identity


def diff(store: Any, first: CellRecord, second: CellRecord, main: Any = None) -> list[tuple[str, str, str, str]]:
    """Names that differ between after ``first`` and after ``second``: (name, change, before, after)."""
    before = store.pointers_as_of(first.seq)
    after = store.pointers_as_of(second.seq)
    cache: dict[Any, Any] = {}
    rows = []
    for name in sorted(set(before) | set(after)):
        old, old_id = describe(store, name, before.get(name), cache, main)
        new, new_id = describe(store, name, after.get(name), cache, main)
        if old_id == new_id:
            continue
        change = "added" if old_id is None else "removed" if new_id is None else "changed"
        rows.append((name, change, old, new))
    return rows


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
