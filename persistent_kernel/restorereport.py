"""What a restore did, in the user's words (``RestoreReport``), and a long restore's progress on the kernel log (``RestoreProgress``).

Only the standard library: ``persistent-kernel show`` rebuilds the summary a kernel showed from the stored report.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any


def label_order(label: str) -> tuple[int, str]:
    digits = "".join(ch for ch in label if ch.isdigit())
    return (int(digits) if digits else 0, label)


_LIST_AT_MOST = 5
LONG_RESTORE_SECONDS = 2.0  # a restore this long reports its progress (log) and its phases (summary)


class RestoreProgress:
    """Progress of a restore, for the kernel log: silent for the first seconds, then a line a second.

    The restore runs before the kernel serves its first request, so the log is
    where progress can go while it runs (a thread writes it, so one long replayed
    cell is reported too); the phases' times go into the summary the first cell shows.
    """

    @classmethod
    def to_kernel_log(cls) -> RestoreProgress:
        """Lines on the kernel's stderr (its log), through a copy of the descriptor taken now:
        while cells are replayed, descriptors 1 and 2 point at /dev/null."""
        try:
            stream = os.fdopen(os.dup(2), "w", buffering=1)
        except OSError:
            return cls()
        return cls(lambda line: stream.write(f"[persistent_kernel] {line}\n"), closing=stream)

    def __init__(self, log: Any = None, *, after: float = LONG_RESTORE_SECONDS, every: float = 1.0, closing: Any = None) -> None:
        self.log = log  # a callable taking one line, or None
        self._closing = closing  # closed by finish()
        self.every = every
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}
        self._phase: str | None = None
        self._phase_started = self.started
        self._where = ""
        self._done = threading.Event()
        if log is not None:
            self._timer = threading.Timer(after, self._report)
            self._timer.daemon = True
            self._timer.start()

    def phase(self, name: str) -> None:
        now = time.monotonic()
        if self._phase is not None:
            self.phases[self._phase] = self.phases.get(self._phase, 0.0) + now - self._phase_started
        self._phase, self._phase_started = name, now
        self._where = name

    def step(self, done: int, total: int, what: str = "") -> None:
        self._where = f"{self._phase} {done + 1}/{total}{f' ({what})' if what else ''}"

    def _report(self) -> None:
        while not self._done.is_set():
            try:
                self.log(f"restoring the session: {self._where}, {time.monotonic() - self.started:.0f} s so far")
            except (OSError, ValueError):  # the stream closed as the restore finished
                return
            self._done.wait(self.every)

    def finish(self) -> dict[str, float]:
        if not self._done.is_set():
            self._done.set()
            if self.log is not None:
                self._timer.cancel()  # a quick restore: its thread ends now, not after LONG_RESTORE_SECONDS
            self.phase("done")
            self.phases.pop("done", None)
            if self._closing is not None:
                if self.log is not None and time.monotonic() - self.started >= LONG_RESTORE_SECONDS:
                    self.log(f"restored the session in {time.monotonic() - self.started:.1f} s")
                self._closing.close()
        return {phase: seconds for phase, seconds in self.phases.items() if seconds >= 0.05}


@dataclass
class RestoreReport:
    """What a restore did; shown once to the user and kept for ``%persist status``."""

    session_name: str
    loaded: int = 0  # variables loaded from stored versions
    loaded_bytes: int = 0
    recomputed: dict[str, list[str]] = field(default_factory=dict)  # name -> labels of the cells replayed for it
    lost: dict[str, str] = field(default_factory=dict)  # name -> why it could not be rebuilt
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # rebuilt without some of its cells
    unlanded: dict[str, int] = field(default_factory=dict)  # name -> cell whose version never reached the disk
    replayed: int = 0  # cells replayed
    seconds: float = 0.0
    died: list[str] = field(default_factory=list)  # running when the kernel died
    skipped: list[str] = field(default_factory=list)  # killed an earlier restore
    failures: list[dict[str, str]] = field(default_factory=list)  # ran before, failed in replay
    context_problems: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # excluded name -> "recomputed" or why it is absent
    paused_after: str | None = None  # persistence was paused (%persist off) after this cell when the kernel died
    refused: list[str] = field(default_factory=list)  # stored records that failed authentication (never used)
    inexact: dict[str, str] = field(default_factory=dict)  # name -> what of it could not come back exactly
    modules: dict[str, str] = field(default_factory=dict)  # the user's module files changed since: what was done
    outputs_not_kept: list[str] = field(default_factory=list)  # "Out[5] (too large to keep)"
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase, for a long restore
    next_execution_count: int = 1
    finished_at: float = 0.0

    def summary(self) -> str:
        """One line: what was restored and how, then what was not and why."""
        return " ".join(self.summary_parts())

    def summary_parts(self) -> list[str]:
        """The headline (``Restored session …``), then one sentence per kind of news."""
        what = []
        if self.loaded or not self.replayed:
            what.append(f"loaded {self.loaded} variable{_s(self.loaded)} ({_human(self.loaded_bytes)})")
        if self.replayed:
            what.append(f"replayed {self.replayed} cell{_s(self.replayed)}")
        took = f"{self.seconds:.1f} s"
        if self.seconds >= LONG_RESTORE_SECONDS and self.phases:
            took += " (" + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.phases.items()) + ")"
        parts = [f"Restored session '{self.session_name}': {' and '.join(what)} in {took}."]
        if self.refused:
            shown = "; ".join(self.refused[:_LIST_AT_MOST]) + (
                f" (and {len(self.refused) - _LIST_AT_MOST} more)" if len(self.refused) > _LIST_AT_MOST else ""
            )
            parts.append(
                f"Refused {len(self.refused)} stored record{_s(len(self.refused))} that failed authentication "
                f"(not written by your kernel, or changed since), so nothing in them was loaded or run: {shown}."
            )
        recomputed = {name: labels for name, labels in self.recomputed.items() if name not in self.excluded}
        if recomputed:
            cells = sorted({label for labels in recomputed.values() for label in labels}, key=label_order)
            parts.append(f"Recomputed {join_labels(sorted(recomputed))} by replaying cell{_s(len(cells))} {join_labels(cells)}.")
        if self.excluded:
            rebuilt = sorted(name for name, how in self.excluded.items() if how == "recomputed")
            absent = [f"{name} ({how})" for name, how in sorted(self.excluded.items()) if how != "recomputed"]
            said = [f"recomputed by replay: {join_labels(rebuilt)}"] if rebuilt else []
            said += [join_labels(absent)] if absent else []
            parts.append(f"Excluded from persistence (%persist exclude): {'; '.join(said)}.")
        if self.paused_after:
            parts.append(
                f"Persistence was paused (%persist off) after cell {self.paused_after}: what later cells did was not kept."
            )
        unlanded = sorted(name for name in self.unlanded if name in self.recomputed)
        if unlanded:
            verb = "was" if len(unlanded) == 1 else "were"
            parts.append(
                f"({join_labels(unlanded)} {verb} still being written to disk when the kernel stopped, "
                "so the replay started from the version before.)"
            )
        lost = {name: why for name, why in self.lost.items() if name not in self.excluded}
        if lost:
            lost_shown = [f"{name} ({why})" for name, why in sorted(lost.items())]
            parts.append(f"Could not rebuild {join_labels(lost_shown)}.")
        rebuilt_partly = {name: labels for name, labels in self.incomplete.items() if name in self.recomputed}
        if rebuilt_partly:
            partly_shown = [f"{name} (cell {', '.join(labels)} is never replayed)" for name, labels in sorted(rebuilt_partly.items())]
            parts.append(f"May differ from before the crash: {join_labels(partly_shown)}.")
        if self.modules:
            parts.append(" ".join(f"{name} {what}." for name, what in sorted(self.modules.items())))
        if self.outputs_not_kept:
            parts.append(f"Not kept: {join_labels(self.outputs_not_kept)}.")
        if self.inexact:
            inexact_shown = [f"{name} ({why})" for name, why in sorted(self.inexact.items())]
            parts.append(f"Not exact: {join_labels(inexact_shown)}.")
        if self.died:
            which = join_labels(self.died)
            verb = "was" if len(self.died) == 1 else "were"
            parts.append(f"Cell {which} {verb} running when the kernel died and {verb} not replayed.")
        if self.skipped:
            parts.append(f"Cell {join_labels(self.skipped)} stopped an earlier restore and is no longer replayed.")
        if self.failures:
            shown = "; ".join(f"{f['label']} {f['ename']}: {f['evalue']}" for f in self.failures[:_LIST_AT_MOST])
            more = f" (and {len(self.failures) - _LIST_AT_MOST} more)" if len(self.failures) > _LIST_AT_MOST else ""
            parts.append(f"{len(self.failures)} cell{_s(len(self.failures))} failed during replay: {shown}{more}.")
        if self.context_problems:
            parts.append(f"Not restored: {'; '.join(self.context_problems)}.")
        return parts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def join_labels(labels: list[str]) -> str:
    shown = ", ".join(labels[:_LIST_AT_MOST])
    return shown + (f" and {len(labels) - _LIST_AT_MOST} more" if len(labels) > _LIST_AT_MOST else "")
