"""The session commands of ``persistent-kernel``: run one, render its result.

``sessions``, ``show``, ``history`` (read through ``catalog``) and ``rm``, ``trust``,
``gc``, ``export``, ``import``, ``attach`` (changes made by ``archive`` and
``archivetar``): each resolves its ID, calls the operation and prints text, or with
``--json`` one JSON document on stdout. ``cli`` parses the arguments and picks the
``run_*`` function. What they import is imported when they run, so that ``show``
starts no IPython.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import DISPLAY_NAME, views

PROG = "persistent-kernel"


class Refused(Exception):
    """The user declined (or could not be asked); nothing was changed."""


# -- rendering helpers ---------------------------------------------------------------


_bytes = views.human_bytes
_took = views.seconds


def _when(t: float | None) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _ago(t: float | None) -> str:
    if not t:
        return "-"
    seconds = time.time() - t
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 7 * 86400:
        days = int(seconds // 86400)
        return "yesterday" if days == 1 else f"{days} days ago"
    return time.strftime("%Y-%m-%d", time.localtime(t))


def _names(names: list[str], width: int = 40) -> str:
    return views.shorten(", ".join(names) or "-", width)


def _table(header: list[str], rows: list[list[str]]) -> str:
    return views.text_table(header, rows, rule=False)


def _emit(args: argparse.Namespace, document: Any, text: str) -> None:
    print(json.dumps(document, indent=2, default=str) if args.json else text)


def _progress(args: argparse.Namespace) -> Any:
    """A tqdm factory for long operations, or None (not a terminal, or --quiet)."""
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def bar(total: int | None, description: str) -> Any:
        return tqdm(
            total=total,
            desc=description,
            unit="B",
            unit_scale=True,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )

    return bar


def _home() -> Path:
    from .session import persistent_home

    return persistent_home()


def _find(wanted: str) -> Path:
    from .catalog import resolve

    return resolve(_home(), wanted)


# -- reading -------------------------------------------------------------------------


def run_sessions(args: argparse.Namespace) -> int:
    from .catalog import list_sessions, sessions_dir

    if getattr(args, "replica", None):
        return run_replica_sessions(args)

    home = _home()
    rows = list_sessions(home)
    header = ["ID", "NOTEBOOK / NAME", "IDENTIFIED BY", "CELLS", "SIZE", "LAST ACTIVE", "PID"]
    table = [
        [
            row.id,
            row.notebook_path or row.name or f"? {row.problem}",
            _identified_by(row.origin or row.source),
            "-" if row.cells is None else str(row.cells),
            _bytes(row.size_bytes),
            _ago(row.last_active),
            str(row.pid) if row.live and row.pid else ("live" if row.live else ""),
        ]
        for row in rows
    ]
    text = _table(header, table) if rows else f"No sessions in {sessions_dir(home)}."
    document = {"home": str(home), "sessions": [row.to_json() for row in rows]}
    _emit(args, document, text)
    return 0


def _identified_by(origin: str | None) -> str:
    """The origin's label (before its colon), for a table column (``show`` has all of it)."""
    return origin.split(":")[0] if origin else "-"


def run_show(args: argparse.Namespace) -> int:
    from .catalog import describe

    facts = describe(_find(args.id))
    _emit(args, facts, _format_show(facts))
    return 0


