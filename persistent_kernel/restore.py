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
import contextlib
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from . import records as rec
from .checkpoint import MODULE, RECOMPUTE, STORED, NameState, is_atomic
from .context import apply_process_context, apply_random_state
from .definitions import (
    DefinitionIndex,
    key_in_scope,
    old_versions,
    resolving,
    settle,
)
from .journal import Journal
from .loading import base_by_content, landed_base, load_version, loadable
from .localmodules import restore_local_modules
from .records import CellRecord
from .replay import (
    MISSING,
    REPLAYED_THREADS_WAIT,
    ReplayPlan,
    bind_reads_as_of,
    cells_for,
    contents_of,
    definition_replayer,
    fill_with,
    forward_rewound,
    label_order,
    quiet_output,
    random_state_at,
    replay_cell,
    replayable,
    still_running,
    stored_value_before,
    threads_started,
)
from .serialize import dumps, import_stored_module, loads
from .syncobjects import released_locks
from .tracking import reachable_ids

_LIST_AT_MOST = 5
LONG_RESTORE_SECONDS = 2.0  # a restore this long reports its progress (log) and its phases (summary)


class RestoreProgress:
    """Progress of a restore, for the kernel log: silent for the first seconds, then a line a second.

    The restore runs before the kernel serves its first request, so the log is
    where progress can go while it runs (a thread writes it, so one long replayed
    cell is reported too); the phases' times go into the summary the first cell shows.
    """

    @classmethod
    def to_kernel_log(cls) -> RestoreProgress:
        """Lines on the kernel's stderr (its log), through a copy of the descriptor taken now:
        while cells are replayed, descriptors 1 and 2 point at /dev/null."""
        try:
            stream = os.fdopen(os.dup(2), "w", buffering=1)
        except OSError:
            return cls()
        return cls(lambda line: stream.write(f"[persistent_kernel] {line}\n"), closing=stream)

    def __init__(self, log: Any = None, *, after: float = LONG_RESTORE_SECONDS, every: float = 1.0, closing: Any = None) -> None:
        self.log = log  # a callable taking one line, or None
        self._closing = closing  # closed by finish()
        self.every = every
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}
        self._phase: str | None = None
        self._phase_started = self.started
        self._where = ""
        self._done = threading.Event()
        if log is not None:
            self._timer = threading.Timer(after, self._report)
            self._timer.daemon = True
            self._timer.start()

    def phase(self, name: str) -> None:
        now = time.monotonic()
        if self._phase is not None:
            self.phases[self._phase] = self.phases.get(self._phase, 0.0) + now - self._phase_started
        self._phase, self._phase_started = name, now
        self._where = name

    def step(self, done: int, total: int, what: str = "") -> None:
        self._where = f"{self._phase} {done + 1}/{total}{f' ({what})' if what else ''}"

    def _report(self) -> None:
        while not self._done.is_set():
            try:
                self.log(f"restoring the session: {self._where}, {time.monotonic() - self.started:.0f} s so far")
            except (OSError, ValueError):  # the stream closed as the restore finished
                return
            self._done.wait(self.every)

    def finish(self) -> dict[str, float]:
        if not self._done.is_set():
            self._done.set()
            self.phase("done")
            self.phases.pop("done", None)
            if self._closing is not None:
                if self.log is not None and time.monotonic() - self.started >= LONG_RESTORE_SECONDS:
                    self.log(f"restored the session in {time.monotonic() - self.started:.1f} s")
                self._closing.close()
        return {phase: seconds for phase, seconds in self.phases.items() if seconds >= 0.05}


