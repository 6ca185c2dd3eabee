"""Sessions that survive the node, against a real S3 HTTP server (moto's server mode on
127.0.0.1, through s3fs, with the standard AWS variables): node A runs cells and is
SIGKILLed, node B (an empty home, the same session name and replica) restores the same
state; the server stalls mid-session (cells keep running, the replica catches up); the
server stops (told once, in status) and an empty one takes its place (the whole session is
shipped again, and the catch-up is told); a kill during a large upload never leaves a
replica that names what it does not hold; SIGTERM lands and ships a pending large write."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from persistent_kernel import replica as rep

from .e2e_helpers import alive, pids_with_arg, wait_until
from .kernels import kernel_env
from .s3server import S3Server, s3_server

pytestmark = pytest.mark.slow

SESSION = "travels"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 with a bucket; the AWS variables that reach it."""
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    with s3_server(tmp_path / "moto.log") as server:
        yield server


def node(kernel: Any, tmp_path: Path, name: str, s3: S3Server, arguments: list[str] | None = None) -> Any:
    """A kernel on a node of its own: its own (empty) home, the session name and the replica."""
    env = kernel_env(tmp_path / name, SESSION, PERSISTENT_KERNEL_REPLICA=s3.url, **s3.env)
    return kernel(env=env, extra_arguments=arguments)


def worker_pids(kernel_pid: int) -> list[int]:
    """The kernel's replica worker processes (its children running ``persistent_kernel.replicaworker``)."""

    def parent(pid: int) -> int | None:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            return None

    return [pid for pid in pids_with_arg("persistent_kernel.replicaworker") if parent(pid) == kernel_pid]


def replicated(k: Any) -> bool:
    return "up to date through" in k.execute("%persist status").text


def wait_replicated(k: Any, timeout: float = 60) -> None:
    wait_until(lambda: replicated(k), timeout, "the replica to catch up")


def test_node_b_restores_what_node_a_did_before_it_was_killed(kernel: Any, tmp_path: Path, s3: S3Server) -> None:
    a = node(kernel, tmp_path, "node-a", s3)
    a.execute("import numpy as np\nbig = np.random.default_rng(7).random(24 * 2**20 // 8)\ntotal = float(big.sum())")
    a.execute("for i in range(1000):\n    globals()[f'v{i}'] = i * i")
    a.execute("deck = list(range(52)); hands = {'ada': deck[:2]}; show = lambda who: hands[who]; alias = hands")
    wait_replicated(a)
    expected = a.evaluate("show('ada'), len(deck), v999, alias is hands, total")
    # The object store's client runs in the replica's worker process, never in the kernel.
    assert a.evaluate("any(name.split('.')[0] in ('s3fs', 'botocore', 'aiobotocore') for name in __import__('sys').modules)") == "False"
    workers = worker_pids(a.pid)
    assert len(workers) == 1, workers
    a.kill()
    wait_until(lambda: not any(map(alive, workers)), 30, "the killed kernel's replica worker to end")

    b = node(kernel, tmp_path, "node-b", s3)  # an empty disk
    first = b.execute("show('ada'), len(deck), v999, alias is hands, float(big.sum())")
    assert f"fetched from the replica at {s3.url}" in first.said, first.said
    assert "Restored session" in first.notice
    assert first.result == expected, (first.result, expected)
    # Node B journals on, to the same replica: a third node sees its cells too.
    b.execute("after_move = 'b'")
    wait_replicated(b)
    b.kill()
    c = node(kernel, tmp_path, "node-c", s3)
    assert c.evaluate("after_move, len(deck)") == "('b', 52)"


