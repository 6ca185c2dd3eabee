"""The session panel's kernel side: the comm target the JupyterLab / Notebook 7 extension talks to.

The frontend opens a comm on ``TARGET``; the kernel answers at once with the session's
state, and then on each request:

- ``{"request": "state"}``: ``{"type": "state", "status": …, "restore": …}`` (the status
  line: ``persisted``, ``writing``, ``paused`` or ``off`` with its reason; the last restore);
- ``{"request": "history", "limit": N}``: ``{"type": "history", "rows": [...]}``, the last
  N journaled executions (``journalview``: what ``%persist history`` shows);
- ``{"request": "diff", "cell": N}``: ``{"type": "diff", "cell": N, "rows": [...]}``, the
  variables that differ between after cell [N] and now (what ``%persist diff N`` shows).

A checkout is not a comm request: the extension runs ``%persist checkout N`` as an
execution, so it is journaled exactly like one typed in a cell. After every commit
the kernel pushes the status (``{"type": "state"}``) to the open panels, so a status bar
follows the session without polling for it.

Messages on this target run no user code and change nothing: the kernel handles them
outside the journal (``is_panel_message``), never as widget events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from . import timetravel
from .journal import Journal
from .journalview import execution_rows, shown_records
from .views import human_bytes

TARGET = "persistent_kernel.session"
HISTORY_LIMIT = 200  # rows a panel asks for at most


def status_of(journal: Journal, last_commit_at: float | None) -> dict[str, Any]:
    """What the status bar says: a state, the words for it, and the reason when not persisting."""
    # sent_at: the kernel's clock, so a frontend on another machine counts the age right
    facts: dict[str, Any] = {"last_commit_at": last_commit_at, "pending_bytes": 0, "next_seq": journal.next_seq, "sent_at": time.time()}
    problem = journal.problem or journal.health.write_problem
    if journal.store is None or problem:
        if journal.session is None and not problem:
            reason = "the session is named by the first execution (run a cell)"
        else:
            reason = problem or "the session's store is not open"
        return {**facts, "state": "off", "text": f"Not persisting: {reason}", "reason": reason}
    if journal.paused is not None:
        return {**facts, "state": "paused", "text": "Paused", "reason": f"%persist off after {journal.paused}; %persist on resumes"}
    pending = journal.writer.pending_bytes() if journal.writer is not None else 0
    if pending:
        return {**facts, "state": "writing", "text": f"Writing {human_bytes(pending)}…", "reason": None, "pending_bytes": pending}
    return {**facts, "state": "persisted", "text": "Persisted", "reason": None}


class SessionPanel:
    """Answers the panels' comms; pushes the status after each commit (``committed``)."""

    def __init__(self, journal: Journal, restore_report: Callable[[], Any], shell: Any) -> None:
        self.journal = journal
        self._restore_report = restore_report
        self.shell = shell
        self.comms: dict[str, Any] = {}  # comm id -> comm, the panels open now
        self.last_commit_at: float | None = None

    def register(self, comm_manager: Any) -> None:
        comm_manager.register_target(TARGET, self._opened)

    def is_panel_message(self, msg: Mapping[str, Any]) -> bool:
        """Whether a comm message is a panel's (handled outside the journal: it runs no user code)."""
        content = msg.get("content") or {}
        if not isinstance(content, Mapping):
            return False
        msg_type = msg.get("header", {}).get("msg_type")
        if msg_type == "comm_open":
            return content.get("target_name") == TARGET
        return content.get("comm_id") in self.comms

    def committed(self, went_in: bool) -> None:
        """A cell or an event was committed (or failed to be): tell the open panels."""
        if went_in:
            self.last_commit_at = time.time()  # the status bar's age starts again
        if self.comms:
            self._broadcast(self.state())

    def state(self) -> dict[str, Any]:
        report = self._restore_report()
        restore = None
        if report is not None:
            restore = {"summary": report.summary(), "finished_at": report.finished_at, "details": _plain(report.to_dict())}
        return {"type": "state", "status": status_of(self.journal, self.last_commit_at), "restore": restore}

    def history(self, limit: int) -> dict[str, Any]:
        every = self.journal.records()
        rows = execution_rows(self.journal.store, shown_records(every, max(1, min(limit, HISTORY_LIMIT))))
        return {"type": "history", "rows": [row.as_json() for row in reversed(rows)], "total": len(every)}

    def diff(self, number: int) -> dict[str, Any]:
        store = self.journal.store
        if store is None:
            return {"type": "diff", "cell": number, "error": f"persistence is off: {self.journal.problem or 'no store'}"}
        records = self.journal.records()
        try:
            first = timetravel.cell_numbered(records, number)
        except LookupError as exc:
            return {"type": "diff", "cell": number, "error": str(exc)}
        rows = timetravel.diff(store, first, records[-1], self.shell.user_module)
        return {"type": "diff", "cell": number, "rows": [dict(zip(("name", "change", "before", "after"), row)) for row in rows]}

    # -- the comms ------------------------------------------------------------------------

    def _opened(self, comm: Any, _msg: Mapping[str, Any]) -> None:
        self.comms[comm.comm_id] = comm
        comm.on_msg(lambda msg: self._received(comm, msg))
        comm.on_close(lambda _msg: self.comms.pop(comm.comm_id, None))
        comm.send(self.state())

    def _received(self, comm: Any, msg: Mapping[str, Any]) -> None:
        data = (msg.get("content") or {}).get("data") or {}
        request = data.get("request") if isinstance(data, Mapping) else None
        try:
            if request == "state":
                reply = self.state()
            elif request == "history":
                reply = self.history(_int(data.get("limit"), 50))
            elif request == "diff":
                reply = self.diff(_int(data.get("cell"), 0))
            else:
                reply = {"type": "error", "error": f"unknown request {request!r}"}
        except Exception as exc:  # noqa: BLE001 - a panel's question never takes the kernel down
            reply = {"type": "error", "request": request, "error": f"{type(exc).__name__}: {exc}"}
        reply["request_id"] = data.get("request_id") if isinstance(data, Mapping) else None
        comm.send(reply)

    def _broadcast(self, message: dict[str, Any]) -> None:
        for comm in list(self.comms.values()):
            try:
                comm.send(message)
            except Exception:  # noqa: BLE001 - a closed frontend's comm: forget it
                self.comms.pop(comm.comm_id, None)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _plain(value: Any) -> Any:
    """JSON-safe copy (the report holds only str, numbers, lists and dicts; anything else as text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