def _format_show(facts: dict[str, Any]) -> str:
    kernel = "not running"
    if facts["live"]:
        kernel = f"running, pid {facts['pid']}" if facts["pid"] else "running"
    by_status = (
        ", ".join(
            f"{n} {status}" for status, n in sorted(facts["cells_by_status"].items())
        )
        or "none"
    )
    variables = facts["variables"]
    stored = sum(
        {
            v["group"][0]: v["nbytes"] or 0 for v in variables if v["kind"] == "stored"
        }.values()
    )
    lines = [
        (
            "Session",
            f"{facts['session_name'] or '-'}  (id {facts['session_id']})",
        ),
        ("Identified by", facts.get("session_origin") or facts["session_source"] or "-"),
        ("Notebook", facts["notebook_path"] or "-"),
        (
            "Store",
            f"{facts['store_path']}  ({_bytes(facts['store_bytes'])}, format {facts['format_version']})"
            + ("" if facts["authenticated"] else f"  NOT AUTHENTICATED: a kernel loads it after `{PROG} trust {facts['session_id']}`"),
        ),
        ("Kernel", kernel),
        ("Created", _when(facts["created"])),
        (
            "Last active",
            f"{_when(facts['last_active'])} ({_ago(facts['last_active'])})",
        ),
        ("Cells", f"{facts['cells']}  ({by_status})"),
        ("Variables", f"{len(variables)}  ({_bytes(stored)} stored)"),
    ]
    if facts["refused"]:
        lines.append(("Refused", f"{len(facts['refused'])} record(s) fail authentication: {'; '.join(facts['refused'][:5])}"))
    if variables:
        rows = [
            [
                v["name"],
                v["kind"],
                _bytes(v["nbytes"]),
                v["cell"] or "-",
                _variable_note(v),
            ]
            for v in variables
        ]
        table = _table(["NAME", "KIND", "SIZE", "CELL", ""], rows)
        lines += [("", line) for line in table.splitlines()]
    report = facts["last_restore"]
    if report:
        summary = (
            facts["last_restore_summary"]
            or f"replayed {report.get('replayed', 0)} cells"
        )
        lines.append(("Last restore", f"{_when(report.get('finished_at'))}: {summary}"))
    else:
        lines.append(("Last restore", "none (no kernel has restored this session yet)"))
    return views.facts_text(lines)


def _variable_note(variable: dict[str, Any]) -> str:
    kind = variable["kind"]
    if kind == "module":
        return variable.get("module") or ""
    if kind == "recompute":
        return f"rebuilt by replay: {variable.get('reason') or 'cannot be stored'}"
    if kind == "missing":
        return "its stored version is missing"
    notes = []
    if not variable.get("landed", True):
        notes.append("not on disk yet: restores from its previous version")
    others = [name for name in variable["group"] if name != variable["name"]]
    if others:
        notes.append(f"size shared with {_names(others, 30)}")
    return "; ".join(notes)


def run_history(args: argparse.Namespace) -> int:
    from .catalog import history

    path = _find(args.id)
    entries = history(path, None if args.n <= 0 else args.n)
    rows = []
    for e in entries:
        # Bound, deleted, or changed in place (a new version without a rebinding: `small['b'] = 2`).
        recomputed = {name.removesuffix(" (excluded)") for name in e["recompute"]}
        bound = sorted(set(e["writes"]) | set(e["stored"]) | recomputed)
        changed = bound + [f"del {name}" for name in e["deletes"]]
        stored = _names(e["stored"]) + (
            f" ({_bytes(e['stored_bytes'])})" if e["stored"] else ""
        )
        status = e["status"] + (f" ({e['error']})" if e["error"] else "")
        label = e["label"] + (f": {_names([e['trigger']], 40)}" if e.get("trigger") else "")
        if e.get("handled_during"):
            label += f" (+{len(e['handled_during'])} comm)"
        rows.append(
            [
                label,
                _when(e["started_at"]),
                _took(e["duration"]),
                _names([status], 40),
                _names(changed),
                stored,
                _names(e["recompute"]),
            ]
        )
    header = ["CELL", "STARTED", "TOOK", "STATUS", "CHANGED", "STORED", "RECOMPUTE"]
    text = _table(header, rows) if rows else f"Session {path.name} has no cells."
    _emit(args, {"session_id": path.name, "cells": entries}, text)
    return 0


# -- changing ------------------------------------------------------------------------


