"""State changed outside cells: widget callbacks, comm handlers, subshells, silent executions (#7).

The frontend side is a jupyter_client test client sending exactly what
JupyterLab sends: a widget's ``comm_msg`` with ``{"method": "update", "state":
…}``, an execute request with ``silent``, a ``create_subshell_request`` on the
control channel and an execute request whose header names the subshell.
"""

from __future__ import annotations

import ast
import queue
import time
from pathlib import Path
from typing import Any

import ipykernel
import pytest

from persistent_kernel.driver import KernelDriver

from .kernels import check_store, crash_and_restart, kill_and_start, run

pytest.importorskip("ipywidgets")
pytestmark = [pytest.mark.slow, pytest.mark.durability]

# ipykernel 7.4 (Python 3.11+) handles comm messages while a cell awaits and routes a comm's messages
# to the subshell that made it; 7.3 (the newest on Python 3.10) queues them behind the cell, as the
# stock kernel there does (checked: a stock 7.3 kernel's awaiting cell never sees the drag).
CONCURRENT_COMMS = tuple(int(part) for part in ipykernel.__version__.split(".")[:2]) >= (7, 4)
needs_concurrent_comms = pytest.mark.skipif(not CONCURRENT_COMMS, reason=f"ipykernel {ipykernel.__version__} handles comm messages only between cells")

SLIDER = """
import ipywidgets as widgets
tuned = []
best = None
slider = widgets.IntSlider(value=1, max=100)
def on_change(change):
    global best
    best = change["new"]
    tuned.append(change["new"])
slider.observe(on_change, names="value")
"""


