"""The core without a kernel process: the write-ahead slot, blob files, the background writer,
and a checkpoint → journal → writer → restore round trip on an in-process IPython shell.

Fast and deterministic: the same parts the kernel wires together, on a real LMDB
store in a temp dir, driven directly (no subprocess, no ZMQ).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash

from persistent_kernel import records as rec
from persistent_kernel.ahead import INITIAL_SIZE, AheadSlot
from persistent_kernel.blobfiles import BlobFiles, TornWrite, WriteCancelled
from persistent_kernel.checkpoint import Checkpointer
from persistent_kernel.journal import Journal
from persistent_kernel.restore import restore_session
from persistent_kernel.session import resolve_session
from persistent_kernel.store import Store
from persistent_kernel.writer import BackgroundWriter, WriteJob

# -- the write-ahead slot ------------------------------------------------------------------


def test_slot_round_trip_survives_reopening(tmp_path: Path) -> None:
    slot = AheadSlot(tmp_path / "ahead")
    assert slot.read() is None
    slot.write(b"cell one")
    slot.write(b"cell two")  # replaces
    slot.flush()
    slot.close()
    again = AheadSlot(tmp_path / "ahead")
    try:
        assert again.read() == b"cell two"
        again.clear()
        assert again.read() is None
    finally:
        again.close()


def test_slot_grows_for_a_large_cell_and_refuses_a_torn_or_altered_payload(tmp_path: Path) -> None:
    slot = AheadSlot(tmp_path / "ahead")
    try:
        big = os.urandom(INITIAL_SIZE * 3)
        slot.write(big)
        assert slot.read() == big
        slot._map[:4] = b"\0\0\0\0"  # what a kill in the middle of write() leaves
        assert slot.read() is None
        slot.write(b"x = 1")
        slot._map[20] ^= 0xFF  # a changed byte of the payload: its checksum no longer matches
        assert slot.read() is None
    finally:
        slot.close()


# -- blob files -------------------------------------------------------------------------------


def digest(data: bytes) -> bytes:
    return xxhash.xxh3_128_digest(data)


def test_blob_is_written_once_under_its_digest_and_mapped_back(tmp_path: Path) -> None:
    files = BlobFiles(tmp_path / "blobs")
    data = os.urandom(300_000)
    assert files.write(digest(data), data, chunk_size=64 * 1024) == len(data)
    assert files.write(digest(data), data) == 0  # content-addressed: already there
    assert bytes(files.map(digest(data))) == data
    assert list(files.digests()) == [digest(data)]
    assert files.remove(digest(data)) == len(data) and not files.exists(digest(data))


def test_blob_that_changes_while_written_or_is_called_off_leaves_no_file(tmp_path: Path) -> None:
    files = BlobFiles(tmp_path / "blobs")
    data = bytearray(os.urandom(200_000))
    expected = digest(bytes(data))

    def change_it(_size: int) -> None:
        data[-1] ^= 0xFF  # the live buffer moves on after the first chunk is copied

    with pytest.raises(TornWrite):
        files.write(expected, data, chunk_size=64 * 1024, throttle=change_it)
    with pytest.raises(WriteCancelled):
        files.write(digest(bytes(data)), data, chunk_size=64 * 1024, cancelled=lambda: True)
    assert not files.exists(expected) and list((tmp_path / "blobs").iterdir()) == []


def test_leftovers_of_a_killed_write_are_removed(tmp_path: Path) -> None:
    files = BlobFiles(tmp_path / "blobs")
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / ".abc.123.tmp").write_bytes(b"half")
    files.remove_leftovers()
    assert list((tmp_path / "blobs").iterdir()) == []


# -- the background writer ---------------------------------------------------------------------


class Landing:
    """What the writer told: versions landed and not landed."""

    def __init__(self) -> None:
        self.unlanded: list[tuple[bytes, str, bool]] = []

    def __call__(self, job: WriteJob, reason: str, failed: bool) -> None:
        self.unlanded.append((job.version_key, reason, failed))


def test_writer_stop_without_time_calls_off_the_write_and_reports_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", sync_interval=0)
    told = Landing()
    writer = BackgroundWriter(store, on_unlanded=told, throttle_bytes_per_second=1.0)  # ~1 B/s: it never finishes
    try:
        data = bytearray(os.urandom(4 * 1024**2))
        writer.submit(WriteJob(b"\x00" * 8 + b"\x01" * 8, frozenset({"big"}), {digest(bytes(data)): data}))
        assert writer.pending == 1 and writer.pending_bytes() == len(data)
        began = threading.Event()
        while writer._busy is None and not began.wait(0.01):  # until the write has begun (it then pauses)
            pass
        assert writer.stop(timeout=0) is False  # at once: the pause is cut short
        assert writer.pending == 0 and writer.landed == 0
        assert not list(store.files.digests())  # never a half-written file
        assert told.unlanded == []  # called off by a stop: nothing to tell (the store is closing)
    finally:
        store.close()


# -- checkpoint → journal → writer → restore, in process ----------------------------------------


def run_cell(shell: Any, journal: Journal, checkpointer: Checkpointer, code: str) -> None:
    record = journal.begin(code, execution_count=shell.execution_count)
    result = shell.run_cell(code, store_history=True)
    assert result.success, result.error_in_exec
    checkpoint = checkpointer.prepare(record.seq, code)
    assert journal.finish(record, rec.OK, 0.01, checkpoint=checkpoint)
    checkpointer.applied(checkpoint)


def test_checkpoints_land_and_restore_with_aliasing_in_process(shell: Any, tmp_path: Path) -> None:
    session = resolve_session({"PERSISTENT_KERNEL_HOME": str(tmp_path), "PERSISTENT_KERNEL_SESSION": "inproc"})
    journal = Journal(session, sync_interval=0, lock_timeout=0.2)
    assert journal.open()
    checkpointer = Checkpointer(shell, large_blob_bytes=1024)
    checkpointer.adopt({})
    run_cell(shell, journal, checkpointer, "import numpy as np\nrows = [1, 2]\nsame = rows\nbig = np.arange(50_000)")
    run_cell(shell, journal, checkpointer, "rows.append(3)\nbig[0] = -1")
    assert journal.writer is not None and journal.writer.drain(30)
    assert journal.writer.landed >= 1 and list(journal.store.files.digests())  # the array went to a file
    assert journal.store.check() == []
    journal.close()

    shell.reset(new_session=False)
    assert "rows" not in shell.user_ns
    again = Journal(session, sync_interval=0, lock_timeout=0.2)
    assert again.open()
    try:
        report, states, _stale = restore_session(shell, again)
        ns = shell.user_ns
        assert ns["rows"] == [1, 2, 3] and ns["same"] is ns["rows"]
        assert isinstance(ns["big"], np.ndarray) and ns["big"][0] == -1 and ns["big"][-1] == 49_999
        assert report.loaded == 3 and report.replayed == 0 and not report.lost
        assert set(states) >= {"rows", "same", "big", "np"}
    finally:
        again.close()