def run_rm(args: argparse.Namespace) -> int:
    from .archive import remove
    from .catalog import SessionInUse, live_pid, summarize

    path = _find(args.id)
    live, pid = live_pid(path)
    if live:
        raise SessionInUse(path.name, pid, "remove")
    if not args.yes:
        row = summarize(path)
        what = f"session {row.name or path.name} (id {path.name}, {row.cells or 0} cells, {_bytes(row.size_bytes)})"
        _confirm(f"Delete {what} at {path}?")
    result = remove(path)
    _emit(
        args,
        result,
        f"Removed session {result['session_id']} ({_bytes(result['bytes'])}).",
    )
    return 0


def run_trust(args: argparse.Namespace) -> int:
    from .archive import trust

    path = _find(args.id)
    if not args.yes:
        _confirm(
            f"Sign session {path.name} at {path} with your key? Its stored values run code when a kernel loads them: "
            "answer yes only if you know the store is yours.",
            refused="not signed",
        )
    result = trust(path)
    _emit(
        args,
        result,
        f"Signed session {result['session_id']} ({result['cells']} cells, {result['signed']} records and files) "
        "with your key; a kernel on it restores it now.",
    )
    return 0


def _confirm(question: str, refused: str = "not removed") -> None:
    if not sys.stdin.isatty():
        raise Refused(f"{refused}: there is no terminal to confirm on; pass --yes")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = input()
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise Refused(refused)


def run_gc(args: argparse.Namespace) -> int:
    from .archive import collect, collect_leftovers
    from .catalog import CommandError, session_dirs

    home = _home()
    paths = [_find(args.id)] if args.id else session_dirs(home)
    done, skipped = [], []
    for path in paths:
        try:
            done.append(collect(path, dry_run=args.dry_run, progress=_progress(args)))
        except CommandError as exc:
            if args.id:
                raise
            skipped.append({"session_id": path.name, "reason": str(exc)})
    # Work directories of interrupted commands (rm, a replace, export, import), with no ID only.
    leftovers = [] if args.id else collect_leftovers(home, dry_run=args.dry_run)
    total = sum(result["bytes"] for result in done + leftovers)
    verb = "would free" if args.dry_run else "freed"
    lines = [
        f"{left['name']}: {verb} {_bytes(left['bytes'])} (left by an interrupted command)"
        for left in leftovers
    ]
    for result in done:
        count = len(result["files"])
        if count:
            lines.append(
                f"{result['session_id']}: {verb} {_bytes(result['bytes'])} ({count} file{'s' * (count != 1)})"
            )
    lines += [f"{s['session_id']}: skipped, {s['reason']}" for s in skipped]
    lines.append(
        f"{'Would free' if args.dry_run else 'Freed'} {_bytes(total)} in {len(done)} session(s)."
    )
    document = {
        "dry_run": args.dry_run,
        "bytes": total,
        "sessions": done,
        "skipped": skipped,
        "leftovers": leftovers,
    }
    _emit(args, document, "\n".join(lines))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .archivetar import export

    result = export(_find(args.id), Path(args.file), progress=_progress(args))
    text = (
        f"Exported session {result['session_id']} ({result['cells']} cells, {result['files']} files, "
        f"{_bytes(result['bytes'])}) to {result['archive']} ({_bytes(result['archive_bytes'])})."
    )
    _emit(args, result, text)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from .archivetar import import_archive

    result = import_archive(
        _home(),
        Path(args.file),
        name=args.as_name,
        force=args.force,
        trust=args.trust,
        progress=_progress(args),
    )
    replaced = " (it replaced the session there)" if result["replaced"] else ""
    text = f"Imported session {result['session_id']} ({result['cells']} cells) into {result['path']}{replaced}."
    if result["session_source"] == "notebook":
        text += f"\nOpen {result['notebook_path']} with the kernel {DISPLAY_NAME} to continue it."
    elif result["session_source"] == "cwd":
        text += f"\nStart a kernel (jupyter console) in {result['session_name']} to continue it."
    else:
        text += f"\nStart a kernel with PERSISTENT_KERNEL_SESSION={result['session_name']} to continue it."
    _emit(args, result, text)
    return 0


