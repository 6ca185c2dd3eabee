"""jupyter console end to end: state typed at the ``In [n]:`` prompt, the kernel
killed with SIGKILL, the console quit, a new console on the same session.

The console runs in a pseudo-terminal under pexpect with its ordinary
prompt_toolkit interface; what it prints is matched after stripping the
terminal's escape sequences. The kernel's pid is read at the prompt
(``os.getpid()``) and checked against the one process whose command line holds a
connection file in the test's own runtime dir. After the SIGKILL the console does
not restart its kernel (it has no restarter; a cell just returns nothing), so it is
quit with Ctrl-D and "y", and a new console starts a new kernel on the session.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .e2e_helpers import (  # noqa: F401 - timed_e2e is an autouse fixture
    KERNEL_NAME,
    SUMMARY,
    alive,
    artifacts_dir,
    jupyter_env,
    kill_9,
    kill_all_with_arg,
    pids_with_arg,
    require_modules,
    timed_e2e,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SESSION = "console-e2e"
ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


class Console:
    """One ``jupyter console`` in a pseudo-terminal; ``expect`` searches the text it printed."""

    def __init__(self, env: dict[str, str], cwd: Path, transcript: Path) -> None:
        import pexpect

        self.pexpect = pexpect
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "jupyter", "console", "--kernel", KERNEL_NAME],
            env=env,
            cwd=str(cwd),
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(50, 200),
        )
        self.raw = ""
        self.pos = 0
        self.prompt = 0
        self.transcript = transcript

    @property
    def text(self) -> str:
        return ESCAPES.sub("", self.raw).replace("\r", "")

    def expect(self, pattern: str, timeout: float = 90) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = rx.search(self.text, self.pos)
            if match:
                self.pos = match.end()
                return match
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{pattern!r} not printed in {timeout} s; console so far:\n{self.text[-3000:]}"
                )
            try:
                self.raw += self.child.read_nonblocking(65536, timeout=0.5)
            except self.pexpect.TIMEOUT:
                pass
            except self.pexpect.EOF:
                raise AssertionError(
                    f"the console exited while waiting for {pattern!r}:\n{self.text[-3000:]}"
                ) from None

    def wait_for_prompt(self, timeout: float = 90) -> int:
        """The first ``In [n]:`` prompt; its number."""
        self.prompt = int(self.expect(r"In \[(\d+)\]: ", timeout).group(1))
        return self.prompt

    def run(self, code: str, timeout: float = 90) -> str:
        """Type ``code`` at the prompt; returns what it printed up to the next prompt.

        The next prompt is one with another number: the console redraws the current
        prompt when something else (the kernel's own stderr) is printed meanwhile.
        """
        self.child.sendline(code)
        start = self.pos
        while True:
            number = int(self.expect(r"\nIn \[(\d+)\]: ", timeout).group(1))
            if number != self.prompt:
                self.prompt = number
                return self.text[start : self.pos]

    def quit(self, timeout: float = 60) -> None:
        """Ctrl-D, confirm; the console exits (its kernel already dead or shut down)."""
        self.child.sendcontrol("d")
        self.expect(r"Do you really want to exit \(\[y\]/n\)\?", timeout)
        self.child.sendline("y")
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            try:
                self.raw += self.child.read_nonblocking(65536, timeout=0.5)
            except (self.pexpect.TIMEOUT, self.pexpect.EOF):
                pass
        assert not self.child.isalive(), (
            f"the console did not exit:\n{self.text[-2000:]}"
        )

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close(force=True)
        with open(self.transcript, "a") as f:
            f.write(self.text)


class Consoles:
    """Consoles on one session, with their own Jupyter dirs; ``runtime_dir`` holds their kernels' connection files."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = jupyter_env(
            tmp_path,
            PERSISTENT_KERNEL_SESSION=SESSION,
            PROMPT_TOOLKIT_NO_CPR="1",  # pexpect does not answer cursor position requests
            TERM="xterm",
        )
        self.runtime_dir = self.env["JUPYTER_RUNTIME_DIR"]
        self.transcript = artifacts_dir() / "console-transcript.txt"
        self.transcript.write_text("")
        self.started: list[Console] = []

    def start(self) -> Console:
        console = Console(self.env, self.tmp_path, self.transcript)
        self.started.append(console)
        return console

    def kernel_pids(self) -> list[int]:
        return pids_with_arg(self.runtime_dir)


@pytest.fixture
def consoles(tmp_path: Path) -> Iterator[Consoles]:
    """Every console and kernel the test started is gone afterwards, pass or fail."""
    require_modules("jupyter_console", "pexpect")
    manager = Consoles(tmp_path)
    try:
        yield manager
    finally:
        for console in manager.started:
            console.close()
        kill_all_with_arg(manager.runtime_dir)


def test_kill_9_under_jupyter_console_restores_the_session(consoles: Consoles) -> None:
    first = consoles.start()
    assert first.wait_for_prompt() == 1
    first.run(
        "deck = list(range(52)); hands = {'ada': deck[:2]}; show = lambda who: hands[who]"
    )
    printed = first.run("import os; os.getpid()")
    pid = int(re.search(r"Out\[\d+\]: (\d+)", printed).group(1))
    # The console started that kernel: the pid is the process with a connection file in our runtime dir.
    assert consoles.kernel_pids() == [pid]

    kill_9(pid)
    first.quit()
    assert consoles.kernel_pids() == [], "a kernel outlived the first console"

    second = consoles.start()
    second.wait_for_prompt()
    printed = second.run("show('ada'), len(deck)")
    summary = SUMMARY.search(printed)
    assert summary, f"no restore summary printed:\n{printed}"
    assert summary.group(1) == SESSION and int(summary.group(2)) >= 3, printed
    assert re.search(r"Out\[3\]: \(\[0, 1\], 52\)", printed), printed
    (new_pid,) = consoles.kernel_pids()
    assert new_pid != pid

    printed = second.run("%persist history")
    assert (
        "deck = list(range(52))" in printed and "show('ada'), len(deck)" in printed
    ), printed
    second.quit()
    wait_until(
        lambda: not alive(new_pid), 60, "the second console to shut its kernel down"
    )
