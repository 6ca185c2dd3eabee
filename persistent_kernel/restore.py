"""Rebuild a session's namespace from its journal, and say what was done.

At this stage a restore replays the journaled cells in order, with every output
suppressed. The rules:

- cells that completed (ok, or raised: their effects up to the exception are
  part of the state) are replayed, silently, as they ran (magics and ``!`` too);
- the cell that was running when the kernel died is never replayed: it may be
  what killed it. It is marked ``died`` and named to the user once;
- interrupted cells are not replayed (they may never end) and are named;
- a cell that kills the restore itself is marked ``skipped`` by the next start,
  so a restore cannot die the same death twice;
- an error during replay is captured and reported, never raised.
"""

from __future__ import annotations

import builtins
import contextlib
import getpass
import io
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from . import records as rec
from .context import apply_random_state
from .journal import Journal
from .records import CellRecord

_PERSIST_MAGIC_LINE = re.compile(r"^\s*%persist\b")
_LIST_AT_MOST = 5


@dataclass
class RestoreReport:
    """What a restore did; shown once to the user and kept for ``%persist status``."""

    session_name: str
    replayed: int = 0
    seconds: float = 0.0
    died: list[str] = field(default_factory=list)  # running when the kernel died
    skipped: list[str] = field(default_factory=list)  # killed an earlier restore
    interrupted: list[str] = field(default_factory=list)  # interrupted by the user
    failures: list[dict[str, str]] = field(default_factory=list)  # ran before, failed in replay
    next_execution_count: int = 1
    finished_at: float = 0.0

    def summary(self) -> str:
        parts = [f"Restored session '{self.session_name}': replayed {self.replayed} cell{_s(self.replayed)} in {self.seconds:.1f} s."]
        if self.died:
            which = _join(self.died)
            verb = "was" if len(self.died) == 1 else "were"
            parts.append(f"Cell {which} {verb} running when the kernel died and {verb} not replayed.")
        if self.skipped:
            parts.append(f"Cell {_join(self.skipped)} stopped an earlier restore and is no longer replayed.")
        if self.interrupted:
            parts.append(f"Interrupted cell {_join(self.interrupted)} not replayed; what it did before the interrupt is gone.")
        if self.failures:
            shown = "; ".join(f"{f['label']} {f['ename']}: {f['evalue']}" for f in self.failures[:_LIST_AT_MOST])
            more = f" (and {len(self.failures) - _LIST_AT_MOST} more)" if len(self.failures) > _LIST_AT_MOST else ""
            parts.append(f"{len(self.failures)} cell{_s(len(self.failures))} failed during replay: {shown}{more}.")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _join(labels: list[str]) -> str:
    shown = ", ".join(labels[:_LIST_AT_MOST])
    return shown + (f" and {len(labels) - _LIST_AT_MOST} more" if len(labels) > _LIST_AT_MOST else "")


def is_persist_command(code: str) -> bool:
    """A cell made only of ``%persist`` lines: about the journal, not the namespace; never replayed."""
    lines = [line for line in code.splitlines() if line.strip()]
    return bool(lines) and all(_PERSIST_MAGIC_LINE.match(line) for line in lines)


def restore_session(shell: Any, journal: Journal) -> RestoreReport | None:
    """Replay the session's journal into ``shell``; None when there is nothing to restore."""
    records = journal.records()
    if not records:
        return None
    report = RestoreReport(session_name=journal.session.name)
    started = time.monotonic()

    replay_killer = journal.get_meta("replaying")
    to_replay: list[CellRecord] = []
    for record in records:
        if record.seq == replay_killer and record.status in rec.REPLAYED_STATUSES:
            journal.mark(record, rec.SKIPPED)
            report.skipped.append(record.label)
        elif record.status == rec.STARTED:
            journal.mark(record, rec.DIED)
            report.died.append(record.label)
        elif record.status == rec.INTERRUPTED:
            report.interrupted.append(record.label)
        elif record.status in rec.REPLAYED_STATUSES and not is_persist_command(record.code):
            to_replay.append(record)

    with quiet_output(shell) as tracebacks:
        for record in to_replay:
            # Written before the cell runs: if it kills this process, the next start skips it.
            journal.set_meta(replaying=record.seq)
            error = _replay_cell(shell, record)
            if error is not None and record.status == rec.OK:
                ename, evalue = error
                report.failures.append({"label": record.label, "ename": ename, "evalue": evalue[:200]})
            tracebacks.clear()
    report.replayed = len(to_replay)

    counted = [r.execution_count for r in records if r.store_history]
    report.next_execution_count = max(counted, default=0) + 1
    shell.execution_count = report.next_execution_count
    report.seconds = time.monotonic() - started
    report.finished_at = time.time()
    journal.set_meta(replaying=None, last_restore=report.to_dict())
    return report


def _replay_cell(shell: Any, record: CellRecord) -> tuple[str, str] | None:
    """Run one journaled cell as it ran; returns (ename, evalue) if it raised."""
    if record.random_state_before:
        # The generators as the cell found them: the same deck is dealt again.
        apply_random_state(record.random_state_before)
    if record.store_history:
        # So In[n], Out[n] and _n line up with what the user saw.
        shell.execution_count = record.execution_count
    try:
        result = shell.run_cell(record.code, store_history=record.store_history, silent=record.silent)
    except BaseException as exc:  # noqa: BLE001 - a replay must never take the kernel down
        return type(exc).__name__, str(exc)
    finally:
        # Payloads (exit, help pages, set_next_input) belong to the original reply.
        shell.payload_manager.clear_payload()
    if record.random_state_after:
        # As the cell left them, even if it drew from a generator it created
        # (``import numpy`` seeds numpy's from the OS): later draws match.
        apply_random_state(record.random_state_after)
    error = result.error_before_exec or result.error_in_exec
    if error is None:
        return None
    return type(error).__name__, str(error)


def _no_input(*_args: Any, **_kwargs: Any) -> str:
    from IPython.core.error import StdinNotImplementedError

    raise StdinNotImplementedError("input() is not available while a session is being restored")


@contextlib.contextmanager
def quiet_output(shell: Any) -> Iterator[list[Any]]:
    """Suppress everything replayed code would show: streams, displays, results, tracebacks.

    Yields a list that collects the tracebacks IPython would have sent.
    """
    tracebacks: list[Any] = []

    def drop(_msg: Any) -> None:
        return None  # a None from a hook suppresses the send

    hooks = [obj for obj in (shell.displayhook, shell.display_pub) if hasattr(obj, "register_hook")]
    for obj in hooks:
        obj.register_hook(drop)
    # ipykernel sends tracebacks on IOPub from this method; capture them instead.
    shell._showtraceback = lambda etype, evalue, stb: tracebacks.append((etype, evalue))
    saved_input, saved_getpass = builtins.input, getpass.getpass
    builtins.input = getpass.getpass = _no_input
    sink = io.StringIO()
    try:
        with _quiet_fds(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield tracebacks
    finally:
        builtins.input, getpass.getpass = saved_input, saved_getpass
        del shell._showtraceback
        for obj in hooks:
            obj.unregister_hook(drop)


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Point file descriptors 1 and 2 at /dev/null (subprocesses, C extensions).

    ipykernel forwards what reaches these descriptors to the frontend; during a
    replay nothing must. The saved duplicates keep ipykernel's pipes open.
    """
    saved: list[tuple[int, int]] = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
