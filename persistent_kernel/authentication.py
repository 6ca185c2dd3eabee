"""Authenticated state: the per-user key and the HMAC-SHA256 tags of a store's records and blobs.

Loading a pickle runs code, and a journaled cell is code that a restore may
replay. A store is therefore only as safe as the guarantee that every byte in
it was written by a persistent_kernel of this user. Each record, blob chunk and
large-blob file carries a tag, HMAC-SHA256 under a key only this user can read;
a restore loads nothing whose tag does not match (see docs/security.md).

The key is 32 random bytes, created on first use with mode 0600 at
``<jupyter data dir>/persistent_kernel/key`` (``PERSISTENT_KERNEL_KEY_FILE``
overrides it). It is never stored in a session, so a store copied, synced or
archived elsewhere cannot be made to verify without it.

What a tag covers: the store's random id (so records cannot be moved between
stores), what kind of record it is, its LMDB key (so a record cannot be moved
within the store) and its bytes. A large file's tag covers SHA-256 digests of its
16 MiB segments, so a restore verifies a gigabyte on both cores at once.

No LMDB here, no IPython.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import struct
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir

from .errors import KeyUnusable

KEY_ENV = "PERSISTENT_KERNEL_KEY_FILE"
KEY_BYTES = 32
TAG_BYTES = 32
SEGMENT_BYTES = 16 * 1024**2  # a large file is hashed in segments of this size, in parallel


def key_path(env: Mapping[str, str] | None = None) -> Path:
    """Where this user's key is: ``PERSISTENT_KERNEL_KEY_FILE``, else beside the default session home."""
    configured = (os.environ if env is None else env).get(KEY_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    return Path(jupyter_data_dir()) / "persistent_kernel" / "key"


def load_key(path: Path | None = None) -> bytes:
    """The user's key; created (mode 0600, in a 0700 directory) the first time it is needed.

    A key another user could read or write is refused, as ssh refuses such a
    private key: anyone who can read it can forge records that run code here.
    Two kernels starting at once agree on one key (it appears by ``link``, which
    never replaces a file).
    """
    path = key_path() if path is None else path
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another kernel made it first: use theirs
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        raise KeyUnusable(f"cannot create the key that authenticates stores at {path}: {exc}") from exc
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyUnusable(f"cannot read the key that authenticates stores at {path}: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyUnusable(f"the key at {path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyUnusable(
                f"the key at {path} can be read or written by other users (mode {stat.S_IMODE(info.st_mode):o}), "
                f"so stores signed with it cannot be trusted; make it private with: chmod 600 {path}"
            )
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise KeyUnusable(f"the key at {path} belongs to another user (uid {info.st_uid})")
        text = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) < KEY_BYTES:
        raise KeyUnusable(f"the key at {path} is damaged (it must hold {KEY_BYTES} bytes as hex); it was not replaced")
    return key


class Authenticator:
    """Tags for one store: HMAC-SHA256 under the user's key, bound to the store's random id."""

    def __init__(self, key: bytes, store_id: bytes) -> None:
        self._key = key
        self._store_id = store_id

    @property
    def store_id(self) -> bytes:
        return self._store_id

    def tag(self, kind: bytes, key: bytes, value: Any) -> bytes:
        """The tag of ``value`` (bytes-like, any size: hashed in place) stored under ``key`` as ``kind``."""
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        # Lengths first: (key, value) pairs that concatenate to the same bytes get different tags.
        mac.update(self._store_id + kind + len(key).to_bytes(4, "big") + key)
        mac.update(value)
        return mac.digest()

    def is_authentic(self, kind: bytes, key: bytes, value: Any, tag: Any) -> bool:
        return tag is not None and hmac.compare_digest(self.tag(kind, key, value), bytes(tag))

    def file_tag(self, blob_digest: bytes, segment_hashes: Iterable[bytes]) -> bytes:
        """The tag of a large-blob file, from its segments' SHA-256 digests (``segment_hashes``)."""
        return self.tag(b"f", blob_digest, b"".join(segment_hashes))

    def file_seal(self, blob_digest: bytes, info: os.stat_result) -> bytes:
        """The tag of a verified large file's identity on this machine: device, inode, size, mtime, ctime.

        A file whose identity still has this tag has not been written since it was
        verified (writing sets its ctime, which no unprivileged process can set back),
        so a restore need not hash it again. See docs/security.md, "Sealed files".
        """
        identity = struct.pack(">QQQqq", info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        return self.tag(b"F", blob_digest, identity)


class SegmentHasher:
    """SHA-256 of each ``SEGMENT_BYTES`` of a stream fed in pieces of any size (the background writer's side)."""

    def __init__(self) -> None:
        self._current = hashlib.sha256()
        self._filled = 0
        self.hashes: list[bytes] = []

    def update(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            take = min(SEGMENT_BYTES - self._filled, view.nbytes)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == SEGMENT_BYTES:
                self.hashes.append(self._current.digest())
                self._current = hashlib.sha256()
                self._filled = 0

    def finish(self) -> list[bytes]:
        if self._filled or not self.hashes:
            self.hashes.append(self._current.digest())  # the last, partial segment (or the one of an empty file)
            self._filled = 0
        return self.hashes


def segment_hashes(data: Any, workers: int | None = None) -> list[bytes]:
    """The same digests as ``SegmentHasher`` for a whole buffer, on several cores (hashlib releases the GIL)."""
    return segment_hashes_of([data], workers)[0]


def segment_hashes_of(buffers: list[Any], workers: int | None = None) -> list[list[bytes]]:
    """``segment_hashes`` of each buffer, all their segments hashed on several cores at once.

    A value stored as pieces is one segment per piece: checked one after the other, a
    restore of 1 GiB hashed on one core (~0.7 s here); together, on all of them.
    """
    views = [memoryview(data).cast("B") for data in buffers]
    segments = [[view[start : start + SEGMENT_BYTES] for start in range(0, view.nbytes, SEGMENT_BYTES)] for view in views]
    flat = [segment for parts in segments for segment in parts]
    workers = min(len(flat), workers or os.cpu_count() or 1)
    try:
        if workers <= 1:
            digests = [hashlib.sha256(segment).digest() for segment in flat]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="persistent-kernel-verify") as pool:
                digests = list(pool.map(lambda segment: hashlib.sha256(segment).digest(), flat))
        found, start = [], 0
        for parts in segments:
            # an empty buffer is one empty segment, as SegmentHasher has it
            found.append(digests[start : start + len(parts)] if parts else [hashlib.sha256().digest()])
            start += len(parts)
        return found
    finally:
        for segment in flat:
            with contextlib.suppress(BufferError):
                segment.release()
        for view in views:
            with contextlib.suppress(BufferError):
                view.release()
