"""The write-ahead journal of one session, as the kernel uses it.

Wraps the store with the kernel's rules: a cell's record is committed before it
runs and its outcome after; a failure to persist never raises into the kernel,
it becomes a notice the user sees once and a line in ``%persist status``
(kept by ``health``). Taking the session's lock and opening its store is
``opening``'s; what to do when that fails (set the store aside, run without
persistence) is decided here. No IPython here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import (
    KeyUnusable,
    PersistenceError,
    SessionLocked,
    StoreFromNewerVersion,
    StoreNotAuthenticated,
    StoreOfAnotherSession,
    StoreUnavailable,
    StoreWriteError,
)
from .health import JournalHealth
from .opening import LEFT_ALONE, StoreOpener
from .records import CellRecord
from .replica import ReplicaShipper
from .session import Session, placement_note
from .store import DEFAULT_MAP_SIZE, Store
from .writer import BackgroundWriter, WriteJob

if TYPE_CHECKING:  # the checkpoint is built above us; only its fields are read here
    from .checkpoint import Checkpoint


LAND_BEFORE_REPLY_TIMEOUT = 120.0  # seconds a reply waits for its values to land; then they land in the background

class Journal:
    """The session's journal; inactive (and harmless) when the store could not be opened."""

    def __init__(
        self,
        session: Session | None,
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_store_size: int = 0,
        sync_interval: float = 1.0,
        lock_timeout: float = 5.0,
        history_budget: int = -1,
        write_throttle: float = 0.0,
        land_before_reply_bytes: int = 0,
        replica_url: str | None = None,
    ) -> None:
        self.session = session
        self.replica_url = replica_url or None  # an fsspec URL the session is replicated to (``replica``)
        self.replica: ReplicaShipper | None = None
        self.activity: Callable[[], tuple[bool, int]] | None = None  # whether a cell runs now, and how many have (Recorder.activity)
        self.land_before_reply_bytes = land_before_reply_bytes  # a cell's large values up to this land before it replies
        self.history_budget = history_budget  # bytes of large blobs kept for past versions; -1: all
        self.write_throttle = write_throttle  # bytes/s for the background writer; 0: unlimited
        self.writer: BackgroundWriter | None = None
        self.on_unlanded: Any = None  # called (from the writer thread) with the names of a version that did not land
        self.sync_interval = sync_interval
        # Schedules a call for when the kernel is next idle (after the reply is sent); False when it
        # cannot (no event loop yet). Given, a small outcome is committed then (``Store.settle``).
        self.when_idle: Callable[[Callable[[], None]], bool] | None = None
        self.outcome_lost = False  # a deferred outcome failed to commit: the next checkpoint stores everything
        self._opener = StoreOpener(
            map_size=map_size, max_store_size=max_store_size, sync_interval=sync_interval, lock_timeout=lock_timeout, replica_url=self.replica_url
        )
        self.store: Store | None = None
        self.problem: str | None = None  # why persistence is off for this kernel
        self.health = JournalHealth()  # problems and the notices about them, told once
        self.paused: str | None = None  # %persist off: the label of the last cell journaled before the pause
        if session is not None:
            self.identify(session)

    def identify(self, session: Session) -> None:
        """Say which session this is; a kernel that learns it from its first execution says it then
        (which also ends the wait ``turn_off`` stood for)."""
        self.session = session
        self._opener.identify(session)
        self.problem = None

    # -- opening ------------------------------------------------------------------

    def open(self) -> bool:
        """Lock and open the session's store; on failure persistence is off, the kernel runs on.

        A store that cannot be read (damaged, or not ours) is moved aside, never
        deleted, and the session starts fresh in its place; the user is told where
        it went. A newer version's store and one another kernel holds are left alone.
        """
        assert self.session is not None, "open() before identify()"
        where = self.session.store_path
        try:
            try:
                self._open_store()
            except (StoreUnavailable, FileExistsError, NotADirectoryError) as exc:
                if isinstance(exc, LEFT_ALONE):
                    raise
                self._close_quietly(release_lock=False)  # held through the rename: no other kernel opens it meanwhile
                aside = self._opener.set_aside()
                self.notify(
                    f"The session's store could not be read ({exc}). It was moved to {aside}, nothing deleted, "
                    "and this session starts fresh. Your earlier variables are not restored."
                )
                self._open_store()
        except (PersistenceError, OSError) as exc:
            self._close_quietly()
            self.problem = str(exc)
            if isinstance(exc, SessionLocked):
                advice = (
                    "This kernel runs without persistence so the two cannot mix their journals. "
                    "Close the other kernel, or set PERSISTENT_KERNEL_SESSION to give this one a session of its own."
                )
            elif isinstance(exc, StoreFromNewerVersion):
                advice = f"Nothing at {where} was changed: a newer persistent-kernel reads it."
            elif isinstance(exc, (StoreNotAuthenticated, StoreOfAnotherSession, KeyUnusable)):
                advice = f"Nothing at {where} was changed."
            else:
                advice = f"Nothing at {where} was deleted."
            self.notify(
                f"Persistence is off for this kernel: {exc}. Your cells run as usual, "
                f"but they will not come back after a crash. {advice}"
            )
            return False
        return True

    def _open_store(self) -> None:
        self.store = self._opener.open()
        self.store.on_settle_failed = self._settle_failed
        pulled = self._opener.pulled
        if pulled is not None:
            self.notify(
                f"This node had no copy of the session: it was fetched from the replica at {self.replica_url} "
                f"({pulled.entries} records and {pulled.files} files, {pulled.file_bytes / 1e6:.1f} MB, in {pulled.seconds:.1f} s)."
            )
        if self.replica_url is not None and self.session is not None:
            if self._opener.pull_problem is not None:
                self.notify(
                    f"The replica at {self.replica_url} could not be read ({self._opener.pull_problem}), so this kernel "
                    "does not write to it (that could hide what it holds); the session is journaled on this machine only."
                )
            else:
                self.replica = ReplicaShipper(
                    self.store, self.replica_url, self.session.id, tell=self.notify, activity=self.activity, connect=self._opener.replica_connection
                ).start()
        self.writer = BackgroundWriter(
            self.store,
            history_budget=self.history_budget,
            throttle_bytes_per_second=self.write_throttle,
            on_unlanded=self._unlanded,
        )

    def _close_quietly(self, *, release_lock: bool = True) -> None:
        if self.writer is not None:
            self.writer.stop(timeout=0)
            self.writer = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if release_lock:
            self._opener.release()

    def turn_off(self, reason: str) -> None:
        """Run without persistence on purpose (configuration), without opening the store."""
        self.problem = reason

    @property
    def active(self) -> bool:
        return self.store is not None

    def journals(self, code: str) -> bool:
        """Whether ``begin`` will record this code (persistence on and not paused, code not blank)."""
        return self.journals_events and bool(code.strip())

    def pause(self, after: str) -> None:
        """``%persist off``: journal nothing until ``resume``; a restore meanwhile says where it stopped."""
        self.paused = after
        self.set_meta(paused={"after": after, "at": time.time()})

    def resume(self) -> None:
        self.paused = None
        self.set_meta(paused=None)

    # -- notices: what the user is told, once ---------------------------------------

    def notify(self, message: str) -> None:
        self.health.notify(message)

    def take_notices(self) -> list[str]:
        durability_problem = self.store.durability_problem if self.store is not None else None
        return self.health.take(durability_problem, writer_working=self.writer is not None and self.writer.problem is None)

    @property
    def unjournaled(self) -> int:
        """Executions that ran while journal writes failed (they are missing after a restore)."""
        return self.health.unjournaled

    # -- the write-ahead protocol ----------------------------------------------------

    def begin(
        self,
        code: str,
        *,
        execution_count: int,
        silent: bool = False,
        store_history: bool = True,
        cell_id: str | None = None,
        random_state_before: dict[str, Any] | None = None,
    ) -> CellRecord | None:
        """Commit a cell's record before it runs; None when it is not journaled.

        Blank code is not journaled: replaying it would do nothing.
        """
        if not self.journals(code):
            return None
        return self._append(
            CellRecord(
            seq=0,
            code=code,
            execution_count=execution_count,
            silent=silent,
            store_history=store_history and not silent,
            cell_id=cell_id,
            started_at=time.time(),
            random_state_before=random_state_before,
            )
        )

    def begin_event(self, kind: str, execution_count: int, trigger: str | None = None) -> CellRecord | None:
        """A journal entry for a change no cell's code made (an idle check, a widget callback); never replayed."""
        if not self.journals_events:
            return None
        return self._append(
            CellRecord(
                seq=0,
                code="",
                execution_count=execution_count,
                silent=True,
                store_history=False,
                started_at=time.time(),
                kind=kind,
                trigger=trigger,
            ),
            ahead=False,  # it already ran: its record goes in with its outcome, in one transaction
        )

    @property
    def journals_events(self) -> bool:
        """Whether ``begin_event`` will record an event (persistence on and not paused)."""
        return self.store is not None and self.paused is None

    @property
    def opened_store(self) -> Store:
        """The store, for work that runs only while it is open (a restore, a checkout)."""
        if self.store is None:
            raise StoreUnavailable("the session's store is not open")
        return self.store

    @property
    def next_seq(self) -> int:
        """The sequence number the next record will get (stable while the caller holds the kernel's turn)."""
        return self.store.next_seq if self.store is not None else 0

    def _append(self, record: CellRecord, *, ahead: bool = True) -> CellRecord | None:
        if self.store is None:  # closed meanwhile (a shutdown on the control thread): not journaled
            return None
        try:
            self.store.append(record, ahead=ahead)
        except StoreWriteError as exc:
            self.health.write_failed(exc)
            return None
        except (TypeError, ValueError) as exc:
            self.health.write_failed(StoreWriteError(f"a journal record could not be encoded: {exc}"))
            return None
        return record

    def finish(
        self,
        record: CellRecord | None,
        status: str,
        duration: float,
        ename: str | None = None,
        evalue: str | None = None,
        random_state_after: dict[str, Any] | None = None,
        checkpoint: Checkpoint | None = None,
        context: dict[str, Any] | None = None,
    ) -> bool:
        """Commit a cell's outcome and, with it, its checkpoint, in one transaction.

        Returns whether it committed (False: forgotten while it ran, or the write failed).
        """
        if record is None or self.store is None:
            return False
        record.status, record.duration = status, duration
        record.ename = ename
        record.evalue = evalue[:500] if evalue else evalue
        record.random_state_after = random_state_after
        # A commit with no large values to land may wait in the outcome slot until the reply is sent.
        # Not while writes fail: the next commit is made on the reply path, so that what the user is told is known.
        defer = (
            self.when_idle is not None
            and self.health.write_problem is None
            and (checkpoint is None or not checkpoint.jobs)
            and self.when_idle(self.settle)
        )
        try:
            if checkpoint is None:
                committed = self.store.set_outcome(record, defer=defer)
            else:
                record.reads = sorted(checkpoint.reads)
                record.writes = sorted(checkpoint.writes)
                record.deletes = sorted(checkpoint.deletes)
                record.result = checkpoint.result
                record.checkpointed = True
                committed = self.store.commit_checkpoint(
                    record, checkpoint.versions, checkpoint.pointers, checkpoint.blobs, context, defer=defer
                )
        except StoreWriteError as exc:
            self.health.write_failed(exc)
            return False
        except (TypeError, ValueError) as exc:  # something in the record would not encode
            self.health.write_failed(StoreWriteError(f"a journal record could not be encoded: {exc}"))
            return False
        self.health.write_worked()  # a whole cell went in: any earlier failure is over
        if committed and checkpoint is not None and self.writer is not None and checkpoint.jobs:
            for job in checkpoint.jobs:
                self.writer.submit(job)
            size = sum(memoryview(data).nbytes for job in checkpoint.jobs for data in job.buffers.values())
            if size <= self.land_before_reply_bytes:
                # Durable before it counts: a replay could not be trusted to make the same bytes again.
                self.writer.drain(timeout=LAND_BEFORE_REPLY_TIMEOUT)
        return committed

    def settle(self) -> None:
        """Commit the outcome waiting in the outcome slot (on the event loop, once the reply is sent)."""
        if self.store is not None:
            self.store.settle()

    def _settle_failed(self, exc: StoreWriteError) -> None:
        # The cell was answered; its changes are not in the store. Told like any failed write;
        # the recorder stores the namespace whole with the next cell (``outcome_lost``).
        self.outcome_lost = True
        self.health.write_failed(exc)

    def _unlanded(self, job: WriteJob, reason: str, failed: bool) -> None:
        # From the writer thread. The names' next checkpoint stores them again; a failure
        # (as opposed to a value that moved on) is also the user's business.
        if self.on_unlanded is not None:
            self.on_unlanded(job, reason)
        if self.store is not None:
            try:
                self.store.mark_dropped(job.version_key, reason)
            except StoreWriteError:
                pass  # only an explanation for time travel is lost
        if failed:
            self.health.background_failed(", ".join(sorted(job.names)), reason)

    def mark(self, record: CellRecord, status: str) -> None:
        """Set a recorded cell's status (restore marks cells that died or killed a replay)."""
        if self.store is None:
            return
        record.status = status
        try:
            self.store.set_outcome(record)
        except StoreWriteError as exc:
            self.health.write_failed(exc)

    # -- reading and housekeeping -------------------------------------------------------

    def records(self) -> list[CellRecord]:
        return list(self.store.records()) if self.store is not None else []

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self.store.get_meta(key, default) if self.store is not None else default

    def set_meta(self, **items: Any) -> None:
        """Best-effort metadata (restore markers, reports): a failure is a notice, not an error."""
        if self.store is None:
            return
        try:
            self.store.set_meta(**items)
        except StoreWriteError as exc:
            self.health.write_failed(exc)

    def forget(self) -> int:
        """Erase the session's store and stop journaling in this kernel; returns the cells dropped.

        The next kernel on the session starts empty and persists as usual. This one
        keeps the session's lock (so no other kernel takes it meanwhile) but writes
        nothing more: a partial history would restore a namespace that never existed.
        """
        if self.store is None:
            return 0
        if self.writer is not None:
            self.writer.stop(timeout=0)  # drop what is queued and call off the write in progress
            self.writer = None
        dropped = self.store.clear()
        self.store.close()
        self.store = None
        self.turn_off("the session was forgotten (%persist forget); the next kernel on it starts fresh")
        return dropped

    def status(self) -> dict[str, Any]:
        """Facts for ``%persist status`` (plain data, rendered by the magic)."""
        records = self.records()
        session = self.session
        return {
            "session_id": session.id if session else None,
            "session_name": session.name if session else None,
            "session_source": session.source if session else None,
            "session_origin": session.origin if session else None,
            "notebook_path": session.notebook_path if session else None,
            "store_path": str(session.store_path) if session else None,
            "placement": placement_note(session.home) if session else None,
            "store_bytes": self.store.size_bytes() if self.store is not None else None,
            "format_version": self.store.format_version if self.store is not None else None,
            "active": self.active,
            "paused": self.paused,
            "problem": self.problem,
            "write_problem": self.health.write_problem,
            "background_problem": self.health.background_problem,
            "durability_problem": self.store.durability_problem if self.store is not None else None,
            "unjournaled": self.health.unjournaled,
            "cells": len(records),
            "cells_by_status": dict(Counter(r.status for r in records)),
            "sync_interval": self.sync_interval,
            "last_restore": self.get_meta("last_restore"),
            "background": None
            if self.writer is None
            else {
                "pending": self.writer.pending,
                "pending_bytes": self.writer.pending_bytes(),
                "landed": self.writer.landed,
                "dropped": self.writer.dropped,
                "bytes_written": self.writer.bytes_written,
                "last_landed_seconds": self.writer.last_landed_seconds,
                "problem": self.writer.problem,
            },
            "history_budget": self.history_budget,
            "replica": self.replica.status() if self.replica is not None else ({"url": self.replica_url, "off": True} if self.replica_url else None),
            "refused": list(self.store.refusals) if self.store is not None else [],
        }

    def close(self, drain_timeout: float | None = 10.0) -> None:
        """Land what is queued (up to ``drain_timeout``), ship it to the replica (in what time is left),
        then close; unlanded versions restore by replay."""
        deadline = time.monotonic() + (drain_timeout if drain_timeout is not None else 3600.0)
        if self.writer is not None:
            self.writer.stop(timeout=drain_timeout)
            self.writer = None
        if self.replica is not None:
            self.replica.flush(max(0.0, deadline - time.monotonic()))
            self.replica.stop(timeout=1.0)
            self.replica = None
        if self.store is not None:
            self.store.close()
            self.store = None
        self._opener.release()

