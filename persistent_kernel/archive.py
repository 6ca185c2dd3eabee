"""A session's store as a whole: export and import it, move it, remove it, collect it.

Everything here that changes a session holds the session's lock (the one a
kernel takes), so a session a live kernel holds is refused, and no kernel can
start on a store while it is being moved, replaced or collected. A store is
never half there: what is built (an import) is built in a dot directory beside
the sessions and renamed into place; what goes (``rm``, a replaced session) is
renamed out of the way first, then deleted.

An archive is a tar file (gzip-compressed when its name ends in ``.gz`` or
``.tgz``) with three kinds of member: ``data.mdb``, a compacted copy of the
LMDB environment; ``blobs/<digest>``, the large-blob files its versions name;
and, last, ``manifest.json``: the format version, the session's metadata, and
the size and xxh3-128 digest of every other member. An import accepts only
those members, verifies every size and digest, and runs ``Store.check()`` on
the result before anything appears under ``sessions/``.

No IPython, no LMDB (``store`` copies and reads for us).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import xxhash

from . import __version__
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
from .session import SAFE_ID, ensure_private_dir, notebook_session, session_id_for
from .store import FORMAT_VERSION

ARCHIVE_KIND = "persistent_kernel session"
ARCHIVE_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024**2
COPY_CHUNK = 1024**2

# The only member names an archive may hold; anything else (``../x``, ``/etc``,
# a link) is refused before a byte is written.
_MEMBER = re.compile(r"manifest\.json|data\.mdb|blobs/[0-9a-f]{32}")

# progress(total bytes or None, description) -> a tqdm-like bar (update(n), context manager).
Progress = Callable[[int | None, str], Any]


class _NoBar:
    def update(self, n: int) -> None:
        pass


def _bar(progress: Progress | None, total: int | None, description: str) -> Any:
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
            with _bar(progress, sum(sizes.values()), f"gc {path.name}") as bar:
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


# -- export --------------------------------------------------------------------------


class _HashingReader(io.RawIOBase):
    """A file read once: hashed and counted on the way into the archive."""

    def __init__(self, raw: IO[bytes], bar: Any) -> None:
        self.raw = raw
        self.bar = bar
        self.hasher = xxhash.xxh3_128()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hasher.update(data)
        self.size += len(data)
        self.bar.update(len(data))
        return data


def _compressed(file: Path) -> bool:
    return file.name.endswith((".gz", ".tgz"))


def _member_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    return info


def export(
    path: Path, file: Path, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Write session ``path`` to the archive ``file`` (replaced only once it is complete).

    Works while a kernel runs: the LMDB copy is one committed state, and the
    blob files it names are pinned with hard links before they are read.
    """
    file = Path(file).absolute()
    if file.is_dir():
        raise CommandError(f"{file} is a directory; give the archive's file name")
    if not file.parent.is_dir():
        raise CommandError(
            f"there is no directory {file.parent} to write {file.name} in"
        )
    staging = Path(tempfile.mkdtemp(prefix=f".export-{path.name}-", dir=path.parent))
    partial = file.with_name(f".{file.name}.{secrets.token_hex(4)}.partial")
    try:
        copy = staging / "store"
        copy.mkdir(mode=0o700)
        with open_store(path) as store:
            store.copy_to(copy)
        with open_store(copy) as snapshot:
            needed = snapshot.referenced_files()
            _pin_blobs(path, copy, needed)
            problems = snapshot.check()
            if problems:
                raise CommandError(
                    f"session {path.name} has problems, not exported: {'; '.join(problems[:5])}"
                )
            meta = snapshot.meta()
            cells = snapshot.count()
        members = [(DATA_FILE, copy / DATA_FILE)]
        members += [
            (f"blobs/{name}", copy / "blobs" / name)
            for name in sorted(needed)
            if (copy / "blobs" / name).is_file()
        ]
        files = _write_archive(file, partial, members, meta, cells, progress)
        os.replace(partial, file)
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "session_id": path.name,
        "archive": str(file),
        "archive_bytes": file.stat().st_size,
        "cells": cells,
        "files": len(files),
        "bytes": sum(f["size"] for f in files.values()),
    }


def _pin_blobs(path: Path, copy: Path, needed: Iterable[str]) -> None:
    """Hard links to the blob files the copy names, beside it (a copy where links are refused).

    A kernel may prune a file after the LMDB copy was taken; a link keeps its
    bytes for the export, and the copy's ``check()`` finds any that went before.
    """
    source = path / "blobs"
    target = copy / "blobs"
    target.mkdir(mode=0o700, exist_ok=True)
    for name in needed:
        entry = source / name
        try:
            os.link(entry, target / entry.name)
        except FileNotFoundError:
            continue  # pruned meanwhile: check() says whether the copy needs it
        except OSError:  # a filesystem without hard links
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(entry, target / entry.name)