@dataclass
class RestoreReport:
    """What a restore did; shown once to the user and kept for ``%persist status``."""

    session_name: str
    loaded: int = 0  # variables loaded from stored versions
    loaded_bytes: int = 0
    recomputed: dict[str, list[str]] = field(default_factory=dict)  # name -> labels of the cells replayed for it
    lost: dict[str, str] = field(default_factory=dict)  # name -> why it could not be rebuilt
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # rebuilt without some of its cells
    unlanded: dict[str, int] = field(default_factory=dict)  # name -> cell whose version never reached the disk
    replayed: int = 0  # cells replayed
    seconds: float = 0.0
    died: list[str] = field(default_factory=list)  # running when the kernel died
    skipped: list[str] = field(default_factory=list)  # killed an earlier restore
    failures: list[dict[str, str]] = field(default_factory=list)  # ran before, failed in replay
    context_problems: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # excluded name -> "recomputed" or why it is absent
    paused_after: str | None = None  # persistence was paused (%persist off) after this cell when the kernel died
    refused: list[str] = field(default_factory=list)  # stored records that failed authentication (never used)
    inexact: dict[str, str] = field(default_factory=dict)  # name -> what of it could not come back exactly
    modules: dict[str, str] = field(default_factory=dict)  # the user's module files changed since: what was done
    outputs_not_kept: list[str] = field(default_factory=list)  # "Out[5] (too large to keep)"
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase, for a long restore
    next_execution_count: int = 1
    finished_at: float = 0.0

    def summary(self) -> str:
        """One line: what was restored and how, then what was not and why."""
        return " ".join(self.summary_parts())

    def summary_parts(self) -> list[str]:
        """The headline (``Restored session …``), then one sentence per kind of news."""
        what = []
        if self.loaded or not self.replayed:
            what.append(f"loaded {self.loaded} variable{_s(self.loaded)} ({_human(self.loaded_bytes)})")
        if self.replayed:
            what.append(f"replayed {self.replayed} cell{_s(self.replayed)}")
        took = f"{self.seconds:.1f} s"
        if self.seconds >= LONG_RESTORE_SECONDS and self.phases:
            took += " (" + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.phases.items()) + ")"
        parts = [f"Restored session '{self.session_name}': {' and '.join(what)} in {took}."]
        if self.refused:
            shown = "; ".join(self.refused[:_LIST_AT_MOST]) + (
                f" (and {len(self.refused) - _LIST_AT_MOST} more)" if len(self.refused) > _LIST_AT_MOST else ""
            )
            parts.append(
                f"Refused {len(self.refused)} stored record{_s(len(self.refused))} that failed authentication "
                f"(not written by your kernel, or changed since), so nothing in them was loaded or run: {shown}."
            )
        recomputed = {name: labels for name, labels in self.recomputed.items() if name not in self.excluded}
        if recomputed:
            cells = sorted({label for labels in recomputed.values() for label in labels}, key=label_order)
            parts.append(f"Recomputed {_join(sorted(recomputed))} by replaying cell{_s(len(cells))} {_join(cells)}.")
        if self.excluded:
            rebuilt = sorted(name for name, how in self.excluded.items() if how == "recomputed")
            absent = [f"{name} ({how})" for name, how in sorted(self.excluded.items()) if how != "recomputed"]
            said = [f"recomputed by replay: {_join(rebuilt)}"] if rebuilt else []
            said += [_join(absent)] if absent else []
            parts.append(f"Excluded from persistence (%persist exclude): {'; '.join(said)}.")
        if self.paused_after:
            parts.append(
                f"Persistence was paused (%persist off) after cell {self.paused_after}: what later cells did was not kept."
            )
        unlanded = sorted(name for name in self.unlanded if name in self.recomputed)
        if unlanded:
            verb = "was" if len(unlanded) == 1 else "were"
            parts.append(
                f"({_join(unlanded)} {verb} still being written to disk when the kernel stopped, "
                "so the replay started from the version before.)"
            )
        lost = {name: why for name, why in self.lost.items() if name not in self.excluded}
        if lost:
            shown = [f"{name} ({why})" for name, why in sorted(lost.items())]
            parts.append(f"Could not rebuild {_join(shown)}.")
        rebuilt_partly = {name: labels for name, labels in self.incomplete.items() if name in self.recomputed}
        if rebuilt_partly:
            shown = [f"{name} (cell {', '.join(labels)} is never replayed)" for name, labels in sorted(rebuilt_partly.items())]
            parts.append(f"May differ from before the crash: {_join(shown)}.")
        if self.modules:
            parts.append(" ".join(f"{name} {what}." for name, what in sorted(self.modules.items())))
        if self.outputs_not_kept:
            parts.append(f"Not kept: {_join(self.outputs_not_kept)}.")
        if self.inexact:
            shown = [f"{name} ({why})" for name, why in sorted(self.inexact.items())]
            parts.append(f"Not exact: {_join(shown)}.")
        if self.died:
            which = _join(self.died)
            verb = "was" if len(self.died) == 1 else "were"
            parts.append(f"Cell {which} {verb} running when the kernel died and {verb} not replayed.")
        if self.skipped:
            parts.append(f"Cell {_join(self.skipped)} stopped an earlier restore and is no longer replayed.")
        if self.failures:
            shown = "; ".join(f"{f['label']} {f['ename']}: {f['evalue']}" for f in self.failures[:_LIST_AT_MOST])
            more = f" (and {len(self.failures) - _LIST_AT_MOST} more)" if len(self.failures) > _LIST_AT_MOST else ""
            parts.append(f"{len(self.failures)} cell{_s(len(self.failures))} failed during replay: {shown}{more}.")
        if self.context_problems:
            parts.append(f"Not restored: {'; '.join(self.context_problems)}.")
        return parts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"




