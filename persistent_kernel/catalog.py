"""The sessions under ``PERSISTENT_KERNEL_HOME``: finding, naming and describing them.

Read-only. A store is opened as a reader (``Store(path, sync_interval=0)``, not
the owner: it never takes in the write-ahead slot nor removes files) and closed
again; a directory without an LMDB data file is never opened, so looking never
creates a store. Whether a kernel runs on a session is asked of its lock, not of
the pid written in it: a kernel killed with SIGKILL leaves its pid behind.

No IPython, no LMDB (``store`` reads for us).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PersistenceError
from .lock import SessionLock
from .records import DELETED, LIVE, MODULE, RECOMPUTE, STARTED, CellRecord, Version
from .restorereport import RestoreReport
from .session import notebook_session, session_id_for
from .store import Store

DATA_FILE = "data.mdb"


class CommandError(Exception):
    """An operation that could not be done; the message says why and what to do."""


class SessionNotFound(CommandError):
    pass


class AmbiguousSession(CommandError):
    def __init__(self, wanted: str, candidates: list[str]) -> None:
        shown = "\n  ".join(candidates)
        super().__init__(
            f"'{wanted}' matches {len(candidates)} sessions; say which:\n  {shown}"
        )


class SessionInUse(CommandError):
    def __init__(self, session_id: str, pid: int | None, action: str) -> None:
        who = f"kernel process {pid}" if pid else "a running kernel"
        super().__init__(
            f"session {session_id} is in use by {who}; shut that kernel down to {action} it"
        )


# -- where sessions are --------------------------------------------------------------


def sessions_dir(home: Path) -> Path:
    return Path(home) / "sessions"


def session_dirs(home: Path) -> list[Path]:
    """Every session directory, by id. Dot names are work in progress (an import)."""
    root = sessions_dir(home)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def is_store(path: Path) -> bool:
    return (path / DATA_FILE).is_file()


def live_pid(path: Path) -> tuple[bool, int | None]:
    """(a live kernel holds the session, its pid when readable)."""
    lock = SessionLock(path)
    try:
        held = lock.is_held()
    except OSError:
        return False, None  # unreadable lock file: not ours to judge
    return held, (lock.holder() if held else None)


def resolve(home: Path, wanted: str) -> Path:
    """The session directory an ID argument names.

    In order: the exact id; the session of a notebook path (as the kernel derives
    it), or of an explicit session name; a unique id prefix. Several prefix
    matches are an error that lists them. Stripped, as the kernel strips its
    environment's names.
    """
    wanted = wanted.strip()
    root = sessions_dir(home)
    ids = [p.name for p in session_dirs(home)]
    if wanted in ids:
        return root / wanted
    derived = [session_id_for("explicit", wanted), notebook_session(wanted)[0]]
    for candidate in derived:
        if candidate in ids:
            return root / candidate
    matches = [i for i in ids if i.startswith(wanted)] if wanted else []
    if len(matches) == 1:
        return root / matches[0]
    if matches:
        raise AmbiguousSession(wanted, matches)
    raise SessionNotFound(
        f"no session matches '{wanted}' in {root} (persistent-kernel sessions lists them)"
    )


@contextlib.contextmanager
def open_store(path: Path, *, trust: bool = False) -> Iterator[Store]:
    """A store opened as a tool, not as its kernel (nothing taken in, nothing cleaned up); closed on exit.

    Refuses a directory without a store rather than create one there. ``trust``
    (the caller holds the session's lock, on the user's word): open it as its
    owner and sign everything in it with the user's key (``Store.sign_all``).
    """
    if not is_store(path):
        raise CommandError(f"{path} holds no session store (no {DATA_FILE})")
    try:
        store = Store(path, sync_interval=0, owner=trust, trust=trust)
    except PersistenceError as exc:
        raise CommandError(str(exc)) from exc
    try:
        yield store
    finally:
        store.close()


def directory_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (the store, its blobs, anything else in it)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


# -- the list ------------------------------------------------------------------------


@dataclass
class Summary:
    """One row of ``persistent-kernel sessions``."""

    id: str
    path: str
    name: str | None = None
    source: str | None = None
    origin: str | None = None  # where the kernel learned its identity, in words
    notebook_path: str | None = None
    cells: int | None = None
    last_seq: int | None = None  # the newest execution journaled (what a replica is compared with)
    size_bytes: int = 0
    last_active: float | None = None  # unix time
    live: bool = False
    pid: int | None = None  # of the live kernel; None when none runs
    problem: str | None = None  # why the store could not be read

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _last_active(last: CellRecord | None, meta: dict[str, Any]) -> float | None:
    """When the session last did something: its last cell (records are in seq order), start or restore."""
    times = (
        [last.started_at + (last.duration or 0.0)] if last and last.started_at else []
    )
    times.append(meta.get("kernel_started") or 0.0)
    times.append((meta.get("last_restore") or {}).get("finished_at") or 0.0)
    return max(times) or None


def summarize(path: Path) -> Summary:
    live, pid = live_pid(path)
    summary = Summary(
        id=path.name,
        path=str(path),
        live=live,
        pid=pid,
        size_bytes=directory_bytes(path),
    )
    try:
        with open_store(path) as store:
            meta = store.meta()
            cells = store.count()
            last = _last_record(store)
    except CommandError as exc:
        summary.problem = str(exc)
        return summary
    except Exception as exc:  # noqa: BLE001 - one damaged store must not break the listing
        summary.problem = f"{type(exc).__name__}: {exc}"
        return summary
    summary.name = meta.get("session_name")
    summary.source = meta.get("session_source")
    summary.origin = meta.get("session_origin")
    summary.notebook_path = meta.get("notebook_path")
    summary.cells = cells
    summary.last_seq = last.seq if last is not None else 0
    summary.last_active = _last_active(last, meta)
    return summary


def _last_record(store: Store) -> CellRecord | None:
    """The newest record, without keeping the others (``Store`` has no reverse read)."""
    last = deque(store.records(), maxlen=1)
    return last[0] if last else None


def list_sessions(home: Path) -> list[Summary]:
    """Every session, most recently active first."""
    rows = [summarize(path) for path in session_dirs(home)]
    return sorted(rows, key=lambda row: (-(row.last_active or 0.0), row.id))


# -- one session in detail ----------------------------------------------------------


def _labels(records: list[CellRecord]) -> dict[int, str]:
    return {record.seq: record.label for record in records}


def _variables(store: Store, labels: dict[int, str]) -> list[dict[str, Any]]:
    """The latest state of every name: stored (with its group's size), recompute, or module."""
    versions: dict[str | None, Version | None] = {}
    found = []
    pointers = store.pointers_as_of()
    sharing: dict[str, list[str]] = {}  # version -> the live names it holds now (a version outlives a del)
    for name, pointer in sorted(pointers.items()):
        if pointer.state == LIVE and pointer.version:
            sharing.setdefault(pointer.version, []).append(name)
    for name, pointer in sorted(pointers.items()):
        if pointer.state == DELETED:
            continue
        entry: dict[str, Any] = {
            "name": name,
            "cell": labels.get(pointer.bound),
            "seq": pointer.bound,
        }
        if pointer.state == MODULE:
            entry.update(kind="module", module=pointer.module, nbytes=None)
            found.append(entry)
            continue
        key = pointer.version
        if key not in versions:
            versions[key] = store.version(bytes.fromhex(key)) if key else None
        version = versions[key]
        if version is None:
            entry.update(kind="missing", nbytes=None)
        elif version.kind == RECOMPUTE:
            entry.update(kind="recompute", nbytes=None, reason=version.reason)
        else:
            entry.update(kind=version.kind, nbytes=version.nbytes, landed=version.is_landed, large_files=len(version.files))
        entry["group"] = sharing.get(key, [name])
        found.append(entry)
    return found


def _restore_summary(report: dict[str, Any] | None) -> str | None:
    """The line the user saw after that restore, rebuilt from the stored report."""
    if not report:
        return None
    try:
        known = {f.name for f in dataclasses.fields(RestoreReport)}
        return RestoreReport(
            **{k: v for k, v in report.items() if k in known}
        ).summary()
    except Exception:  # noqa: BLE001 - a report from another release: the raw facts remain
        return None


def describe(path: Path) -> dict[str, Any]:
    """The facts ``%persist status`` shows, and the variables at the latest state."""
    live, pid = live_pid(path)
    with open_store(path) as store:
        meta = store.meta()
        records = list(store.records())
        facts = {
            "session_id": path.name,
            "session_name": meta.get("session_name"),
            "session_source": meta.get("session_source"),
            "session_origin": meta.get("session_origin"),
            "notebook_path": meta.get("notebook_path"),
            "store_path": str(path),
            "store_bytes": store.size_bytes(),
            "format_version": store.format_version,
            "authenticated": store.authenticated,
            "created": meta.get("created"),
            "last_active": _last_active(records[-1] if records else None, meta),
            "live": live,
            "pid": pid,
            "cells": len(records),
            "cells_by_status": dict(
                Counter(
                    _status(r, live, i == len(records) - 1)
                    for i, r in enumerate(records)
                )
            ),
            "variables": _variables(store, _labels(records)),
            "last_restore": meta.get("last_restore"),
            "last_restore_summary": _restore_summary(meta.get("last_restore")),
        }
        facts["refused"] = list(store.refusals)  # after every read above
    return facts


def _status(record: CellRecord, live: bool, last: bool) -> str:
    """A "started" record is running only in a live kernel's last cell; otherwise its kernel died."""
    if record.status != STARTED:
        return record.status
    return "running" if live and last else "died"


# -- the journal --------------------------------------------------------------------


def history(path: Path, last: int | None = 10) -> list[dict[str, Any]]:
    """The last ``last`` journal entries (all when None), oldest first."""
    live, _ = live_pid(path)
    with open_store(path) as store:
        shown = list(
            store.records() if last is None else deque(store.records(), maxlen=last)
        )
        entries = []
        versions = store.versions_between(shown[0].seq, shown[-1].seq) if shown else {}
        for record in shown:
            stored: list[str] = []
            recompute: list[str] = []
            nbytes = 0
            for version in versions.get(record.seq, []):
                if version.kind == RECOMPUTE:
                    # As %persist history marks them.
                    mark = " (excluded)" if version.excluded else ""
                    recompute += [name + mark for name in version.names]
                else:
                    stored += version.names
                    nbytes += version.nbytes
            entries.append(
                {
                    "seq": record.seq,
                    "label": record.label,
                    "kind": record.kind,
                    "started_at": record.started_at or None,
                    "duration": record.duration,
                    "status": _status(record, live, record is shown[-1]),
                    "error": f"{record.ename}: {record.evalue}"
                    if record.ename
                    else None,
                    "writes": record.writes or [],
                    "deletes": record.deletes or [],
                    "checkpointed": record.checkpointed,
                    "stored": sorted(stored),
                    "stored_bytes": nbytes,
                    "recompute": sorted(recompute),
                    "code": record.code,
                    "trigger": record.trigger,  # an event's: what set it off (a widget callback's message)
                    "handled_during": record.handled_during or [],  # comm messages whose changes went with the cell
                }
            )
    return entries