def _write_archive(
    file: Path,
    partial: Path,
    members: list[tuple[str, Path]],
    meta: dict[str, Any],
    cells: int,
    progress: Progress | None,
) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    total = sum(source.stat().st_size for _, source in members)
    mode = "w:gz" if _compressed(file) else "w"
    extra = {"compresslevel": 6} if _compressed(file) else {}
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with (
        os.fdopen(fd, "wb") as out,
        tarfile.open(fileobj=out, mode=mode, copybufsize=COPY_CHUNK, **extra) as tar,
        _bar(progress, total, f"export {file.name}") as bar,
    ):
        for name, source in members:
            with source.open("rb") as raw:
                reader = _HashingReader(raw, bar)
                tar.addfile(_member_info(name, source.stat().st_size), reader)
            files[name] = {"size": reader.size, "xxh3_128": reader.hasher.hexdigest()}
        manifest = {
            "archive": ARCHIVE_KIND,
            "archive_version": ARCHIVE_VERSION,
            "format_version": int(meta.get("format_version", FORMAT_VERSION)),
            "exported_at": time.time(),
            "exported_by": f"persistent_kernel {__version__}",
            "cells": cells,
            # The process context (working directory, environment set by cells) stays inside the store.
            "session": {key: value for key, value in meta.items() if key != "context"},
            "files": files,
        }
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        tar.addfile(_member_info(MANIFEST, len(data)), io.BytesIO(data))
        out.flush()
        os.fsync(out.fileno())
    return files


# -- import --------------------------------------------------------------------------


def import_archive(
    home: Path,
    file: Path,
    *,
    name: str | None = None,
    force: bool = False,
    trust: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Install the session in archive ``file`` under ``home``; nothing is left behind on a refusal.

    An archive whose records do not verify under this user's key (another
    user's, another machine's, or one from before authentication) is refused
    unless ``trust``: its stored values run code when a kernel loads them. With
    ``trust`` everything in it is signed with this user's key once it passed
    every other check.
    """
    file = Path(file)
    if not file.is_file():
        raise CommandError(f"no archive at {file}")
    root = ensure_private_dir(sessions_dir(ensure_private_dir(Path(home))))
    if name is not None:
        name = name.strip()  # as the kernel strips PERSISTENT_KERNEL_SESSION
        if not name:
            raise CommandError("--as needs a session name")
        # Refused before gigabytes are read; checked again before the rename.
        _installable(root / session_id_for("explicit", name), force)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
    try:
        found = _extract(file, staging, progress)
        manifest = _verify(file, staging, found)
        session_id = (
            session_id_for("explicit", name)
            if name is not None
            else _archived_id(file, manifest)
        )
        with open_store(staging) as store:
            problems = store.check(authentication=False)
            if problems:
                raise CommandError(
                    f"{file}: the archived store fails its check, nothing imported: {'; '.join(problems[:5])}"
                )
            # With --trust everything is signed below (one pass over the files); without it, checked once.
            unauthentic = [] if trust else store.authentication_problems()
        if unauthentic:
            raise CommandError(
                f"{file} was not written by a persistent-kernel holding your key ({len(unauthentic)} "
                f"record(s) fail authentication, e.g. {unauthentic[0]}). A kernel that loads its values runs "
                "code from it, so it is imported only with --trust, if you trust where it came from; nothing imported"
            )
        with open_store(staging, trust=trust) as store:
            if name is not None:
                store.set_meta(
                    session_id=session_id,
                    session_name=name,
                    session_source="explicit",
                    notebook_path=None,
                )
            cells = store.count()
            meta = store.meta()
        _fsync_dir(staging)
        target = root / session_id
        replaced = _install(staging, target, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "session_id": session_id,
        "session_name": meta.get("session_name"),
        "session_source": meta.get("session_source"),
        "notebook_path": meta.get("notebook_path"),
        "path": str(target),
        "archive": str(file),
        "cells": cells,
        "files": len(manifest["files"]),
        "bytes": sum(f["size"] for f in manifest["files"].values()),
        "replaced": replaced,
    }


def _installable(target: Path, force: bool) -> None:
    if not target.exists():
        return
    if not force:
        raise CommandError(
            f"session {target.name} already exists; pass --force to replace it, or --as NAME to import it under another name"
        )
    lock = SessionLock(target)
    if lock.is_held():
        raise SessionInUse(target.name, lock.holder(), "replace")


def _extract(
    file: Path, staging: Path, progress: Progress | None
) -> dict[str, tuple[int, str]]:
    """Write the archive's members into ``staging``, hashing them; member name -> (size, digest)."""
    found: dict[str, tuple[int, str]] = {}
    try:
        with tarfile.open(file, "r:*") as tar:
            compressed = not isinstance(tar.fileobj, io.BufferedReader)
            total = None if compressed else sum(m.size for m in tar.getmembers())
            with _bar(progress, total, f"import {file.name}") as bar:
                for member in tar:
                    _check_member(file, member, found)
                    if member.name == MANIFEST and member.size > MAX_MANIFEST_BYTES:
                        raise CommandError(
                            f"{file}: its manifest is implausibly large ({member.size:,} bytes); not imported"
                        )
                    source = tar.extractfile(member)
                    if source is None:
                        raise CommandError(
                            f"{file}: member {member.name!r} has no data; not imported"
                        )
                    found[member.name] = _write_member(
                        source, staging / member.name, bar
                    )
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise CommandError(f"{file} is not a readable session archive: {exc}") from exc
    return found


