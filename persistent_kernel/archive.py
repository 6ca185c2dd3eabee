"""A session's store as a whole, changed under its lock: remove it, trust it, collect it, move it, install one.

Everything here that changes a session holds the session's lock (the one a
kernel takes), so a session a live kernel holds is refused, and no kernel can
start on a store while it is being moved, replaced or collected. A store is
never half there: what is built (an import) is built in a dot directory beside
the sessions and renamed into place; what goes (``rm``, a replaced session) is
renamed out of the way first, then deleted.

The archive file that ``export`` writes and ``import`` reads (a tar with a
manifest) is ``archivetar``'s; it installs what it verified with ``install_store``.

No IPython, no LMDB (``store`` copies and reads for us).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .catalog import (
    DATA_FILE,
    CommandError,
    SessionInUse,
    directory_bytes,
    is_store,
    open_store,
    sessions_dir,
)
from .errors import SessionLocked
from .lock import SessionLock
from .session import notebook_session

# progress(total bytes or None, description) -> a tqdm-like bar (update(n), context manager).
Progress = Callable[[int | None, str], Any]


class _NoBar:
    def update(self, n: int) -> None:
        pass


def progress_bar(progress: Progress | None, total: int | None, description: str) -> Any:
    """A bar from ``progress`` for ``total`` bytes, or one that shows nothing."""
    if progress is None:
        return contextlib.nullcontext(_NoBar())
    return progress(total, description)


# -- holding and moving stores ------------------------------------------------------


@contextlib.contextmanager
def holding(path: Path, action: str) -> Iterator[None]:
    """The session's lock for the duration of a change; a live kernel's session is refused."""
    lock = SessionLock(path)
    try:
        # Not 0: a probe of the lock (``sessions``, ``show``) holds it for an instant.
        lock.acquire(timeout=0.5)
    except SessionLocked:
        raise SessionInUse(path.name, lock.holder(), action) from None
    except OSError as exc:
        raise CommandError(f"cannot lock session {path.name}: {exc}") from exc
    try:
        yield
    finally:
        lock.release()


def _aside(path: Path, why: str) -> Path:
    """Rename a session directory out of the catalog's sight (a dot name beside it)."""
    hidden = path.parent / f".{why}-{path.name}-{secrets.token_hex(4)}"
    os.rename(path, hidden)
    return hidden


def set_aside(path: Path, why: str) -> Path:
    """Rename a session out of the way, kept and listed (``<id>-<why>-<time>``); refused while a kernel holds it."""
    target = path.parent / f"{path.name}-{why}-{time.strftime('%Y%m%d-%H%M%S')}"[:64]
    with holding(path, why):
        os.rename(path, target)
    return target


def remove(path: Path) -> dict[str, Any]:
    """Delete a session's store; refused while a kernel holds it."""
    size = directory_bytes(path)
    with holding(path, "remove"):
        doomed = _aside(path, "removing")
    shutil.rmtree(doomed)
    return {"session_id": path.name, "path": str(path), "bytes": size}


def trust(path: Path) -> dict[str, Any]:
    """Sign everything in a session's store with this user's key (refused while a kernel holds it).

    For a store from before authentication, or one copied from another user or
    machine, on its owner's word: its values are loaded (code runs) from then on.
    """
    with holding(path, "trust"), open_store(path, trust=True) as store:
        store.set_meta(session_id=path.name)  # a store copied here on purpose becomes this session's
        signed = store.signed
        cells = store.count()
    return {"session_id": path.name, "path": str(path), "signed": signed, "cells": cells}


