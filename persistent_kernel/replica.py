"""A session's replica on object storage (S3 and S3-compatible, GCS, Azure, a local path:
anything fsspec opens), so a session survives the node it ran on.

Layout under ``<url>/<session id>/``:

- ``segments/<after>-<through>-<digest>.seg``: what cells ``after+1 … through`` added to the
  store (``storereplica``'s raw entries, tags included), immutable, in order;
- ``files/<digest>``: the large blobs, content-addressed, each put once;
- ``MANIFEST`` (the newest, replaced whole by each put on an object store; on a local or
  shared filesystem also ``manifests/<generation>.json``, immutable, for a reader that
  finds ``MANIFEST`` torn): the consistent cut a reader uses. A manifest is written only after every segment and file
  it names is complete, and names each segment's size and xxh3-128 digest, so a torn
  upload (a killed process, a broken connection) is never part of what a reader sees.
  A manifest of another store id (the session was forgotten and started again) starts
  a new lineage: its segments list starts empty.

``ReplicaShipper`` ships in a background thread after each commit, never on a cell's
reply path; an unreachable replica is said once, retried, and caught up when it is back.
``pull`` builds a session's store from its replica on a node whose disk is empty.
The records stay authenticated: their tags travel with them, and a store built from a
replica verifies with the same user key (``PERSISTENT_KERNEL_KEY_FILE``).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import xxhash

from .storereplica import DATABASES, Entry, write_entries

REPLICA_ENV = "PERSISTENT_KERNEL_REPLICA"
SEGMENT_MAGIC = b"PKSEG1\n"
MANIFEST_FORMAT = 1
_HEADER = struct.Struct(">BIQ")  # database name length, key length, value length
RETRY_SECONDS = (1, 2, 5, 10, 30)  # waits after a failed shipment, the last repeated
DOWNLOAD_THREADS = 8
QUIET_SECONDS = 0.02  # a pause between cells long enough to ship in
MIN_INTERVAL_SECONDS = 0.3  # between shipments: each costs a read transaction here and a few signed requests beside the kernel
MAX_DELAY_SECONDS = 0.8  # after a commit, ship by then even while cells keep running (the lag stays under a second)


class ReplicaError(Exception):
    """The replica cannot be read or is not consistent."""


def encode_segment(entries: list[Entry]) -> bytes:
    parts = [SEGMENT_MAGIC]
    for db, key, value in entries:
        parts += [_HEADER.pack(len(db), len(key), len(value)), db, key, value]
    return b"".join(parts)


def decode_segment(data: bytes) -> list[Entry]:
    if not data.startswith(SEGMENT_MAGIC):
        raise ReplicaError("a segment does not start with the segment header")
    view, offset, entries = memoryview(data), len(SEGMENT_MAGIC), []
    while offset < len(data):
        db_len, key_len, value_len = _HEADER.unpack_from(view, offset)
        offset += _HEADER.size
        db = bytes(view[offset : offset + db_len])
        key = bytes(view[offset + db_len : offset + db_len + key_len])
        start = offset + db_len + key_len
        value = bytes(view[start : start + value_len])
        offset = start + value_len
        if db not in DATABASES or offset > len(data):
            raise ReplicaError("a segment is truncated or names an unknown database")
        entries.append((db, key, value))
    return entries


def open_url(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, root path) for a replica URL; credentials from the environment
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` … for S3)."""
    import fsspec  # only when a replica is used

    protocol = fsspec.core.split_protocol(url)[0] or "file"
    options = {"auto_mkdir": True} if protocol in ("file", "local") else {}  # object stores have no directories to make
    fs, root = fsspec.core.url_to_fs(url, **options)
    return fs, root.rstrip("/")


@dataclass
class Manifest:
    session: str
    store_id: str | None
    generation: int = 0
    through: int = 0
    segments: list[dict[str, Any]] = field(default_factory=list)
    written_at: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "session": self.session,
                "store_id": self.store_id,
                "generation": self.generation,
                "through": self.through,
                "segments": self.segments,
                "written_at": self.written_at,
            },
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ReplicaError("not a replica manifest of a format this version reads")
        return cls(data["session"], data["store_id"], data["generation"], data["through"], data["segments"], data.get("written_at", 0.0))