def _check_member(file: Path, member: tarfile.TarInfo, found: dict[str, Any]) -> None:
    """Only the names an export writes, as regular files, each once."""
    if not _MEMBER.fullmatch(member.name) or not member.isreg():
        kind = "" if member.isreg() else " (not a regular file)"
        raise CommandError(
            f"{file}: unexpected member {member.name!r}{kind}; not a session archive, nothing imported"
        )
    if member.name in found:
        raise CommandError(
            f"{file}: member {member.name!r} appears twice; nothing imported"
        )


def _write_member(source: IO[bytes], target: Path, bar: Any) -> tuple[int, str]:
    hasher = xxhash.xxh3_128()
    size = 0
    try:
        target.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        out = os.fdopen(fd, "wb")
    except OSError as exc:
        raise CommandError(f"cannot write {target}: {exc}; nothing imported") from exc
    with out:
        while chunk := source.read(COPY_CHUNK):  # a read error is the archive's
            hasher.update(chunk)
            try:
                out.write(chunk)
            except OSError as exc:  # a full disk is not a damaged archive
                raise CommandError(
                    f"cannot write {target}: {exc}; nothing imported"
                ) from exc
            size += len(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return size, hasher.hexdigest()


def _verify(
    file: Path, staging: Path, found: dict[str, tuple[int, str]]
) -> dict[str, Any]:
    """The manifest, once every member matches it and every blob file its name."""
    if MANIFEST not in found:
        raise CommandError(
            f"{file} has no {MANIFEST}; not a session archive, nothing imported"
        )
    try:
        manifest = json.loads((staging / MANIFEST).read_text())
        listed = {
            str(k): (int(v["size"]), str(v["xxh3_128"]))
            for k, v in manifest["files"].items()
        }
        versions = (
            int(manifest.get("archive_version", 0)),
            int(manifest.get("format_version", 0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CommandError(
            f"{file}: unreadable {MANIFEST} ({exc}); nothing imported"
        ) from exc
    if manifest.get("archive") != ARCHIVE_KIND:
        raise CommandError(
            f"{file} is not a persistent_kernel session archive; nothing imported"
        )
    if versions[0] > ARCHIVE_VERSION or versions[1] > FORMAT_VERSION:
        raise CommandError(
            f"{file} was written by a newer persistent_kernel; upgrade persistent-kernel to import it"
        )
    (staging / MANIFEST).unlink()
    members = {k: v for k, v in found.items() if k != MANIFEST}
    if set(members) != set(listed):
        missing = sorted(set(listed) - set(members))
        extra = sorted(set(members) - set(listed))
        raise CommandError(
            f"{file}: members differ from its manifest (missing {missing}, unlisted {extra}); nothing imported"
        )
    if DATA_FILE not in members:
        raise CommandError(f"{file} holds no {DATA_FILE}; nothing imported")
    for member, (size, digest) in sorted(members.items()):
        want_size, want_digest = listed[member]
        if size != want_size or digest != want_digest:
            raise CommandError(
                f"{file}: {member} does not match the manifest ({size:,} bytes, xxh3_128 {digest}; "
                f"expected {want_size:,} bytes, {want_digest}): the archive is damaged or was changed; nothing imported"
            )
        if member.startswith("blobs/") and member.removeprefix("blobs/") != digest:
            raise CommandError(
                f"{file}: {member} does not hash to its name: the archive was changed; nothing imported"
            )
    return manifest


def _archived_id(file: Path, manifest: dict[str, Any]) -> str:
    session_id = (manifest.get("session") or {}).get("session_id")
    if not isinstance(session_id, str) or not SAFE_ID.fullmatch(session_id):
        raise CommandError(
            f"{file} names no usable session id ({session_id!r}); pass --as NAME"
        )
    return session_id


def _fsync_dir(path: Path) -> None:
    for folder in (path, path / "blobs"):
        if folder.is_dir():
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _install(staging: Path, target: Path, force: bool) -> bool:
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
    _installable(target, force)
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