def wait_for_idle(k: KernelDriver, msg_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """IOPub messages until the kernel is idle after the request ``msg_id`` (what a frontend waits for)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = k.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(msg)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return seen
    raise AssertionError(f"the kernel never went idle after {msg_id}")


def send_comm(k: KernelDriver, comm_id: str, data: dict[str, Any], *, wait: bool = True) -> str:
    """A comm_msg from the frontend, as JupyterLab's widget manager sends one."""
    msg = k.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    k.kc.shell_channel.send(msg)
    if wait:
        wait_for_idle(k, msg["header"]["msg_id"])
    return msg["header"]["msg_id"]


def drag(k: KernelDriver, comm_id: str, value: int, **kwargs: Any) -> str:
    return send_comm(k, comm_id, {"method": "update", "state": {"value": value}, "buffer_paths": []}, **kwargs)


def model_id(k: KernelDriver, name: str) -> str:
    return ast.literal_eval(k.evaluate(f"{name}.model_id"))


def journal_size(k: KernelDriver) -> int:
    # Blank code: the silent evaluation is not journaled itself.
    return int(k.evaluate("len(get_ipython().kernel.journal.records())"))


def reply_to(k: KernelDriver, msg_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = k.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg
    raise AssertionError(f"no reply to {msg_id}")


def replies_to(k: KernelDriver, msg_ids: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """The shell replies to several requests, in whatever order they come."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(msg_ids) and time.monotonic() < deadline:
        msg = k.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") in msg_ids:
            found[msg["parent_header"]["msg_id"]] = msg
    assert len(found) == len(msg_ids), f"replies to {set(msg_ids) - set(found)} never came"
    return found


def wait_for_output(k: KernelDriver, msg_id: str, text: str, timeout: float = 30) -> None:
    """Until the request ``msg_id`` has printed ``text`` (so its cell is running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = k.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["msg_type"] == "stream" and msg["parent_header"].get("msg_id") == msg_id and text in msg["content"]["text"]:
            return
    raise AssertionError(f"{msg_id} never printed {text!r}")


def test_a_slider_callback_survives_a_kill_and_history_names_it(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, SLIDER)
    slider = model_id(k, "slider")
    before = journal_size(k)
    for value in (5, 17, 42):
        drag(k, slider, value)  # the next sent as soon as the kernel is idle, as a frontend does
    assert k.evaluate("(best, tuned)") == "(42, [5, 17, 42])"
    # A burst is one event (a group commit), committed before the next execution ran.
    assert journal_size(k) == before + 1
    history = k.execute("%persist history 4").text
    assert "comm message" in history and "IntSlider update value=5" in history, history
    trigger = k.evaluate("[r.trigger for r in get_ipython().kernel.journal.records() if r.kind == 'comm'][-1]")
    assert all(f"IntSlider update value={value}" in trigger for value in (5, 17, 42)), trigger

    k.kill()
    check_store(pk_home)
    k.start()
    # The values the callbacks produced come back from the store; no event is replayed as a cell.
    assert k.evaluate("(best, tuned)") == "(42, [5, 17, 42])"
    # The widget is rebuilt by replaying its cell, with its callback: dragging it again journals again.
    slider = model_id(k, "slider")
    drag(k, slider, 64)
    assert k.evaluate("(best, tuned)") == "(64, [5, 17, 42, 64])"
    kill_and_start(k)
    assert k.evaluate("(best, tuned)") == "(64, [5, 17, 42, 64])"


def test_each_message_commits_before_idle_when_group_commit_is_off(kernel, pk_home: Path) -> None:
    k = kernel(extra_arguments=["--PersistentKernel.event_commit_delay=-1"])
    run(k, SLIDER)
    slider = model_id(k, "slider")
    before = journal_size(k)
    for value in (5, 17, 42):
        drag(k, slider, value)
    assert journal_size(k) == before + 3  # one event each, committed before the kernel went idle
    k.kill()
    check_store(pk_home)
    k.start()
    assert k.evaluate("(best, tuned)") == "(42, [5, 17, 42])"


def test_a_burst_is_committed_once_quiet_and_survives_a_kill_without_another_execution(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, SLIDER)
    slider = model_id(k, "slider")
    for value in range(2, 40):
        drag(k, slider, value)
    time.sleep(0.5)  # past the quiet time (5 ms) and the longest wait of a burst (0.1 s)
    k.kill()  # no execution since the drag: only the group commit's timer committed it
    check_store(pk_home)
    k.start()
    assert k.evaluate("(best, len(tuned))") == "(39, 38)"


def test_messages_waiting_for_their_commit_go_in_before_a_cell_that_kills_the_kernel(kernel, pk_home: Path) -> None:
    k = kernel(extra_arguments=["--PersistentKernel.event_commit_delay=60"])  # only the next execution commits them
    run(k, SLIDER)
    slider = model_id(k, "slider")
    for value in (7, 8, 9):
        drag(k, slider, value)
    with pytest.raises((TimeoutError, RuntimeError)):
        k.execute("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", timeout=5)
    deadline = time.monotonic() + 10
    while k.km.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    kill_and_start(k)
    check_store(pk_home)
    first = k.execute("(best, tuned)")
    assert first.result == "(9, [7, 8, 9])", first.said  # the drag, committed before the cell began
    assert "was running when the kernel died and was not replayed" in first.said, first.said


def test_comm_messages_that_run_no_user_code_leave_no_entry(kernel) -> None:
    k = kernel()
    run(k, SLIDER)
    slider = model_id(k, "slider")
    before = journal_size(k)
    send_comm(k, slider, {"method": "request_state"})  # the widget manager asking for the model's state
    drag(k, slider, 1)  # the value it already has: traitlets fires no observer
    send_comm(k, "no-such-comm", {"method": "update", "state": {"value": 3}})  # a comm that is gone
    k.kc.shell_channel.send(k.kc.session.msg("comm_msg", {"data": "not even a dict"}))  # malformed
    assert journal_size(k) == before
    assert k.evaluate("(best, tuned)") == "(None, [])"  # and the kernel is fine


def test_a_silent_execution_is_restored(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "seen = ['visible']")
    hidden = k.execute("inspected = {'rows': 3}\nseen.append('silent')", silent=True)
    assert hidden.status == "ok"
    assert "silent execution" in k.execute("%persist history 3").text
    crash_and_restart(k)
    assert k.evaluate("(inspected, seen)") == "({'rows': 3}, ['visible', 'silent'])"
    k.kill()
    check_store(pk_home)


@needs_concurrent_comms
def test_a_comm_message_while_an_async_cell_awaits_commits_with_that_cell(kernel, pk_home: Path) -> None:
    """Committed apart, the event would store half of the cell (what it did before its await)."""
    k = kernel()
    run(k, SLIDER)
    slider = model_id(k, "slider")
    drag(k, slider, 10)
    cell = k.kc.execute(
        "import asyncio\nstage = 'before the await'\nprint('awaiting', flush=True)\n"
        "while best != 20:\n    await asyncio.sleep(0.01)\nafter = best"
    )
    wait_for_output(k, cell, "awaiting")
    # Handled at once (the cell is waiting for the widget), as a concurrent message:
    # ipykernel publishes no busy/idle for it; the cell's end shows it ran.
    drag(k, slider, 20, wait=False)
    assert reply_to(k, cell)["content"]["status"] == "ok"
    assert k.evaluate("(best, after, stage)") == "(20, 20, 'before the await')"
    history = k.execute("%persist history 3").text
    assert "(+1 comm) import asyncio" in history, history

    # Killed while a cell awaits, after a comm message it absorbed: the state is that of
    # before the cell, both the cell's changes and the message's undone together.
    second = k.kc.execute(
        "stage = 'second cell'\nprint('awaiting', flush=True)\nwhile best != 30:\n    await asyncio.sleep(0.01)\n"
        "print('saw it', flush=True)\nawait asyncio.sleep(60)"
    )
    wait_for_output(k, second, "awaiting")
    drag(k, slider, 30, wait=False)
    wait_for_output(k, second, "saw it")  # the callback ran; the cell still holds the turn
    summary = crash_and_restart(k)
    assert "was running when the kernel died" in summary, summary
    assert k.evaluate("(best, tuned, stage)") == "(20, [10, 20], 'before the await')"
    k.kill()
    check_store(pk_home)


def test_a_subshell_execution_during_a_main_cell_takes_its_turn_and_both_are_restored(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "log = []")
    assert "kernel subshells" not in k.kc.kernel_info(reply=True, timeout=30)["content"].get("supported_features", [])
    request = k.kc.session.msg("create_subshell_request", {})
    k.kc.control_channel.send(request)
    created = k.kc.get_control_msg(timeout=30)
    assert created["content"]["status"] == "ok", created["content"]
    subshell = created["content"]["subshell_id"]

    main = k.kc.execute("import time\nlog.append('main starts')\nprint('running', flush=True)\ntime.sleep(1.5)\nlog.append('main ends')\nfrom_main = 1")
    wait_for_output(k, main, "running")  # the main cell holds the turn now
    side = execute_on_subshell(k, subshell, "log.append('subshell')\nfrom_subshell = 2")
    replies = replies_to(k, [main, side])
    assert [replies[main]["content"]["status"], replies[side]["content"]["status"]] == ["ok", "ok"]
    # The subshell's cell waited for the main cell's turn: one order, in the namespace and the journal.
    expected = "(['main starts', 'main ends', 'subshell'], 1, 2)"
    assert k.evaluate("(log, from_main, from_subshell)") == expected
    crash_and_restart(k)
    assert k.evaluate("(log, from_main, from_subshell)") == expected
    k.kill()
    check_store(pk_home)


def execute_on_subshell(k: KernelDriver, subshell: str, code: str) -> str:
    """An execute request whose header names the subshell; returns its msg_id."""
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
    msg = k.kc.session.msg("execute_request", content)
    msg["header"]["subshell_id"] = subshell
    k.kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


@needs_concurrent_comms
def test_a_comm_message_on_a_subshell_while_a_cell_runs_commits_with_that_cell(kernel, pk_home: Path) -> None:
    """What JupyterLab 4.6 does with subshells advertised: widget messages on another thread, mid-cell.

    ipykernel routes a comm's messages to the subshell that last published on it:
    a slider made by a cell on the subshell is handled there.
    """
    k = kernel(extra_arguments=["--PersistentKernel.advertise_subshells=True"])
    assert "kernel subshells" in k.kc.kernel_info(reply=True, timeout=30)["content"].get("supported_features", [])
    k.kc.control_channel.send(k.kc.session.msg("create_subshell_request", {}))
    subshell = k.kc.get_control_msg(timeout=30)["content"]["subshell_id"]
    assert reply_to(k, execute_on_subshell(k, subshell, SLIDER))["content"]["status"] == "ok"
    slider = model_id(k, "slider")

    cell = k.kc.execute("import time\nstage = 'running'\nprint('running', flush=True)\ntime.sleep(1.5)\nstage = 'done'")
    wait_for_output(k, cell, "running")
    msg = k.kc.session.msg("comm_msg", {"comm_id": slider, "data": {"method": "update", "state": {"value": 33}, "buffer_paths": []}})
    k.kc.shell_channel.send(msg)
    wait_for_idle(k, msg["header"]["msg_id"])  # handled on the subshell's thread while the cell sleeps
    assert k.kc.is_alive()
    assert reply_to(k, cell)["content"]["status"] == "ok"
    history = k.execute("%persist history 3").text
    assert "(+1 comm) import time" in history, history
    crash_and_restart(k)
    assert k.evaluate("(best, tuned, stage)") == "(33, [33], 'done')"
    k.kill()
    check_store(pk_home)
