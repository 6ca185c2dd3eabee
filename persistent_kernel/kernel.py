"""``PersistentKernel``: the IPython kernel with a write-ahead journal. Wiring only.

Everything it does is delegated: the session comes from ``session``, the journal
from ``journal``, the restore from ``restore``, the magic from ``magics``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any, TypeVar

from ipykernel.ipkernel import IPythonKernel
from traitlets import Bool, Float, Int, List, Unicode

from . import __version__, identity
from . import records as rec
from .checkpoint import Checkpoint, Checkpointer
from .context import ProcessContextTracker, RandomStateTracker
from .events import COMM_MESSAGES, NotebookCodeRecorder, describe_comm_message
from .journal import Journal
from .magics import PersistMagics
from .notice import restore_notice
from .restore import RestoreProgress, RestoreReport, restore_session
from .session import directory_session, persistent_home
from .store import DEFAULT_MAP_SIZE

T = TypeVar("T")


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


class PersistentKernel(IPythonKernel):
    """An IPython kernel whose session survives the death of its process."""

    implementation = "persistent_kernel"
    implementation_version = __version__

    persist = Bool(True, help="Journal cells and restore the session on start. False makes this a plain IPython kernel.").tag(config=True)
    sync_interval = Float(
        1.0,
        help=(
            "Seconds between background fsyncs of the journal. Kernel death never loses a committed cell; "
            "an OS crash or power loss can lose the last interval. 0 fsyncs every commit (about 0.3 ms each)."
        ),
    ).tag(config=True)
    map_size = Int(DEFAULT_MAP_SIZE, help="Initial LMDB map size in bytes (address space; it doubles when full).").tag(config=True)
    max_store_size = Int(0, help="Upper limit in bytes for a session's store; 0 means only the disk limits it.").tag(config=True)
    idle_verify_delay = Float(
        5.0,
        help=(
            "Seconds of idleness after a cell before a full check hashes every variable against the store "
            "(catching mutations no cell named, e.g. by a background thread). 0 turns it off."
        ),
    ).tag(config=True)
    idle_verify_max_bytes = Int(
        64 * 1024**2,
        help="The idle check runs only while the stored namespace is at most this many bytes (it hashes all of it).",
    ).tag(config=True)
    large_blob_bytes = Int(
        16 * 1024**2,
        help=(
            "Buffers of this many bytes or more (big arrays, DataFrame blocks) are written to files in the background "
            "after the cell's reply, instead of inside the cell's transaction. Until a write lands, a crash restores "
            "the value from its previous version and replays the cells since. 0 writes everything before the reply."
        ),
    ).tag(config=True)
    land_before_reply_bytes = Int(
        256 * 1024**2,
        help=(
            "A cell whose large values add up to at most this many bytes replies only once they are on disk, so a kill "
            "right after the reply cannot lose them (a replay might not reproduce them: random draws, the clock, a changed "
            "file). Larger values are written in the background; one lost in its landing window is rebuilt by replay and, "
            "if the replay gives other bytes, named in the restore summary. 0: always in the background."
        ),
    ).tag(config=True)
    history_budget = Int(
        2 * 1024**3,
        help=(
            "Bytes of large values kept for past versions (time travel). Beyond it the oldest past versions are "
            "pruned; the latest version of every variable is never pruned. -1 keeps everything."
        ),
    ).tag(config=True)
    write_throttle = Float(
        0.0,
        help="Limit, in MB/s, on the background writer's disk bandwidth (leaves the disk to your own I/O). 0: no limit.",
    ).tag(config=True)
    shutdown_drain_timeout = Float(
        4.0,
        help=(
            "Seconds a shutdown waits for background writes to land. What does not land in time is rebuilt at the "
            "next start from the previous version plus replay. (Frontends kill a kernel 5 s after asking it to stop.)"
        ),
    ).tag(config=True)
    exclude = List(
        Unicode(),
        help=(
            "Names or shell-style patterns never stored, in every session (e.g. ['*_token', 'password']); "
            "%persist exclude adds more per session. After a restart such a name is recomputed by replay if "
            "its cells are quick (excluded_replay_limit), otherwise absent."
        ),
    ).tag(config=True)
    excluded_replay_limit = Float(
        2.0,
        help="Seconds of recorded cell time a restart may spend replaying cells to recompute an excluded name.",
    ).tag(config=True)
    lock_timeout = Float(5.0, help="Seconds to wait for a session held by another kernel (a restart in progress) before running without persistence.").tag(config=True)
    advertise_subshells = Bool(
        False,
        help=(
            "Tell frontends this kernel has subshells (JupyterLab then routes widget comm messages to one). "
            "Subshells work either way when a client creates one; executions on them take turns with the main "
            "shell (the journal has one order), and a comm message handled while a cell runs commits with that cell."
        ),
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._connection_file = getattr(self.parent, "abs_connection_file", None) or getattr(self.parent, "connection_file", None)
        self._start_cwd = os.getcwd()
        start = identity.at_start(connection_file=self._connection_file, cwd=self._start_cwd)
        self.session_info = start.session  # None until the first execution says, or for good (``_identity_off``)
        self._identity_off = start.off
        self._identity_pending = False
        self._notice_parts: list[str] | None = None  # the restore summary, shown in the first visible cell
        self.journal = Journal(
            self.session_info,
            map_size=self.map_size,
            max_store_size=self.max_store_size,
            sync_interval=self.sync_interval,
            lock_timeout=self.lock_timeout,
            history_budget=self.history_budget,
            write_throttle=self.write_throttle * 1e6,
            land_before_reply_bytes=self.land_before_reply_bytes,
        )
        self.restore_report: RestoreReport | None = None
        self.random_states = RandomStateTracker()
        self.checkpointer = Checkpointer(self.shell, large_blob_bytes=self.large_blob_bytes)
        self.journal.on_unlanded = lambda job, _reason: self.checkpointer.unlanded.add(job.version_key.hex())
        self.process_context = ProcessContextTracker(self.shell)
        self._told_unstorable: set[str] = set()
        self._told_failures: set[str] = set()  # kinds of persistence failure the user was told of
        self._idle_check: Any = None
        self._last_activity = time.monotonic()
        # One execution or event at a time, whatever shell or thread it comes from: the journal has
        # one order, and a checkpoint's identity scan never sees half of another execution's changes.
        self._turn = threading.Lock()
        self._turn_owner: int | None = None
        # A comm handler running user code and a checkpoint scanning the namespace never overlap.
        self._namespace_lock = threading.RLock()
        # Comm messages handled while the turn was held (an awaiting cell, a cell on another shell):
        # (what set it off, the notebook code it ran, whether that record is complete). The next
        # checkpoint takes them: the cell's own, or an event when the turn is given back.
        self._folded: list[tuple[str, set[types.CodeType], bool]] = []
        if self.persist:
            for msg_type in COMM_MESSAGES:
                handler = self.shell_handlers.get(msg_type)
                if handler is not None:
                    self.shell_handlers[msg_type] = functools.partial(self._handle_comm, handler)
        if self.shell is not None:
            self.shell.register_magics(
                PersistMagics(
                    self.shell,
                    self.journal,
                    self.checkpointer,
                    checkpoint_now=self._checkpoint_event,
                    configured_exclusions=list(self.exclude),
                )
            )

    @property
    def banner(self) -> str:
        # IPython's banner draws a random tip with `random.choice`: every kernel_info
        # request (each frontend sends one) would move the session's restored generator.
        state = random.getstate()
        try:
            text = super().banner
        finally:
            random.setstate(state)
        return text + f"persistent_kernel {__version__}: this session survives kernel crashes.\n"

    @property
    def kernel_info(self) -> dict[str, Any]:
        info = super().kernel_info
        # Executions on a subshell wait for the main shell's cell (one journal order), which
        # would make a frontend's subshell no faster than the main shell: by default advertise
        # none, so JupyterLab keeps everything on the main shell, as with a kernel without them.
        if not self.advertise_subshells:
            info["supported_features"] = [f for f in info.get("supported_features", []) if f != "kernel subshells"]
        return info

    def restore(self) -> None:
        """Called once at start, before any request: restore now, or wait for the first execution.

        A kernel whose environment does not say which notebook it runs (VS Code,
        nbclient, ``jupyter console``) touches no session until its first
        execution tells (see ``identity``); that execution restores, then runs.
        """
        if self.persist and self.session_info is None and self._identity_off is None:
            self._identity_pending = True
            self.journal.turn_off("waiting for the first execution, which tells which notebook this kernel runs")
            return
        self._restore_session()

    def _identify_from_first_execution(self, request: dict[str, Any]) -> None:
        self._identity_pending = False
        try:
            session = identity.from_first_execution(request["code"], bool(request["allow_stdin"]), cwd=self._start_cwd)
        except Exception:  # noqa: BLE001 - never the cell's problem: fall back to the directory, as before
            self.log.exception("persistent_kernel: could not tell the session from the first execution")
            session = directory_session(self._start_cwd, persistent_home())
        self.session_info = session
        self.journal.identify(session)
        self.journal.problem = None
        self._restore_session()

    def _restore_session(self) -> None:
        """Open the session's journal and rebuild the namespace."""
        # ipykernel and IPython set a few variables while starting (MPLBACKEND, PAGER …):
        # only what cells change afterwards is the session's.
        self.process_context.rebase()
        if not self.persist:
            self.journal.turn_off("turned off by configuration (PersistentKernel.persist = False)")
            return
        if self.session_info is None:
            self.journal.turn_off(self._identity_off or "no session")
            self.log.info("persistent_kernel: persistence is off: %s", self.journal.problem)
            return
        renamed = self._follow_rename()
        if not self.journal.open():
            self.log.warning("persistent_kernel: %s", self.journal.problem)
            return
        self.checkpointer.set_excluded(sorted(set(self.exclude) | set(self.journal.get_meta("excluded") or [])))
        progress = RestoreProgress.to_kernel_log()
        try:
            # Inside the builtin trap, as a cell runs: a library first imported while a value is
            # loaded (pandas, tqdm.auto, plotly) looks for `get_ipython` among the builtins to
            # tell a kernel from a terminal, and would otherwise decide it runs in a terminal.
            with self.shell.builtin_trap:
                restored = restore_session(
                    self.shell,
                    self.journal,
                    progress=progress,
                    excluded_replay_limit=self.excluded_replay_limit,
                    definitions=self.checkpointer.definitions,
                )
        except BaseException as exc:  # noqa: BLE001 - a restore must never stop the kernel (SystemExit, an interrupt)
            self.log.exception("persistent_kernel: the restore failed")
            self.journal.notify(
                f"The session could not be fully restored ({type(exc).__name__}: {exc}); some variables may be "
                "missing. The journal is intact and cells you run are journaled as usual."
            )
            self.journal.set_meta(replaying=None, loading=None)  # the failure was ours, not a cell's
            restored = None
        finally:
            progress.finish()
        try:
            if restored is not None:
                self.restore_report, states = restored
                # What was rebuilt by replay is checkpointed again by the next cell; the
                # summary already said it cannot be stored, so no note repeats it.
                self.checkpointer.adopt(states, dirty=set(self.restore_report.recomputed))
                self._told_unstorable.update(self.restore_report.recomputed)
                self._notice_parts = self.restore_report.summary_parts() + ([f"({renamed}.)"] if renamed else [])
                self.log.info("persistent_kernel: %s", " ".join(self._notice_parts))
            else:
                self.checkpointer.adopt({})
                if self.journal.records():
                    self.checkpointer.recover()  # a restore that failed: store what is live now, whole
        except Exception:  # noqa: BLE001 - start with nothing assumed stored: the next cell stores everything
            self.log.exception("persistent_kernel: could not take over the restored state")
            self.checkpointer.adopt({})
            self.checkpointer.recover()
        self.process_context.reset(self.process_context.capture())

    def _follow_rename(self) -> str | None:
        """A notebook renamed since this kernel first started: its session follows the new name."""
        assert self.session_info is not None
        try:
            session, note = identity.follow_rename(self.session_info, self._connection_file, self.lock_timeout)
        except Exception:  # noqa: BLE001 - the session under the current name is still right to open
            self.log.exception("persistent_kernel: could not follow a rename")
            return None
        if session != self.session_info:
            self.session_info = session
            self.journal.identify(session)
        if note:
            self.log.info("persistent_kernel: %s", note)
        return note

    async def do_execute(
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict | None = None,
        allow_stdin: bool = False,
        *,
        cell_meta: dict | None = None,
        cell_id: str | None = None,
    ) -> dict[str, Any]:
        request = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions,
            "allow_stdin": allow_stdin,
            "cell_meta": cell_meta,
            "cell_id": cell_id,
        }
        if self._turn_owner == threading.get_ident():
            # Run from inside a running cell (a UI-polling loop processing requests): part of that cell.
            return await self._execute_within_turn(request)
        took_turn = self.persist
        if took_turn:
            try:
                while not self._take_turn():  # another shell's cell or event: wait without blocking this event loop
                    await asyncio.sleep(0.005)
            except (KeyboardInterrupt, asyncio.CancelledError):  # interrupted before it started: nothing ran
                return {"status": "aborted", "execution_count": self.shell.execution_count}
        try:
            return await self._journaled_execute(request)
        finally:
            if took_turn:
                self._release_turn()

    async def _journaled_execute(self, request: dict[str, Any]) -> dict[str, Any]:
        code = request["code"]
        # What persistence tells the user goes to the user's cells: a frontend's own executions
        # (VS Code's start-up code, its variable queries) leave the history alone and show nothing.
        users_cell = not request["silent"] and bool(request["store_history"])
        try:
            record = self._guarded("preparing to journal the cell", self._before_cell, request, users_cell, interruptible=True)
        except KeyboardInterrupt:
            # The user interrupted before the cell began (a click on stop as it was sent): as
            # with an interrupt while it waits for its turn, it does not run. A record already
            # written ahead is kept as "ran, outcome not recorded" by the next cell's.
            return {"status": "aborted", "execution_count": self.shell.execution_count}
        started = time.monotonic()
        reply = None
        try:
            reply = await super().do_execute(**request)
            return reply
        finally:
            if record is not None:
                self._guarded("journaling the cell", self._after_cell, record, code, reply, time.monotonic() - started)
            if users_cell:
                self._guarded("showing notices", self._show_notices)

    def _before_cell(self, request: dict[str, Any], users_cell: bool) -> rec.CellRecord | None:
        if self._identity_pending:
            self._identify_from_first_execution(request)
        if users_cell:
            self._show_restore_notice()
            self._show_notices()
        code = request["code"]
        return self.journal.begin(
            code,
            execution_count=self.shell.execution_count,
            silent=request["silent"],
            store_history=request["store_history"],
            cell_id=request["cell_id"],
            random_state_before=self._random_state() if self.journal.journals(code) else None,
        )

    def _after_cell(self, record: rec.CellRecord, code: str, reply: dict[str, Any] | None, duration: float) -> None:
        self._checkpoint(record, code, reply, duration)
        self._schedule_idle_check()

    def _guarded(self, doing: str, step: Callable[..., T], *args: Any, interruptible: bool = False) -> T | None:
        """The boundary where a failure of persistence becomes a notice: around a cell, nothing raises.

        An exception here would replace the cell's execute_reply, and the frontend would wait
        for it forever. What failed is logged, the user is told once per kind, and the next
        checkpoint stores the namespace whole. ``interruptible``: a KeyboardInterrupt is the
        caller's to handle (before a cell it means "do not run it").
        """
        try:
            return step(*args)
        except KeyboardInterrupt:
            if interruptible:
                raise
            self.log.warning("persistent_kernel: an interrupt arrived while %s; the journal is intact", doing)
            self._reset_after_failure()
            return None
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a library, anything: never the reply's problem
            self.log.exception("persistent_kernel: %s failed", doing)
            self._tell_failure(doing, exc, "the cell ran as usual; the next cell stores the namespace whole")
            self._reset_after_failure()
            return None

    def _reset_after_failure(self) -> None:
        """Assume nothing is stored: the next checkpoint looks at every name and stores what changed."""
        try:
            self.checkpointer.recover()
            self.process_context.reset(None)
            self.random_states.reset()
        except BaseException:  # noqa: BLE001
            self.log.exception("persistent_kernel: could not reset after a failure")

    def _tell_failure(self, doing: str, exc: BaseException, consequence: str) -> None:
        if doing not in self._told_failures:
            self._told_failures.add(doing)
            self.journal.notify(f"Persistence failed {doing} ({type(exc).__name__}: {exc}); {consequence}.")

    def _random_state(self) -> dict[str, Any] | None:
        """The random generators' state if it changed; a failure to read it is told, not raised."""
        try:
            return self.random_states.changed_state()
        except Exception as exc:  # noqa: BLE001 - e.g. a library's generator replaced by notebook code
            self.log.exception("persistent_kernel: reading the random state failed")
            self.random_states.reset()
            self._tell_failure("reading the random generators' state", exc, "a replay may draw other numbers")
            return None

    def _process_context(self) -> dict[str, Any] | None:
        """The process context (cwd, sys.path, settings …) if it changed; a failure is told, not raised."""
        try:
            return self.process_context.changed()
        except Exception as exc:  # noqa: BLE001 - e.g. a sys.path entry whose str() raises
            self.log.exception("persistent_kernel: reading the process context failed")
            self.process_context.reset(None)
            self._tell_failure(
                "reading the process context (working directory, sys.path, settings)", exc, "a restore may not put it back"
            )
            return None

    async def _execute_within_turn(self, request: dict[str, Any]) -> dict[str, Any]:
        """An execution nested in the running one: its changes go with the running cell's checkpoint."""
        with NotebookCodeRecorder(self.shell.user_ns) as recorder:
            try:
                return await super().do_execute(**request)
            finally:
                with self._namespace_lock:
                    self._folded.append(("execution inside a running cell", recorder.codes, recorder.complete))

    # -- turns: one execution or event at a time -----------------------------------------

    def _take_turn(self) -> bool:
        if not self._turn.acquire(blocking=False):
            return False
        self._turn_owner = threading.get_ident()
        return True

    def _release_turn(self) -> None:
        """Give the turn back, first committing comm messages handled while it was held."""
        while True:
            with self._namespace_lock:
                if not self._folded:
                    self._turn_owner = None
                    self._turn.release()
                    return
            try:
                self._checkpoint_event("comm", only_if_changed=True)
            except Exception:  # noqa: BLE001 - a failed event must not keep the turn
                self.log.exception("persistent_kernel: journaling comm messages failed")
                with self._namespace_lock:
                    self._folded.clear()
                self.checkpointer.recover()

    def _handle_comm(self, handler: Any, stream: Any, idents: Any, msg: dict[str, Any]) -> Any:
        """A comm message from the frontend: run its handler, then journal what it changed.

        With the turn free, its changes commit as an event of their own. With the turn
        held (a cell awaiting on this shell, a cell on another shell), they are left to
        that cell's checkpoint: committing them apart would store half of the cell.
        """
        trigger = describe_comm_message(msg, getattr(self, "comm_manager", None))  # before a comm_close removes it
        try:
            with self._namespace_lock, NotebookCodeRecorder(self.shell.user_ns) as recorder:
                try:
                    return handler(stream, idents, msg)
                finally:
                    self._folded.append((trigger, recorder.codes, recorder.complete))
        finally:
            if self._take_turn():
                self._release_turn()

    def _schedule_idle_check(self) -> None:
        # One timer at a time; when it fires early (cells ran since) it sets itself again for
        # the rest of the delay. Re-arming a tornado timeout after every cell costs more.
        self._last_activity = time.monotonic()
        loop = getattr(self, "io_loop", None)
        if loop is None or self.idle_verify_delay <= 0 or self._idle_check is not None:
            return
        self._idle_check = loop.call_later(self.idle_verify_delay, self._idle_verify)

    def _idle_verify(self) -> None:
        """When the kernel has been idle a while and the namespace is small, store what cells did not show."""
        self._idle_check = None
        idle_for = time.monotonic() - self._last_activity
        if idle_for < self.idle_verify_delay:  # cells ran since the timer was set
            self._idle_check = self.io_loop.call_later(max(self.idle_verify_delay - idle_for, 0.05), self._idle_verify)
            return
        if not self.journal.active or self.checkpointer.stored_bytes() > self.idle_verify_max_bytes:
            return
        if not self._take_turn():  # a cell is running or awaiting (its own checkpoint comes first): check after it
            self._idle_check = self.io_loop.call_later(self.idle_verify_delay, self._idle_verify)
            return
        try:
            with self._namespace_lock:
                findings = self.checkpointer.verify()
            if not findings["changed"] and not findings["unstored"]:
                self.checkpointer.full_pass = False
                return
            self.log.info("persistent_kernel: idle check stores %s", ", ".join(findings["changed"] + findings["unstored"]))
            self._checkpoint_event("verify")
        except Exception:  # noqa: BLE001 - a background check must never disturb the session
            self.log.exception("persistent_kernel: idle check failed")
        finally:
            self._release_turn()

    def _checkpoint_event(self, kind: str, *, only_if_changed: bool = False) -> None:
        """Journal a change no cell's code made (an idle check, %persist on, widget callbacks) and store it.

        The caller holds the turn. Comm messages handled meanwhile are part of the event
        (their notebook code widens its reads). With ``only_if_changed`` an event that
        changed nothing leaves no journal entry: most comm messages (a widget asking for
        its state, an echo of a value) run no user code.
        """
        if not self.journal.journals_events:
            with self._namespace_lock:
                self._folded.clear()
            return
        seq = self.journal.next_seq
        checkpoint, handled = self._prepare(seq, "")
        random_state_after = self._random_state()
        context = self._process_context()
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

    def _checkpoint(self, record: rec.CellRecord, code: str, reply: dict[str, Any] | None, duration: float) -> None:
        """Commit the cell's outcome and namespace changes in one transaction."""
        checkpoint, handled = self._prepare(record.seq, code)
        if handled:
            record.handled_during = handled
        self._commit(record, reply, duration, checkpoint, self._random_state(), self._process_context())

    def _prepare(self, seq: int, code: str) -> tuple[Checkpoint | None, list[str]]:
        """The namespace changes of ``code`` and of the comm messages handled since the last checkpoint."""
        with self._namespace_lock:
            folded, self._folded = self._folded, []
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
        new = sorted(set(unstorable) - self._told_unstorable)
        if new:
            self._told_unstorable.update(new)
            names = ", ".join(new)
            self.journal.notify(
                f"Note: {names} cannot be stored ({unstorable[new[0]]}); after a restart "
                f"{'it is' if len(new) == 1 else 'they are'} rebuilt by replaying the cells that made {'it' if len(new) == 1 else 'them'}."
            )

    def _show_restore_notice(self) -> None:
        """The restore summary, once, as information in the cell's output (``notice``)."""
        parts, self._notice_parts = self._notice_parts, None
        if parts:
            from IPython.display import publish_display_data

            data, metadata = restore_notice(parts)
            publish_display_data(data, metadata=metadata)

    def _show_notices(self) -> None:
        """Tell the user, once, what persistence did or could not do (on the cell's stderr)."""
        notices = self.journal.take_notices()
        if notices:
            sys.stderr.write("\n".join(notices) + "\n")
            sys.stderr.flush()

    def do_shutdown(self, restart: bool) -> dict[str, Any]:
        # Runs on the control thread; the journal's lock makes the close wait
        # for a commit in progress on the shell thread.
        reply = super().do_shutdown(restart)
        self.journal.close(drain_timeout=self.shutdown_drain_timeout)
        if not restart:  # a restart keeps the connection file: a rename is followed by its record
            identity.forget_kernel(self.session_info, self._connection_file)
        return reply
