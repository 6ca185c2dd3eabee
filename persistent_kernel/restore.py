"""Rebuild a session's namespace from its store, and say what was done.

The plan:

1. load the latest stored version of every live group (one unpickle per group,
   so identity inside it survives); modules are imported again;
2. what could not be stored (generators, connections …), or whose stored value
   fails to load, is recomputed by replaying the fewest cells: the cells that
   made and changed it, plus the cells for what those read that is also missing;
   cells never checkpointed (a store from before snapshots) are replayed too.
   Replays run in order with every output suppressed; stored values win over
   replayed ones, and names a replay creates that the session no longer has are
   removed again;
3. process state: working directory, ``sys.path``, environment, extensions,
   matplotlib backend, random generators; then ``In`` and the execution count.

Rules that protect the user:

- the cell that was running when the kernel died is never replayed: it may be
  what killed it. It is marked ``died`` and named to the user once;
- interrupted cells are never replayed (they may never end);
- a cell that kills the restore itself is marked ``skipped`` by the next start,
  so a restore cannot die the same death twice;
- an error during replay is captured and reported, never raised;
- what cannot be rebuilt is named, with the reason. Nothing is silently dropped.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from . import records as rec
from .checkpoint import NameState
from .context import apply_process_context, apply_random_state
from .definitionindex import DefinitionIndex
from .definitions import (
    old_versions,
    resolving,
    settle,
)
from .journal import Journal
from .loading import base_by_content, landed_base, load_version, loadable
from .localmodules import restore_local_modules
from .reconcile import (
    check_rebuilt_values,
    digests_as_loaded,
    keep_bases,
    keep_newest,
    share_with_rebuilt,
    undo_replay_mutations,
)
from .records import DELETED, LIVE, MODULE, RECOMPUTE, STORED, CellRecord, Version
from .replay import (
    MISSING,
    REPLAYED_THREADS_WAIT,
    ReplayPlan,
    bind_reads_as_of,
    definition_replayer,
    forward_rewound,
    history_database_untouched,
    quiet_output,
    random_state_at,
    replay_cell,
    still_running,
    stored_value_before,
    threads_started,
)
from .restoreplan import (
    cells_to_replay,
    costly_excluded,
    full_rebuild_cells,
    needed_cells,
    plan_names,
    rebuild_after_failed_load,
)
from .restorereport import RestoreProgress, RestoreReport
from .serialize import import_stored_module, loads
from .syncobjects import released_locks
from .tracking import reachable_ids


def restore_session(
    shell: Any,
    journal: Journal,
    *,
    progress: RestoreProgress | None = None,
    excluded_replay_limit: float = 2.0,
    definitions: DefinitionIndex | None = None,
) -> tuple[RestoreReport, dict[str, NameState], set[str]] | None:
    """Rebuild the namespace: stored versions, then the fewest cells for the rest, then process state.

    Returns the report, what the store holds per name (for the checkpointer) and the
    names rebuilt whose stored value could not be used (the next checkpoint stores them
    again), or None when the session has no history. A name excluded from persistence is
    rebuilt only if the cells that make it took at most ``excluded_replay_limit``
    seconds when they ran. Notebook functions and classes stored by reference are
    re-created by replaying their definitions (see ``definitions``); those bound
    under their own name are then told to ``definitions``, the checkpointer's index.
    """
    records = journal.records()
    if not records:
        return None
    progress = progress or RestoreProgress()
    report = RestoreReport(session_name=journal.session.name if journal.session else "")
    started = time.monotonic()
    paused = journal.get_meta("paused")
    if paused:
        report.paused_after = paused.get("after")
        journal.set_meta(paused=None)  # this kernel persists again
    by_seq = {record.seq: record for record in records}

    # A cell that was being replayed when a restore died: once may be an impatient
    # kill -9 during the restore; twice is the cell's doing, and it is skipped from then on.
    crashes: dict[str, int] = journal.get_meta("replay_crashes") or {}
    replay_killer = journal.get_meta("replaying")
    if replay_killer is not None:
        crashes[str(replay_killer)] = crashes.get(str(replay_killer), 0) + 1
        journal.set_meta(replay_crashes=crashes, replaying=None)
    for record in records:
        if crashes.get(str(record.seq), 0) >= 2 and record.status in rec.REPLAYED_STATUSES:
            journal.mark(record, rec.SKIPPED)
            report.skipped.append(record.label)
        elif record.status == rec.STARTED:
            journal.mark(record, rec.DIED)
            report.died.append(record.label)

    context = journal.get_meta("context")
    if context:
        # Paths first: stored objects and modules may need the user's sys.path and working directory.
        report.context_problems = apply_process_context(shell, context)
        # Before any value refers to them: the user's modules as the session ran them.
        report.modules = restore_local_modules(context.get("local_modules"))
    progress.phase("loading")
    as_of_cache: dict[str, dict[str, Any] | Exception] = {}
    plan = ReplayPlan()
    replayer = definition_replayer(shell, journal.opened_store, by_seq, plan, as_of_cache)
    with resolving(replayer):
        _restore_namespace(shell, journal, report, progress, plan, records, by_seq, as_of_cache, excluded_replay_limit)
    report.inexact.update({name: why for name, why in replayer.notes.items() if name in shell.user_ns})
    if definitions is not None:
        definitions.adopt(replayer.resolved)

    if context and records:
        # Again, now that the namespace is back: a replayed `%cd` or `sys.path` edit is not the
        # session's last word, and settings holding code refer to notebook variables (codesettings).
        report.context_problems = apply_process_context(shell, context)
    # The state after the last cell: what a cell after it would have found.
    random_state = random_state_at(records, records[-1].seq + 1)
    if random_state:
        apply_random_state(random_state)
    _restore_input_history(shell, records)

    counted = [r.execution_count for r in records if r.store_history]
    report.next_execution_count = max(counted, default=0) + 1
    shell.execution_count = report.next_execution_count
    report.refused = _refusals_in_words(journal.opened_store, by_seq)
    report.seconds = time.monotonic() - started
    report.phases = progress.finish()
    report.finished_at = time.time()
    journal.set_meta(last_restore=report.to_dict())
    return report, plan.states, plan.stale & set(report.recomputed)


def _restore_namespace(
    shell: Any,
    journal: Journal,
    report: RestoreReport,
    progress: RestoreProgress,
    plan: ReplayPlan,
    records: list[CellRecord],
    by_seq: dict[int, CellRecord],
    as_of_cache: dict,
    excluded_replay_limit: float,
) -> None:
    """Load what is stored, then replay the fewest cells for the rest (steps 1 and 2 of the plan)."""
    ns = shell.user_ns
    _load_stored(shell, journal, report, progress, plan)
    settle()  # definitions' data states, now that every definition the loads needed is made
    report.excluded.update(costly_excluded(plan.excluded, plan.rebuild, plan.cells, by_seq, excluded_replay_limit))
    for name in report.excluded:
        del plan.rebuild[name]
    needed = needed_cells(records, plan.rebuild, plan.cells)
    needed |= _cells_for_unstorable_reads(journal.opened_store, needed, by_seq, plan)
    to_replay, report.incomplete = cells_to_replay(by_seq, needed, plan.rebuild, plan.cells)

    before = set(ns)
    as_loaded = digests_as_loaded(ns, plan, to_replay) if to_replay else {}
    progress.phase("replaying")
    with quiet_output(shell) as tracebacks, threads_started() as threads, history_database_untouched(shell):
        for done, record in enumerate(to_replay):
            progress.step(done, len(to_replay), f"cell {record.label}")
            # Written before the cell runs: if it kills this process, the next start skips it.
            journal.set_meta(replaying=record.seq)
            if record.checkpointed:
                # What it reads, as it stood before it ran (not the latest stored values).
                bind_reads_as_of(shell.user_module, ns, journal.opened_store, plan, record, as_of_cache)
            error = replay_cell(shell, record, random_state_at(records, record.seq))
            if error is not None and record.status == rec.OK:
                ename, evalue = error
                report.failures.append({"label": record.label, "ename": ename, "evalue": evalue[:200]})
            tracebacks.clear()
            forward_rewound(ns, plan, report.inexact)
            share_with_rebuilt(ns, plan, record, report.inexact)
            keep_newest(ns, plan, record)
            keep_bases(shell.user_module, ns, journal.opened_store, plan, record)
        # Threads the replayed cells started run on after them: let them finish (quietly), then
        # stored values win again, so nothing a replay started changes the restored namespace.
        for thread in still_running(threads, REPLAYED_THREADS_WAIT):
            report.inexact[f"thread {thread.name}"] = (
                f"started again by a replayed cell and still running after {REPLAYED_THREADS_WAIT:.0f} s; "
                "what it changes from now on is not what the session had"
            )
        for name, value in plan.stored.items():
            if ns.get(name, MISSING) is not value:
                ns[name] = value
    journal.set_meta(replaying=None)
    undo_replay_mutations(shell, journal.opened_store, plan, to_replay, as_loaded)
    report.replayed = len(to_replay)
    replayed_labels = {r.seq: r.label for r in to_replay}
    created = set(ns) - before
    if all(r.checkpointed for r in to_replay):
        # Every replayed cell's changes are known: a name the replay made that the session
        # does not have (deleted since, or made only in the replay) goes again.
        created -= plan.live
    else:
        created &= plan.deleted
    for name in created | (plan.helpers - plan.live):
        ns.pop(name, None)  # helpers: deleted names a rebuild started from
    for name, reason in plan.rebuild.items():
        if name in ns:
            report.recomputed[name] = [replayed_labels[c] for c in sorted(plan.cells.get(name, ())) if c in replayed_labels]
            plan.states[name] = plan.recompute_states[name]
        else:
            report.lost[name] = reason
        if name in plan.excluded:
            report.excluded[name] = "recomputed" if name in ns else "not restored: replaying its cells did not rebuild it"
    check_rebuilt_values(ns, journal.opened_store, plan, report)
    _restore_output_history(shell, journal.opened_store, plan, report, records, as_of_cache)


def _restore_output_history(
    shell: Any, store: Any, plan: ReplayPlan, report: RestoreReport, records: list[CellRecord], cache: dict
) -> None:
    """``Out[n]``, ``_n`` and ``_``/``__``/``___`` as the user left them (``Out[12]`` after a crash).

    A result that was a variable's object is that variable's value after its cell
    (the very object when it has not changed since); another was stored with its
    cell's outcome, or is named as not kept.
    """
    ns = shell.user_ns
    out = ns.get("Out")
    if not isinstance(out, dict):
        return
    results: list[Any] = []
    for record in records:
        result = record.result
        if not result or not record.store_history or record.status not in rec.REPLAYED_STATUSES:
            continue
        n = result["n"]
        value: Any = MISSING
        if "alias" in result:
            name = result["alias"]
            state = plan.states.get(name)
            if state is not None and state.bound_at <= record.seq and name in ns:
                value = ns[name]  # not rebound since (changed in place at most): the very object, as Out[n] was
            else:
                value = stored_value_before(shell.user_module, store, name, record.seq + 1, cache)
        elif "payload" in result:
            try:
                buffers = [bytearray(base64.b64decode(b)) for b in result.get("buffers", ())]
                with old_versions():  # a definition in it is the live one: its latest state stays
                    value = loads(result["method"], base64.b64decode(result["payload"]), buffers)["value"]
            except Exception as exc:  # noqa: BLE001 - an output costs only itself
                report.outputs_not_kept.append(f"Out[{n}] (it failed to load: {type(exc).__name__})")
                results.append("")
                continue
        else:
            report.outputs_not_kept.append(f"Out[{n}] ({result.get('dropped', 'not stored')})")
            results.append("")  # _, __ and ___ keep their places: an output not kept leaves its place empty
            continue
        if value is MISSING:
            report.outputs_not_kept.append(f"Out[{n}] (its value is no longer stored)")
            results.append("")
            continue
        out[n] = ns[f"_{n}"] = value
        results.append(value)
    hook = shell.displayhook
    for name, value in zip(("___", "__", "_"), (["", "", ""] + results)[-3:]):
        ns[name] = value
        setattr(hook, name, value)


def _refusals_in_words(store: Any, by_seq: dict[int, CellRecord]) -> list[str]:
    """The store's refusals, a refused version named by the variables that pointed to it."""
    if not store.refusals:
        return []
    names_at: dict[str, list[str]] = {}
    for name, pointer in store.pointers_as_of().items():
        if pointer.version:
            names_at.setdefault(pointer.version, []).append(name)
    said = []
    for what in store.refusals:
        kind, _, key = what.partition(" ")
        if kind != "version":
            said.append(what)
            continue
        seq = int(key[:16], 16)
        cell = by_seq[seq].label if seq in by_seq else f"#{seq}"
        names = sorted(names_at.get(key, []))
        said.append(f"the stored value of {', '.join(names)} from cell {cell}" if names else f"a stored value from cell {cell}")
    return said


