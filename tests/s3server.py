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


@dataclass
class S3Server:
    process: subprocess.Popen
    port: int
    env: dict[str, str]
    url: str  # s3://<bucket>/<prefix>: where the sessions go

    def stall(self) -> None:
        """Stop answering (a network partition), keeping every object."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server(log: Path, bucket: str = "sessions", prefix: str = "hub") -> Iterator[S3Server]:
    port = _free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start:\n{log.read_text()}")
                time.sleep(0.1)
            env = {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            saved = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            try:
                import s3fs

                s3fs.S3FileSystem.clear_instance_cache()
                s3fs.S3FileSystem().mkdir(bucket)
                yield S3Server(process, port, env, f"s3://{bucket}/{prefix}")
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
                process.wait(10)