class Replica:
    """One session's replica: read and write its objects."""

    def __init__(self, url: str, session_id: str) -> None:
        self.url = url
        self.fs, root = open_url(url)
        self.local = any(p in ("file", "local") for p in ([self.fs.protocol] if isinstance(self.fs.protocol, str) else self.fs.protocol))
        self.root = f"{root}/{session_id}"
        self.session_id = session_id

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def close(self) -> None:
        """Nothing to end: fsspec keeps the filesystem and its connections for the process (``ReplicaRequests``)."""

    def manifest(self) -> Manifest | None:
        """The newest complete manifest (``MANIFEST``; the newest in ``manifests/`` if it is unreadable), or None."""
        try:
            return Manifest.from_json(self.fs.cat_file(self._path("MANIFEST")))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, ReplicaError):
            pass  # a torn overwrite on a filesystem without atomic puts: the numbered ones are immutable
        try:
            names = sorted(self.fs.ls(self._path("manifests"), detail=False), reverse=True)
        except FileNotFoundError:
            return None
        for name in names:
            try:
                return Manifest.from_json(self.fs.cat_file(name))
            except (ValueError, KeyError, ReplicaError):
                continue
        return None

    def has_file(self, digest: str, size: int) -> bool:
        try:
            return int(self.fs.info(self._path("files", digest))["size"]) == size
        except FileNotFoundError:
            return False

    def put_file(self, local: Path, digest: str) -> None:
        self.fs.put_file(str(local), self._path("files", digest))

    def get_file(self, digest: str, local: Path) -> None:
        self.fs.get_file(self._path("files", digest), str(local))

    def put_segment(self, after: int, through: int, data: bytes) -> dict[str, Any]:
        digest = xxhash.xxh3_128_hexdigest(data)
        name = f"{after:012d}-{through:012d}-{digest[:16]}.seg"
        self.fs.pipe_file(self._path("segments", name), data)
        return {"name": name, "after": after, "through": through, "bytes": len(data), "xxh3": digest}

    def get_segment(self, segment: dict[str, Any]) -> list[Entry]:
        data = self.fs.cat_file(self._path("segments", segment["name"]))
        if len(data) != segment["bytes"] or xxhash.xxh3_128_hexdigest(data) != segment["xxh3"]:
            raise ReplicaError(f"segment {segment['name']} is not what the manifest names (torn or changed)")
        return decode_segment(data)

    def put_manifest(self, manifest: Manifest) -> None:
        raw = manifest.to_json()
        if self.local:
            # A file overwritten in place can be read torn: the numbered manifests are immutable,
            # and a reader falls back to the newest. An object store replaces an object whole.
            self.fs.pipe_file(self._path("manifests", f"{manifest.generation:012d}.json"), raw)
        self.fs.pipe_file(self._path("MANIFEST"), raw)


def list_sessions(url: str) -> list[dict[str, Any]]:
    """The sessions a replica holds: id, how far it goes, when it was last written."""
    fs, root = open_url(url)
    try:
        entries = fs.ls(root, detail=False)
    except FileNotFoundError:
        return []
    found = []
    for entry in sorted(entries):
        session_id = entry.rstrip("/").rsplit("/", 1)[-1]
        manifest = Replica(url, session_id).manifest()
        if manifest is not None:
            found.append({"id": session_id, "through": manifest.through, "segments": len(manifest.segments), "written_at": manifest.written_at})
    return found


# -- pulling: a store from its replica ------------------------------------------------------------


@dataclass
class Pulled:
    through: int
    entries: int
    files: int
    file_bytes: int
    seconds: float