def _start_from_earlier(
    shell: Any,
    journal: Journal,
    plan: ReplayPlan,
    report: RestoreReport,
    loaded: dict[str, Any],
    versions: dict[str, Version | None],
    name: str,
    seq: int,
    version: Version,
) -> None:
    """Bind ``name`` to its newest landed version before cell ``seq`` and plan the cells since.

    Without one of its own (``x = big; del big`` while big's write was pending), the
    bytes are another name's: start from that name's landed version (bound as a
    helper, removed after the replay) and replay its cells since, then ``name``'s.
    """
    store = journal.opened_store
    via, base, upto = name, landed_base(store, name, seq), seq
    if base is None:
        found = base_by_content(store, version, seq)
        if found is None:
            return  # rebuilt from the cell that bound it, like any "recompute" name
        via, base, upto = found
    base_key, base_version, base_seq = base
    if base_key not in loaded:
        journal.set_meta(loading=base_key)
        loaded[base_key] = load_version(shell.user_module, store, base_version)
        journal.set_meta(loading=None)
        versions[base_key] = base_version
    values = loaded[base_key]
    if not isinstance(values, dict) or via not in values:
        return
    shell.user_ns[via] = values[via]
    plan.bases[via] = (values[via], base_seq, base_version)
    plan.based.add(name)
    report.unlanded[name] = seq
    live = {p.seq for p in store.name_history(name) if p.seq <= seq and p.state == LIVE}
    if via == name:
        plan.cells[name] = {cell for cell in live if cell > base_seq}
    else:
        plan.helpers.add(via)
        plan.cells[name] = live | {p.seq for p in store.name_history(via) if base_seq < p.seq <= upto and p.state == LIVE}


