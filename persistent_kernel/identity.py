"""Which session a kernel is: learned from its environment and connection file, or its first execution.

Every frontend starts kernels its own way, and the session must follow the
notebook in each. The first rule that answers wins:

1. ``PERSISTENT_KERNEL_SESSION``: an explicit name.
2. A Voila dashboard (Voila sets ``SERVER_SOFTWARE=voila/…`` and ``VOILA_*``):
   no session at all. A dashboard is shown to many visitors, each in a fresh
   kernel; restoring one visitor's state into the next would be wrong.
3. ``JPY_SESSION_NAME``, but only when the connection file carries a
   ``jupyter_session``: jupyter_server writes both for the kernel it starts for
   a notebook. A kernel started by nbclient or papermill from inside a notebook
   inherits the variable from its parent, and its connection file has no
   ``jupyter_session``; it must not claim the parent's session.
4. ``PERSISTENT_KERNEL_NOTEBOOK``: a notebook path given by the user, e.g. for
   ``papermill`` (relative paths are taken from the kernel's working directory).

Nothing else is known at start. The kernel then waits for its first execution
(nothing of any session is touched before), which tells the rest:

5. VS Code runs ``__vsc_ipynb_file__ = "<path>"`` before any cell: that notebook.
6. ``JPY_SESSION_NAME`` the connection file did not confirm (a jupyter_server
   whose jupyter_client is older than 8.3 writes no ``jupyter_session``), with a
   client that can answer ``input()``: a notebook's frontend, that notebook.
7. A client that cannot answer ``input()`` (``allow_stdin`` false: nbclient,
   papermill, ``nbconvert --execute``) is a headless run: a fresh session named
   for the run, never another notebook's.
8. Otherwise (``jupyter console``, a script): the working directory.

A notebook renamed in JupyterLab keeps its session: jupyter_server restarts its
kernel with the same connection file and the new ``JPY_SESSION_NAME``, and
``follow_rename`` moves the session to the new name (see ``kernels/`` below).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import xxhash

from .privatefiles import write_private
from .session import (
    NOTEBOOK_ENV,
    SAFE_ID,
    SESSION_ENV,
    Session,
    directory_session,
    ensure_private_dir,
    explicit_session,
    persistent_home,
    run_session,
    session_of_notebook,
)

NOTEBOOK_PATH_ENV = "PERSISTENT_KERNEL_NOTEBOOK"
VSCODE_FILE_VARIABLE = "__vsc_ipynb_file__"
VOILA_VARIABLES = ("VOILA_BASE_URL", "VOILA_PREHEAT", "VOILA_REQUEST_URL", "VOILA_SERVER_URL")

# Where an identity came from: a short label (the `sessions` column), a colon, the details.
FROM_JUPYTER_SERVER = f"jupyter_server: {NOTEBOOK_ENV}, confirmed by the kernel's connection file"
FROM_JUPYTER_SERVER_UNCONFIRMED = (
    f"jupyter_server: {NOTEBOOK_ENV} and an interactive first execution (the connection file, from a "
    "jupyter_client before 8.3, does not name the notebook)"
)
FROM_VSCODE = f"VS Code: {VSCODE_FILE_VARIABLE} in the kernel's first execution"
FROM_RUN = "headless run: a client that cannot answer input() (nbclient, papermill, nbconvert); a fresh session for this run"
FROM_NOTEBOOK_ENV = f"{NOTEBOOK_PATH_ENV}: a notebook named by the user"
RENAMED_AFTER_DAYS = 30  # records of kernels not seen for this long are dropped


@dataclass(frozen=True)
class StartIdentity:
    """What a kernel knows at start: its session, or that it must wait, or that it has none."""

    session: Session | None  # None: wait for the first execution (unless ``off``)
    off: str | None = None  # persistence is off for this kernel, and why


def at_start(env: dict[str, str] | None = None, connection_file: str | None = None, cwd: str | None = None) -> StartIdentity:
    env = os.environ if env is None else env
    home = persistent_home(env)
    explicit = env.get(SESSION_ENV, "").strip()
    if explicit:
        return StartIdentity(explicit_session(explicit, home))
    if is_voila(env):
        return StartIdentity(
            None,
            off=f"this kernel runs a Voila dashboard, which never restores a session (set {SESSION_ENV} to persist one)",
        )
    notebook = env.get(NOTEBOOK_ENV, "").strip()
    if notebook and connection_session_name(connection_file):
        return StartIdentity(session_of_notebook(notebook, home, FROM_JUPYTER_SERVER))
    given = env.get(NOTEBOOK_PATH_ENV, "").strip()
    if given:
        path = os.path.join(cwd or os.getcwd(), os.path.expanduser(given))
        return StartIdentity(session_of_notebook(path, home, FROM_NOTEBOOK_ENV))
    return StartIdentity(None)


def is_voila(env: dict[str, str]) -> bool:
    return env.get("SERVER_SOFTWARE", "").startswith("voila/") or any(name in env for name in VOILA_VARIABLES)


def connection_session_name(connection_file: str | None) -> str:
    """The ``jupyter_session`` jupyter_server wrote into this kernel's connection file, or ''."""
    if not connection_file:
        return ""
    try:
        with open(connection_file, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return ""
    name = info.get("jupyter_session") if isinstance(info, dict) else None
    return name.strip() if isinstance(name, str) else ""


def from_first_execution(code: str, allow_stdin: bool, env: dict[str, str] | None = None, cwd: str | None = None) -> Session:
    """The session of a kernel that knew none at start, from its first execute_request."""
    env = os.environ if env is None else env
    home = persistent_home(env)
    notebook = vscode_notebook(code)
    if notebook:
        return session_of_notebook(notebook, home, FROM_VSCODE)
    unconfirmed = env.get(NOTEBOOK_ENV, "").strip()
    if unconfirmed and allow_stdin:
        # A jupyter_client older than 8.3 writes no jupyter_session, so JupyterLab's kernel
        # cannot be told from a child by its connection file; a child run by nbclient or
        # papermill cannot answer input(), a notebook's frontend can.
        return session_of_notebook(unconfirmed, home, FROM_JUPYTER_SERVER_UNCONFIRMED)
    if not allow_stdin:
        return run_session(f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}", home, FROM_RUN)
    return directory_session(cwd, home)


# A top-level assignment of a string literal, as VS Code writes it (its own escaping of backslashes).
_VSCODE_ASSIGNMENT = re.compile(
    rf"^{VSCODE_FILE_VARIABLE}\s*=\s*(?P<literal>[rRuU]?(?P<q>['\"])(?:\\.|(?!(?P=q)).)*(?P=q))\s*(?:#.*)?$",
    re.MULTILINE,
)


def vscode_notebook(code: str) -> str | None:
    """The notebook path VS Code's start-up execution names, if this is one."""
    match = _VSCODE_ASSIGNMENT.search(code)
    if match is None:
        return None
    try:
        path = ast.literal_eval(match.group("literal"))
    except (ValueError, SyntaxError):
        return None
    return path if isinstance(path, str) and path.strip() else None


# -- renames: kernels/<kernel>.json remembers the session each kernel last had ----------


def kernels_dir(home: Path) -> Path:
    return home / "kernels"


def kernel_key(connection_file: str) -> str:
    """A file name for a kernel: its connection file's name plus a hash of its whole path."""
    path = os.path.abspath(connection_file)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-.")[:48] or "kernel"
    return f"{stem}-{xxhash.xxh3_64_hexdigest(path.encode('utf-8', 'surrogatepass'))[:12]}"


def follow_rename(session: Session, connection_file: str | None, lock_timeout: float = 5.0) -> tuple[Session, str | None]:
    """The session to use after a restart of this kernel under a new notebook name, and what was done.

    The previous session moves to the new name (``persistent-kernel attach``'s
    move), so the notebook keeps its variables, and a later kernel on the new
    name finds them. A stale session already at the new name (a notebook of
    that name deleted earlier) is set aside, never deleted. When a move is not
    possible (another kernel holds one of them), this kernel continues the
    previous session under the new name rather than start empty.
    """
    if session.source != "notebook" or not connection_file:
        return session, None
    record = kernels_dir(session.home) / f"{kernel_key(connection_file)}.json"
    previous = _read_record(record)
    note = None
    if previous and previous != session.id and SAFE_ID.match(previous):
        old = session.home / "sessions" / previous
        if old.is_dir():
            session, note = _move_session(old, session, lock_timeout)
    _write_record(record, session)
    return session, note


def _move_session(old: Path, session: Session, lock_timeout: float) -> tuple[Session, str]:
    # The maintenance side of the store (its imports are heavy): only needed on a rename.
    from .archive import attach, set_aside
    from .catalog import CommandError, SessionInUse

    continued = replace(session, id=old.name)
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            if session.store_path.exists():
                aside = set_aside(session.store_path, "renamed-over")
                note_aside = f"; the session that was at the new name is kept as {aside.name}"
            else:
                note_aside = ""
            attach(old, session.notebook_path or session.name)
            return session, f"the notebook was renamed: session {old.name} moved to {session.id}{note_aside}"
        except SessionInUse:
            if time.monotonic() >= deadline:
                return continued, f"the notebook was renamed; session {old.name} continues under the new name (in use, not moved)"
            time.sleep(0.1)
        except (CommandError, OSError) as exc:
            return continued, f"the notebook was renamed; session {old.name} continues under the new name ({exc})"


def _read_record(record: Path) -> str | None:
    try:
        with open(record, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    session_id = data.get("session_id") if isinstance(data, dict) else None
    return session_id if isinstance(session_id, str) else None


def _write_record(record: Path, session: Session) -> None:
    try:
        ensure_private_dir(record.parent)
        write_private(record, json.dumps({"session_id": session.id, "notebook_path": session.notebook_path}).encode())
        _prune_records(record.parent, keep=record)
    except OSError:
        pass  # a full or read-only disk: a later rename starts a new session, nothing else is lost


def _prune_records(directory: Path, keep: Path) -> None:
    cutoff = time.time() - RENAMED_AFTER_DAYS * 86400
    for entry in directory.glob("*.json"):
        with contextlib.suppress(OSError):
            if entry != keep and entry.stat().st_mtime < cutoff:
                entry.unlink()


def forget_kernel(session: Session | None, connection_file: str | None) -> None:
    """A kernel that shut down for good (not a restart): its record is no longer needed."""
    if session is None or not connection_file:
        return
    with contextlib.suppress(OSError):
        (kernels_dir(session.home) / f"{kernel_key(connection_file)}.json").unlink()
