"""What a cell or an event leaves in the journal: its checkpoint and its outcome, in one transaction.

The kernel decides *when* something is recorded (a cell's end, a comm message
handled with the turn free, the idle check, ``%persist on``); the recorder decides
*what*: the namespace changes (``checkpoint``), together with the comm messages
folded in since the last checkpoint, and the random state and process context
after it, committed with the record; and what the user is told, once (a value
that cannot be stored, a part of the bookkeeping that failed).

It also holds the *turn* (one execution or event at a time, whatever shell or
thread it comes from) and is what ``%persist`` calls to change what the next
checkpoint does (a checkout, names to look at again, a resume).
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable, Iterable
from typing import Any

from . import records as rec
from . import timetravel
from .checkpoint import Checkpoint
from .events import NotebookCodeRecorder, describe_comm_message

# A burst of comm messages (a drag) is committed as one event at least this often (seconds).
EVENT_COMMIT_MAX_DELAY = 0.1


def outcome_of(reply: dict[str, Any] | None) -> tuple[str, str | None, str | None]:
    """(status, ename, evalue) for the journal from an execute reply; None means it never replied."""
    if reply is None:
        return rec.INTERRUPTED, None, None
    if reply.get("status") == "ok":
        return rec.OK, None, None
    ename, evalue = reply.get("ename"), reply.get("evalue")
    if ename == "KeyboardInterrupt" or reply.get("status") == "aborted":
        return rec.INTERRUPTED, ename, evalue
    return rec.ERROR, ename, evalue


class SessionRecorder:
    """Checkpoints and commits for one kernel's session, and the turn they take: recording
    methods expect the caller to hold it (``take_turn``), ``handle_comm`` takes it itself."""

    def __init__(self, shell: Any, journal: Any, checkpointer: Any, random_states: Any, process_context: Any, log: Any) -> None:
        self.shell = shell
        self.journal = journal
        self.checkpointer = checkpointer
        self.random_states = random_states
        self.process_context = process_context
        self.log = log
        # A comm handler running user code and a checkpoint scanning the namespace never overlap.
        self.namespace_lock = threading.RLock()
        # Comm messages handled while the turn was held (an awaiting cell, a cell on another shell):
        # (what set it off, the notebook code it ran, whether that record is complete). The next
        # checkpoint takes them: the cell's own, or an event when the turn is given back.
        self._folded: list[tuple[str, set[types.CodeType], bool]] = []
        # Group commit of comm messages handled with the turn free (``commit_events_later``): the
        # kernel's way to run a call on its event loop after a delay (False: it has no loop), and
        # the quiet time after the last message before they commit; negative: before the idle status.
        self.schedule: Callable[[float, Callable[[], None]], bool] | None = None
        self.event_commit_delay = -1.0
        self._pending_since: float | None = None  # when the oldest message not yet journaled was handled
        self._last_message = 0.0
        self._timer_set = False
        self.told_unstorable: set[str] = set()
        self._told_failures: set[str] = set()  # kinds of persistence failure the user was told of
        # One execution or event at a time, whatever shell or thread it comes from: the journal has
        # one order, and a checkpoint's identity scan never sees half of another execution's changes.
        self._turn = threading.Lock()
        self._turn_owner: int | None = None
        self.turns_taken = 0  # how many times the turn was taken: unchanged across a span means no cell or event ran in it
        # Called after each commit with whether it went in (the session panel tells the open frontends).
        self.after_commit: Callable[[bool], None] | None = None

    # -- the turn: one execution or event at a time -------------------------------------

    def activity(self) -> tuple[bool, int]:
        """Whether the turn is held now, and how many times it has been taken: read twice, a
        span apart, they tell another thread whether the kernel was idle all along."""
        return self._turn.locked(), self.turns_taken

    def holds_turn(self) -> bool:
        """Whether this thread holds the turn (an execution nested in the running cell)."""
        return self._turn_owner == threading.get_ident()

    def take_turn(self) -> bool:
        if not self._turn.acquire(blocking=False):
            return False
        self._turn_owner = threading.get_ident()
        self.turns_taken += 1
        return True

    def _give_back_turn(self) -> None:
        """Release the turn without journaling what waits (its group commit is scheduled)."""
        self._turn_owner = None
        self._turn.release()

    def release_turn(self) -> None:
        """Give the turn back, first committing comm messages handled while it was held."""
        while True:
            with self.namespace_lock:
                if not self._folded:
                    self._give_back_turn()
                    return
            self.commit_waiting_events()

    def handle_comm(self, handler: Callable[..., Any], comm_manager: Any, stream: Any, idents: Any, msg: dict[str, Any]) -> Any:
        """A comm message from the frontend: run its handler, then journal what it changed.

        With the turn free, its changes commit as an event of their own. With the turn
        held (a cell awaiting on this shell, a cell on another shell), they are left to
        that cell's checkpoint: committing them apart would store half of the cell.
        """
        trigger = describe_comm_message(msg, comm_manager)  # before a comm_close removes it
        try:
            with self.namespace_lock, NotebookCodeRecorder(self.shell.user_ns) as recorder:
                try:
                    return handler(stream, idents, msg)
                finally:
                    self.fold(trigger, recorder.codes, recorder.complete)
        finally:
            if self.take_turn():
                if self.commit_events_later():
                    self._give_back_turn()
                else:
                    self.release_turn()

    # -- group commit of comm messages ------------------------------------------------------

    def commit_events_later(self) -> bool:
        """Leave the messages handled so far to one commit, once they stop coming; False: commit now.

        A drag sends a message each time the kernel reports idle; committing each before
        the idle status costs the drag a transaction per message. Instead they are
        journaled together once no message came for ``event_commit_delay`` seconds, or
        ``EVENT_COMMIT_MAX_DELAY`` after the first, or first thing when a cell (or
        anything else) takes the turn: a kill loses at most that window of messages, and
        the store is always at the state after some message (or cell).
        """
        if self.event_commit_delay < 0 or self.schedule is None:
            return False
        with self.namespace_lock:
            self._last_message = time.monotonic()
            if self._pending_since is None:
                self._pending_since = self._last_message
            if not self._timer_set:
                self._timer_set = self.schedule(self.event_commit_delay, self._commit_when_quiet)
            return self._timer_set

    def _commit_when_quiet(self) -> None:
        """The timer (on the kernel's event loop): commit the messages waiting, unless more are still coming."""
        with self.namespace_lock:
            self._timer_set = False
            if not self._folded:
                self._pending_since = None
                return
            now = time.monotonic()
            quiet_for = self._last_message + self.event_commit_delay - now
            at_most = (self._pending_since or now) + EVENT_COMMIT_MAX_DELAY - now
            if quiet_for > 0 and at_most > 0 and self.schedule is not None:
                self._timer_set = self.schedule(min(quiet_for, at_most), self._commit_when_quiet)
                if self._timer_set:
                    return
        self.flush_events()  # a cell or event holding the turn takes them with its checkpoint

    def commit_waiting_events(self) -> None:
        """Journal the comm messages folded so far as one event (the caller holds the turn)."""
        if not self._folded:
            return
        try:
            self.record_event("comm", only_if_changed=True)
        except Exception:  # noqa: BLE001 - a failed event must not keep the turn nor stop what comes next
            self.log.exception("persistent_kernel: journaling comm messages failed")
            self.drop_folded()
            self.checkpointer.recover()

    def flush_events(self) -> None:
        """Journal the messages waiting for their group commit, if the turn is free (the timer, a shutdown).

        Held (a cell runs), it is not waited for: the cell's checkpoint takes them, or a
        shutdown ends the cell as it would have anyway.
        """
        if self.take_turn():
            self.release_turn()

    # -- what ran outside a cell's own code ---------------------------------------------

    def fold(self, trigger: str, codes: set[types.CodeType], complete: bool) -> None:
        """A comm message (or a nested execution) handled meanwhile: part of the next checkpoint."""
        with self.namespace_lock:
            self._folded.append((trigger, codes, complete))

    def drop_folded(self) -> None:
        with self.namespace_lock:
            self._folded.clear()

    # -- recording ------------------------------------------------------------------------

    def begin_cell(self, request: dict[str, Any]) -> rec.CellRecord | None:
        """Commit the cell's record before it runs, with the random state it starts from; None: not journaled.

        Comm messages still waiting for their group commit go in first, as an event of their
        own: they happened before the cell, and a cell that kills the kernel must not take them along.
        """
        self.commit_waiting_events()
        code = request["code"]
        return self.journal.begin(
            code,
            execution_count=self.shell.execution_count,
            silent=request["silent"],
            store_history=request["store_history"],
            cell_id=request["cell_id"],
            random_state_before=self.random_state() if self.journal.journals(code) else None,
        )

    def record_event(self, kind: str, *, only_if_changed: bool = False) -> None:
        """Journal a change no cell's code made (an idle check, %persist on, widget callbacks) and store it.

        The caller holds the turn. Comm messages handled meanwhile are part of the event
        (their notebook code widens its reads). With ``only_if_changed`` an event that
        changed nothing leaves no journal entry: most comm messages (a widget asking for
        its state, an echo of a value) run no user code.
        """
        if not self.journal.journals_events:
            with self.namespace_lock:
                self._folded.clear()
            return
        seq = self.journal.next_seq
        checkpoint, handled = self._prepare(seq, "")
        random_state_after = self.random_state()
        context = self.process_context_changes()
        unchanged = checkpoint is not None and not (checkpoint.pointers or checkpoint.versions) and random_state_after is None and context is None
        if only_if_changed and unchanged:
            self.checkpointer.applied(checkpoint)
            return
        record = self.journal.begin_event(kind, self.shell.execution_count, trigger="; ".join(handled) or None)
        if record is None or record.seq != seq:  # not journaled (a full disk): the next checkpoint stores it
            if checkpoint is not None:
                self.checkpointer.not_committed(checkpoint)
            if record is not None:
                self.journal.finish(record, rec.OK, 0.0)
            return
        self._commit(record, {"status": "ok"}, 0.0, checkpoint, random_state_after, context)

    def record_cell(self, record: rec.CellRecord, code: str, reply: dict[str, Any] | None, duration: float) -> None:
        """Commit the cell's outcome and namespace changes in one transaction."""
        checkpoint, handled = self._prepare(record.seq, code)
        if handled:
            record.handled_during = handled
        self._commit(record, reply, duration, checkpoint, self.random_state(), self.process_context_changes())

    def _prepare(self, seq: int, code: str) -> tuple[Checkpoint | None, list[str]]:
        """The namespace changes of ``code`` and of the comm messages handled since the last checkpoint."""
        if self.journal.outcome_lost:
            # An earlier outcome, committed after its reply, failed: what the checkpointer
            # believes stored is not. Store the namespace whole.
            self.journal.outcome_lost = False
            self.checkpointer.forget()
            self.reset_after_failure()
        with self.namespace_lock:
            folded, self._folded = self._folded, []
            self._pending_since = None
            ran: set[types.CodeType] = set().union(*(codes for _trigger, codes, _complete in folded))
            if not all(complete for _trigger, _codes, complete in folded):
                self.checkpointer.full_pass = True  # another profiler hid what ran: look at every name
            try:
                checkpoint = self.checkpointer.prepare(seq, code, ran)
            except BaseException as exc:  # noqa: BLE001 - incl. an interrupt while serializing: never the kernel's problem
                self.log.exception("persistent_kernel: checkpoint failed")
                again = "a restore will replay it" if code else "the next checkpoint stores it again"
                self.journal.notify(f"Could not snapshot the changes ({type(exc).__name__}: {exc}); {again}.")
                self.checkpointer.recover()
                checkpoint = None
        return checkpoint, [trigger for trigger, _codes, _complete in folded]

    def _commit(
        self,
        record: rec.CellRecord,
        reply: dict[str, Any] | None,
        duration: float,
        checkpoint: Checkpoint | None,
        random_state_after: dict[str, Any] | None,
        context: dict[str, Any] | None,
    ) -> None:
        status, ename, evalue = outcome_of(reply)
        try:
            committed = self.journal.finish(
                record,
                status,
                duration,
                ename,
                evalue,
                random_state_after=random_state_after,
                checkpoint=checkpoint,
                context=context,
            )
        except BaseException:  # noqa: BLE001 - e.g. an interrupt mid-commit: the transaction was aborted whole
            self.log.exception("persistent_kernel: committing the cell failed")
            committed = False
        if self.after_commit is not None:
            try:
                self.after_commit(committed)
            except Exception:  # noqa: BLE001 - telling a frontend must never fail a commit
                self.log.exception("persistent_kernel: telling the session panels failed")
        if checkpoint is None:
            return
        if committed:
            self.checkpointer.applied(checkpoint)
            self._tell_unstorable(checkpoint.unserializable)
        else:
            self.checkpointer.not_committed(checkpoint)
            self.process_context.reset(None)
            self.random_states.reset()

    def _tell_unstorable(self, unstorable: dict[str, str]) -> None:
        new = sorted(set(unstorable) - self.told_unstorable)
        if new:
            self.told_unstorable.update(new)
            names = ", ".join(new)
            self.journal.notify(
                f"Note: {names} cannot be stored ({unstorable[new[0]]}); after a restart "
                f"{'it is' if len(new) == 1 else 'they are'} rebuilt by replaying the cells that made {'it' if len(new) == 1 else 'them'}."
            )

    # -- what the next checkpoint does (the idle check, %persist) -------------------------

    def verify_when_idle(self) -> None:
        """Hash every name against the store (the caller holds the turn); journal an event
        storing what changed without a cell naming it (e.g. by a background thread)."""
        with self.namespace_lock:
            findings = self.checkpointer.verify()
        if not findings["changed"] and not findings["unstored"]:
            self.checkpointer.full_pass = False  # verify() asks the next checkpoint for one: nothing is left to find
            return
        self.log.info("persistent_kernel: idle check stores %s", ", ".join(findings["changed"] + findings["unstored"]))
        self.record_event("verify")

    def checkout(self, records: list[rec.CellRecord], target: rec.CellRecord) -> timetravel.Checkout:
        """``%persist checkout``: the namespace as of ``target``, journaled by this cell's checkpoint."""
        result = timetravel.checkout(self.shell, self.journal.store, records, target, self.checkpointer)
        self.checkpointer.checked_out = result.pointers
        return result

    def look_again(self, names: Iterable[str]) -> None:
        """The next checkpoint considers these names whatever the cell did (their exclusion changed)."""
        self.checkpointer.dirty.update(names)

    def resume(self) -> None:
        """``%persist on``: journal again, starting with an event that stores the namespace whole
        (whatever the paused cells did)."""
        self.journal.resume()
        self.checkpointer.full_pass = True
        self.record_event("resume")

    # -- the bookkeeping around a record: never raises ----------------------------------

    def reset_after_failure(self) -> None:
        """Assume nothing is stored: the next checkpoint looks at every name and stores what changed."""
        try:
            self.checkpointer.recover()
            self.process_context.reset(None)
            self.random_states.reset()
        except BaseException:  # noqa: BLE001
            self.log.exception("persistent_kernel: could not reset after a failure")

    def tell_failure(self, doing: str, exc: BaseException, consequence: str) -> None:
        if doing not in self._told_failures:
            self._told_failures.add(doing)
            self.journal.notify(f"Persistence failed {doing} ({type(exc).__name__}: {exc}); {consequence}.")

    def random_state(self) -> dict[str, Any] | None:
        """The random generators' state if it changed; a failure to read it is told, not raised."""
        try:
            return self.random_states.changed_state()
        except Exception as exc:  # noqa: BLE001 - e.g. a library's generator replaced by notebook code
            self.log.exception("persistent_kernel: reading the random state failed")
            self.random_states.reset()
            self.tell_failure("reading the random generators' state", exc, "a replay may draw other numbers")
            return None

    def process_context_changes(self) -> dict[str, Any] | None:
        """The process context (cwd, sys.path, settings …) if it changed; a failure is told, not raised."""
        try:
            return self.process_context.changed()
        except Exception as exc:  # noqa: BLE001 - e.g. a sys.path entry whose str() raises
            self.log.exception("persistent_kernel: reading the process context failed")
            self.process_context.reset(None)
            self.tell_failure(
                "reading the process context (working directory, sys.path, settings)", exc, "a restore may not put it back"
            )
            return None