def _load_stored(shell: Any, journal: Journal, report: RestoreReport, progress: RestoreProgress, plan: ReplayPlan) -> None:
    """Carry out the names' plan (``restoreplan.plan_names``): import the modules, load every
    live group's latest version, and start what never landed from an earlier one.

    Modules are imported first (unpickling may need them). A load that killed two
    earlier restores (marker ``loading`` left behind) is not tried again: its names are rebuilt.
    """
    store = journal.opened_store
    pointers = store.pointers_as_of()
    versions: dict[str, Version | None] = {}
    for pointer in pointers.values():
        if pointer.state == LIVE and pointer.live_version not in versions:
            versions[pointer.live_version] = store.version(bytes.fromhex(pointer.live_version))
    names = plan_names(pointers, versions, lambda version: loadable(store, version), store.missing_reason)
    plan.live, plan.deleted, plan.excluded = names.live, names.deleted, names.excluded
    plan.rebuild, plan.cells, plan.recompute_states = names.rebuild, names.cells, names.recompute_states
    plan.stale = names.stale
    crashes: dict[str, int] = journal.get_meta("load_crashes") or {}
    crashed_on = journal.get_meta("loading")
    if crashed_on:
        # Once may be an impatient kill -9 during the restore; twice is this load's doing.
        crashes[crashed_on] = crashes.get(crashed_on, 0) + 1
        journal.set_meta(load_crashes=crashes, loading=None)
    poisoned = {marker for marker, count in crashes.items() if count >= 2}
    ns = shell.user_ns

    for name, pointer in names.modules.items():
        marker = f"module:{pointer.module}"
        if marker in poisoned:
            report.lost[name] = f"importing {pointer.module} stopped an earlier restore"
            continue
        journal.set_meta(loading=marker)
        try:
            ns[name] = plan.stored[name] = module = import_stored_module(pointer.module or "")
            plan.stored_at[name] = pointer.seq
            state = pointer.module_state
            plan.states[name] = NameState(MODULE, pointer.bound, version=pointer.module, digest=state.get("digest") if state else None)
            if state:
                _set_module_state(module, state, name, report)
        except Exception as exc:  # noqa: BLE001 - an uninstalled module costs only its name
            report.lost[name] = f"module {pointer.module}: {type(exc).__name__}"

    loaded: dict[str, dict[str, Any] | Exception] = {}
    for _attempt in range(2):  # a group whose unpickling needs another group gets a second chance
        for key, bound in names.load.items():
            if isinstance(loaded.get(key), dict):
                continue
            progress.step(len(loaded), len(versions), bound[0])
            if key in poisoned:
                loaded[key] = RuntimeError("loading it stopped an earlier restore")
                continue
            journal.set_meta(loading=key)
            with released_locks() as released:
                values = loaded[key] = load_version(shell.user_module, store, names.versions[key])
            if released and isinstance(values, dict):
                _name_released_locks(values, released, ns, report)
    journal.set_meta(loading=None)

    for name, pointer in names.unlanded.items():
        _start_from_earlier(shell, journal, plan, report, loaded, versions, name, pointer.seq, names.versions[pointer.live_version])
    for key, bound in names.load.items():
        version, values = names.versions[key], loaded[key]
        for name in bound:
            if isinstance(values, Exception) or name not in values:
                why = f"{type(values).__name__}: {values}" if isinstance(values, Exception) else "missing from its version"
                rebuild_after_failed_load(names, name, pointers[name], version, why)
                continue
            ns[name] = plan.stored[name] = values[name]
            plan.stored_at[name] = pointers[name].seq
            plan.versions[key] = version
            if version.notes and name in version.notes:
                report.inexact.setdefault(name, version.notes[name])
            plan.states[name] = NameState(STORED, pointers[name].bound, key, frozenset(version.names), version.digest, nbytes=version.nbytes)
            report.loaded += 1
    report.loaded_bytes = sum(found.nbytes for key, values in loaded.items() if isinstance(values, dict) and (found := versions.get(key)) is not None)
    for name in set(plan.rebuild) - plan.based:
        plan.cells[name] = full_rebuild_cells(pointers[name], store.name_history(name), plan.cells.get(name, set()))


