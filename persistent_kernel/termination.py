"""SIGTERM: preemption and culling (a spot node's notice, a culled pod, ``docker stop``).

Kubernetes sends SIGTERM, waits the pod's grace period (30 s unless set), then SIGKILL.
The handler returns at once (it runs on the main thread, possibly in the middle of a
cell or a commit) and hands over to a thread that takes the store's write lock, so the
commit in progress finishes and no new one starts; then it lands or calls off pending
large writes and flushes the replica, all within ``deadline`` seconds, and exits. The
next kernel, on this node or another, restores what was committed (and replicated).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

TERMINATE_EXIT_CODE = 0


def install(journal: Any, deadline: float, log: Any = None, before_close: Callable[[], None] | None = None) -> bool:
    """Handle SIGTERM as above; False when it cannot be installed here (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    started = threading.Event()

    def handle(_signum: int, _frame: Any) -> None:
        if started.is_set():
            return  # a second SIGTERM: the first one's deadline stands
        started.set()
        threading.Thread(target=_wind_down, args=(journal, deadline, log, before_close), name="persistent-kernel-sigterm", daemon=True).start()

    signal.signal(signal.SIGTERM, handle)
    return True


def _wind_down(journal: Any, deadline: float, log: Any, before_close: Callable[[], None] | None = None) -> None:
    ends = time.monotonic() + deadline
    try:
        if before_close is not None:
            try:
                before_close()  # what waits to be committed (comm messages of a group commit)
            except Exception:  # noqa: BLE001 - the close below matters more
                if log is not None:
                    log.exception("persistent_kernel: committing what waited failed")
        if log is not None:
            log.warning("persistent_kernel: SIGTERM: finishing the commit, landing large writes, flushing the replica (%.0f s at most)", deadline)
        store = journal.store
        lock = getattr(store, "_lock", None)
        if lock is not None and lock.acquire(timeout=max(0.0, ends - time.monotonic())):
            lock.release()  # the commit in progress has finished (held, the writer could not mark its files landed)
        journal.close(drain_timeout=max(0.0, ends - time.monotonic() - 0.2))
    except Exception:  # noqa: BLE001 - exiting regardless: what committed is in LMDB
        if log is not None:
            log.exception("persistent_kernel: winding down after SIGTERM failed")
    finally:
        os._exit(TERMINATE_EXIT_CODE)
