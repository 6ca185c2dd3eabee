"""After each replayed cell, and after the replay: stored values win over replayed ones.

A restore loads what is stored and replays cells only for the rest; a replayed cell
may touch loaded values too. These rules keep the namespace the session's: the
newest state of a name wins (``keep_newest``), an earlier version a rebuild started
from is neither seen nor changed by older cells (``keep_bases``), a rebuilt value
shares the loaded objects it shared (``share_with_rebuilt``), a loaded group a
replay mutated is loaded again (``undo_replay_mutations``), and a rebuilt value that
differs from its stored digest is named (``check_rebuilt_values``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from .checkpoint import is_atomic
from .definitions import key_in_scope
from .loading import load_version
from .records import STORED, CellRecord
from .replay import MISSING, ReplayPlan, contents_of, fill_with
from .restorereport import RestoreReport, join_labels
from .serialize import dumps
from .tracking import reachable_ids


def check_rebuilt_values(ns: dict[str, Any], store: Any, plan: ReplayPlan, report: RestoreReport) -> None:
    """A stored value rebuilt by replay (its bytes never reached the disk, or failed to load) is
    compared with the digest it was stored with: a replay drawing new random numbers, reading the
    clock or a changed file does not stand in for it silently."""
    checked: dict[str, bool] = {}
    for name in plan.rebuild:
        state = plan.recompute_states.get(name)
        if name not in ns or state is None or state.version is None:
            continue
        if state.version not in checked:
            version = store.version(bytes.fromhex(state.version))
            if version is None or version.kind != STORED or not version.digest:
                continue
            names = version.names
            try:
                same = all(n in ns for n in names) and dumps({n: ns[n] for n in names}, key_in_scope).group_digest == version.digest
            except Exception:  # noqa: BLE001 - cannot tell: say so
                same = False
            checked[state.version] = same
        if not checked[state.version]:
            report.inexact[name] = (
                "it was lost with the kernel (not yet on disk, or unreadable) and replaying its cells gave a different "
                "value: they draw random numbers, read the clock or files"
            )


def _touched_by(replayed: list[CellRecord]) -> set[str]:
    touched: set[str] = set()
    for record in replayed:
        if record.checkpointed:
            touched.update(record.reads or ())
            touched.update(record.writes or ())
    return touched


def digests_as_loaded(ns: dict[str, Any], plan: ReplayPlan, replayed: list[CellRecord]) -> dict[str, str]:
    """Before replaying: the digest of each loaded group the replayed cells touch, as loaded.

    A loaded group need not hash to its stored digest (a dict's key iterator comes back
    as a list iterator): what a replay changed is what differs from this.
    """
    touched = _touched_by(replayed)
    digests = {}
    for key, version in plan.versions.items():
        names = version.names
        if touched.intersection(names) and all(n in plan.stored and ns.get(n, MISSING) is plan.stored[n] for n in names):
            with contextlib.suppress(Exception):
                digests[key] = dumps({n: ns[n] for n in names}, key_in_scope).group_digest
    return digests


def undo_replay_mutations(shell: Any, store: Any, plan: ReplayPlan, replayed: list[CellRecord], as_loaded: dict[str, str]) -> None:
    """Stored values win in place too: a group a replayed cell mutated is loaded again from its blob.

    (``a.append(3); g = (x for x in a)`` replayed to rebuild ``g`` appends to the
    stored ``a`` a second time.) Only cells whose changes were checkpointed count:
    what a never-checkpointed cell does is the newer state. ``as_loaded``: the
    groups' digests before the replay (``digests_as_loaded``).
    """
    touched = _touched_by(replayed)
    ns = shell.user_ns
    for key, version in plan.versions.items():
        # Only the names whose latest value this version is: a name rebound since
        # (`b = [9]` after `a = [1]; b = a`) has a newer version of its own.
        names = [n for n in version.names if (state := plan.states.get(n)) is not None and state.version == key]
        if not touched.intersection(names) or not all(n in plan.stored and ns.get(n, MISSING) is plan.stored[n] for n in names):
            continue
        if len(names) == len(version.names):
            try:
                unchanged = dumps({n: ns[n] for n in names}, key_in_scope).group_digest in (as_loaded.get(key), version.digest)
            except Exception:  # noqa: BLE001 - cannot tell: reload to be safe
                unchanged = False
            if unchanged:
                continue
        values = load_version(shell.user_module, store, version)
        if isinstance(values, dict):
            for name in names:
                ns[name] = plan.stored[name] = values[name]


def share_with_rebuilt(ns: dict[str, Any], plan: ReplayPlan, replayed: CellRecord, inexact: dict[str, str]) -> None:
    """After a cell replayed to rebuild something: the stored values it also made, made to share with it.

    ``data = [1, 2]; g = (x for x in data)`` replayed for ``g`` makes a new ``data``;
    binding the stored ``data`` again would leave ``g`` iterating the replay's copy.
    A container whose stored version holds it alone keeps the replay's object,
    given the stored contents (``g`` then iterates the restored ``data``). Where that
    cannot be exact (aliases, or contents that are objects of their own), the
    rebuilt names are said to possibly refer to copies.
    """
    if not replayed.checkpointed:
        return
    rebuilt = [n for n in plan.rebuild if replayed.seq in plan.cells.get(n, ()) and n in ns]
    if not rebuilt:
        return
    copies: dict[str, Any] = {}  # stored name -> the replay's object it replaces
    for name in replayed.writes or ():
        stored = plan.stored.get(name, MISSING)
        made = ns.get(name, MISSING)
        if stored is MISSING or made is MISSING or made is stored or plan.stored_at.get(name, 0) < replayed.seq:
            continue
        key = plan.states[name].version if name in plan.states else None
        version = plan.versions.get(key) if key is not None else None
        contents = contents_of(stored)
        alone = version is not None and version.names == [name]
        if alone and type(made) is type(stored) and contents is not MISSING and _holds_only_atomic(contents):
            try:
                fill_with(made, contents)
            except Exception:  # noqa: BLE001
                copies[name] = made
                continue
            plan.stored[name] = made
            continue
        copies[name] = made
    if not copies:
        return
    replaced = {id(obj) for obj in copies.values()}
    for name in rebuilt:
        value = ns[name]
        # Weak references are not followed by the walk: a weak container is named whenever it may hold copies.
        if type(value).__module__ == "weakref" or replaced & reachable_ids(value, ns):
            inexact.setdefault(
                name, f"rebuilt by replaying cell {replayed.label}, which also made {join_labels(sorted(copies))}: it may refer to copies of them"
            )


def _holds_only_atomic(contents: Any) -> bool:
    """Contents (from ``contents_of``) of small immutable values only: filling them in shares nothing."""
    if type(contents) is bytes:
        return True
    values = [*contents.keys(), *contents.values()] if type(contents) is dict else contents
    return all(is_atomic(value) for value in values)


def keep_newest(ns: dict[str, Any], plan: ReplayPlan, replayed: CellRecord) -> None:
    """After a replayed cell: stored values win, unless the cell was never checkpointed and
    ran after a name's stored version (then what it made is the newer state)."""
    for name, value in list(plan.stored.items()):
        if ns.get(name, MISSING) is value:
            continue
        if replayed.checkpointed or plan.stored_at[name] >= replayed.seq:
            ns[name] = value
        else:
            del plan.stored[name]


def keep_bases(main: Any, ns: dict[str, Any], store: Any, plan: ReplayPlan, replayed: CellRecord) -> None:
    """After a cell from before the version a rebuild starts from (replayed for another name):
    that version again, loaded afresh if the cell used the name (it may have changed it in place)."""
    used = set(replayed.reads or ()) | set(replayed.writes or ())
    for name, (value, base_seq, version) in list(plan.bases.items()):
        if base_seq < replayed.seq:
            continue
        if name in used:
            values = load_version(main, store, version)
            if isinstance(values, dict) and name in values:
                value = values[name]
                plan.bases[name] = (value, base_seq, version)
        ns[name] = value