def _set_module_state(module: Any, state: dict[str, Any], name: str, report: RestoreReport) -> None:
    """The variables the session set in one of its own modules (``helpers.SCALE = 3``)."""
    if "payload" in state:
        try:
            values = loads(state["method"], base64.b64decode(state["payload"]), [])
        except Exception as exc:  # noqa: BLE001 - the module's variables cost only themselves
            report.inexact[name] = f"its module variables could not be loaded ({type(exc).__name__})"
            return
        for key, value in values.items():
            setattr(module, key, value)
    elif state.get("unstored"):
        report.inexact[name] = f"variables the session set in module {module.__name__} are not restored ({state['unstored']})"


def state_as_of(store: Any, seq: int, main: Any = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The namespace as it stood after cell ``seq``, from the stored versions (every version is kept).

    Returns the values that can be loaded, and name -> why for the names that
    would need recomputing (unstorable, or failing to load). Modules are imported.
    """
    values: dict[str, Any] = {}
    missing: dict[str, str] = {}
    loaded: dict[str, dict[str, Any] | Exception] = {}
    for name, pointer in store.pointers_as_of(seq).items():
        if pointer.state == DELETED:
            continue
        if pointer.state == MODULE:
            try:
                values[name] = import_stored_module(pointer.module)
            except Exception as exc:  # noqa: BLE001
                missing[name] = f"module {pointer.module}: {type(exc).__name__}"
            continue
        version = store.version(bytes.fromhex(pointer.version))
        if version is None or version.kind == RECOMPUTE:
            missing[name] = "cannot be stored" if version else store.missing_reason(pointer.version)
            continue
        if not loadable(store, version):
            missing[name] = Version.why_not(version, pointer.seq)
            continue
        if pointer.version not in loaded:
            loaded[pointer.version] = load_version(main, store, version)
        group = loaded[pointer.version]
        if isinstance(group, Exception):
            missing[name] = f"{type(group).__name__}: {group}"
        else:
            values[name] = group[name]
    return values, missing


def _name_released_locks(values: dict[str, Any], released: list[Any], ns: dict[str, Any], report: RestoreReport) -> None:
    """A lock held when it was stored comes back released (its holder is gone): the names that reach one say so."""
    wanted = {id(lock) for lock in released}
    for name, value in values.items():
        if wanted & reachable_ids(value, ns):
            report.inexact.setdefault(name, "a lock in it was held; it comes back released")


def _cells_for_unstorable_reads(store: Any, needed: set[int], by_seq: dict[int, CellRecord], plan: ReplayPlan) -> set[int]:
    """The cells that rebuild an unstorable object a replayed cell reads and the session has since deleted.

    (``g = g; big[…] += 4`` replayed for ``big``, then ``del g``: ``g`` is no longer the
    session's, so nothing rebuilds it, and the replay would stop at ``g``.) Its cells
    as of before the reading cell are replayed too; the name is removed afterwards.
    """
    extra: set[int] = set()
    pending = sorted(needed)
    while pending:
        seq = pending.pop()
        for name in by_seq[seq].reads or ():
            if name in plan.live:
                continue
            earlier = [p for p in store.name_history(name) if p.seq < seq]
            if not earlier or earlier[-1].state != LIVE:
                continue
            version = store.version(bytes.fromhex(earlier[-1].version))
            if version is None or version.kind != RECOMPUTE:
                continue  # a stored one is bound as it was before the cell (bind_reads_as_of)
            bound_at = earlier[-1].bound
            cells = set(version.cells) | {p.seq for p in earlier if p.seq >= bound_at and p.state == LIVE}
            for cell in cells - needed - extra:
                if cell in by_seq:
                    extra.add(cell)
                    pending.append(cell)
    return extra


def _restore_input_history(shell: Any, records: list[CellRecord]) -> None:
    """``In``, ``_i``, ``_ii``, ``_iii`` and ``_iN`` as the user left them (outputs: ``_restore_output_history``)."""
    history = shell.history_manager
    inputs = [""]
    for record in records:
        if record.store_history and record.execution_count >= len(inputs):
            inputs.extend([""] * (record.execution_count - len(inputs)))
            inputs.append(record.code)
    history.input_hist_parsed[:] = inputs
    history.input_hist_raw[:] = inputs
    recent = [""] * 4 + [code for code in inputs[1:] if code]
    # IPython shifts these when the next cell is stored: _i becomes the last input.
    history._iii, history._ii, history._i, history._i00 = recent[-4:]
    for name, code in zip(("_iii", "_ii", "_i"), recent[-3:]):
        shell.user_ns[name] = code
    for number, code in enumerate(inputs):
        if code:
            shell.user_ns[f"_i{number}"] = code  # numbered inputs, as IPython keeps them


# -- no file changes while cells are replayed -----------------------------------------------
#
# An audit hook (PEP 578) sees every open by Python code and C code that goes through
# Python (io.open, os.open, pathlib, tarfile …) and the os calls that change files. It
# is installed once and blocks only while this thread replays cells. Creating a *new*
# file exclusively (O_CREAT|O_EXCL: bytecode caches, mkstemp) cannot harm a user's
# data and is allowed. Writes a C library makes on its own (a sqlite connection's
# INSERT) are not visible here.


