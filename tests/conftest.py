"""Shared fixtures: real kernels on real LMDB stores in temp directories."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from persistent_kernel.authentication import KEY_ENV
from persistent_kernel.driver import Execution, KernelDriver
from persistent_kernel.session import resolve_session
from persistent_kernel.store import Store


@pytest.fixture(scope="session", autouse=True)
def user_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The key that authenticates stores: one for the test run, never the user's own (kernels inherit it)."""
    path = tmp_path_factory.mktemp("user-key") / "key"
    before = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = str(path)
    yield path
    if before is None:
        os.environ.pop(KEY_ENV, None)
    else:
        os.environ[KEY_ENV] = before


@pytest.fixture
def pk_home(tmp_path: Path) -> Path:
    home = tmp_path / "pk-home"
    home.mkdir()
    return home


@pytest.fixture
def session_env(pk_home: Path) -> Callable[..., dict[str, str]]:
    """Environment for a kernel on a named session under the test's own home."""

    def make(session: str = "test-session", **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "PERSISTENT_KERNEL_SESSION")}
        env.update(PERSISTENT_KERNEL_HOME=str(pk_home), PERSISTENT_KERNEL_SESSION=session, **extra)
        return env

    return make


@pytest.fixture
def kernel(session_env: Callable[..., dict[str, str]], tmp_path: Path) -> Iterator[Callable[..., KernelDriver]]:
    """Start persistent kernels; every one still alive is shut down after the test."""
    drivers: list[KernelDriver] = []

    def start(
        session: str = "test-session",
        *,
        extra_arguments: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> KernelDriver:
        driver = KernelDriver(env=env or session_env(session), cwd=str(cwd or tmp_path), extra_arguments=extra_arguments)
        drivers.append(driver)
        return driver.start()

    yield start
    for driver in drivers:
        if driver.km is not None:
            try:
                driver.shutdown()
            except Exception:
                driver.km.shutdown_kernel(now=True)


def run(driver: KernelDriver, code: str, **kwargs) -> Execution:
    """Execute a cell and insist that it succeeded."""
    result = driver.execute(textwrap.dedent(code), **kwargs)
    assert result.status == "ok", f"{code!r} failed: {result.ename}: {result.evalue}"
    return result


def crash_and_restart(driver: KernelDriver) -> str:
    """SIGKILL the kernel, start a new one on the same session; returns the restore summary."""
    driver.kill()
    driver.start()
    return driver.execute("pass").said


def check_store(pk_home: Path, session: str = "test-session") -> None:
    """The store's own consistency check, run after a scenario (the kernel must be gone)."""
    path = resolve_session({"PERSISTENT_KERNEL_HOME": str(pk_home), "PERSISTENT_KERNEL_SESSION": session}).store_path
    store = Store(path, sync_interval=0)
    try:
        assert store.check() == []
    finally:
        store.close()
