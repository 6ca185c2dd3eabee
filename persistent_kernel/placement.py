"""Where a live store may be: never on a network or FUSE filesystem.

LMDB's documentation forbids remote filesystems: its locks are not honoured over NFS or
SMB, and its memory map is not coherent across machines (or through FUSE), so a store
there can corrupt silently. Many JupyterHub deployments mount home directories over NFS,
and the default location of the stores (``<jupyter data dir>/persistent_kernel``) is
under the home directory. So the configured location is checked with ``statfs(2)``
before anything is opened there; on a network or FUSE filesystem the live stores go to
a directory on local disk instead (``PERSISTENT_KERNEL_LOCAL_HOME``, default
``/var/tmp/persistent-kernel-<uid>/<location hash>``), and the kernel says so once, in
the first cell and in ``%persist status``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import xxhash

LOCAL_HOME_ENV = "PERSISTENT_KERNEL_LOCAL_HOME"

# statfs(2) f_type of the filesystems a store must not live on (linux/magic.h and the
# filesystems' own headers): shared between machines, or served by a user-space process.
REMOTE_FILESYSTEMS: dict[int, str] = {
    0x6969: "NFS",
    0x517B: "SMB",
    0xFF534D42: "CIFS",
    0xFE534D42: "SMB2",
    0x65735546: "FUSE",  # s3fs, gcsfuse, sshfs, GlusterFS, JuiceFS …
    0x01021997: "9p",
    0x0BD00BD0: "Lustre",
    0x47504653: "GPFS",
    0x00C36400: "CephFS",
    0x5346414F: "AFS",
    0x6B414653: "AFS",
    0x73757245: "Coda",
    0x564C: "NCP",
    0x19830326: "BeeGFS",
    0x20030528: "OrangeFS",
}


def remote_filesystem(magic: int) -> str | None:
    """The name of a network or FUSE filesystem from its ``statfs`` type, or None for a local one."""
    return REMOTE_FILESYSTEMS.get(magic & 0xFFFFFFFF)


class _StatFs(ctypes.Structure):
    # Only the first field is read: ``__fsword_t f_type`` (a C long on Linux); the rest is room.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


_libc = None


def filesystem_type(path: Path) -> int | None:
    """``statfs(2)``'s f_type for the filesystem holding ``path`` (its nearest existing
    ancestor); None where it cannot be asked (not Linux, no libc)."""
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    result = _StatFs()
    if _libc.statfs(os.fsencode(probe), ctypes.byref(result)) != 0:
        return None
    return int(result.f_type)


@dataclass(frozen=True)
class Placement:
    """Where the live stores are, and, when that is not where they were configured, why."""

    home: Path  # where LMDB environments are opened
    configured: Path  # PERSISTENT_KERNEL_HOME or the default
    filesystem: str | None = None  # the configured location's network/FUSE filesystem, when moved

    @property
    def moved(self) -> bool:
        return self.filesystem is not None

    def note(self) -> str | None:
        """The sentence the user reads once (first cell, ``%persist status``) when the stores moved."""
        if not self.moved:
            return None
        return (
            f"{self.configured} is on {self.filesystem}, a network or FUSE filesystem, where LMDB's locks and memory "
            f"map are not safe; this session's live store is on local disk at {self.home} instead "
            f"(set {LOCAL_HOME_ENV} to choose another local directory)."
        )


def place(configured: Path, env: Mapping[str, str] | None = None, magic: int | None = None) -> Placement:
    """Where stores configured at ``configured`` are opened (``magic``: the filesystem type, for tests)."""
    env = os.environ if env is None else env
    kind = remote_filesystem(magic if magic is not None else (filesystem_type(configured) or 0))
    if kind is None:
        return Placement(configured, configured)
    # One directory per configured location: two hubs' homes never share a local store.
    leaf = xxhash.xxh3_64_hexdigest(os.fsencode(configured))[:16]
    chosen = env.get(LOCAL_HOME_ENV)
    candidates = [Path(chosen).expanduser().absolute()] if chosen else []
    candidates += [_default_local_base(), Path(tempfile.gettempdir()) / f"persistent-kernel-{os.getuid()}"]
    # The first candidate on a local filesystem (a chosen one on NFS too is passed over, never used).
    local = next((c for c in candidates if remote_filesystem(filesystem_type(c) or 0) is None), candidates[-1]) / leaf
    return Placement(local, configured, kind)


def _default_local_base() -> Path:
    """``/var/tmp`` (local disk on most systems, kept across reboots, unlike a tmpfs ``/tmp``), else the temp dir."""
    for candidate in ("/var/tmp", tempfile.gettempdir()):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return Path(candidate) / f"persistent-kernel-{os.getuid()}"
    return Path(tempfile.gettempdir()) / f"persistent-kernel-{os.getuid()}"
