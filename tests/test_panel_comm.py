"""The session panel's comm (``persistent_kernel.session``), on real kernels, as the
JupyterLab / Notebook 7 extension uses it: the state on open, the history rows, a diff,
a checkout run as ``%persist checkout N``, the status pushed after each commit, the
restore after kill -9, and a second kernel on the same session saying why it is not
persisting. The panel's own messages are never journaled."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from persistent_kernel.driver import KernelDriver
from persistent_kernel.panel import TARGET

pytestmark = pytest.mark.slow


class Panel:
    """A frontend's end of the comm: opens it, asks, and collects what the kernel sends."""

    def __init__(self, driver: KernelDriver) -> None:
        self.driver = driver
        self.comm_id = uuid.uuid4().hex
        self.received: list[dict[str, Any]] = []
        self._send("comm_open", {"comm_id": self.comm_id, "target_name": TARGET, "data": {}})
        self.opened_with = self.wait_for(lambda m: m.get("type") == "state")

    def _send(self, msg_type: str, content: dict[str, Any]) -> None:
        kc = self.driver.kc
        kc.shell_channel.send(kc.session.msg(msg_type, content))

    def ask(self, request: str, **fields: Any) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        self._send("comm_msg", {"comm_id": self.comm_id, "data": {"request": request, "request_id": request_id, **fields}})
        return self.wait_for(lambda m: m.get("request_id") == request_id)

    def wait_for(self, wanted: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for seen in self.received:
            if wanted(seen):
                self.received.remove(seen)
                return seen
        while time.monotonic() < deadline:
            try:
                msg = self.driver.kc.get_iopub_msg(timeout=0.5)
            except Exception:  # queue.Empty
                continue
            if msg["msg_type"] == "comm_msg" and msg["content"].get("comm_id") == self.comm_id:
                data = msg["content"]["data"]
                if wanted(data):
                    return data
                self.received.append(data)
        raise AssertionError(f"the kernel never sent the expected panel message; got {self.received}")

    def close(self) -> None:
        self._send("comm_close", {"comm_id": self.comm_id, "data": {}})


def test_the_panel_sees_the_session_diffs_checks_out_and_is_never_journaled(kernel: Any) -> None:
    k = kernel()
    k.execute("x = 1")
    k.execute("x = 2\ny = [1, 2]")
    panel = Panel(k)
    status = panel.opened_with["status"]
    assert status["state"] == "persisted" and status["text"].startswith("Persisted")
    assert panel.opened_with["restore"] is None  # a fresh session

    history = panel.ask("history", limit=10)
    rows = history["rows"]
    assert [r["execution_count"] for r in rows] == [2, 1]  # newest first
    assert rows[0]["changed"] == ["x", "y"] and rows[0]["stored"] == ["x", "y"] and rows[0]["status"] == "ok"
    assert rows[0]["stored_bytes"] > 0 and rows[0]["what"] == "x = 2"

    diff = panel.ask("diff", cell=1)
    assert {(r["name"], r["change"]) for r in diff["rows"]} == {("x", "changed"), ("y", "added")}
    assert "error" in panel.ask("diff", cell=99)  # no such cell: said, not raised
    assert panel.ask("nonsense")["type"] == "error"

    # A cell commits: the open panel is told (the status bar's age starts again).
    msg_id = k.kc.execute("z = 3")  # not k.execute: its output hook would take the pushed message
    pushed = panel.wait_for(lambda m: m.get("type") == "state" and m["status"]["last_commit_at"])
    assert pushed["status"]["state"] == "persisted"
    assert k.kc.get_shell_msg(timeout=30)["parent_header"]["msg_id"] == msg_id

    # The checkout the panel's button runs: journaled like the magic typed in a cell.
    k.execute("%persist checkout 1")
    assert k.evaluate("x, 'y' in dir()") == "(1, False)"

    # None of the panel's messages became a journal event.
    panel.close()
    whats = [r["what"] for r in panel_rows(k)]
    assert not any("comm" in w for w in whats), whats


def panel_rows(k: KernelDriver) -> list[dict[str, Any]]:
    panel = Panel(k)
    try:
        return panel.ask("history", limit=50)["rows"]
    finally:
        panel.close()


def test_after_kill_9_the_panel_gets_the_restore_and_a_second_kernel_says_why_it_is_not_persisting(kernel: Any) -> None:
    k = kernel()
    k.execute("a = list(range(5))")
    k.kill()
    k.start()
    assert k.evaluate("a") == "[0, 1, 2, 3, 4]"
    state = Panel(k).opened_with
    assert state["restore"] is not None and "Restored" in state["restore"]["summary"]
    assert state["status"]["state"] == "persisted"

    second = kernel()  # the same session: the first kernel holds its store
    second.execute("b = 1")
    status = Panel(second).opened_with["status"]
    assert status["state"] == "off" and status["text"].startswith("Not persisting: ")
    assert f"open in kernel process {k.pid}" in status["reason"]  # the one holding it, by its pid


def test_the_status_says_writing_while_a_large_value_lands_and_paused_after_persist_off(kernel: Any) -> None:
    # 20 MB/s for the background writer, and nothing landed before the reply: 100 MiB takes ~5 s.
    k = kernel(extra_arguments=["--PersistentKernel.write_throttle=20", "--PersistentKernel.land_before_reply_bytes=0"])
    panel = Panel(k)
    k.execute("import numpy as np\na = np.random.default_rng(0).random(100 * 2**20 // 8)")  # distinct pieces: 100 MiB to write
    status = panel.ask("state")["status"]
    assert status["state"] == "writing" and status["text"].startswith("Writing ") and status["pending_bytes"] > 50e6, status
    deadline = time.monotonic() + 60
    while panel.ask("state")["status"]["state"] == "writing":
        assert time.monotonic() < deadline, "the write never landed"
        time.sleep(0.5)
    assert panel.ask("state")["status"]["text"] == "Persisted"
    k.execute("%persist off")
    status = panel.ask("state")["status"]
    assert (status["state"], status["text"]) == ("paused", "Paused") and "%persist on" in status["reason"]
