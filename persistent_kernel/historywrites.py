"""When IPython's history database is written: in batches once the kernel is idle, the journal backing it.

IPython keeps every input in a SQLite database (``%history -g``, a console's arrow-up
history across sessions). By default (``HistoryManager.db_cache_size = 0``) every cell
wakes its saving thread, which INSERTs the input and commits — with an fsync — while
the cell's reply is being sent; the thread takes the interpreter lock from the cell
and holds IPython's input-cache lock through the commit. Measured on the 2-core VM
(benchmarks/BENCHMARKS.md, "IPython's history writes"): about 1 ms of a trivial cell's
7 ms, on stock ipykernel as on this kernel.

This kernel has every cell's code durably in its journal before the cell runs, so the
history database need not be written cell by cell: IPython's own setting
``db_cache_size`` batches the inputs, and they are written by IPython's saving thread
once the kernel has been idle ``delay`` seconds, when ``BATCH`` inputs wait (IPython's
own flush), when history is read (IPython writes out before any query) and at exit
(IPython's ``end_session``). A kill loses none of them: the next kernel on the session
writes what the killed kernel had not written, from the journal, into that kernel's
history session (``write_missing``). A ``db_cache_size`` the user configured is left
as it is, and so is a history that is off or in memory.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .idlecheck import IdleTimer

BATCH = 100  # inputs IPython keeps before it writes them itself (one commit per hundred cells in a long run)
META_KEY = "ipython_history"  # the store's record of which history session a kernel writes to


def _history_file(history: Any) -> str | None:
    """The database file, or None when the history is off, in memory, or kept without a saving thread."""
    if history is None or not getattr(history, "enabled", False):
        return None
    # IPython 9 says whether it writes from its thread; IPython 8 (Python 3.10) has the thread or not.
    if not getattr(history, "using_thread", getattr(history, "save_thread", None) is not None):
        return None
    path = str(getattr(history, "hist_file", ":memory:"))
    return None if path == ":memory:" else path


class HistoryWrites:
    """One timer on the kernel's event loop; a cell re-arms it, idleness lets IPython's saving thread write."""

    def __init__(self, shell: Any, log: Any, *, delay: float, loop: Callable[[], Any]) -> None:
        self.shell = shell
        self.history = getattr(shell, "history_manager", None)
        self.log = log
        self.timer = IdleTimer(delay, loop, self.write_now)  # delay <= 0: IPython writes every cell, as by default
        self.batching = False

    def start(self) -> bool:
        """Batch the history's writes (once the journal holds every cell); False: left as IPython does it."""
        history = self.history
        if self.timer.delay <= 0 or history is None or _history_file(history) is None or self._configured(history):
            return False  # off, or the user's own db_cache_size
        history.db_cache_size = BATCH
        self.batching = True
        return True

    def _configured(self, history: Any) -> bool:
        """Whether the user chose a cache size (in a config file, on the command line, by ``%config``)."""
        config = getattr(self.shell, "config", None) or {}
        return history.db_cache_size > 1 or ("HistoryManager" in config and "db_cache_size" in config["HistoryManager"])

    def after_cell(self) -> None:
        if self.batching:
            self.timer.touch()

    def write_now(self) -> None:
        """Wake IPython's saving thread for what waits in its cache (it writes in its own thread, with its own connection)."""
        history = self.history
        if history is None or not (history.db_input_cache or history.db_output_cache):
            return
        with contextlib.suppress(Exception):  # a stopped thread: IPython restarts it, or writes at exit
            history._restart_thread_if_stopped()
        flag = history.save_flag
        if flag is not None:
            flag.set()


def this_kernels_session(history: Any, first_seq: int) -> dict[str, Any] | None:
    """What the store keeps so that the next kernel can complete this one's history: file, session, first cell."""
    path = _history_file(history)
    if path is None:
        return None
    return {"file": path, "session": int(history.session_number), "first_seq": first_seq}


def write_missing(history: Any, previous: dict[str, Any] | None, records: Callable[[], Iterable[Any]], log: Any) -> int:
    """Inputs of the previous kernel on this session that never reached its history session: written now.

    ``previous`` is that kernel's ``this_kernels_session``; a session IPython ended (a
    clean exit wrote its cache) is complete and costs one query. Returns how many
    inputs were written. Never raises: the history is a convenience, the journal the record.
    """
    if not previous or history is None or _history_file(history) != previous.get("file"):
        return 0
    session = previous.get("session")
    if session is None or session == getattr(history, "session_number", None):
        return 0
    try:
        with contextlib.closing(sqlite3.connect(previous["file"], timeout=5)) as db:
            row = db.execute("SELECT end FROM sessions WHERE session = ?", (session,)).fetchone()
            if row is None or row[0] is not None:
                return 0  # not there (a new database), or ended cleanly: everything was written
            (last_line,) = db.execute("SELECT coalesce(max(line), 0) FROM history WHERE session = ?", (session,)).fetchone()
            first_seq = int(previous.get("first_seq", 0))
            missing = {
                record.execution_count: record.code.rstrip("\n")
                for record in records()
                if record.seq >= first_seq and record.store_history and record.code and record.execution_count > last_line
            }
            with db:
                db.executemany(
                    "INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?)",
                    [(session, line, code, code) for line, code in sorted(missing.items())],
                )
            return len(missing)
    except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
        log.warning("persistent_kernel: could not complete the history of the previous kernel in %s: %s", Path(previous["file"]).name, exc)
        return 0