def _join(labels: list[str]) -> str:
    shown = ", ".join(labels[:_LIST_AT_MOST])
    return shown + (f" and {len(labels) - _LIST_AT_MOST} more" if len(labels) > _LIST_AT_MOST else "")






def restore_session(
    shell: Any,
    journal: Journal,
    *,
    progress: RestoreProgress | None = None,
    excluded_replay_limit: float = 2.0,
    definitions: DefinitionIndex | None = None,
) -> tuple[RestoreReport, dict[str, NameState]] | None:
    """Rebuild the namespace: stored versions, then the fewest cells for the rest, then process state.

    Returns the report and what the store holds per name (for the checkpointer),
    or None when the session has no history. A name excluded from persistence is
    rebuilt only if the cells that make it took at most ``excluded_replay_limit``
    seconds when they ran. Notebook functions and classes stored by reference are
    re-created by replaying their definitions (see ``definitions``); those bound
    under their own name are then told to ``definitions``, the checkpointer's index.
    """
    records = journal.records()
    if not records:
        return None
    progress = progress or RestoreProgress()
    report = RestoreReport(session_name=journal.session.name)
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
    replayer = definition_replayer(shell, journal.store, by_seq, plan, as_of_cache)
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
    report.refused = _refusals_in_words(journal.store, by_seq)
    report.seconds = time.monotonic() - started
    report.phases = progress.finish()
    report.finished_at = time.time()
    journal.set_meta(last_restore=report.to_dict())
    return report, plan.states




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
    _leave_out_costly_excluded(plan, report, by_seq, excluded_replay_limit)
    # Cells whose changes were never checkpointed (an older store, a failed checkpoint) are replayed whole.
    needed = {r.seq for r in records if r.status in rec.REPLAYED_STATUSES and not r.checkpointed}
    needed |= cells_for(plan.rebuild, plan.cells, by_seq)
    needed |= _cells_for_unstorable_reads(journal.store, needed, by_seq, plan)
    # %persist cells act on the journal (a checkout's effect is in its checkpoint): never replayed.
    to_replay = [by_seq[seq] for seq in sorted(needed) if replayable(by_seq[seq])]
    for name in plan.rebuild:
        # Cells a rebuild needs that are never replayed (interrupted, died, skipped): say so.
        missing = [by_seq[c].label for c in sorted(plan.cells.get(name, ())) if c in by_seq and by_seq[c].status not in rec.REPLAYED_STATUSES]
        if missing:
            report.incomplete[name] = missing

    before = set(ns)
    as_loaded = _digests_as_loaded(ns, plan, to_replay) if to_replay else {}
    progress.phase("replaying")
    with quiet_output(shell) as tracebacks, threads_started() as threads:
        for done, record in enumerate(to_replay):
            progress.step(done, len(to_replay), f"cell {record.label}")
            # Written before the cell runs: if it kills this process, the next start skips it.
            journal.set_meta(replaying=record.seq)
            if record.checkpointed:
                # What it reads, as it stood before it ran (not the latest stored values).
                bind_reads_as_of(shell.user_module, ns, journal.store, plan, record, as_of_cache)
            error = replay_cell(shell, record, random_state_at(records, record.seq))
            if error is not None and record.status == rec.OK:
                ename, evalue = error
                report.failures.append({"label": record.label, "ename": ename, "evalue": evalue[:200]})
            tracebacks.clear()
            forward_rewound(ns, plan, report.inexact)
            _share_with_rebuilt(ns, plan, record, report.inexact)
            _keep_newest(ns, plan, record)
            _keep_bases(shell.user_module, ns, journal.store, plan, record)
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
    _undo_replay_mutations(shell, journal.store, plan, to_replay, as_loaded)
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
    _check_rebuilt_values(ns, journal.store, plan, report)
    _restore_output_history(shell, journal.store, plan, report, records, as_of_cache)


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


