"""The replica without a kernel or a server (fast): a session replicated to a local
directory through fsspec (``file://``), shipped after commits, pulled into an empty home,
restored with aliasing and a large array; segments framed and checked; a torn or altered
segment never read; a manifest written only after what it names; a new lineage after a
forget. The same code against a real S3 server, with kernels killed: test_replica_s3.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from persistent_kernel import replica as rep
from persistent_kernel.checkpoint import Checkpointer
from persistent_kernel.journal import Journal
from persistent_kernel.restore import restore_session
from persistent_kernel.session import resolve_session

from .test_core_units import run_cell


def journal_on(home: Path, url: str) -> Journal:
    session = resolve_session({"PERSISTENT_KERNEL_HOME": str(home), "PERSISTENT_KERNEL_SESSION": "replicated"})
    journal = Journal(session, sync_interval=0, lock_timeout=0.2, replica_url=url)
    assert journal.open()
    return journal


def node_a(shell: Any, tmp_path: Path, url: str, **checkpointer_options: Any) -> tuple[Journal, Checkpointer]:
    """The first node: a journal on the replica and a checkpointer that assumes nothing stored yet."""
    checkpointer = Checkpointer(shell, **checkpointer_options)
    checkpointer.adopt({})
    return journal_on(tmp_path / "node-a", url), checkpointer


def test_segments_round_trip_and_refuse_damage() -> None:
    entries = [(b"cells", b"\x00" * 8, b"{}"), (b"blobs", b"k" * 20, bytes(range(256)) * 10), (b"meta", b"store_id", b'"ab"')]
    data = rep.encode_segment(entries)
    assert rep.decode_segment(data) == entries
    with pytest.raises(rep.ReplicaError):
        rep.decode_segment(data[:-5])  # torn
    with pytest.raises(rep.ReplicaError):
        rep.decode_segment(b"junk" + data)


def test_a_session_ships_and_is_pulled_into_an_empty_home(shell: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'bucket'}"
    journal, checkpointer = node_a(shell, tmp_path, url, large_blob_bytes=1024)
    run_cell(shell, journal, checkpointer, "import numpy as np\nrows = [1, 2]\nsame = rows\nbig = np.arange(50_000)")
    run_cell(shell, journal, checkpointer, "rows.append(3)\nbig[0] = -1")
    assert journal.writer is not None and journal.writer.drain(30)
    assert journal.replica is not None and journal.replica.flush(30)
    status = journal.status()["replica"]
    assert status["problem"] is None and status["shipped_through"] == 2 and status["behind"] == 0
    manifest = rep.Replica(url, "replicated").manifest()
    assert manifest is not None and manifest.through == 2 and len(manifest.segments) >= 1
    journal.close()

    shell.reset(new_session=False)
    node_b = journal_on(tmp_path / "node-b", url)  # an empty home: the store comes from the replica
    try:
        assert node_b._opener.pulled is not None and node_b._opener.pulled.files >= 1
        assert any("fetched from the replica" in n for n in node_b.take_notices())
        report, _states, _stale = restore_session(shell, node_b)
        ns = shell.user_ns
        assert ns["rows"] == [1, 2, 3] and ns["same"] is ns["rows"]
        assert isinstance(ns["big"], np.ndarray) and ns["big"][0] == -1 and ns["big"][-1] == 49_999
        assert report.loaded >= 3 and report.replayed == 0 and not report.lost and not report.refused
        assert node_b.store is not None and node_b.store.check() == []
    finally:
        node_b.close()


def test_a_manifest_names_only_complete_segments_and_a_changed_one_is_refused(shell: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'bucket'}"
    journal, checkpointer = node_a(shell, tmp_path, url)
    run_cell(shell, journal, checkpointer, "x = 41")
    assert journal.replica is not None and journal.replica.flush(30)
    journal.close()
    replica = rep.Replica(url, "replicated")
    manifest = replica.manifest()
    assert manifest is not None
    # A segment uploaded but never named (the shipper was killed before the manifest): not read.
    (tmp_path / "bucket" / "replicated" / "segments" / "000000000001-000000000009-deadbeefdeadbeef.seg").write_bytes(b"torn")
    # A torn overwrite of MANIFEST: the numbered manifests are used instead.
    (tmp_path / "bucket" / "replicated" / "MANIFEST").write_bytes(b'{"format": 1, "sess')
    again = replica.manifest()
    assert again is not None and again.through == manifest.through and again.segments == manifest.segments
    # A named segment whose bytes changed is refused, never decoded.
    segment = tmp_path / "bucket" / "replicated" / "segments" / manifest.segments[0]["name"]
    segment.write_bytes(segment.read_bytes().replace(b"41", b"42"))
    with pytest.raises(rep.ReplicaError, match="not what the manifest names"):
        replica.get_segment(manifest.segments[0])
    # A node with no copy pulls (in a process of its own), is refused, and says why; it does
    # not write to a replica it could not read.
    node_b = journal_on(tmp_path / "node-b", url)
    try:
        said = " ".join(node_b.take_notices())
        assert "could not be read" in said and "not what the manifest names" in said, said
        assert node_b.replica is None and node_b.status()["replica"] == {"url": url, "off": True}
        assert not (tmp_path / "node-b" / "sessions" / "replicated" / ".pull").exists()  # no half-built store left
    finally:
        node_b.close()


def test_records_altered_in_the_replica_fail_authentication(shell: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'bucket'}"
    journal, checkpointer = node_a(shell, tmp_path, url)
    run_cell(shell, journal, checkpointer, "secret_number = 4141")
    run_cell(shell, journal, checkpointer, "other = 'kept'")
    assert journal.replica is not None and journal.replica.flush(30)
    journal.close()
    # Someone with write access to the bucket changes a stored value and fixes the digests up.
    root = tmp_path / "bucket" / "replicated"
    manifest = json.loads((root / "MANIFEST").read_bytes())
    for segment in manifest["segments"]:
        path = root / "segments" / segment["name"]
        data = path.read_bytes()
        if b"4141" in data:
            data = data.replace(b"4141", b"6666")
            path.write_bytes(data)
            segment["bytes"], segment["xxh3"] = len(data), rep.xxhash.xxh3_128_hexdigest(data)
    (root / "MANIFEST").write_text(json.dumps(manifest))
    shell.reset(new_session=False)
    node_b = journal_on(tmp_path / "node-b", url)
    try:
        report, _states, _stale = restore_session(shell, node_b)
        assert shell.user_ns.get("secret_number") != 6666  # never loaded as altered
        assert report.refused, report.summary()
        assert shell.user_ns["other"] == "kept"
    finally:
        node_b.close()


def test_a_forgotten_session_starts_a_new_lineage(shell: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'bucket'}"
    journal, checkpointer = node_a(shell, tmp_path, url)
    run_cell(shell, journal, checkpointer, "a = 1")
    assert journal.replica is not None and journal.replica.flush(30)
    first = rep.Replica(url, "replicated").manifest()
    assert journal.store is not None
    journal.store.clear()  # %persist forget: a new store id
    run_cell(shell, journal, checkpointer, "b = 2")
    assert journal.replica.flush(30)
    second = rep.Replica(url, "replicated").manifest()
    journal.close()
    assert first is not None and second is not None
    assert second.store_id != first.store_id and second.generation > first.generation
    assert all(s not in second.segments for s in first.segments)  # the old lineage's segments are not named


def test_push_pull_and_list_from_the_command_line(shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from persistent_kernel import cli

    url = f"file://{tmp_path / 'bucket'}"
    session = resolve_session({"PERSISTENT_KERNEL_HOME": str(tmp_path / "here"), "PERSISTENT_KERNEL_SESSION": "by-hand"})
    journal = Journal(session, sync_interval=0, lock_timeout=0.2)  # no replica configured: moved by hand
    assert journal.open()
    checkpointer = Checkpointer(shell)
    checkpointer.adopt({})
    run_cell(shell, journal, checkpointer, "carried = {'by': 'hand'}")
    journal.close()

    monkeypatch.setenv("PERSISTENT_KERNEL_HOME", str(tmp_path / "here"))
    assert cli.main(["push", "by-hand", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["through"] == 1
    assert cli.main(["push", "by-hand", url, "--json"]) == 0  # nothing new: nothing shipped again
    assert json.loads(capsys.readouterr().out)["segments"] == 0
    assert cli.main(["sessions", "--replica", url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["sessions"]
    assert [(s["id"], s["through"], s["here_through"], s["behind"]) for s in listed] == [("by-hand", 1, 1, 0)]
    # A cell journaled here and not shipped: the listing says how far behind the replica is.
    journal = Journal(session, sync_interval=0, lock_timeout=0.2)
    assert journal.open()
    run_cell(shell, journal, checkpointer, "later = 2")
    journal.close()
    assert cli.main(["sessions", "--replica", url]) == 0
    listing = capsys.readouterr().out
    assert "HERE" in listing and "1 behind" in listing, listing
    assert cli.main(["push", "by-hand", url]) == 0
    capsys.readouterr()
    assert cli.main(["sessions", "--replica", url]) == 0
    assert "up to date" in capsys.readouterr().out

    monkeypatch.setenv("PERSISTENT_KERNEL_HOME", str(tmp_path / "there"))
    assert cli.main(["pull", "by-hand", url]) == 0
    assert "Pulled session by-hand" in capsys.readouterr().out
    assert cli.main(["pull", "by-hand", url]) != 0  # a store is there now: never overwritten
    shell.reset(new_session=False)
    there = Journal(resolve_session({"PERSISTENT_KERNEL_HOME": str(tmp_path / "there"), "PERSISTENT_KERNEL_SESSION": "by-hand"}), sync_interval=0)
    assert there.open()
    try:
        restore_session(shell, there)
        assert shell.user_ns["carried"] == {"by": "hand"}
    finally:
        there.close()


def test_the_worker_process_does_the_requests_and_ends_with_its_input(tmp_path: Path) -> None:
    """The kernel's replica requests run in a child process: puts and gets come back the same
    as in-process, its failures come back as ReplicaError naming what failed there, and it
    ends when its input closes; a request to a worker that died says so."""
    from persistent_kernel.replicaworker import ReplicaWorker

    url = f"file://{tmp_path / 'bucket'}"
    worker = ReplicaWorker(url, "s")
    try:
        assert worker.manifest() is None
        data = rep.encode_segment([(b"cells", b"\x00" * 8, b"{}")])
        segment = worker.put_segment(0, 1, data)
        assert segment == {**segment, "after": 0, "through": 1, "bytes": len(data)}
        blob = tmp_path / "blob"
        blob.write_bytes(b"x" * 5000)
        assert not worker.has_file("ab" * 16, 5000)
        worker.put_file(blob, "ab" * 16)
        assert worker.has_file("ab" * 16, 5000) and not worker.has_file("ab" * 16, 4999)
        worker.put_manifest(rep.Manifest("s", "store", generation=1, through=1, segments=[segment]))
        # What the worker wrote, read in this process: the same objects.
        local = rep.Replica(url, "s")
        manifest = local.manifest()
        assert manifest is not None and manifest.through == 1 and local.get_segment(manifest.segments[0]) == rep.decode_segment(data)
        assert worker.manifest() == manifest
        with pytest.raises(rep.ReplicaError, match="FileNotFoundError"):
            worker.put_file(tmp_path / "missing", "cd" * 16)
        assert worker.has_file("ab" * 16, 5000)  # a failure leaves the worker serving
    finally:
        worker.close()
    assert worker._process.returncode == 0
    dead = ReplicaWorker(url, "s")
    dead._process.kill()
    dead._process.wait()
    with pytest.raises(rep.ReplicaError, match="worker process ended"):
        dead.manifest()
    dead.close()
