"""A session as one file: ``export`` to a tar archive, ``import`` from one, verified.

An archive is a tar file (gzip-compressed when its name ends in ``.gz`` or
``.tgz``) with three kinds of member: ``data.mdb``, a compacted copy of the
LMDB environment; ``blobs/<digest>``, the large-blob files its versions name;
and, last, ``manifest.json``: the format version, the session's metadata, and
the size and xxh3-128 digest of every other member. An import accepts only
those members, verifies every size and digest, and runs ``Store.check()`` on
the result before anything appears under ``sessions/``: it is built in a dot
directory beside the sessions and installed by ``archive.install_store``
(under the lock of the session it replaces).

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
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import xxhash

from . import __version__
from .archive import Progress, check_installable, install_store, progress_bar
from .catalog import DATA_FILE, CommandError, open_store, sessions_dir
from .session import SAFE_ID, ensure_private_dir, session_id_for
from .store import FORMAT_VERSION

ARCHIVE_KIND = "persistent_kernel session"
ARCHIVE_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024**2
COPY_CHUNK = 1024**2

# The only member names an archive may hold; anything else (``../x``, ``/etc``,
# a link) is refused before a byte is written.
_MEMBER = re.compile(r"manifest\.json|data\.mdb|blobs/[0-9a-f]{32}")


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
        progress_bar(progress, total, f"export {file.name}") as bar,
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
        check_installable(root / session_id_for("explicit", name), force)
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
        replaced = install_store(staging, target, force)
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


def _extract(
    file: Path, staging: Path, progress: Progress | None
) -> dict[str, tuple[int, str]]:
    """Write the archive's members into ``staging``, hashing them; member name -> (size, digest)."""
    found: dict[str, tuple[int, str]] = {}
    try:
        with tarfile.open(file, "r:*") as tar:
            compressed = not isinstance(tar.fileobj, io.BufferedReader)
            total = None if compressed else sum(m.size for m in tar.getmembers())
            with progress_bar(progress, total, f"import {file.name}") as bar:
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
