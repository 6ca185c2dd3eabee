"""Drive a real kernel through jupyter_client: start, execute, SIGKILL, restart.

The frontend side of the project: the demo, the tests and the benchmarks all
talk to kernels through this, exactly as JupyterLab or nbclient would.
"""

from __future__ import annotations

import ast
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import KernelManager

from . import KERNEL_NAME


@dataclass
class Execution:
    """What one execute request produced, as a frontend saw it."""

    status: str
    execution_count: int | None
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)  # text/plain of execute_result
    displays: list[str] = field(default_factory=list)  # text/plain of display_data
    html: list[str] = field(default_factory=list)  # text/html of display_data, where a display had it
    notice: str = ""  # the restore summary's plain text (a display of its own, not in ``displays``)
    notice_html: str = ""
    pages: list[str] = field(default_factory=list)  # pager payloads (``%persist?``), as text
    ename: str | None = None
    evalue: str | None = None
    user_expressions: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """What a console prints of it: stdout, then the plain text of displays (``%persist status`` …)."""
        return "\n".join([self.stdout, *self.displays])

    @property
    def said(self) -> str:
        """What persistence told the user in this cell: the restore notice, then stderr (warnings)."""
        return "\n".join(part for part in (self.notice, self.stderr) if part)

    @property
    def result(self) -> str | None:
        return self.results[-1] if self.results else None


def is_restore_notice(content: dict[str, Any]) -> bool:
    """Whether a display_data is the kernel's restore summary (``notice``), not the cell's own output."""
    return "notice" in ((content.get("metadata") or {}).get("persistent_kernel") or {})


