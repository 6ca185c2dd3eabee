"""The journal's rules without a kernel: write-ahead, outcomes, failures told once, locking."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from persistent_kernel import records as rec
from persistent_kernel.journal import Journal
from persistent_kernel.session import resolve_session


def make_journal(home: Path, name: str = "j", **options) -> Journal:
    session = resolve_session({"PERSISTENT_KERNEL_HOME": str(home), "PERSISTENT_KERNEL_SESSION": name})
    options.setdefault("sync_interval", 0)
    options.setdefault("lock_timeout", 0.2)
    return Journal(session, **options)


@pytest.fixture
def journal(tmp_path: Path):
    j = make_journal(tmp_path)
    assert j.open()
    yield j
    j.close()


def test_record_is_committed_before_the_cell_and_outcome_after(journal: Journal) -> None:
    record = journal.begin("x = 1", execution_count=1, cell_id="abc")
    [stored] = journal.records()
    assert stored.status == rec.STARTED and stored.code == "x = 1" and stored.cell_id == "abc"
    journal.finish(record, rec.ERROR, 0.5, "ValueError", "bad")
    [stored] = journal.records()
    assert (stored.status, stored.ename, stored.evalue, stored.duration) == (rec.ERROR, "ValueError", "bad", 0.5)
    assert journal.store.check() == []


def test_silent_executions_are_journaled_and_marked(journal: Journal) -> None:
    journal.begin("s = 42", execution_count=3, silent=True)
    [stored] = journal.records()
    assert stored.silent and not stored.store_history
    assert stored.label.startswith("silent")


def test_blank_code_is_not_journaled(journal: Journal) -> None:
    assert journal.begin("   \n", execution_count=1) is None
    assert journal.records() == []


def test_session_meta_names_the_notebook(tmp_path: Path) -> None:
    session = resolve_session({"PERSISTENT_KERNEL_HOME": str(tmp_path), "JPY_SESSION_NAME": "/w/nb.ipynb"})
    j = Journal(session, sync_interval=0)
    assert j.open()
    try:
        assert j.get_meta("notebook_path") == "/w/nb.ipynb"
        assert j.get_meta("session_name") == "nb.ipynb"
        assert j.status()["store_path"] == str(session.store_path)
    finally:
        j.close()


def test_write_failures_are_told_once_and_recovery_is_told(tmp_path: Path) -> None:
    j = make_journal(tmp_path, map_size=64 * 1024, max_store_size=128 * 1024)
    assert j.open()
    try:
        big = "s = '" + "x" * 30_000 + "'"
        for i in range(12):
            j.finish(j.begin(big, execution_count=i + 1), rec.OK, 0.0)
        notices = j.take_notices()
        assert len(notices) == 1 and "Could not write" in notices[0] and "size limit" in notices[0]
        assert j.unjournaled >= 1 and j.status()["write_problem"]
        assert j.store.check() == []
        # Space comes back (the limit is lifted): journaling resumes and the user is told.
        j.store.max_map_size = 0
        record = j.begin("y = 1", execution_count=99)
        assert record is not None
        assert j.finish(record, rec.OK, 0.0)
        [notice] = j.take_notices()
        assert "works again" in notice and f"{j.unjournaled} execution" in notice
    finally:
        j.close()


def test_forget_clears_the_journal(journal: Journal) -> None:
    record = journal.begin("x = 1", execution_count=1)
    assert journal.forget() == 1
    journal.finish(record, rec.OK, 0.1)  # finishing a forgotten cell does not bring it back
    assert journal.records() == []


HOLDER = textwrap.dedent(
    """
    import sys, time
    from persistent_kernel.lock import SessionLock
    lock = SessionLock(sys.argv[1]); lock.acquire()
    print("locked", flush=True); time.sleep(60)
    """
)


def test_second_kernel_on_a_session_runs_without_persistence(tmp_path: Path) -> None:
    j = make_journal(tmp_path)
    j.session.store_path.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(j.session.store_path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        assert not j.open()
        assert not j.active
        [notice] = j.take_notices()
        assert f"kernel process {holder.pid}" in notice and "PERSISTENT_KERNEL_SESSION" in notice
        assert j.begin("x = 1", execution_count=1) is None  # harmless when off
    finally:
        holder.kill()
        holder.wait()
    # The holder died (as with kill -9): its lock went with it.
    assert j.open() and j.active
    j.close()


def test_every_directory_of_the_store_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    j = make_journal(home)
    assert j.open()
    try:
        for directory in (home, home / "sessions", j.session.store_path):
            assert directory.stat().st_mode & 0o777 == 0o700, directory
        assert (j.session.store_path / "data.mdb").stat().st_mode & 0o777 == 0o600
    finally:
        j.close()


def test_a_failed_fsync_is_told_once_and_shown_in_status(tmp_path: Path) -> None:
    journal = make_journal(tmp_path, sync_interval=3600)
    assert journal.open()
    try:
        journal.finish(journal.begin("x = 1", execution_count=1), rec.OK, 0.1)
        journal.store._durability_failed("fsync of data.mdb", OSError(5, "Input/output error"))
        told = journal.take_notices()
        assert len(told) == 1 and "error while making the session journal durable" in told[0] and "Input/output" in told[0]
        assert journal.take_notices() == []  # once
        assert "Input/output error" in journal.status()["durability_problem"]
        from persistent_kernel.magics import format_status

        assert "DEGRADED - the fsync of data.mdb failed" in format_status({**journal.status(), "variables": []})
    finally:
        journal.close()


def test_an_unreadable_store_is_set_aside_while_this_kernel_still_holds_the_lock(tmp_path: Path, monkeypatch) -> None:
    # Released before the rename, another kernel waiting for the lock could open the
    # unreadable store in that instant; the lock must be held until it has moved.
    from persistent_kernel.opening import StoreOpener

    j = make_journal(tmp_path)
    where = j.session.store_path
    where.mkdir(parents=True)
    (where / "data.mdb").write_bytes(b"\x00garbage" * 4096)
    seen = []
    set_aside = StoreOpener.set_aside

    def probing(opener):
        probe = "import sys; from pathlib import Path; from persistent_kernel.lock import SessionLock; print(SessionLock(Path(sys.argv[1])).is_held())"
        seen.append(subprocess.run([sys.executable, "-c", probe, str(where)], capture_output=True, text=True, check=True).stdout.strip())
        return set_aside(opener)

    monkeypatch.setattr(StoreOpener, "set_aside", probing)
    assert j.open()
    try:
        assert seen == ["True"]
        [notice] = j.take_notices()
        assert "It was moved to" in notice
    finally:
        j.close()
