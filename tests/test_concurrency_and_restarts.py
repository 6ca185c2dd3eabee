"""Two kernels on one session, restarts during a running cell, and library drift (#6 items 4, 6, 7)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from .kernels import check_store, crash_and_restart, run, start_and_restore

pytestmark = [pytest.mark.slow, pytest.mark.durability, pytest.mark.sessions]


def test_a_second_kernel_on_a_session_is_told_and_never_writes_to_it(kernel, pk_home: Path) -> None:
    first = kernel()
    run(first, "owner = 'first'")
    second = kernel(extra_arguments=["--PersistentKernel.lock_timeout=0.5"])
    told = second.execute("intruder = 'second'")
    assert told.status == "ok"
    assert re.search(r"Persistence is off for this kernel: this session is open in kernel process \d+", told.stderr), told.stderr
    assert "Close the other kernel, or set PERSISTENT_KERNEL_SESSION" in told.stderr
    assert "Persistence is off" not in second.execute("1").stderr  # told once
    assert "OFF" in second.execute("%persist status").text
    run(first, "owner = 'first, again'")  # the first goes on journaling undisturbed
    second.shutdown()
    first.kill()
    check_store(pk_home)
    # The session has the first kernel's history and nothing of the second's.
    again = kernel()
    assert again.evaluate("(owner, 'intruder' in globals())") == "('first, again', False)"


def test_the_lock_of_a_killed_kernel_is_taken_over_at_once(kernel) -> None:
    first = kernel()
    run(first, "x = 41")
    first.kill()  # the OS dropped its lock with the process; its pid is still in the file
    started = time.monotonic()
    second = kernel(extra_arguments=["--PersistentKernel.lock_timeout=30"])
    assert second.evaluate("x + 1") == "42"
    assert time.monotonic() - started < 25  # did not wait out the lock timeout


def test_restart_during_a_running_cell_leaves_a_consistent_store(kernel, pk_home: Path) -> None:
    """JupyterLab's restart while a cell runs: shutdown_request, then SIGTERM and SIGKILL if it lingers."""
    k = kernel()
    run(k, "x = 1")
    k.kc.execute("import time\ny = 0\nwhile True:\n    y += 1\n    time.sleep(0.01)")
    time.sleep(1.0)
    k.restart()  # jupyter_client: shutdown_request(restart=True), wait, then terminate, then kill
    first = k.execute("(x, 'y' in globals())")
    assert first.result == "(1, False)"
    assert "was running when the kernel died and was not replayed" in first.said
    k.shutdown()
    check_store(pk_home)


def test_interrupt_then_restart_keeps_the_interrupted_cells_effects(kernel, pk_home: Path) -> None:
    k = kernel()
    looping = k.kc.execute("import time\nticks = []\nwhile True:\n    ticks.append(1)\n    time.sleep(0.01)")
    time.sleep(1.0)
    k.km.interrupt_kernel()
    while (reply := k.kc.get_shell_msg(timeout=30))["parent_header"].get("msg_id") != looping:
        pass
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    n = int(k.evaluate("len(ticks)"))
    assert n > 0
    crash_and_restart(k)
    assert int(k.evaluate("len(ticks)")) == n  # its partial effects are the session's; it is never replayed
    k.shutdown()
    check_store(pk_home)


def test_a_variable_whose_module_was_removed_costs_only_itself(kernel, tmp_path: Path) -> None:
    """An installed library uninstalled while the kernel was down (its code is not the session's to keep)."""
    library = tmp_path / "site-packages"
    library.mkdir()
    (library / "gonelib.py").write_text("class Thing:\n    def __init__(self):\n        self.v = 7\n")
    k = kernel()
    run(k, "import sys; sys.path.insert(0, 'site-packages')\nfrom gonelib import Thing\nthing = Thing()\nplain = {'kept': True}")
    k.kill()
    (library / "gonelib.py").unlink()  # uninstalled while the kernel was down
    for cache in library.glob("__pycache__/gonelib*"):
        cache.unlink()
    summary = start_and_restore(k)
    assert "Could not rebuild" in summary and "thing" in summary and "Thing" in summary
    assert k.evaluate("(plain, 'thing' in globals())") == "({'kept': True}, False)"
    run(k, "after = 1")  # the session goes on
    crash_and_restart(k)
    assert k.evaluate("(plain, after)") == "({'kept': True}, 1)"


def test_a_variable_whose_own_module_file_was_deleted_comes_back_with_the_session_code(kernel, tmp_path: Path) -> None:
    """The user's own module (next to the notebook) deleted while the kernel was down: the session's code is kept."""
    (tmp_path / "gonelib.py").write_text("class Thing:\n    def __init__(self):\n        self.v = 7\n")
    k = kernel()
    run(k, "import sys; sys.path.insert(0, '.')\nfrom gonelib import Thing\nthing = Thing()\nplain = {'kept': True}")
    k.kill()
    (tmp_path / "gonelib.py").unlink()
    summary = start_and_restore(k)
    assert "gonelib.py changed since (the file is gone); the session's code is kept" in summary, summary
    assert k.evaluate("(plain, thing.v, isinstance(thing, Thing))") == "({'kept': True}, 7, True)"