def _check_rebuilt_values(ns: dict[str, Any], store: Any, plan: ReplayPlan, report: RestoreReport) -> None:
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
            if version is None or version.get("kind") != STORED or not version.get("digest"):
                continue
            names = version["names"]
            try:
                same = all(n in ns for n in names) and dumps({n: ns[n] for n in names}, key_in_scope).group_digest == version["digest"]
            except Exception:  # noqa: BLE001 - cannot tell: say so
                same = False
            checked[state.version] = same
        if not checked[state.version]:
            report.inexact[name] = (
                "it was lost with the kernel (not yet on disk, or unreadable) and replaying its cells gave a different "
                "value: they draw random numbers, read the clock or files"
            )




def _refusals_in_words(store: Any, by_seq: dict[int, CellRecord]) -> list[str]:
    """The store's refusals, a refused version named by the variables that pointed to it."""
    if not store.refusals:
        return []
    names_at: dict[str, list[str]] = {}
    for name, pointer in store.pointers_as_of().items():
        if pointer.get("version"):
            names_at.setdefault(pointer["version"], []).append(name)
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


def _touched_by(replayed: list[CellRecord]) -> set[str]:
    touched: set[str] = set()
    for record in replayed:
        if record.checkpointed:
            touched.update(record.reads or ())
            touched.update(record.writes or ())
    return touched


def _digests_as_loaded(ns: dict[str, Any], plan: ReplayPlan, replayed: list[CellRecord]) -> dict[str, str]:
    """Before replaying: the digest of each loaded group the replayed cells touch, as loaded.

    A loaded group need not hash to its stored digest (a dict's key iterator comes back
    as a list iterator): what a replay changed is what differs from this.
    """
    touched = _touched_by(replayed)
    digests = {}
    for key, version in plan.versions.items():
        names = version["names"]
        if touched.intersection(names) and all(n in plan.stored and ns.get(n, MISSING) is plan.stored[n] for n in names):
            with contextlib.suppress(Exception):
                digests[key] = dumps({n: ns[n] for n in names}, key_in_scope).group_digest
    return digests


