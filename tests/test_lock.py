"""The session lock across processes (POSIX record locks belong to the process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from persistent_kernel.lock import SessionLock

WAITER = textwrap.dedent(
    """
    import os, sys, time
    from persistent_kernel.lock import SessionLock
    lock = SessionLock(sys.argv[1])
    print("waiting", flush=True)
    lock.acquire(timeout=10)
    print(os.fstat(lock._fd).st_ino, flush=True)
    time.sleep(30)
    """
)


def test_a_lock_won_on_a_file_moved_away_is_taken_again_at_the_path(tmp_path: Path) -> None:
    # `persistent-kernel rm` (or attach) holds the lock, renames the session away, then lets go:
    # a kernel that was waiting must not end up holding the moved file's lock.
    session = tmp_path / "sessions" / "s"
    session.mkdir(parents=True)
    held = SessionLock(session)
    held.acquire(timeout=0)
    waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(session)], stdout=subprocess.PIPE, text=True)
    try:
        assert waiter.stdout.readline().strip() == "waiting"
        time.sleep(0.5)
        os.rename(session, tmp_path / "sessions" / ".removing-s")
        held.release()
        inode = int(waiter.stdout.readline())
        assert inode == os.stat(session / "kernel.lock").st_ino  # the file at the path, not the moved one
        assert SessionLock(session).is_held()
        assert not SessionLock(tmp_path / "sessions" / ".removing-s").is_held()
    finally:
        waiter.kill()
        waiter.wait()


def test_is_held_trusts_the_lock_not_the_pid_file(tmp_path: Path) -> None:
    (tmp_path / "kernel.lock").write_text(f"{os.getpid()}\n")  # a pid, but nobody holds the lock
    assert not SessionLock(tmp_path).is_held()
    assert not SessionLock(tmp_path / "no-such-session").is_held()
