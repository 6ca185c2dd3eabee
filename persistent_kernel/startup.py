"""Which session a kernel is, and its restore: at start, or at its first execution.

A kernel whose environment says which notebook it runs restores before any
request. One that cannot tell (VS Code, nbclient, ``jupyter console``) touches no
session until its first execution tells (see ``identity``); that execution
restores, then runs. Either way the summary is shown once, in the first user cell.
"""

from __future__ import annotations

from typing import Any

from . import identity
from .historywrites import META_KEY as HISTORY_META
from .historywrites import HistoryWrites, this_kernels_session, write_missing
from .notice import restore_notice
from .restore import restore_session
from .restorereport import RestoreProgress, RestoreReport
from .session import directory_session, persistent_home, placement_note


class SessionStartup:
    """The kernel's session identified, opened and restored; what the restore found, told once."""

    def __init__(
        self,
        shell: Any,
        journal: Any,
        checkpointer: Any,
        recorder: Any,
        process_context: Any,
        log: Any,
        *,
        connection_file: str | None,
        cwd: str,
        identity_off: str | None,
        persist: bool,
        exclude: list[str],
        excluded_replay_limit: float,
        lock_timeout: float,
        history_writes: HistoryWrites | None = None,
    ) -> None:
        self.shell = shell
        self.journal = journal
        self.checkpointer = checkpointer
        self.recorder = recorder
        self.process_context = process_context
        self.log = log
        self.connection_file = connection_file
        self.cwd = cwd  # the kernel's working directory at start (a session's last resort)
        self.identity_off = identity_off  # why this kernel has no session for good (Voila), if so
        self.persist = persist
        self.exclude = exclude
        self.excluded_replay_limit = excluded_replay_limit
        self.lock_timeout = lock_timeout
        self.history_writes = history_writes
        self.waiting_for_first_execution = False
        self.report: RestoreReport | None = None
        self._notice_parts: list[str] | None = None  # the restore summary, shown in the first visible cell

    def at_start(self) -> None:
        """Called once at start, before any request: restore now, or wait for the first execution."""
        if self.persist and self.journal.session is None and self.identity_off is None:
            self.waiting_for_first_execution = True
            self.journal.turn_off("waiting for the first execution, which tells which notebook this kernel runs")
            return
        self._restore()

    def from_first_execution(self, request: dict[str, Any]) -> None:
        """The first execution tells the session (when start could not): open and restore it, before the cell runs."""
        self.waiting_for_first_execution = False
        try:
            session = identity.from_first_execution(request["code"], bool(request["allow_stdin"]), cwd=self.cwd)
        except Exception:  # noqa: BLE001 - never the cell's problem: fall back to the directory, as before
            self.log.exception("persistent_kernel: could not tell the session from the first execution")
            session = directory_session(self.cwd, persistent_home())
        self.journal.identify(session)
        self._restore()

    def _restore(self) -> None:
        """Open the session's journal and rebuild the namespace."""
        # ipykernel and IPython set a few variables while starting (MPLBACKEND, PAGER …):
        # only what cells change afterwards is the session's.
        self.process_context.rebase()
        if not self.persist:
            self.journal.turn_off("turned off by configuration (PersistentKernel.persist = False)")
            return
        if self.journal.session is None:
            self.journal.turn_off(self.identity_off or "no session")
            self.log.info("persistent_kernel: persistence is off: %s", self.journal.problem)
            return
        renamed = self._follow_rename()
        if not self.journal.open():
            self.log.warning("persistent_kernel: %s", self.journal.problem)
            return
        moved = placement_note(self.journal.session.home)
        if moved:  # the configured location is on NFS, SMB, FUSE …: said once, in the first cell
            self.journal.notify(moved)
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
                self.report, states, stale = restored
                # What was rebuilt although its value was stored is stored again by the next cell;
                # the summary already said why, so no note repeats it. A value that cannot be
                # stored is not looked at again: its recompute version says what the store holds.
                self.checkpointer.adopt(states, dirty=stale)
                self.recorder.told_unstorable.update(self.report.recomputed)
                self._notice_parts = self.report.summary_parts() + ([f"({renamed}.)"] if renamed else [])
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
        self._take_over_history()

    def _take_over_history(self) -> None:
        """Complete the previous kernel's history from the journal; then batch this kernel's (``historywrites``)."""
        if self.history_writes is None or not self.journal.active:
            return
        history = self.history_writes.history
        try:
            written = write_missing(history, self.journal.get_meta(HISTORY_META), self.journal.records, self.log)
            if written:
                self.log.info("persistent_kernel: wrote %d inputs the previous kernel had not written to the history", written)
            ours = this_kernels_session(history, self.journal.next_seq)
            self.journal.set_meta(**{HISTORY_META: ours})
        except Exception:  # noqa: BLE001 - the history is a convenience: IPython's own writes stay on
            self.log.exception("persistent_kernel: could not take over the input history")
            return
        if ours is not None and self.journal.active:  # the journal backs the batch
            self.history_writes.start()

    def _follow_rename(self) -> str | None:
        """A notebook renamed since this kernel first started: its session follows the new name."""
        current = self.journal.session
        assert current is not None
        try:
            session, note = identity.follow_rename(current, self.connection_file, self.lock_timeout)
        except Exception:  # noqa: BLE001 - the session under the current name is still right to open
            self.log.exception("persistent_kernel: could not follow a rename")
            return None
        if session != current:
            self.journal.identify(session)
        if note:
            self.log.info("persistent_kernel: %s", note)
        return note

    def show_restore_notice(self) -> None:
        """The restore summary, once, as information in the cell's output (``notice``)."""
        parts, self._notice_parts = self._notice_parts, None
        if parts:
            from IPython.display import publish_display_data

            data, metadata = restore_notice(parts)
            publish_display_data(data, metadata=metadata)

    def kernel_stopped(self, restart: bool) -> None:
        """Shut down for good: forget which session this kernel had. A restart keeps the connection
        file, and with it the record a rename is followed by."""
        if not restart:
            identity.forget_kernel(self.journal.session, self.connection_file)
