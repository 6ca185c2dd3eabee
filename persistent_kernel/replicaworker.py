"""The replica's network side in a process of its own, so shipping never runs in the kernel.

An object store's client costs CPU in whatever process calls it: S3 signs every request
(milliseconds of Python each), its first use imports the SDK and loads the service model
(about a second), and the SDK's modules and loggers stay in the process for good. In the
kernel all of that would hold the interpreter lock the running cell needs, and every
later cell's checkpoint would look over the SDK's modules and loggers. So the kernel's
``ReplicaShipper`` reads the store and decides what to ship, and ``ReplicaWorker`` hands
the puts and gets to a child process (``python -m persistent_kernel.replicaworker URL``) that
does them with a ``Replica`` of its own; the kernel's thread only waits on a pipe, without the
interpreter lock. With ``PERSISTENT_KERNEL_REPLICA`` set, the launcher starts the worker before
anything else (``start_early``), so its start overlaps the kernel's.

The child lives as long as the kernel: it stops at the end of its input (the kernel
closed it, or died), and before each request it checks that the kernel is still its
parent, so a killed kernel's last requests are not carried out after it (a segment put
without its manifest is invisible to readers anyway).

A kernel whose node has no copy of the session has a worker pull it (``pull``: the
replica's copy, if it holds one), and that worker then ships for it: the SDK starts once,
in the worker, and never in the kernel.

The pipe's frames: a 4-byte big-endian length, a JSON header, then ``payload`` bytes
when the header names some. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from .replica import Manifest, Pulled, Replica, ReplicaError, open_url, pull

_LENGTH = struct.Struct(">I")
WORKER_NICENESS = 10  # added to the worker's niceness: cells come first


def _send(stream: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    raw = json.dumps({**header, "payload": len(payload)}).encode()
    stream.write(_LENGTH.pack(len(raw)) + raw + payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at the end of the stream."""
    size = stream.read(_LENGTH.size)
    if len(size) < _LENGTH.size:
        return None
    raw = stream.read(_LENGTH.unpack(size)[0])
    header = json.loads(raw)
    payload = stream.read(header["payload"]) if header["payload"] else b""
    if len(payload) < header["payload"]:
        return None
    return header, payload


_early: dict[str, subprocess.Popen[bytes]] = {}  # url -> a worker started with the kernel, not yet given a session