def _undo_replay_mutations(shell: Any, store: Any, plan: ReplayPlan, replayed: list[CellRecord], as_loaded: dict[str, str]) -> None:
    """Stored values win in place too: a group a replayed cell mutated is loaded again from its blob.

    (``a.append(3); g = (x for x in a)`` replayed to rebuild ``g`` appends to the
    stored ``a`` a second time.) Only cells whose changes were checkpointed count:
    what a never-checkpointed cell does is the newer state. ``as_loaded``: the
    groups' digests before the replay (``_digests_as_loaded``).
    """
    touched = _touched_by(replayed)
    ns = shell.user_ns
    for key, version in plan.versions.items():
        # Only the names whose latest value this version is: a name rebound since
        # (`b = [9]` after `a = [1]; b = a`) has a newer version of its own.
        names = [n for n in version["names"] if (state := plan.states.get(n)) is not None and state.version == key]
        if not touched.intersection(names) or not all(n in plan.stored and ns.get(n, MISSING) is plan.stored[n] for n in names):
            continue
        if len(names) == len(version["names"]):
            try:
                unchanged = dumps({n: ns[n] for n in names}, key_in_scope).group_digest in (as_loaded.get(key), version.get("digest"))
            except Exception:  # noqa: BLE001 - cannot tell: reload to be safe
                unchanged = False
            if unchanged:
                continue
        values = load_version(shell.user_module, store, version)
        if isinstance(values, dict):
            for name in names:
                ns[name] = plan.stored[name] = values[name]


def _share_with_rebuilt(ns: dict[str, Any], plan: ReplayPlan, replayed: CellRecord, inexact: dict[str, str]) -> None:
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
        version = plan.versions.get(plan.states[name].version) if name in plan.states else None
        contents = contents_of(stored)
        alone = version is not None and version.get("names") == [name]
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
                name, f"rebuilt by replaying cell {replayed.label}, which also made {_join(sorted(copies))}: it may refer to copies of them"
            )


def _holds_only_atomic(contents: Any) -> bool:
    """Contents (from ``contents_of``) of small immutable values only: filling them in shares nothing."""
    if type(contents) is bytes:
        return True
    values = [*contents.keys(), *contents.values()] if type(contents) is dict else contents
    return all(is_atomic(value) for value in values)


def _keep_newest(ns: dict[str, Any], plan: ReplayPlan, replayed: CellRecord) -> None:
    """After a replayed cell: stored values win, unless the cell was never checkpointed and
    ran after a name's stored version (then what it made is the newer state)."""
    for name, value in list(plan.stored.items()):
        if ns.get(name, MISSING) is value:
            continue
        if replayed.checkpointed or plan.stored_at[name] >= replayed.seq:
            ns[name] = value
        else:
            del plan.stored[name]


def _keep_bases(main: Any, ns: dict[str, Any], store: Any, plan: ReplayPlan, replayed: CellRecord) -> None:
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




def _start_from_earlier(
    shell: Any,
    journal: Journal,
    plan: ReplayPlan,
    report: RestoreReport,
    loaded: dict[str, Any],
    versions: dict[str, Any],
    name: str,
    seq: int,
    version: dict[str, Any],
) -> None:
    """Bind ``name`` to its newest landed version before cell ``seq`` and plan the cells since.

    Without one of its own (``x = big; del big`` while big's write was pending), the
    bytes are another name's: start from that name's landed version (bound as a
    helper, removed after the replay) and replay its cells since, then ``name``'s.
    """
    store = journal.store
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
    live = {p["seq"] for p in store.name_history(name) if p["seq"] <= seq and p["state"] == "live"}
    if via == name:
        plan.cells[name] = {cell for cell in live if cell > base_seq}
    else:
        plan.helpers.add(via)
        plan.cells[name] = live | {p["seq"] for p in store.name_history(via) if base_seq < p["seq"] <= upto and p["state"] == "live"}
























