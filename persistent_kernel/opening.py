"""Opening one session's store for its kernel: the session's lock, then the store.

What ``Journal.open`` does before any record is written: take the lock (one live
kernel per session), count the attempt (a store whose opening kills the process
is set aside on the second death, not opened forever), open the store and check
it is this session's, then stamp who holds it. A store that cannot be read is
moved aside, never deleted. What the user is told about it is the journal's.
No IPython.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import (
    KeyUnusable,
    NotPrivate,
    SessionLocked,
    StoreFromNewerVersion,
    StoreNotAuthenticated,
    StoreOfAnotherSession,
    StoreUnavailable,
)
from .lock import SessionLock
from .privatefiles import open_private, write_private
from .replica import Pulled, ReplicaError
from .replicaworker import ReplicaWorker
from .session import Session, ensure_private_dir
from .store import DEFAULT_MAP_SIZE, Store

OPEN_ATTEMPTS_FILE = "opening"  # kernels that began opening the store and have not finished

# Stores that are readable, but not by this kernel now: left exactly as they are.
LEFT_ALONE = (SessionLocked, StoreFromNewerVersion, StoreNotAuthenticated, StoreOfAnotherSession, KeyUnusable)


def _read_count(path: Path) -> int:
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        text = os.read(fd, 64)
    finally:
        os.close(fd)
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def _write_count(path: Path, count: int) -> None:
    write_private(path, f"{count}\n".encode())


class StoreOpener:
    """Opens one session's store as its owner, under the session's lock (held until ``release``)."""

    def __init__(
        self,
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_store_size: int = 0,
        sync_interval: float = 1.0,
        lock_timeout: float = 5.0,
        replica_url: str | None = None,
    ) -> None:
        self.replica_url = replica_url
        self.pulled: Pulled | None = None  # what ``open`` fetched from the replica (a node with no copy)
        self.pull_problem: str | None = None  # why the replica could not be read when it was needed
        self._probe: ReplicaWorker | None = None  # the worker that asked the replica at open, kept for the shipper
        self.map_size = map_size
        self.max_store_size = max_store_size
        self.sync_interval = sync_interval
        self.lock_timeout = lock_timeout
        self.session: Session | None = None
        self._lock: SessionLock | None = None

    def identify(self, session: Session) -> None:
        """The session whose store ``open`` opens (a rename followed may change it before then)."""
        self.session = session
        self._lock = SessionLock(session.store_path)

    def open(self) -> Store:
        """Lock and open the session's store; raises what stops it (``Journal.open`` decides what follows).

        A store opened but not this session's is closed again before raising; the lock
        is kept until ``release``.
        """
        assert self.session is not None and self._lock is not None, "open() before identify()"
        where = self.session.store_path
        ensure_private_dir(self.session.home)
        ensure_private_dir(where.parent)  # sessions/
        ensure_private_dir(where)
        self._lock.acquire(self.lock_timeout)
        # A store whose opening kills the process (LMDB trusts its file: damage it cannot see
        # can crash it) would kill every restart. Count attempts in a file beside it: once may
        # be an impatient kill -9, twice is the store's doing, and it is set aside.
        attempts = where / OPEN_ATTEMPTS_FILE
        crashed = _read_count(attempts)
        if crashed >= 2:
            raise StoreUnavailable(f"opening the store at {where} stopped the kernel {crashed} times")
        counted = True
        try:
            _write_count(attempts, crashed + 1)
        except NotPrivate:
            raise
        except OSError:
            counted = False  # a full disk: open without counting rather than not at all
        if self.replica_url and not (where / "data.mdb").exists():
            self._pull(where)  # a node with no copy of the session: the replica's, if it holds one
        store = Store(where, map_size=self.map_size, max_map_size=self.max_store_size, sync_interval=self.sync_interval, owner=True)
        try:
            if counted:
                attempts.unlink(missing_ok=True)
            self._check_and_stamp(store)
        except BaseException:
            store.close()
            raise
        return store

    def _pull(self, where: Path) -> None:
        """The replica's copy of the session, if it holds one, pulled by a worker process (kept
        for the shipper), so the object store's client never loads into the kernel."""
        assert self.session is not None and self.replica_url
        self.pulled = self.pull_problem = None
        try:
            self._probe = ReplicaWorker(self.replica_url, self.session.id)
            self.pulled = self._probe.pull(where)
        except Exception as exc:  # noqa: BLE001 - unreachable, credentials, a damaged segment: start here, and say so
            self.pull_problem = str(exc) if isinstance(exc, ReplicaError) else f"{type(exc).__name__}: {exc}"  # a ReplicaError names its cause
            self._close_probe()  # the kernel will not write to a replica it could not read

    def _close_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()

    def replica_connection(self, url: str, session_id: str) -> ReplicaWorker:
        """A worker for the shipper: the one that asked at open if there is one, else a new one."""
        probe = self._probe
        if probe is not None and probe.url == url and probe.session_id == session_id:
            self._probe = None
            return probe
        self._close_probe()
        return ReplicaWorker(url, session_id)

    def _check_and_stamp(self, store: Store) -> None:
        assert self.session is not None
        stored_id = store.get_meta("session_id")
        if stored_id is not None and stored_id != self.session.id:
            # Records verify in any directory (the store's id travels with it): one session's
            # store put in another's place would restore the wrong session's variables.
            raise StoreOfAnotherSession(
                f"the store at {self.session.store_path} belongs to session {stored_id}, not {self.session.id} (copied or "
                f"moved there by hand?). `persistent-kernel attach` moves a session to a notebook; if you copied it on "
                f"purpose, run `persistent-kernel trust {self.session.id}`"
            )
        store.set_meta(
            session_id=self.session.id,
            session_name=self.session.name,
            session_source=self.session.source,
            notebook_path=self.session.notebook_path,
            session_origin=self.session.origin,
            created=store.get_meta("created") or time.time(),
            kernel_pid=os.getpid(),
            kernel_started=time.time(),
        )

    def set_aside(self) -> Path:
        """Move an unreadable store (or a file in its place) to ``<home>/unreadable/``; returns where.

        Renamed while this kernel holds the session's lock (if it got it), so no
        other kernel opens it meanwhile; one waiting for the lock takes it again
        on the fresh store (see ``SessionLock.acquire``).
        """
        assert self.session is not None
        where = self.session.store_path
        aside_dir = ensure_private_dir(self.session.home / "unreadable")
        aside = aside_dir / f"{self.session.id}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        if where.is_dir():
            (where / OPEN_ATTEMPTS_FILE).unlink(missing_ok=True)  # ours, not the store's
        os.rename(where, aside)
        self.release()
        return aside

    def release(self) -> None:
        """Let the session's lock go (the store, if open, is closed first by its owner)."""
        self._close_probe()
        if self._lock is not None:
            self._lock.release()