class KernelDriver:
    """One kernel process (and the ones that replace it) for one client."""

    def __init__(
        self,
        kernel_name: str = KERNEL_NAME,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        extra_arguments: list[str] | None = None,
        startup_timeout: float = 60,
        kernel_log: Any = None,
    ) -> None:
        self.kernel_name = kernel_name
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.extra_arguments = list(extra_arguments or [])
        self.startup_timeout = startup_timeout
        self.kernel_log = kernel_log  # where the kernel's own stdout/stderr go (None: inherit ours)
        self.km: KernelManager | None = None
        self.kc: Any = None
        self.startup_output: list[dict[str, Any]] = []  # IOPub messages seen before the first request

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> KernelDriver:
        self._launch()
        self._connect()
        return self

    def start_and_execute(self, code: str, *, timeout: float = 120) -> Execution:
        """Start the kernel and send ``code`` at once, as a frontend with a cell already queued does.

        The reply comes the moment the kernel can give it. ``start`` instead waits as
        jupyter_client's ``wait_for_ready`` does: a kernel_info request each second while
        the kernel is busy, then IOPub drained until it is quiet for 0.2 s (twice), which
        a restore's comm messages (hundreds, for a notebook full of widgets) stretch
        further. What a frontend shows is the first reply; a restore is timed by it.
        """
        self._launch()
        assert self.km is not None
        self.startup_output = []  # nothing is drained first: what the kernel publishes at start reaches the cell's outputs
        self.kc = self.km.client()
        self.kc.start_channels()
        return self.execute(code, timeout=timeout)

    def _launch(self) -> None:
        self.km = KernelManager(kernel_name=self.kernel_name)
        kwargs: dict[str, Any] = {"env": self.env, "extra_arguments": self.extra_arguments}
        if self.cwd:
            kwargs["cwd"] = self.cwd
        if self.kernel_log is not None:
            kwargs["stdout"] = kwargs["stderr"] = self.kernel_log
        self.km.start_kernel(**kwargs)

    def connect_to(self, connection_file: str) -> KernelDriver:
        """Be a client of a kernel another process manages (jupyter_server), from its connection file."""
        from jupyter_client.blocking import BlockingKernelClient

        if self.kc is not None:
            self.kc.stop_channels()
        self.kc = BlockingKernelClient(connection_file=connection_file)
        self.kc.load_connection_file()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=self.startup_timeout)
        self._drain_iopub()
        return self

    def disconnect(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None

    def _connect(self) -> None:
        assert self.km is not None
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=self.startup_timeout)
        # Anything the kernel published on IOPub while starting (a restore must publish nothing).
        self.startup_output = [m for m in self._drain_iopub() if m["msg_type"] in ("stream", "display_data", "execute_result", "error")]

    def _drain_iopub(self) -> list[dict[str, Any]]:
        messages = []
        while True:
            try:
                messages.append(self.kc.get_iopub_msg(timeout=0.2))
            except Exception:  # queue.Empty; jupyter_client raises it from a thread-safe queue
                return messages

    @property
    def pid(self) -> int:
        assert self.km is not None and self.km.provisioner is not None
        return self.km.provisioner.process.pid  # type: ignore[attr-defined]

    def kill(self) -> None:
        """SIGKILL the kernel process, as the OOM killer or ``kill -9`` would.

        Also cleans up after a kernel that already died on its own.
        """
        assert self.km is not None
        process = self.km.provisioner.process if self.km.provisioner else None  # type: ignore[attr-defined]
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        self.kc.stop_channels()
        self.km.cleanup_resources()
        self.km = None

    def restart(self) -> None:
        """What JupyterLab's "Restart Kernel" does: shutdown_request(restart=True), then a new process."""
        assert self.km is not None
        self.km.restart_kernel(now=False)
        self.kc.stop_channels()
        self._connect()

    def shutdown(self) -> None:
        if self.km is None:
            return
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)
        self.km = None

    def __enter__(self) -> KernelDriver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.km is not None and self.km.is_alive():
            self.shutdown()

    # -- requests -----------------------------------------------------------------

    def execute(
        self,
        code: str,
        *,
        timeout: float = 60,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, str] | None = None,
        allow_stdin: bool | None = None,
    ) -> Execution:
        outputs: dict[str, list[str]] = {"stdout": [], "stderr": [], "results": [], "displays": [], "html": [], "notice": [], "notice_html": []}
        error: dict[str, str] = {}

        def on_output(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                outputs[content["name"]].append(content["text"])
            elif kind == "execute_result":
                outputs["results"].append(content["data"].get("text/plain", ""))
            elif kind == "display_data" and is_restore_notice(content):
                outputs["notice"].append(content["data"].get("text/plain", ""))
                outputs["notice_html"].append(content["data"].get("text/html", ""))
            elif kind == "display_data":
                outputs["displays"].append(content["data"].get("text/plain", ""))
                if "text/html" in content["data"]:
                    outputs["html"].append(content["data"]["text/html"])
            elif kind == "error":
                error.update(ename=content["ename"], evalue=content["evalue"])

        reply = self.kc.execute_interactive(
            code,
            silent=silent,
            store_history=store_history,
            user_expressions=user_expressions or {},
            output_hook=on_output,
            timeout=timeout,
            allow_stdin=allow_stdin,
        )["content"]
        return Execution(
            status=reply["status"],
            execution_count=reply.get("execution_count"),
            stdout="".join(outputs["stdout"]),
            stderr="".join(outputs["stderr"]),
            results=outputs["results"],
            displays=outputs["displays"],
            html=outputs["html"],
            notice="\n".join(outputs["notice"]),
            notice_html="\n".join(outputs["notice_html"]),
            pages=[p["data"].get("text/plain", "") for p in reply.get("payload", []) if p.get("source") == "page"],
            ename=reply.get("ename", error.get("ename")),
            evalue=reply.get("evalue", error.get("evalue")),
            user_expressions=reply.get("user_expressions", {}),
        )

    def restore_summary(self, timeout: float = 30) -> str:
        """The last restore's summary, read without a cell (the notice itself waits for the first user cell)."""
        report = "get_ipython().kernel.restore_report"
        return ast.literal_eval(self.evaluate(f"{report}.summary() if {report} is not None else ''", timeout=timeout))

    def evaluate(self, expression: str, timeout: float = 30) -> str:
        """``repr`` of an expression in the kernel, through a silent execution's user_expressions."""
        for attempt in range(20):
            result = self.execute("", silent=True, user_expressions={"value": expression}, timeout=timeout)
            # ipykernel aborts what arrives just after a failed cell (its stop-on-error window,
            # cleared by its event loop): the request was not run, so it is asked again.
            if result.status != "aborted":
                break
            time.sleep(0.1 * (attempt + 1))
        if "value" not in result.user_expressions:
            raise RuntimeError(f"{expression!r}: the kernel answered {result.status} without evaluating it")
        value = result.user_expressions["value"]
        if value["status"] != "ok":
            raise RuntimeError(f"{expression!r} raised {value['ename']}: {value['evalue']}")
        return value["data"]["text/plain"]