def pull(url: str, session_id: str, where: Path) -> Pulled | None:
    """Build the store at ``where`` (which must hold no ``data.mdb``) from the replica; None
    when the replica holds nothing of this session.

    Built in ``where/.pull`` and moved into place last (the blobs, then ``data.mdb``), so a
    pull cut short leaves no store that looks whole.
    """
    started = time.monotonic()
    replica = Replica(url, session_id)
    manifest = replica.manifest()
    if manifest is None or not manifest.segments:
        return None
    staging = where / ".pull"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (staging / "blobs").mkdir(parents=True, mode=0o700)
        entries: list[Entry] = []
        with concurrent.futures.ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:  # fetched in parallel, applied in order
            for part in pool.map(replica.get_segment, manifest.segments):
                entries += part
        files = {bytes(key[1:]).hex() for db, key, _value in entries if db == b"tags" and key[:1] == b"f"}
        sizes = {}
        with concurrent.futures.ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            futures = {pool.submit(replica.get_file, digest, staging / "blobs" / digest): digest for digest in files}
            for future in concurrent.futures.as_completed(futures):
                try:
                    future.result()
                except FileNotFoundError:
                    continue  # pruned before it was shipped: its version is not loadable, and the restore says so
                sizes[futures[future]] = (staging / "blobs" / futures[future]).stat().st_size
        files = set(sizes)
        for digest in files:
            os.chmod(staging / "blobs" / digest, 0o600)
        count = write_entries(staging, entries)
        (where / "blobs").mkdir(mode=0o700, exist_ok=True)
        for digest in files:
            os.replace(staging / "blobs" / digest, where / "blobs" / digest)
        os.replace(staging / "data.mdb", where / "data.mdb")  # last: a whole store, or none
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # cut short or done: no half-built store is left
    return Pulled(manifest.through, count, len(files), sum(sizes.values()), time.monotonic() - started)


# -- shipping: what each commit added, in the background --------------------------------------------


class ReplicaRequests(Protocol):
    """What the shipper asks of a replica: ``Replica`` in this process, ``replicaworker.ReplicaWorker`` in another."""

    def manifest(self) -> Manifest | None: ...
    def has_file(self, digest: str, size: int) -> bool: ...
    def put_file(self, local: Path, digest: str) -> None: ...
    def put_segment(self, after: int, through: int, data: bytes) -> dict[str, Any]: ...
    def put_manifest(self, manifest: Manifest) -> None: ...
    def close(self) -> None: ...


