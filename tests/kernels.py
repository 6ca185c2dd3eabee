"""The kill/restart scaffolding of the real-kernel tests, in one place.

A test starts kernels with the ``kernel`` fixture (``conftest.py``), which shuts down
every one still alive afterwards; these helpers do the rest, the same way in every file:

- the environment a kernel (or the ``persistent-kernel`` command) gets: ``kernel_env``;
- a SIGKILL and a new kernel on the same session: ``kill_and_start``,
  ``start_and_restore``, ``crash_and_restart``;
- a cell that must succeed: ``run``;
- the store a scenario left behind, read while no kernel holds it: ``store_path``,
  ``open_store``, ``store_problems``, ``check_store``;
- a kernel that must be gone, whatever state it is in: ``stop``.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from persistent_kernel.driver import Execution, KernelDriver
from persistent_kernel.session import resolve_session
from persistent_kernel.store import Store

SESSION = "test-session"  # the session of ``kernel()`` when the test names none

# What tells a kernel which session it is: a test's kernel never inherits them from the shell the
# tests run in (a terminal in JupyterLab has JPY_SESSION_NAME; a kernel run by nbclient from a
# notebook may have all three). A test that wants one sets it.
INHERITED_SESSION_VARIABLES = ("JPY_SESSION_NAME", "PERSISTENT_KERNEL_SESSION", "PERSISTENT_KERNEL_NOTEBOOK")


def kernel_env(home: Path | str, session: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment for a kernel or the command line whose stores live under ``home``:
    no session variable inherited; ``session`` names one (``PERSISTENT_KERNEL_SESSION``); ``extra`` is added last."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_SESSION_VARIABLES}
    env["PERSISTENT_KERNEL_HOME"] = str(home)
    if session is not None:
        env["PERSISTENT_KERNEL_SESSION"] = session
    env.update(extra)
    return env


# -- a kernel ---------------------------------------------------------------------------------


def run(driver: KernelDriver, code: str, **kwargs) -> Execution:
    """Execute a cell and insist that it succeeded."""
    result = driver.execute(textwrap.dedent(code), **kwargs)
    assert result.status == "ok", f"{code!r} failed: {result.ename}: {result.evalue}"
    return result


def kill_and_start(driver: KernelDriver) -> KernelDriver:
    """SIGKILL the kernel (as the OOM killer or ``kill -9`` would) and start a new one on the same
    session, with the same environment and directory; nothing is executed on it yet."""
    driver.kill()
    return driver.start()


def start_and_restore(driver: KernelDriver) -> str:
    """Start a new kernel on the session of a killed one and run a first cell (``pass``): returns what
    persistence told the user in it (the restore summary, then any warnings)."""
    driver.start()
    return driver.execute("pass").said


def crash_and_restart(driver: KernelDriver) -> str:
    """SIGKILL the kernel, start a new one on the same session; returns the restore summary."""
    driver.kill()
    return start_and_restore(driver)


def stop(driver: KernelDriver) -> None:
    """Shut a kernel down if it still runs; one that will not shut down is killed."""
    if driver.km is None:
        return
    try:
        driver.shutdown()
    except Exception:  # noqa: BLE001 - a kernel that will not shut down is killed
        driver.km.shutdown_kernel(now=True)


# -- its store (read while no kernel holds it) -------------------------------------------------


def store_path(home: Path, session: str = SESSION) -> Path:
    """Where a named session's store lives under ``home``."""
    return resolve_session({"PERSISTENT_KERNEL_HOME": str(home), "PERSISTENT_KERNEL_SESSION": session}).store_path


def open_store(home: Path, session: str = SESSION) -> Store:
    """A session's store, opened to read (``sync_interval=0``: not the owner, it changes nothing); close it."""
    return Store(store_path(home, session), sync_interval=0)


def store_problems(home: Path, session: str = SESSION) -> list[str]:
    """What the store's own consistency check finds (nothing: ``[]``)."""
    store = open_store(home, session)
    try:
        return store.check()
    finally:
        store.close()


def check_store(home: Path, session: str = SESSION) -> None:
    """The store's own consistency check, run after a scenario (the kernel must be gone)."""
    assert store_problems(home, session) == []
