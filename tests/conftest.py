"""Shared fixtures: real kernels on real LMDB stores in temp directories.

The helpers the tests call on those kernels and stores (``run``, ``crash_and_restart``,
``check_store`` …) are in ``kernels.py``; which file proves which invariant: ``README.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from persistent_kernel import KERNEL_NAME
from persistent_kernel.authentication import KEY_ENV
from persistent_kernel.driver import KernelDriver

# Older imports (``from .conftest import run``) keep working; new code imports from ``.kernels``.
from .e2e_lab import lab, notebook7, page, shared_lab  # noqa: F401 - the frontends' fixtures (JupyterLab, Notebook 7, chromium)
from .kernels import SESSION, check_store, crash_and_restart, kernel_env, run, stop  # noqa: F401

# One marker per invariant the real-kernel tests prove (tests/README.md): ``-m durability`` and so on.
# Selection is unchanged: every test still runs under ``python -m pytest``; ``slow`` and ``e2e`` are in pyproject.toml.
INVARIANTS = {
    "durability": "a SIGKILL at any point loses no acknowledged cell, and the store stays consistent",
    "fidelity": "the namespace after a restore is the one before it (what the stock kernel would show)",
    "robustness": "bad input, odd objects and a hostile store never kill the kernel; each costs only itself",
    "sessions": "one notebook is one session, one session has one kernel writing it, wherever it is started",
    "protocol": "a Jupyter kernel like any other: the messaging protocol, the debugger",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, invariant in INVARIANTS.items():
        config.addinivalue_line("markers", f"{name}: {invariant} (tests/README.md)")


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
    """The test's own PERSISTENT_KERNEL_HOME: every session store of its kernels is under it."""
    home = tmp_path / "pk-home"
    home.mkdir()
    return home


@pytest.fixture
def session_env(pk_home: Path) -> Callable[..., dict[str, str]]:
    """Environment for a kernel on a named session under the test's own home."""

    def make(session: str = SESSION, **extra: str) -> dict[str, str]:
        return kernel_env(pk_home, session, **extra)

    return make


@pytest.fixture
def kernel(session_env: Callable[..., dict[str, str]], tmp_path: Path) -> Iterator[Callable[..., KernelDriver]]:
    """Start kernels (persistent ones unless ``kernel_name`` says e.g. ``python3``, the stock reference);
    every one still alive is shut down after the test, pass or fail."""
    drivers: list[KernelDriver] = []

    def start(
        session: str = SESSION,
        *,
        kernel_name: str = KERNEL_NAME,
        extra_arguments: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        kernel_log: IO[str] | None = None,
    ) -> KernelDriver:
        driver = KernelDriver(
            kernel_name, env=env or session_env(session), cwd=str(cwd or tmp_path), extra_arguments=extra_arguments, kernel_log=kernel_log
        )
        drivers.append(driver)
        return driver.start()

    yield start
    for driver in drivers:
        stop(driver)


@pytest.fixture
def shell() -> Iterator[Any]:
    """An in-process IPython shell for core tests without a kernel process (reset after the test)."""
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()
    instance = InteractiveShell.instance()
    yield instance
    instance.reset(new_session=False)
    InteractiveShell.clear_instance()