def collect(
    path: Path, *, dry_run: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Delete the files in ``blobs/`` no version names, and temporary files of killed writes."""
    with holding(path, "collect garbage in"):
        with open_store(path) as store:
            garbage = store.unreferenced_files()
        sizes = {p: _size(p) for p in garbage}
        freed = 0
        if not dry_run:
            with progress_bar(progress, sum(sizes.values()), f"gc {path.name}") as bar:
                for file, size in sizes.items():
                    with contextlib.suppress(FileNotFoundError):
                        file.unlink()
                        freed += size
                    bar.update(size)
    return {
        "session_id": path.name,
        "files": [{"name": p.name, "bytes": s} for p, s in sizes.items()],
        "bytes": sum(sizes.values()) if dry_run else freed,
        "dry_run": dry_run,
    }


# Work directories beside the sessions (hidden from the listing): what a killed rm or
# replace left is always garbage; a staging directory is, once no export or import
# can still be writing it.
_LEFTOVERS = {
    ".removing-": 0.0,
    ".replaced-": 0.0,
    ".export-": 86400.0,
    ".import-": 86400.0,
}


def collect_leftovers(home: Path, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Delete the work directories under ``sessions/`` that interrupted commands left."""
    root = sessions_dir(home)
    if not root.is_dir():
        return []
    found = []
    now = time.time()
    for entry in sorted(root.iterdir()):
        age = next((a for p, a in _LEFTOVERS.items() if entry.name.startswith(p)), None)
        if age is None or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            if now - entry.stat().st_mtime < age:
                continue
        except FileNotFoundError:
            continue
        size = directory_bytes(entry)
        if not dry_run:
            shutil.rmtree(entry, ignore_errors=True)
            if entry.exists():
                continue
        found.append({"name": entry.name, "bytes": size})
    return found


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def attach(path: Path, notebook: str, *, force: bool = False) -> dict[str, Any]:
    """Move session ``path`` to the id the kernel derives for ``notebook``, and say so in its meta."""
    if not is_store(path):
        raise CommandError(
            f"{path} holds no session store (no {DATA_FILE}); nothing to attach"
        )
    new_id, notebook_path = notebook_session(notebook)
    target = path.parent / new_id
    result = {
        "session_id": new_id,
        "previous_id": path.name,
        "notebook_path": notebook_path,
        "path": str(target),
    }
    if target == path:
        return {**result, "moved": False, "replaced": False}
    replaced: Path | None = None
    with holding(path, "attach"):
        if target.exists():
            if not force:
                raise CommandError(
                    f"session {new_id} already exists for {notebook_path} (a kernel started on the notebook "
                    f"after it was moved?); pass --force to replace it with {path.name}"
                )
            with holding(target, "replace"):
                replaced = _aside(target, "replaced")
        moved = False
        try:
            os.rename(path, target)
            moved = True
            with open_store(target) as store:
                store.set_meta(
                    session_id=new_id,
                    session_name=os.path.basename(notebook_path),
                    session_source="notebook",
                    notebook_path=notebook_path,
                )
        except BaseException as exc:
            undone = _undo_attach(path, target, moved, replaced)
            if not isinstance(exc, Exception):
                raise
            raise CommandError(
                f"cannot move {path} to {target}: {exc}{undone}"
            ) from exc
    if replaced is not None:
        shutil.rmtree(replaced)
    return {**result, "moved": True, "replaced": replaced is not None}


def _undo_attach(path: Path, target: Path, moved: bool, replaced: Path | None) -> str:
    """Put things back after a failed attach: the session at its id, the replaced one at the target."""
    note = ""
    if moved:
        try:
            os.rename(target, path)
        except OSError:
            note = f"; the session is at {target}"
    if replaced is None:
        return note
    try:
        os.rename(replaced, target)
    except OSError:
        return note + _kept(replaced)
    return note + "; the session it was to replace is back in place"


def _kept(replaced: Path | None) -> str:
    return (
        f"; the session it was to replace is kept at {replaced}"
        if replaced is not None
        else ""
    )


# -- installing an imported store ------------------------------------------------------


def check_installable(target: Path, force: bool) -> None:
    """Refused unless ``target`` is free, or ``force`` and no kernel holds the session there."""
    if not target.exists():
        return
    if not force:
        raise CommandError(
            f"session {target.name} already exists; pass --force to replace it, or --as NAME to import it under another name"
        )
    lock = SessionLock(target)
    if lock.is_held():
        raise SessionInUse(target.name, lock.holder(), "replace")


def install_store(staging: Path, target: Path, force: bool) -> bool:
    """Rename the verified store into place; returns whether it replaced a session."""
    if not target.exists():
        try:
            # An empty directory a kernel starting right now has made is replaced.
            os.rename(staging, target)
        except OSError as exc:
            raise CommandError(
                f"cannot install the session at {target}: {exc} (did a kernel start on it meanwhile?)"
            ) from exc
        return False
    check_installable(target, force)
    with holding(target, "replace"):
        old = _aside(target, "replaced")
        try:
            os.rename(staging, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.rename(old, target)
            raise CommandError(
                f"cannot install the session at {target}: {exc}"
                + _kept(old if old.exists() else None)
            ) from exc
    shutil.rmtree(old, ignore_errors=True)
    return True
