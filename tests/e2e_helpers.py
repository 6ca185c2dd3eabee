"""Shared pieces of the end-to-end tests in real frontends (JupyterLab, jupyter console).

Every process these tests start is found again through a path unique to the test
(its own JUPYTER_RUNTIME_DIR, the browser's own profile directory) in the
process list, so cleanup kills exactly those, even when the test failed half way.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from persistent_kernel import DISPLAY_NAME, KERNEL_NAME  # noqa: F401 - the e2e tests import them from here

from .kernels import kernel_env

REPO = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"Restored session '([^']+)': loaded (\d+) variables")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, what: str) -> None:
    """Skip when a frontend or browser is missing on a developer's machine; fail in CI."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{what} is required in CI (env CI is set)")
    pytest.skip(f"{what} is not available (set CI=1 to make this a failure)")


def require_modules(*names: str) -> None:
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    require(not missing, f"Python package(s) {', '.join(missing)}")


def artifacts_dir() -> Path:
    """Screenshots and logs of the e2e tests: $PK_E2E_ARTIFACTS or <repo>/.e2e-artifacts/."""
    path = Path(os.environ.get("PK_E2E_ARTIFACTS") or REPO / ".e2e-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(base: Path, **extra: str) -> dict[str, str]:
    """An environment whose Jupyter and kernel state all live under ``base``."""
    env = kernel_env(base / "pk-home")  # no session name inherited; the directory is made below
    dirs = {
        # The user's home stays untouched (npm's logs, chromium's crash settings, dconf).
        "HOME": "home",
        "XDG_CONFIG_HOME": "home/.config",
        "XDG_CACHE_HOME": "home/.cache",
        "JUPYTER_CONFIG_DIR": "jupyter-config",
        "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
        "JUPYTER_DATA_DIR": "jupyter-data",
        "IPYTHONDIR": "ipython",
        "PERSISTENT_KERNEL_HOME": "pk-home",
    }
    for key, name in dirs.items():
        (base / name).mkdir(parents=True, exist_ok=True)
        env[key] = str(base / name)
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def timed_e2e(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print each e2e test's duration and add it to ``durations.txt`` among the artifacts."""
    start = time.monotonic()
    yield
    took = time.monotonic() - start
    print(f"\n{request.node.nodeid}: {took:.1f} s including start-up and cleanup")
    with open(artifacts_dir() / "durations.txt", "a") as f:
        f.write(f"{request.node.nodeid} {took:.1f}\n")


def pids_with_arg(fragment: str) -> list[int]:
    """Processes (not zombies) whose command line contains ``fragment``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if fragment.encode() in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def kill_9(pid: int, timeout: float = 30) -> None:
    """SIGKILL a kernel a frontend started (as the OOM killer would) and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), timeout, f"kernel {pid} to die")


def kill_all_with_arg(fragment: str) -> list[int]:
    """SIGKILL every live process whose command line contains ``fragment``."""
    pids = pids_with_arg(fragment)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def copy_artifact(src: Path, name: str) -> None:
    if src.exists():
        shutil.copyfile(src, artifacts_dir() / name)
