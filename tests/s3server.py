"""A real S3 HTTP server for the tests and benchmarks: moto's server mode on 127.0.0.1
(never a mock inside the process), with a bucket, and the standard AWS variables that
reach it (``AWS_ENDPOINT_URL``, keys, region) for kernels and s3fs alike."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .e2e_helpers import free_port


@dataclass
class S3Server:
    process: subprocess.Popen
    port: int
    env: dict[str, str]
    url: str  # s3://<bucket>/<prefix>: where the sessions go

    def stop(self) -> None:
        """The server goes away (connections refused); moto keeps its objects in memory, so they go too."""
        self.process.terminate()
        self.process.wait(10)

    def start_again(self, log: Path, bucket: str = "sessions") -> None:
        """A new, empty server on the same port, with the bucket made again (as an operator would)."""
        self.process = _start(self.port, log)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(bucket)

    def stall(self) -> None:
        """Stop answering (a network partition), keeping every object."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


def _start(port: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"moto's S3 server did not start:\n{log.read_text()}")
        time.sleep(0.1)


@contextlib.contextmanager
def s3_server(log: Path, bucket: str = "sessions", prefix: str = "hub") -> Iterator[S3Server]:
    port = free_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    server = S3Server(_start(port, log), port, env, f"s3://{bucket}/{prefix}")
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(bucket)
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if server.process.poll() is None:
            server.resume()  # a stalled server cannot stop
            server.stop()
