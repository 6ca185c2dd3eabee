"""IPython's history database written in batches once the kernel is idle, and completed from the journal after a kill."""

from __future__ import annotations

import ast
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from persistent_kernel.historywrites import BATCH, HistoryWrites, this_kernels_session, write_missing

from .kernels import kill_and_start, run

pytestmark = pytest.mark.durability
LOG = logging.getLogger("test_history_writes")


# -- without a kernel -------------------------------------------------------------------------


def _database(path: Path, sessions: dict[int, list[tuple[int, str]]], ended: set[int] = frozenset()) -> None:
    """A history database with IPython's own schema (``HistoryAccessor`` creates it)."""
    from IPython.core.history import HistoryAccessor

    accessor = HistoryAccessor(hist_file=str(path))
    with accessor.db:
        for session, lines in sessions.items():
            end = "2026-01-01" if session in ended else None
            accessor.db.execute("INSERT INTO sessions VALUES (?, '2026-01-01', ?, NULL, '')", (session, end))
            accessor.db.executemany("INSERT INTO history VALUES (?, ?, ?, ?)", [(session, n, c, c) for n, c in lines])
    accessor.db.close()


def _lines(path: Path, session: int) -> list[tuple[int, str, str]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT line, source, source_raw FROM history WHERE session = ? ORDER BY line", (session,)).fetchall()


def _history(path: Path | str, session: int, **kwargs: Any) -> SimpleNamespace:
    attributes = {"enabled": True, "using_thread": True, "hist_file": path, "session_number": session, "db_cache_size": 0}
    attributes.update(kwargs)
    return SimpleNamespace(**attributes)


def _record(seq: int, count: int, code: str, store_history: bool = True) -> SimpleNamespace:
    return SimpleNamespace(seq=seq, execution_count=count, code=code, store_history=store_history)


def test_the_killed_kernels_unwritten_inputs_are_written_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    _database(path, {1: [(1, "a = 1")], 2: [(1, "x = 1"), (2, "y = 2")]})
    records = [
        _record(1, 1, "a = 1"),  # an earlier kernel's (before first_seq)
        _record(5, 1, "x = 1"),
        _record(6, 2, "y = 2"),
        _record(7, 3, "z = 3\n"),
        _record(8, 3, "silent()", store_history=False),  # a frontend's own execution: never in the history
        _record(9, 4, "import os\nos.kill(os.getpid(), 9)"),  # the cell that killed it: IPython stores inputs before running them
    ]
    previous = {"file": str(path), "session": 2, "first_seq": 5}
    written = write_missing(_history(path, 3), previous, lambda: records, LOG)
    assert written == 2
    killer = "import os\nos.kill(os.getpid(), 9)"
    assert _lines(path, 2) == [(1, "x = 1", "x = 1"), (2, "y = 2", "y = 2"), (3, "z = 3", "z = 3"), (4, killer, killer)]
    assert _lines(path, 1) == [(1, "a = 1", "a = 1")]  # another session untouched
    assert write_missing(_history(path, 3), previous, lambda: records, LOG) == 0  # nothing twice


def test_a_cleanly_ended_session_is_complete_and_costs_no_journal_read(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    _database(path, {2: [(1, "x = 1")]}, ended={2})

    def records() -> list[Any]:
        raise AssertionError("a session IPython ended wrote its cache: the journal is not read")

    assert write_missing(_history(path, 3), {"file": str(path), "session": 2, "first_seq": 1}, records, LOG) == 0


@pytest.mark.parametrize(
    "case",
    ["no previous kernel", "another database", "the same session", "history off", "in memory", "no such session"],
)
def test_nothing_is_written_where_it_does_not_belong(tmp_path: Path, case: str) -> None:
    path = tmp_path / "history.sqlite"
    _database(path, {2: []})
    previous: dict[str, Any] | None = {"file": str(path), "session": 2, "first_seq": 1}
    history = _history(path, 3)
    if case == "no previous kernel":
        previous = None
    elif case == "another database":
        history = _history(tmp_path / "other.sqlite", 3)
    elif case == "the same session":
        history = _history(path, 2)
    elif case == "history off":
        history = _history(path, 3, enabled=False)
    elif case == "in memory":
        history = _history(":memory:", 3)
    else:
        previous = {"file": str(path), "session": 7, "first_seq": 1}
    assert write_missing(history, previous, lambda: [_record(1, 1, "x = 1")], LOG) == 0
    assert _lines(path, 2) == []


def test_an_unreadable_database_is_a_warning_not_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"not a database, " * 100)
    with caplog.at_level(logging.WARNING):
        assert write_missing(_history(path, 3), {"file": str(path), "session": 2, "first_seq": 1}, lambda: [_record(1, 1, "x")], LOG) == 0
    assert "could not complete the history" in caplog.text


def test_batching_starts_only_where_ipython_would_write_every_cell(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"

    def started(delay: float = 1.0, config: dict[str, Any] | None = None, **kwargs: Any) -> tuple[bool, int]:
        history = _history(path, 1, **kwargs)
        writes = HistoryWrites(SimpleNamespace(history_manager=history, config=config or {}), LOG, delay=delay, loop=lambda: None)
        return writes.start(), history.db_cache_size

    assert started() == (True, BATCH)
    assert started(db_cache_size=20) == (False, 20)  # the user's own setting
    assert started(config={"HistoryManager": {"db_cache_size": 0}}) == (False, 0)  # … even IPython's default, said explicitly
    assert started(delay=0) == (False, 0)
    assert started(enabled=False) == (False, 0)
    assert started(using_thread=False) == (False, 0)
    assert started(hist_file=":memory:") == (False, 0)
    assert this_kernels_session(_history(path, 4), 17) == {"file": str(path), "session": 4, "first_seq": 17}
    assert this_kernels_session(_history(":memory:", 4), 17) is None


# -- real kernels -------------------------------------------------------------------------------


def _history_file(driver: Any) -> tuple[Path, int]:
    found = ast.literal_eval(driver.evaluate("(str(get_ipython().history_manager.hist_file), get_ipython().history_manager.session_number)"))
    return Path(found[0]), found[1]


def _wait_for_lines(path: Path, session: int, count: int, timeout: float = 20) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = _lines(path, session)
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


@pytest.mark.slow
def test_inputs_reach_the_history_once_idle_and_survive_a_kill(kernel: Any, session_env: Any, tmp_path: Path) -> None:
    ipython_dir = tmp_path / "ipython"
    driver = kernel(env=session_env(IPYTHONDIR=str(ipython_dir)), extra_arguments=["--PersistentKernel.history_write_delay=0.3"])
    run(driver, "a = 1")
    path, session = _history_file(driver)
    assert path.is_relative_to(ipython_dir)
    assert driver.evaluate("get_ipython().history_manager.db_cache_size") == str(BATCH)
    run(driver, "b = 2")
    lines = _wait_for_lines(path, session, 2)  # written once the kernel was idle for 0.3 s
    assert [source for _line, source, _raw in lines] == ["a = 1", "b = 2"]

    run(driver, "get_ipython().kernel.history_writes.timer.delay = 3600")  # from here on nothing is written before the kill
    run(driver, "c = 3")
    run(driver, "d = a + b + c")
    assert not any(source == "d = a + b + c" for _l, source, _r in _lines(path, session))
    kill_and_start(driver)
    assert driver.evaluate("d") == "6"
    sources = [source for _line, source, _raw in _lines(path, session)]
    assert sources[-3:] == ["get_ipython().kernel.history_writes.timer.delay = 3600", "c = 3", "d = a + b + c"]
    assert len(sources) == len(set(sources))  # nothing twice
    # The new kernel's %history -g finds the killed kernel's inputs.
    assert "d = a + b + c" in driver.execute("%history -g d = a").stdout


@pytest.mark.slow
def test_a_configured_cache_size_is_kept(kernel: Any, session_env: Any, tmp_path: Path) -> None:
    driver = kernel(env=session_env(IPYTHONDIR=str(tmp_path / "ipython")), extra_arguments=["--HistoryManager.db_cache_size=0"])
    run(driver, "a = 1")
    assert driver.evaluate("get_ipython().history_manager.db_cache_size") == "0"
    assert driver.evaluate("get_ipython().kernel.history_writes.batching") == "False"