def run_attach(args: argparse.Namespace) -> int:
    from .archive import attach

    path = _find(args.old)
    result = attach(path, args.notebook, force=args.force)
    notebook = result["notebook_path"]
    if not result["moved"]:
        text = f"Session {path.name} already belongs to {notebook}; nothing to do."
    else:
        text = f"Moved session {result['previous_id']} to {result['session_id']} for {notebook}."
        if result["replaced"]:
            text += " The session that was there before was removed."
        text += (
            f"\nNext: open {notebook} in Jupyter with the kernel {DISPLAY_NAME} "
            "(if it is open, restart its kernel); the kernel restores the session."
        )
    if not os.path.exists(notebook):
        text += f"\nNote: there is no file at {notebook} yet."
    _emit(args, result, text)
    return 0


# -- replicas (object storage) ---------------------------------------------------------


def run_replica_sessions(args: argparse.Namespace) -> int:
    """What a replica holds; for a session this machine has too, how far behind the replica is
    (executions journaled here and not yet in it: the replication lag, in executions)."""
    from .catalog import sessions_dir as local_sessions
    from .catalog import summarize
    from .replica import list_sessions

    rows = list_sessions(args.replica)
    here = local_sessions(_home())
    for row in rows:
        local = summarize(here / row["id"]) if (here / row["id"] / "data.mdb").exists() else None
        row["here_through"] = local.last_seq if local is not None else None
        row["behind"] = max(0, local.last_seq - row["through"]) if local is not None and local.last_seq is not None else None
    table = [
        [
            row["id"],
            str(row["through"]),
            str(row["segments"]),
            _ago(row["written_at"]),
            "-" if row["here_through"] is None else str(row["here_through"]),
            "-" if row["behind"] is None else ("up to date" if row["behind"] == 0 else f"{row['behind']} behind"),
        ]
        for row in rows
    ]
    text = _table(["ID", "THROUGH", "SEGMENTS", "LAST WRITTEN", "HERE", "REPLICA"], table) if rows else f"No sessions in {args.replica}."
    _emit(args, {"replica": args.replica, "sessions": rows}, text)
    return 0


def run_push(args: argparse.Namespace) -> int:
    """Ship a session (no kernel on it) to a replica, all of it that is not there yet."""
    from .archive import holding
    from .replica import ReplicaShipper
    from .store import Store

    path = _find(args.id)
    with holding(path, "push"):
        store = Store(path, owner=False)
        try:
            told: list[str] = []
            shipper = ReplicaShipper(store, args.url, path.name, tell=told.append)
            segments = 0
            while shipper.ship():
                segments += 1
        finally:
            store.close()
    _emit(
        args,
        {"session_id": path.name, "url": args.url, "through": shipper.shipped_through, "segments": segments},
        f"Pushed session {path.name} to {args.url}: {segments} new segment(s), through execution #{shipper.shipped_through}.",
    )
    return 0


def run_pull(args: argparse.Namespace) -> int:
    """Fetch a session from a replica into this machine's home (where it has no store yet)."""
    from .catalog import CommandError, sessions_dir
    from .replica import pull
    from .store import Store

    where = sessions_dir(_home()) / args.id
    if (where / "data.mdb").exists():
        raise CommandError(f"session {args.id} already has a store here ({where}); remove it first (persistent-kernel rm {args.id})")
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    pulled = pull(args.url, args.id, where)
    if pulled is None:
        raise CommandError(f"the replica at {args.url} holds no session {args.id} (persistent-kernel sessions --replica {args.url})")
    store = Store(where, owner=False)
    try:
        problems = store.check()
    finally:
        store.close()
    if problems:
        raise CommandError(f"the session pulled to {where} does not check: {'; '.join(problems[:3])}")
    _emit(
        args,
        {"session_id": args.id, "url": args.url, "through": pulled.through, "files": pulled.files, "bytes": pulled.file_bytes},
        f"Pulled session {args.id} from {args.url} (through execution #{pulled.through}, {pulled.files} files, "
        f"{_bytes(pulled.file_bytes)}) into {where}; a kernel on it restores it.",
    )
    return 0
