"""Files of a store that only this user can change.

A tag proves that bytes were written by a kernel holding the user's key, at the
moment they are checked. That holds afterwards only if nobody else can change the
file: a large value stays mapped from its file after it is verified, and LMDB
maps ``data.mdb``. So every file of a store is opened without following symlinks
(never written through a link to somewhere else, never a FIFO that blocks) and
refused unless it is a regular file this user owns that no one else can write.
Files only others can *read* are tightened to 0600 (their contents are tagged;
secrecy is what the mode is for).

No LMDB, no IPython.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import NotPrivate

_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def _problem(info: os.stat_result) -> str | None:
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return f"can be written by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def open_private(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` for a store's file: no symlink followed, and the file checked on the descriptor.

    Raises ``NotPrivate`` (the descriptor closed) when someone else could change the file.
    """
    try:
        fd = os.open(path, flags | _NO_FOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotPrivate(f"{path} is a symbolic link; a store's files never are") from exc
        raise
    try:
        info = os.fstat(fd)
        problem = _problem(info)
        if problem:
            raise NotPrivate(f"{path} {problem}; a store's files must be private to you")
        if info.st_mode & 0o044:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace a small private file's contents (never through a symlink; ``NotPrivate`` otherwise)."""
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def check_private(path: Path) -> os.stat_result | None:
    """Check a file something else opens (LMDB's ``data.mdb``); None when it does not exist yet."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    problem = _problem(info)
    if problem:
        raise NotPrivate(f"{path} {problem}; a store's files must be private to you")
    if info.st_mode & 0o044:
        os.chmod(path, 0o600, follow_symlinks=False)
    return info
