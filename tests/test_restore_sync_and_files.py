"""Real kernels: locks held and file handles in awkward states, SIGKILL, restart, and they work.

Each stored object carries a random token: a replayed cell would make a new one, so an equal
token after the restart shows the object was loaded from the store, not rebuilt by replay.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .kernels import check_store, crash_and_restart, run

pytestmark = [pytest.mark.slow, pytest.mark.fidelity]


def test_held_locks_come_back_released(kernel, pk_home: Path) -> None:
    k = kernel()
    run(
        k,
        """
        import os, queue, threading
        class Account:
            def __init__(self):
                self.lock = threading.Lock()
                self.token = os.urandom(8).hex()
        acct = Account()
        rlock = threading.RLock()
        jobs = queue.Queue()
        jobs.put(acct.token)
        """,
    )
    run(k, "rlock.acquire(); rlock.acquire(); acct.lock.acquire(); jobs.mutex.acquire()")
    token = k.evaluate("acct.token")
    summary = crash_and_restart(k)
    assert "Recomputed" not in summary and "Could not" not in summary, summary
    assert k.evaluate("acct.token") == token  # loaded, not replayed
    # From another thread too: an RLock owned by this thread would let it re-enter.
    got = k.execute(
        "t = []\n"
        "th = threading.Thread(target=lambda: t.append(rlock.acquire(timeout=2) and rlock.release() is None))\n"
        "th.start(); th.join(5)\n"
        "print(t[0], acct.lock.acquire(timeout=2), isinstance(acct, Account), jobs.get(timeout=2) == acct.token)",
        timeout=30,
    )
    assert got.status == "ok" and got.stdout.strip() == "True True True True", (got.stdout, got.evalue)
    k.shutdown()
    check_store(pk_home)


def test_file_handles_after_a_failed_next_continue(kernel, tmp_path: Path, pk_home: Path) -> None:
    (tmp_path / "data.txt").write_text("".join(f"row {i}\n" for i in range(5000)))
    k = kernel()
    run(k, "log = open('log.txt', 'a'); log.write('one\\n')")
    run(k, "try:\n    next(log)\nexcept Exception as exc:\n    print(type(exc).__name__)")  # tell() is disabled now
    run(k, "rows = open('data.txt'); [next(rows) for _ in range(3)]")  # so is this one's
    run(k, "out = open('out.bin', 'wb', buffering=0); out.write(b'abc')")
    summary = crash_and_restart(k)
    assert "Recomputed" not in summary and "Could not" not in summary and "replayed" not in summary, summary
    run(k, "log.write('two\\n'); log.flush(); out.write(b'def')")
    assert k.evaluate("open('log.txt').read()") == repr("one\ntwo\n")
    assert k.evaluate("next(rows)") == repr("row 3\n")
    assert (tmp_path / "out.bin").read_bytes() == b"abcdef"
    k.shutdown()
    check_store(pk_home)
