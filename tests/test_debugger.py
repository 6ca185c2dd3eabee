"""The JupyterLab debugger on ``persistent-python3``: advertised, working, and the journal unaffected.

The requests are the Debug Adapter Protocol messages JupyterLab's debugger panel
sends on the control channel (``debug_request``), in its order: initialize,
attach, dumpCell, setBreakpoints, configurationDone; then a cell stops at its
breakpoint, the panel reads the stack and the variables, and continues.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from persistent_kernel.driver import KernelDriver

from .kernels import crash_and_restart, run

pytestmark = [pytest.mark.slow, pytest.mark.protocol]

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 60
_seq = itertools.count(1)

CELL = """def f(a, b):
    c = a + b
    return c

result = f(2, 3)"""


def debug(k: KernelDriver, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """One DAP request on the control channel; the reply's content."""
    msg = k.kc.session.msg("debug_request", {"type": "request", "seq": next(_seq), "command": command, "arguments": arguments or {}})
    k.kc.control_channel.send(msg)
    while True:
        reply = k.kc.control_channel.get_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]


def attach(k: KernelDriver) -> None:
    init = debug(
        k,
        "initialize",
        {"clientID": "jupyterlab", "clientName": "JupyterLab", "adapterID": "python", "pathFormat": "path",
         "linesStartAt1": True, "columnsStartAt1": True, "supportsVariableType": True, "supportsVariablePaging": True,
         "supportsRunInTerminalRequest": True, "locale": "en"},
    )
    assert init.get("success"), init
    assert debug(k, "attach").get("success")


def wait_for_event(k: KernelDriver, event: str) -> dict[str, Any]:
    while True:
        msg = k.kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] == "debug_event" and msg["content"].get("event") == event:
            return msg["content"]


def test_kernelspec_advertises_the_debugger() -> None:
    spec = json.loads((REPO / "kernelspec" / "persistent-python3" / "kernel.json").read_text())
    assert spec["metadata"]["debugger"] is True


def test_breakpoint_and_variables_with_journaling_unaffected(kernel) -> None:
    k = kernel()
    k.kc.kernel_info()
    info = k.kc.get_shell_msg(timeout=TIMEOUT)["content"]
    assert "debugger" in info.get("supported_features", []), info
    run(k, "x = 10")
    attach(k)
    try:
        source = debug(k, "dumpCell", {"code": CELL})["body"]["sourcePath"]
        placed = debug(k, "setBreakpoints", {"breakpoints": [{"line": 2}], "source": {"path": source}, "sourceModified": False})
        assert placed["success"] and placed["body"]["breakpoints"][0]["verified"], placed
        assert source in [b["source"] for b in debug(k, "debugInfo")["body"]["breakpoints"]]
        assert debug(k, "configurationDone")["success"]

        msg_id = k.kc.execute(CELL)
        stopped = wait_for_event(k, "stopped")
        assert stopped["body"]["reason"] == "breakpoint"
        thread = stopped["body"]["threadId"]
        frames = debug(k, "stackTrace", {"threadId": thread})["body"]["stackFrames"]
        scopes = debug(k, "scopes", {"frameId": frames[0]["id"]})["body"]["scopes"]
        local_ref = next(s for s in scopes if s["name"] == "Locals")["variablesReference"]
        local_vars = {v["name"]: v["value"] for v in debug(k, "variables", {"variablesReference": local_ref})["body"]["variables"]}
        assert local_vars.get("a") == "2" and local_vars.get("b") == "3", local_vars
        rich = debug(k, "richInspectVariables", {"variableName": "a", "frameId": frames[0]["id"]})
        assert rich["body"]["data"] == {"text/plain": "2"}, rich
        assert debug(k, "continue", {"threadId": thread})["success"]
        while True:
            reply = k.kc.get_shell_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        assert reply["content"]["status"] == "ok", reply["content"]

        # Not at a breakpoint: the variables panel reads the namespace, restored values included.
        names = [v["name"] for v in debug(k, "inspectVariables")["body"]["variables"]]
        assert "x" in names and "result" in names, names
        assert debug(k, "richInspectVariables", {"variableName": "result"})["body"]["data"] == {"text/plain": "5"}
        status = run(k, "%persist status")
        assert "Persistence:     on" in status.text and status.stderr == "", status
    finally:
        debug(k, "disconnect", {"restart": False, "terminateDebuggee": True})
    # The cell run under the debugger was journaled like any other.
    summary = crash_and_restart(k)
    assert "Restored session" in summary and "Could not" not in summary, summary
    assert k.evaluate("(x, result, f(1, 1))") == "(10, 5, 2)"
    cell_row = next(line for line in run(k, "%persist history").text.splitlines() if line.endswith("def f(a, b):"))
    assert " ok " in cell_row and "f, result" in cell_row, cell_row