def test_a_stalled_server_never_slows_cells_and_the_replica_catches_up(kernel: Any, tmp_path: Path, s3: S3Server) -> None:
    a = node(kernel, tmp_path, "node-a", s3)
    a.execute("x = 1")
    wait_replicated(a)
    s3.stall()  # the object store stops answering (a network partition)
    try:
        for n in range(2, 6):
            reply = a.execute(f"x = {n}", timeout=30)  # never waits for the replica
            assert reply.status == "ok"
        status = a.execute("%persist status").text
        assert "behind" in status, status
    finally:
        s3.resume()
    wait_replicated(a, 120)
    a.kill()
    b = node(kernel, tmp_path, "node-b", s3)
    assert b.evaluate("x") == "5"


def test_a_kill_during_a_large_upload_leaves_a_consistent_replica(kernel: Any, tmp_path: Path, s3: S3Server) -> None:
    a = node(kernel, tmp_path, "node-a", s3)
    a.execute("import numpy as np\nsmall = 'kept'")
    wait_replicated(a)
    a.execute("big = np.random.default_rng(3).random(64 * 2**20 // 8)\nchecksum = float(big.sum())")
    time.sleep(0.3)  # somewhere in the landing or the upload
    a.kill()
    manifest = rep.Replica(s3.url, SESSION).manifest()
    assert manifest is not None
    replica = rep.Replica(s3.url, SESSION)
    for segment in manifest.segments:
        replica.get_segment(segment)  # every named segment is whole
    b = node(kernel, tmp_path, "node-b", s3)
    assert b.evaluate("small") == "'kept'"
    if b.evaluate("'big' in dir()") == "True":
        assert b.evaluate("float(big.sum()) == checksum") == "True"


def test_sigterm_lands_the_large_write_and_flushes_the_replica_before_exiting(kernel: Any, tmp_path: Path, s3: S3Server) -> None:
    # Large values always land after the reply here, slowly: SIGTERM comes while one is pending.
    a = node(kernel, tmp_path, "node-a", s3, ["--PersistentKernel.land_before_reply_bytes=0", "--PersistentKernel.write_throttle=40"])
    a.execute("import numpy as np\nbig = np.random.default_rng(11).random(48 * 2**20 // 8)\nchecksum = float(big.sum())")
    process = a.km.provisioner.process
    started = time.monotonic()
    os.kill(a.pid, signal.SIGTERM)  # a preempted node: SIGTERM, then SIGKILL after the grace period
    process.wait(30)
    took = time.monotonic() - started
    assert process.returncode == 0, process.returncode
    assert took < 30  # well within the pod's grace period (the deadline is 10 s)
    manifest = rep.Replica(s3.url, SESSION).manifest()
    assert manifest is not None and manifest.through >= 1
    b = node(kernel, tmp_path, "node-b", s3)
    assert b.evaluate("float(big.sum()) == checksum") == "True"


def test_a_stopped_server_is_told_once_and_a_new_one_gets_the_whole_session(kernel: Any, tmp_path: Path, s3: S3Server) -> None:
    a = node(kernel, tmp_path, "node-a", s3)
    a.execute("x = 1")
    wait_replicated(a)
    s3.stop()  # connections refused; moto's objects go with it
    for n in range(2, 5):
        assert a.execute(f"x = {n}", timeout=30).status == "ok"
    wait_until(lambda: "cannot be written" in a.execute("pass").said, 60, "the kernel to say, once, that the replica is unreachable")
    status = a.execute("%persist status").text
    assert "unreachable since" in status, status
    assert "cannot be written" not in a.execute("y = 0").said  # said once
    s3.start_again(tmp_path / "moto.log")  # an empty store at the same address (the bucket made again)
    said: list[str] = []

    def caught_up() -> bool:
        reply = a.execute("%persist status")
        said.append(reply.said)
        return "up to date through" in reply.text

    wait_until(caught_up, 120, "the replica to catch up on the new server")
    said += [a.execute("pass").said for _ in range(3)]
    assert any("reachable again and has caught up" in text for text in said), said
    a.kill()
    b = node(kernel, tmp_path, "node-b", s3)
    assert b.evaluate("x, y") == "(4, 0)"  # the whole session, shipped again from the first cell