class ReplicaShipper:
    """Ships committed cells to the replica from a thread of its own.

    ``nudge()`` after a commit; ``flush(timeout)`` waits until everything committed and
    settled is shipped (a shutdown, SIGTERM). A failure is kept in ``problem`` and told
    once through ``tell``; shipping is retried with growing waits and says when it caught up.
    """

    def __init__(
        self,
        store: Any,
        url: str,
        session_id: str,
        tell: Callable[[str], None],
        log: Any = None,
        activity: Callable[[], tuple[bool, int]] | None = None,
        connect: Callable[[str, str], ReplicaRequests] = Replica,
    ) -> None:
        self.store = store
        # What does the requests: a Replica in this process (the command line), or one in a
        # process of its own (the kernel: ``replicaworker.ReplicaWorker``).
        self._open_replica = connect
        # Whether a cell runs now and how many have (Recorder.activity): a shipment waits for a pause
        # (QUIET_SECONDS), at most MAX_DELAY_SECONDS, so it competes with cells for the interpreter as
        # little as it can.
        self.activity = activity
        self.url = url
        self.session_id = session_id
        self._tell = tell
        self._log = log
        self.problem: str | None = None
        self.problem_since: float | None = None
        self.shipped_through = 0
        self.shipped_at: float | None = None
        self._manifest: Manifest | None = None
        self._replica: ReplicaRequests | None = None
        self._known_files: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flushing = threading.Event()  # a flush (shutdown, SIGTERM) waits for no pause
        self._pending_since: float | None = None  # the first commit not shipped yet (monotonic)
        self._last_shipment = 0.0
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="persistent-kernel-replica", daemon=True)

    def start(self) -> ReplicaShipper:
        self._thread.start()
        return self

    def nudge(self) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._wake.set()

    def status(self) -> dict[str, Any]:
        pending = self.store.last_committed_seq() - self.shipped_through
        return {
            "url": self.url,
            "shipped_through": self.shipped_through,
            "shipped_at": self.shipped_at,
            "behind": max(0, pending),
            "problem": self.problem,
            "problem_since": self.problem_since,
        }

    def flush(self, timeout: float) -> bool:
        """Ship what is committed and settled now; True when the replica has it all."""
        deadline = time.monotonic() + timeout
        target = self.store.replica_cut(self.shipped_through)
        self._flushing.set()
        try:
            while self.shipped_through < target and time.monotonic() < deadline:
                self._wake.set()
                time.sleep(0.02)
        finally:
            self._flushing.clear()
        return self.shipped_through >= target

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._disconnect()

    def _run(self) -> None:
        # Connect at once: the first use of an object store imports its client and loads its
        # service model (about a second of CPU for S3), better done while the kernel starts
        # than when the first cell is to be shipped.
        try:
            self._connect()
        except Exception as exc:  # noqa: BLE001 - told once, retried with the first shipment
            self._failed(exc)
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._wait_for_a_pause()
            try:
                self.ship()
            except Exception as exc:  # noqa: BLE001 - network, credentials, a full bucket: kept, told once, retried
                self._failed(exc)
                wait = RETRY_SECONDS[min(self._failures - 1, len(RETRY_SECONDS) - 1)]
                self._stop.wait(wait)
                self._wake.set()

    def _wait_for_a_pause(self) -> None:
        """Until a pause between cells, no sooner than MIN_INTERVAL_SECONDS after the last
        shipment and no later than MAX_DELAY_SECONDS after the first commit waiting to go.

        A pause is the turn free at both ends of a QUIET_SECONDS span and taken by nobody in
        between (the turn count unchanged). The span is slept, not polled: this thread wakes
        about once per span, not once per cell, and each wake takes the interpreter lock from
        the running cell.
        """
        if self.activity is None or self._flushing.is_set():
            return
        pending = self._pending_since if self._pending_since is not None else time.monotonic()
        deadline = pending + MAX_DELAY_SECONDS
        earliest = self._last_shipment + MIN_INTERVAL_SECONDS
        if self._stop.wait(max(0.0, earliest - time.monotonic())):
            return
        before = self.activity()
        while time.monotonic() < deadline and not self._stop.is_set() and not self._flushing.is_set():
            time.sleep(QUIET_SECONDS)
            after = self.activity()
            if not before[0] and before == after:
                return
            before = after

    def ship(self) -> bool:
        """One round: everything committed and settled since the last shipment. True if anything went."""
        if self._replica is None:
            self._connect()
        assert self._replica is not None
        local_id = self.store.get_meta("store_id")
        manifest = self._manifest
        if manifest is None or manifest.store_id != local_id:
            # A new lineage: nothing of this store is there yet (or the session was forgotten since).
            manifest = Manifest(self.session_id, local_id, generation=(manifest.generation if manifest else 0))
            self._manifest = manifest
            self.shipped_through = 0
        else:
            self.shipped_through = max(self.shipped_through, manifest.through)
        self._pending_since = None  # what commits from now on is the next round's
        through = self.store.replica_cut(manifest.through)
        if through <= manifest.through:
            self._recovered()
            return False
        entries, files = self.store.replica_entries(manifest.through, through)
        for digest, size in files.items():
            if digest in self._known_files:
                continue
            local = self.store.files.path(bytes.fromhex(digest))
            if not self._replica.has_file(digest, size):
                if not local.exists():
                    continue  # pruned since (the history budget): its version says so
                self._replica.put_file(local, digest)
            self._known_files.add(digest)
        segment = self._replica.put_segment(manifest.through, through, encode_segment(entries))
        updated = Manifest(
            self.session_id,
            local_id,
            generation=manifest.generation + 1,
            through=through,
            segments=[*manifest.segments, segment],
            written_at=time.time(),
        )
        self._replica.put_manifest(updated)
        self._last_shipment = time.monotonic()
        self._manifest = updated
        self.shipped_through = through
        self.shipped_at = time.time()
        self._recovered()
        return True

    def _connect(self) -> None:
        self._replica = self._open_replica(self.url, self.session_id)
        self._manifest = self._replica.manifest()

    def _disconnect(self) -> None:
        replica, self._replica = self._replica, None
        if replica is not None:
            replica.close()

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        cause = str(exc) if isinstance(exc, ReplicaError) else f"{type(exc).__name__}: {exc}"  # a worker's names the cause
        self._disconnect()  # reconnect, and read the manifest again, next time
        if self.problem is None:
            self.problem_since = time.time()
            self._tell(
                f"The replica at {self.url} cannot be written ({cause}). Your cells keep running and "
                "are journaled on this machine; the replica catches up when it is reachable again."
            )
        self.problem = cause
        if self._log is not None:
            self._log.warning("persistent_kernel: replica shipment failed: %s", self.problem)

    def _recovered(self) -> None:
        if self.problem is not None:
            self._tell(f"The replica at {self.url} is reachable again and has caught up (through execution #{self.shipped_through}).")
        self.problem = None
        self.problem_since = None
        self._failures = 0
