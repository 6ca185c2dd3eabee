"""``PersistentKernel``: the IPython kernel with a write-ahead journal. Wiring only.

Everything it does is delegated: the session and its restore to ``startup``, what
a cell or an event leaves in the journal (and the turn they take) to ``recorder``,
the journal to ``journal``, the idle check to ``idlecheck``, the magic to ``magics``.
What stays here is configuration, the ``do_*`` overrides and the boundary around a cell.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ipykernel.ipkernel import IPythonKernel
from traitlets import Bool, Float, Int, List, Unicode

from . import __version__, identity, termination
from . import records as rec
from .checkpoint import Checkpointer
from .context import ProcessContextTracker, RandomStateTracker
from .events import COMM_MESSAGES, NotebookCodeRecorder
from .historywrites import HistoryWrites
from .idlecheck import IdleCheck
from .journal import Journal
from .magics import PersistMagics
from .panel import SessionPanel
from .recorder import SessionRecorder
from .replica import REPLICA_ENV
from .restorereport import RestoreReport
from .session import Session
from .startup import SessionStartup
from .store import DEFAULT_MAP_SIZE

T = TypeVar("T")


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
    settle_delay = Float(
        -1.0,
        help=(
            "Opt-in (off while negative, the default): seconds after a reply before a small cell's commit moves from "
            "the outcome slot (a memory copy, already safe from a kill) into LMDB; 0.005 measured best (at once, it "
            "competes with the IOPub thread sending the idle status). A request arriving sooner commits it first. "
            "Off by default because a reader opening the store while a commit waits (a command-line tool after a "
            "crash, before the next kernel takes the slot in) sees that cell's outcome but not yet its variables."
        ),
    ).tag(config=True)
    event_commit_delay = Float(
        0.005,
        help=(
            "Comm messages handled between cells (a widget drag, a button) are committed together once none came "
            "for this many seconds, at most 0.1 s after the first, and before any cell runs: a drag pays one "
            "transaction per burst, not per message. A kill loses at most that window of messages; the store is "
            "always at the state after some message or cell. Negative: each message commits before the kernel "
            "reports idle."
        ),
    ).tag(config=True)
    history_write_delay = Float(
        1.0,
        help=(
            "Seconds of idleness after which IPython's history database (%history -g, a console's arrow-up history) "
            "is written, in one commit for the cells since; also every 100 cells and at exit. IPython's default commits "
            "every cell from a thread that competes with the cell's reply (about 1 ms a cell). The journal holds every "
            "cell, so a kill loses none: the next kernel writes what was not written. 0: every cell, as IPython does. "
            "A HistoryManager.db_cache_size you configure is kept as it is."
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
    replica = Unicode(
        "",
        help=(
            "An fsspec URL (s3://bucket/prefix, gs://…, az://…, file:///shared/dir) the session is replicated to, in "
            "the background after each commit: a kernel on another node with an empty disk restores from it. "
            "Default: $PERSISTENT_KERNEL_REPLICA. Credentials come from the environment (AWS_ACCESS_KEY_ID, "
            "AWS_ENDPOINT_URL …); both nodes need the same key (PERSISTENT_KERNEL_KEY_FILE) to trust what they read."
        ),
    ).tag(config=True)
    termination_deadline = Float(
        10.0,
        help=(
            "Seconds the kernel takes after SIGTERM (a preempted or culled pod, docker stop) to finish the commit in "
            "progress, land or call off large writes and flush the replica before it exits. Keep it below the pod's "
            "grace period (terminationGracePeriodSeconds, 30 s by default)."
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
        connection_file = getattr(self.parent, "abs_connection_file", None) or getattr(self.parent, "connection_file", None)
        cwd = os.getcwd()
        start = identity.at_start(connection_file=connection_file, cwd=cwd)
        self.journal = Journal(
            start.session,  # None until the first execution says, or for good (``start.off``)
            map_size=self.map_size,
            max_store_size=self.max_store_size,
            sync_interval=self.sync_interval,
            lock_timeout=self.lock_timeout,
            history_budget=self.history_budget,
            write_throttle=self.write_throttle * 1e6,
            land_before_reply_bytes=self.land_before_reply_bytes,
            replica_url=self.replica or os.environ.get(REPLICA_ENV) or None,
        )
        termination.install(self.journal, self.termination_deadline, self.log, before_close=lambda: self.recorder.flush_events())
        self.random_states = RandomStateTracker()
        self.checkpointer = Checkpointer(self.shell, large_blob_bytes=self.large_blob_bytes)
        self.journal.on_unlanded = lambda job, _reason: self.checkpointer.unlanded.add(job.version_key.hex())
        self.process_context = ProcessContextTracker(self.shell)
        self.recorder = SessionRecorder(self.shell, self.journal, self.checkpointer, self.random_states, self.process_context, self.log)
        self.journal.activity = self.recorder.activity  # the replica ships between cells
        self.history_writes = HistoryWrites(self.shell, self.log, delay=self.history_write_delay, loop=lambda: getattr(self, "io_loop", None))
        self.startup = SessionStartup(
            self.shell,
            self.journal,
            self.checkpointer,
            self.recorder,
            self.process_context,
            self.log,
            connection_file=connection_file,
            cwd=cwd,
            identity_off=start.off,
            persist=self.persist,
            exclude=list(self.exclude),
            excluded_replay_limit=self.excluded_replay_limit,
            lock_timeout=self.lock_timeout,
            history_writes=self.history_writes,
        )
        self.idle_check = IdleCheck(
            self.recorder,
            self.journal,
            self.checkpointer,
            self.log,
            delay=self.idle_verify_delay,
            max_bytes=self.idle_verify_max_bytes,
            loop=lambda: getattr(self, "io_loop", None),
        )
        # The session panel (JupyterLab / Notebook 7 extension) asks through a comm of its own.
        self.panel = SessionPanel(self.journal, lambda: self.restore_report, self.shell)
        self.recorder.after_commit = self._after_commit
        self.journal.when_idle = self._when_idle
        self.recorder.schedule = self._schedule
        self.recorder.event_commit_delay = self.event_commit_delay
        comm_manager = getattr(self, "comm_manager", None)
        if comm_manager is not None:
            self.panel.register(comm_manager)
        if self.persist:
            # Widget callbacks run user code outside any cell: journaled as events (``recorder.handle_comm``).
            for msg_type in COMM_MESSAGES:
                handler = self.shell_handlers.get(msg_type)
                if handler is not None:
                    self.shell_handlers[msg_type] = functools.partial(self._comm_message, handler)
        if self.shell is not None:
            self.shell.register_magics(
                PersistMagics(self.shell, self.journal, self.checkpointer, self.recorder, configured_exclusions=list(self.exclude))
            )

    def _schedule(self, delay: float, call: Callable[[], None]) -> bool:
        """Run ``call`` on the kernel's event loop ``delay`` seconds from now (from any thread); False: no loop yet."""
        loop = getattr(self, "io_loop", None)
        if loop is None:
            return False
        if threading.current_thread() is threading.main_thread():
            loop.call_later(delay, call)
        else:  # a subshell's thread: only add_callback may reach the main loop from another thread
            loop.add_callback(loop.call_later, delay, call)
        return True

    def _when_idle(self, call: Callable[[], None]) -> bool:
        """Run ``call`` on the event loop ``settle_delay`` after the current request is answered;
        False: the outcome slot is off (the default), or there is no loop yet.

        Not at once: the IOPub thread is then sending the reply's idle status, and the call's
        work would hold up exactly that. A request arriving sooner finds it done by its own
        commit (``Store.settle`` runs first), so the wait never delays anything.
        """
        return self.settle_delay >= 0 and self._schedule(self.settle_delay, call)

    def _after_commit(self, went_in: bool) -> None:
        """A cell or event was committed (or failed to be): the replica ships it, the panels hear of it."""
        if went_in and self.journal.replica is not None:
            self.journal.replica.nudge()
        self.panel.committed(went_in)

    def _comm_message(self, handler: Callable[..., Any], stream: Any, idents: Any, msg: dict[str, Any]) -> Any:
        if self.panel.is_panel_message(msg):
            return handler(stream, idents, msg)  # the panel's questions run no user code: not an event
        return self.recorder.handle_comm(handler, getattr(self, "comm_manager", None), stream, idents, msg)

    @property
    def session_info(self) -> Session | None:
        """This kernel's session (the journal's); None while the first execution has yet to say, or for good."""
        return self.journal.session

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

    @property
    def restore_report(self) -> RestoreReport | None:
        """What the last restore found (None before one, or without persistence)."""
        return self.startup.report

    def restore(self) -> None:
        """Called once at start (by the launcher), before any request: restore now, or at the first execution."""
        self.startup.at_start()

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
        if self.recorder.holds_turn():
            # Run from inside a running cell (a UI-polling loop processing requests): part of that cell.
            return await self._execute_within_turn(request)
        took_turn = self.persist
        if took_turn:
            try:
                while not self.recorder.take_turn():  # another shell's cell or event: wait without blocking this event loop
                    await asyncio.sleep(0.005)
            except (KeyboardInterrupt, asyncio.CancelledError):  # interrupted before it started: nothing ran
                return {"status": "aborted", "execution_count": self.shell.execution_count}
        try:
            return await self._journaled_execute(request)
        finally:
            if took_turn:
                self.recorder.release_turn()

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
                self._guarded("scheduling the history write", self.history_writes.after_cell)

    def _before_cell(self, request: dict[str, Any], users_cell: bool) -> rec.CellRecord | None:
        if self.startup.waiting_for_first_execution:
            self.startup.from_first_execution(request)
        if users_cell:
            self.startup.show_restore_notice()
            self._show_notices()
        return self.recorder.begin_cell(request)

    def _after_cell(self, record: rec.CellRecord, code: str, reply: dict[str, Any] | None, duration: float) -> None:
        self.recorder.record_cell(record, code, reply, duration)
        self.idle_check.after_cell()

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
            self.recorder.reset_after_failure()
            return None
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a library, anything: never the reply's problem
            self.log.exception("persistent_kernel: %s failed", doing)
            self.recorder.tell_failure(doing, exc, "the cell ran as usual; the next cell stores the namespace whole")
            self.recorder.reset_after_failure()
            return None

    async def _execute_within_turn(self, request: dict[str, Any]) -> dict[str, Any]:
        """An execution nested in the running one: its changes go with the running cell's checkpoint."""
        with NotebookCodeRecorder(self.shell.user_ns) as recorder:
            try:
                return await super().do_execute(**request)
            finally:
                self.recorder.fold("execution inside a running cell", recorder.codes, recorder.complete)

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
        self.recorder.flush_events()  # comm messages waiting for their group commit
        self.journal.close(drain_timeout=self.shutdown_drain_timeout)
        self.startup.kernel_stopped(restart)
        return reply