def _leave_out_costly_excluded(plan: ReplayPlan, report: RestoreReport, by_seq: dict[int, CellRecord], limit: float) -> None:
    """An excluded name is rebuilt only when its cells are cheap to run again; otherwise it stays absent."""
    for name in sorted(plan.excluded):
        # Its cells and those of what they read that is rebuilt too (an excluded token a header is made from).
        cells = cells_for(plan.rebuild, plan.cells, by_seq, start=[name])
        seconds = sum(by_seq[seq].duration or 0.0 for seq in cells)
        if seconds > limit:
            report.excluded[name] = f"not restored: its cells took {seconds:.1f} s to run"
    for name in report.excluded:
        del plan.rebuild[name]


def _load_stored(shell: Any, journal: Journal, report: RestoreReport, progress: RestoreProgress, plan: ReplayPlan) -> None:
    """Load the latest version of every live group; list what must be recomputed.

    Modules are imported first (unpickling may need them). A load that killed two
    earlier restores (marker ``loading`` left behind) is not tried again.
    """
    store = journal.store
    pointers = store.pointers_as_of()
    plan.deleted = {name for name, p in pointers.items() if p["state"] == "deleted"}
    plan.live = set(pointers) - plan.deleted
    crashes: dict[str, int] = journal.get_meta("load_crashes") or {}
    crashed_on = journal.get_meta("loading")
    if crashed_on:
        # Once may be an impatient kill -9 during the restore; twice is this load's doing.
        crashes[crashed_on] = crashes.get(crashed_on, 0) + 1
        journal.set_meta(load_crashes=crashes, loading=None)
    poisoned = {marker for marker, count in crashes.items() if count >= 2}
    ns = shell.user_ns

    for name, pointer in sorted(pointers.items()):
        if pointer["state"] != "module":
            continue
        bound_at = pointer.get("bound_at", pointer["seq"])
        marker = f"module:{pointer['module']}"
        if marker in poisoned:
            report.lost[name] = f"importing {pointer['module']} stopped an earlier restore"
            continue
        journal.set_meta(loading=marker)
        try:
            ns[name] = plan.stored[name] = module = import_stored_module(pointer["module"])
            plan.stored_at[name] = pointer["seq"]
            state = pointer.get("module_state")
            plan.states[name] = NameState(MODULE, bound_at, version=pointer["module"], digest=state and state.get("digest"))
            if state:
                _set_module_state(module, state, name, report)
        except Exception as exc:  # noqa: BLE001 - an uninstalled module costs only its name
            report.lost[name] = f"module {pointer['module']}: {type(exc).__name__}"

    versions: dict[str, dict[str, Any] | None] = {}
    live = [(name, p) for name, p in sorted(pointers.items()) if p["state"] == "live"]
    for _name, pointer in live:
        key = pointer["version"]
        if key not in versions:
            versions[key] = store.version(bytes.fromhex(key))
    loaded: dict[str, dict[str, Any] | Exception] = {}
    for _attempt in range(2):  # a group whose unpickling needs another group gets a second chance
        tried: set[str] = set()
        for _name, pointer in live:
            key, version = pointer["version"], versions[pointer["version"]]
            if not loadable(store, version) or isinstance(loaded.get(key), dict) or key in tried:
                continue
            tried.add(key)
            progress.step(len(loaded), len(versions), _name)
            if key in poisoned:
                loaded[key] = RuntimeError("loading it stopped an earlier restore")
                continue
            journal.set_meta(loading=key)
            with released_locks() as released:
                loaded[key] = load_version(shell.user_module, store, version)
            if released and isinstance(loaded[key], dict):
                _name_released_locks(loaded[key], released, ns, report)
    journal.set_meta(loading=None)

    for name, pointer in live:
        bound_at = pointer.get("bound_at", pointer["seq"])
        key, version = pointer["version"], versions[pointer["version"]]
        if version is None:
            plan.rebuild[name] = store.missing_reason(key)
            plan.recompute_states[name] = NameState(RECOMPUTE, bound_at, key, frozenset({name}))
        elif version["kind"] == RECOMPUTE:
            plan.rebuild[name] = version.get("reason", "cannot be stored")
            if version.get("excluded"):
                plan.excluded.add(name)
            plan.cells[name] = set(version["cells"])
            plan.recompute_states[name] = NameState(RECOMPUTE, bound_at, key, frozenset(version["names"]), None, tuple(version["cells"]))
        elif not loadable(store, version):
            # Its large blobs never landed (the kernel died while writing them) or were pruned:
            # start from the newest complete version before it and replay the cells since.
            plan.rebuild[name] = f"its value from cell {pointer['seq']} never reached the disk"
            plan.recompute_states[name] = NameState(RECOMPUTE, bound_at, key, frozenset(version["names"]))
            _start_from_earlier(shell, journal, plan, report, loaded, versions, name, pointer["seq"], version)
        else:
            values = loaded[key]
            if isinstance(values, Exception) or name not in values:
                why = f"{type(values).__name__}: {values}" if isinstance(values, Exception) else "missing from its version"
                plan.rebuild[name] = f"stored value failed to load ({why[:120]})"
                plan.recompute_states[name] = NameState(RECOMPUTE, bound_at, key, frozenset(version["names"]))
            else:
                ns[name] = plan.stored[name] = values[name]
                plan.stored_at[name] = pointer["seq"]
                plan.versions[key] = version
                if name in (version.get("notes") or {}):
                    report.inexact.setdefault(name, version["notes"][name])
                plan.states[name] = NameState(
                    STORED, bound_at, key, frozenset(version["names"]), version.get("digest"), nbytes=version.get("nbytes", 0)
                )
                report.loaded += 1
    report.loaded_bytes = sum(
        versions[key].get("nbytes", 0) for key, values in loaded.items() if isinstance(values, dict) and versions.get(key)
    )
    for name in set(plan.rebuild) - plan.based:
        # Every cell that changed it since it was bound (its history), for a full rebuild.
        bound_at = pointers[name].get("bound_at", pointers[name]["seq"])
        history = {p["seq"] for p in store.name_history(name) if p["seq"] >= bound_at and p["state"] == "live"}
        plan.cells[name] = plan.cells.get(name, set()) | history | {bound_at}


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
        if pointer["state"] == "deleted":
            continue
        if pointer["state"] == "module":
            try:
                values[name] = import_stored_module(pointer["module"])
            except Exception as exc:  # noqa: BLE001
                missing[name] = f"module {pointer['module']}: {type(exc).__name__}"
            continue
        version = store.version(bytes.fromhex(pointer["version"]))
        if version is None or version["kind"] == RECOMPUTE:
            missing[name] = "cannot be stored" if version else store.missing_reason(pointer["version"])
            continue
        if version.get("pruned"):
            missing[name] = (
                f"its version from cell {pointer['seq']} was pruned to keep the store within its history budget "
                "(PersistentKernel.history_budget)"
            )
            continue
        if not loadable(store, version):
            why = version.get("dropped") or "the kernel stopped while writing it"
            missing[name] = f"its version from cell {pointer['seq']} never reached the disk ({why})"
            continue
        if pointer["version"] not in loaded:
            loaded[pointer["version"]] = load_version(main, store, version)
        group = loaded[pointer["version"]]
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
            earlier = [p for p in store.name_history(name) if p["seq"] < seq]
            if not earlier or earlier[-1]["state"] != "live":
                continue
            version = store.version(bytes.fromhex(earlier[-1]["version"]))
            if version is None or version.get("kind") != RECOMPUTE:
                continue  # a stored one is bound as it was before the cell (bind_reads_as_of)
            bound_at = earlier[-1].get("bound_at", earlier[-1]["seq"])
            cells = set(version["cells"]) | {p["seq"] for p in earlier if p["seq"] >= bound_at and p["state"] == "live"}
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



















