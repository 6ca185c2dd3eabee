"""One live kernel per session, enforced with a POSIX record lock.

``fcntl.lockf`` locks belong to the process: the OS drops them the moment the
process dies, however it dies (kill -9 included), and a forked child does not
inherit them. So a lock left by a dead kernel never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import SessionLocked
from .privatefiles import open_private

LOCK_FILE = "kernel.lock"


class SessionLock:
    """The exclusive right to write one session's journal."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, timeout: float = 5.0) -> None:
        """Take the lock, waiting up to ``timeout`` seconds.

        The wait covers a restart, where the old process may still be exiting
        while the new one starts. A lock won on a file that meanwhile left its
        place (``persistent-kernel rm`` or ``attach`` renames the session's
        directory while holding the lock) locks nothing: it is let go and taken
        again on the file now at the path.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT)  # truncated below: never through a symlink
            if self._lock_in_place(fd, deadline):
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            os.close(fd)  # a full disk: never keep the lock of a session we cannot write
            raise
        self._fd = fd

    def _lock_in_place(self, fd: int, deadline: float) -> bool:
        """Lock ``fd``, waiting until ``deadline``; False if the file was moved away meanwhile."""
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    who = f"kernel process {holder}" if holder else "another kernel"
                    raise SessionLocked(f"this session is open in {who}") from None
                time.sleep(0.1)
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def holder(self) -> int | None:
        """The pid written by the kernel holding the lock, if readable."""
        if self._fd is not None:
            # Opening and closing the file again would drop our own lock (POSIX
            # record locks go with the first close of any descriptor).
            return os.getpid()
        try:
            text = self.path.read_text().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    def is_held(self) -> bool:
        """Whether a live process holds the lock (this one included), without keeping it.

        Trusts the lock, not the pid file: a kernel killed with SIGKILL leaves its
        pid behind, but the OS dropped its lock. The probe takes a shared lock on
        a descriptor of its own and lets go at once, so a kernel starting at that
        instant (it retries for ``lock_timeout``) is not turned away. Closing that
        descriptor would also drop a lock this process held on the file through
        another ``SessionLock``; the command line never does both.
        """
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False  # no kernel ever ran on it (an imported store)
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