def _spawn(url: str) -> subprocess.Popen[bytes]:
    # The child inherits the environment (the object store's credentials) and the kernel's
    # stderr (its log); its stdout is the pipe.
    return subprocess.Popen([sys.executable, "-m", __name__, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)


def start_early(url: str) -> None:
    """Start the worker for ``url`` now, first thing in the kernel process (``launcher``): its
    interpreter and the SDK start on the other core while the kernel starts on this one, and a
    node with no copy of the session pulls it sooner."""
    if url not in _early:
        _early[url] = _spawn(url)


class ReplicaWorker:
    """A ``Replica`` whose requests a child process carries out (the methods the shipper uses)."""

    def __init__(self, url: str, session_id: str) -> None:
        self.url = url
        self.session_id = session_id
        self._lock = threading.Lock()  # one request at a time on the pipe
        early = _early.pop(url, None)
        self._process = early if early is not None and early.poll() is None else _spawn(url)
        self._call("session", id=session_id)

    def _call(self, op: str, payload: bytes = b"", **args: Any) -> tuple[Any, bytes]:
        with self._lock:
            stdin, stdout = self._process.stdin, self._process.stdout
            assert stdin is not None and stdout is not None
            try:
                _send(stdin, {"op": op, "args": args}, payload)
                answer = _receive(stdout)
            except (OSError, ValueError) as exc:
                answer = None
                ended = f"({type(exc).__name__}: {exc})"
            else:
                ended = ""
            if answer is None:
                raise ReplicaError(f"the replica's worker process ended (exit status {self._process.poll()}) {ended}".rstrip())
            header, data = answer
            if not header["ok"]:
                raise ReplicaError(f"{header['type']}: {header['message']}")
            return header.get("result"), data

    def manifest(self) -> Manifest | None:
        _, raw = self._call("manifest")
        return Manifest.from_json(raw) if raw else None

    def has_file(self, digest: str, size: int) -> bool:
        return bool(self._call("has_file", digest=digest, size=size)[0])

    def put_file(self, local: Path, digest: str) -> None:
        self._call("put_file", local=str(local), digest=digest)

    def put_segment(self, after: int, through: int, data: bytes) -> dict[str, Any]:
        result, _ = self._call("put_segment", data, after=after, through=through)
        return dict(result)

    def put_manifest(self, manifest: Manifest) -> None:
        self._call("put_manifest", manifest.to_json())

    def pull(self, where: Path) -> Pulled | None:
        """``replica.pull`` into ``where``, done by the worker (at the kernel's priority: the restore waits on it)."""
        result, _ = self._call("pull", where=str(where))
        return Pulled(**result) if result is not None else None

    def close(self, timeout: float = 2.0) -> None:
        """End the child: its input closes (it finishes the request it is in), then it is killed."""
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _carry_out(replica: Replica, op: str, args: dict[str, Any], payload: bytes) -> tuple[Any, bytes]:
    """One request on the session's replica (``session`` is handled by ``main``)."""
    if op == "pull":
        pulled = pull(replica.url, replica.session_id, Path(args["where"]))
        return (vars(pulled) if pulled is not None else None), b""
    if op == "manifest":
        manifest = replica.manifest()
        return None, manifest.to_json() if manifest is not None else b""
    if op == "has_file":
        return replica.has_file(args["digest"], args["size"]), b""
    if op == "put_file":
        replica.put_file(Path(args["local"]), args["digest"])
        return None, b""
    if op == "put_segment":
        return replica.put_segment(args["after"], args["through"], payload), b""
    if op == "put_manifest":
        replica.put_manifest(Manifest.from_json(payload))
        return None, b""
    raise ReplicaError(f"no such replica request: {op}")


def _warm_up(url: str) -> None:
    """Import the SDK and make the filesystem and its connection now, while the kernel starts:
    the first request (a pull the restore waits on) then finds them ready. fsspec keeps the
    filesystem for the same URL, so the session's ``Replica`` gets this one."""
    try:
        fs, root = open_url(url)
        fs.exists(root)
    except Exception:  # noqa: BLE001 - only a head start: the first request meets the same problem and answers it
        pass


def main(argv: list[str]) -> int:
    (url,) = argv
    session_id: str | None = None  # the first request names it
    parent = os.getppid()
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing a library prints may land in the pipe
    replica: Replica | None = None
    niced = False
    _warm_up(url)
    while (frame := _receive(requests)) is not None:
        if os.getppid() != parent:
            return 0  # the kernel is gone: what it asked last is not done after it
        header, payload = frame
        if header["op"].startswith("put") and not niced:
            # Shipping is background work: on a busy machine the kernel's cells come first (a
            # shipment waits a little longer, well inside the lag it is allowed). The pull
            # before it runs at the kernel's priority: the restore waits on it.
            os.nice(WORKER_NICENESS)
            niced = True
        try:
            if header["op"] == "session":
                session_id, replica = header["args"]["id"], None
                result, data = None, b""
            else:
                if session_id is None:
                    raise ReplicaError("no session was named to this worker")
                if replica is None:
                    replica = Replica(url, session_id)
                result, data = _carry_out(replica, header["op"], header.get("args", {}), payload)
        except Exception as exc:  # noqa: BLE001 - any failure is the kernel's to tell; this process goes on
            replica = None  # connect again for the next request
            _send(answers, {"ok": False, "type": type(exc).__name__, "message": str(exc)})
        else:
            _send(answers, {"ok": True, "result": result}, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
