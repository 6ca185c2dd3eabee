"""The LMDB store on its own: a real environment in a temp dir, no kernel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lmdb
import pytest

from persistent_kernel import records as rec
from persistent_kernel.errors import StoreFormatError, StoreUnavailable, StoreWriteError
from persistent_kernel.records import CellRecord, Pointer, Version
from persistent_kernel.store import FORMAT_VERSION, Store


def new_record(code: str = "x = 1", count: int = 1) -> CellRecord:
    return CellRecord(seq=0, code=code, execution_count=count, started_at=time.time())


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store", sync_interval=0)
    yield s
    s.close()


def test_new_store_has_format_version_and_private_files(store: Store) -> None:
    assert store.format_version == FORMAT_VERSION
    assert store.check() == []
    assert oct(store.path.stat().st_mode & 0o777) == "0o700"
    assert oct((store.path / "data.mdb").stat().st_mode & 0o777) == "0o600"


def test_records_get_increasing_sequence_numbers_and_keep_their_fields(store: Store) -> None:
    first = store.append(new_record("a = 1", 1))
    second = store.append(CellRecord(seq=0, code="b = 2", execution_count=2, silent=True, cell_id="cell-xyz"))
    assert (first.seq, second.seq) == (1, 2)
    first.status, first.duration = rec.OK, 0.25
    assert store.set_outcome(first)
    stored = list(store.records())
    assert [r.code for r in stored] == ["a = 1", "b = 2"]
    assert stored[0].status == rec.OK and stored[0].duration == 0.25
    assert stored[1].status == rec.STARTED and stored[1].silent and stored[1].cell_id == "cell-xyz"
    assert store.check() == []


def test_clear_drops_records_but_never_reuses_sequence_numbers(store: Store) -> None:
    for i in range(3):
        store.append(new_record(f"x = {i}"))
    assert store.clear() == 3
    assert list(store.records()) == []
    assert store.append(new_record()).seq == 4
    # A record begun before the clear is gone: updating it reports that instead of resurrecting it.
    assert store.set_outcome(CellRecord(seq=2, code="x = 1", execution_count=2)) is False
    assert store.check() == []


def test_meta_roundtrip_and_delete(store: Store) -> None:
    store.set_meta(session_name="nb.ipynb", notebook_path="/tmp/nb.ipynb", replaying=7)
    assert store.get_meta("session_name") == "nb.ipynb"
    store.set_meta(replaying=None)
    assert store.get_meta("replaying") is None
    assert store.meta()["notebook_path"] == "/tmp/nb.ipynb"


def test_full_map_grows_and_the_write_is_retried_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "small", map_size=64 * 1024, sync_interval=0)
    try:
        big = "s = '" + "x" * 50_000 + "'"
        for i in range(20):
            store.append(new_record(big, i + 1))
        assert store.count() == 20
        assert all(r.code == big for r in store.records())
        assert store.check() == []
    finally:
        store.close()


def test_size_limit_refuses_the_write_and_keeps_what_was_stored(tmp_path: Path) -> None:
    store = Store(tmp_path / "capped", map_size=64 * 1024, max_map_size=128 * 1024, sync_interval=0)
    try:
        big = "s = '" + "x" * 30_000 + "'"
        stored = 0
        with pytest.raises(StoreWriteError, match="size limit"):
            for i in range(100):
                store.append(new_record(big, i + 1))
                stored += 1
        assert stored >= 1
        assert store.count() == stored  # the failed append left no half record
        assert store.check() == []
    finally:
        store.close()


def test_store_from_a_newer_version_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future"
    Store(path, sync_interval=0).close()
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.put(b"format_version", b"99")
    env.close()
    before = (path / "data.mdb").read_bytes()
    with pytest.raises(StoreFormatError, match="format version 99"):
        Store(path, sync_interval=0)
    assert (path / "data.mdb").read_bytes() == before


def test_garbage_data_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "garbage"
    path.mkdir()
    junk = os.urandom(64 * 1024)
    (path / "data.mdb").write_bytes(junk)
    with pytest.raises(StoreUnavailable, match="cannot"):
        Store(path, sync_interval=0)
    assert (path / "data.mdb").read_bytes() == junk


def test_a_file_where_the_store_should_be_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-directory"
    path.write_text("mine")
    with pytest.raises(StoreUnavailable):
        Store(path, sync_interval=0)
    assert path.read_text() == "mine"


def test_background_sync_flushes_and_close_is_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path / "bg", sync_interval=0.05)
    store.append(new_record())
    time.sleep(0.2)
    assert not store._dirty.is_set()  # the flusher ran
    store.close()
    store.close()
    with pytest.raises(StoreWriteError, match="closed"):
        store.append(new_record())


WRITER = textwrap.dedent(
    """
    import sys, time
    from persistent_kernel.records import CellRecord
    from persistent_kernel.store import Store
    store = Store(sys.argv[1], sync_interval=1.0, owner=True)  # a kernel: it takes in what the last one left
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        r = store.append(CellRecord(seq=0, code="x = %d" % i + " " * (i % 3000), execution_count=i))
        r.status = "ok"
        store.set_outcome(r)
    """
)


def test_kill_9_during_writes_loses_no_committed_record(tmp_path: Path) -> None:
    path = tmp_path / "killed"
    seen: list[CellRecord] = []
    for trial in range(3):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + 0.1 * trial)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        store = Store(path, sync_interval=0)
        try:
            assert store.check() == []
            records = list(store.records())
            # Everything committed before this kill is still there, unchanged.
            assert [r.encode_ahead() + r.encode_outcome() for r in records[: len(seen)]] == [r.encode_ahead() + r.encode_outcome() for r in seen]
            assert len(records) > len(seen), "the writer committed nothing before the kill"
            # At most one record per kill was caught between its two commits; none is torn.
            assert sum(r.status == rec.STARTED for r in records) <= trial + 1
            assert all(r.status in (rec.OK, rec.STARTED) for r in records)
            seen = records
        finally:
            store.close()


def test_checkpoint_commits_blobs_once_in_chunks_with_versions_and_pointers(store: Store, monkeypatch) -> None:
    import persistent_kernel.storecells as cells_module
    from persistent_kernel.store import version_key

    monkeypatch.setattr(cells_module, "BLOB_CHUNK", 1000)  # force chunking on a small blob (where commits read it)
    data = os.urandom(10_500)
    digest = b"d" * 16
    first = store.append(new_record("a = data"))
    first.status = rec.OK
    key = version_key(first.seq, 0)
    version = Version("stored", ["a", "b"], method="pickle", payload=digest.hex(), nbytes=len(data))
    pointer = Pointer("live", version=key.hex(), bound_at=first.seq)
    assert store.commit_checkpoint(first, {key: version}, {"a": pointer, "b": pointer}, {digest: data})
    assert bytes(store.read_blob(digest)) == data
    assert store.blob_bytes() == len(data)

    second = store.append(new_record("del b"))
    second.status = rec.OK
    # The same digest again costs nothing; `b` is deleted as of cell 2.
    assert store.commit_checkpoint(second, {}, {"b": Pointer("deleted")}, {digest: data})
    assert store.blob_bytes() == len(data)
    assert set(store.pointers_as_of(first.seq)) == {"a", "b"}
    assert store.pointers_as_of(second.seq)["b"].state == "deleted"
    assert [p.seq for p in store.name_history("b")] == [first.seq, second.seq]
    assert store.version(key).names == ["a", "b"]
    assert store.check() == []


def test_check_reports_a_pointer_to_a_missing_version(store: Store) -> None:
    record = store.append(new_record())
    record.status = rec.OK
    store.commit_checkpoint(record, {}, {"x": Pointer("live", version="00" * 12, bound_at=1)}, {})
    assert any("missing version" in problem for problem in store.check())


def test_a_record_in_the_write_ahead_slot_survives_the_death_of_the_process(tmp_path: Path) -> None:
    # The child writes a record ahead (to the slot, no LMDB transaction) and dies with SIGKILL.
    child = textwrap.dedent(
        f"""
        import os, signal, time
        from persistent_kernel.records import CellRecord
        from persistent_kernel.store import Store
        store = Store({str(tmp_path / "store")!r}, sync_interval=0)
        done = store.append(CellRecord(seq=0, code="a = 1", execution_count=1, started_at=time.time()))
        done.status = "ok"
        store.set_outcome(done)
        store.append(CellRecord(seq=0, code="crash()", execution_count=2, started_at=time.time()))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    reader = Store(tmp_path / "store", sync_interval=0)  # not the session's owner: sees the record, writes nothing
    try:
        assert [(r.code, r.status) for r in reader.records()] == [("a = 1", rec.OK), ("crash()", rec.STARTED)]
        assert reader.count() == 2
    finally:
        reader.close()
    reader = Store(tmp_path / "store", sync_interval=0)
    try:
        assert len(list(reader.records())) == 2  # still only in the slot: the first reader took nothing in
    finally:
        reader.close()
    store = Store(tmp_path / "store", sync_interval=0, owner=True)
    try:
        first, second = store.records()
        assert (first.seq, first.code, first.status) == (1, "a = 1", rec.OK)
        assert (second.seq, second.code, second.status) == (2, "crash()", rec.STARTED)
        assert store.append(new_record()).seq == 3
        assert store.check() == []
    finally:
        store.close()


def test_a_torn_write_ahead_slot_is_ignored(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", sync_interval=0, owner=True)
    done = store.append(new_record("a = 1"))
    store.set_outcome(done)
    store.close()
    slot = tmp_path / "store" / "ahead"
    data = bytearray(slot.read_bytes())
    data[:4] = b"PKa1"
    data[16:40] = os.urandom(24)  # a copy cut short: the checksum no longer matches
    slot.write_bytes(bytes(data))
    store = Store(tmp_path / "store", sync_interval=0, owner=True)
    try:
        assert [r.code for r in store.records()] == ["a = 1"]
        assert store.check() == []
    finally:
        store.close()


def test_close_syncs_what_the_background_flusher_has_not(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", sync_interval=3600)  # the flusher would wait an hour
    record = store.append(new_record())
    record.status = rec.OK
    store.set_outcome(record)
    assert store._dirty.is_set()
    store.close()
    assert not store._dirty.is_set()  # close() fsynced the environment and the slot


def a_cell_commits_meanwhile(store: Store, code: str) -> bool:
    """Whether a cell's write-ahead and commit finish while something else holds up the store
    (a deadlock detector: 30 s, never a timing figure)."""
    import threading

    done: list[CellRecord] = []

    def next_cell() -> None:
        record = store.append(new_record(code))
        record.status = rec.OK
        store.set_outcome(record)
        done.append(record)

    cell = threading.Thread(target=next_cell)
    cell.start()
    cell.join(30)
    return bool(done)


class _EnvironmentProxy:
    """The store's LMDB environment with ``sync`` replaced (everything else passes through)."""

    def __init__(self, env, sync) -> None:
        self._real, self._sync = env, sync

    def sync(self, force: bool = False) -> None:
        self._sync()

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def test_a_failed_fsync_is_kept_and_told_never_retried_as_if_nothing_happened(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", sync_interval=3600)
    real = store._env
    calls = []

    def failing() -> None:
        calls.append(1)
        raise lmdb.Error("mdb_env_sync: Input/output error")

    try:
        record = store.append(new_record())
        record.status = rec.OK
        store.set_outcome(record)
        store._env = _EnvironmentProxy(real, failing)
        store.sync()
        # After an I/O error the kernel may have dropped the dirty pages: a later "successful"
        # fsync proves nothing about them. The failure stays, and nothing asks for a silent retry.
        assert "Input/output error" in (store.durability_problem or "")
        assert "may not survive an OS crash" in store.durability_problem
        assert not store._dirty.is_set()
        store._env = _EnvironmentProxy(real, lambda: None)
        store.sync()
        assert "Input/output error" in store.durability_problem  # not cleared by a later success
        assert calls == [1]
        assert list(store.records())[0].status == rec.OK  # the store itself still works
    finally:
        store._env = real
        store.close()


def test_the_write_ahead_and_a_commit_never_wait_for_an_fsync(tmp_path: Path) -> None:
    """A background fsync that the disk holds up must not hold up the next cell (a logical check, no timing)."""
    import threading

    store = Store(tmp_path / "store", sync_interval=3600)
    real = store._env
    entered, release = threading.Event(), threading.Event()

    def slow_disk() -> None:
        entered.set()
        release.wait(60)

    store._env = _EnvironmentProxy(real, slow_disk)
    syncing = threading.Thread(target=store.sync)
    syncing.start()
    try:
        assert entered.wait(30)
        assert a_cell_commits_meanwhile(store, "y = 2"), "the cell's write-ahead and commit waited for the background fsync"
        assert not release.is_set()
    finally:
        release.set()
        syncing.join(30)
        store._env = real
        store.close()
    reopened = Store(tmp_path / "store", sync_interval=0)
    try:
        assert [r.code for r in reopened.records()] == ["y = 2"] and reopened.check() == []
    finally:
        reopened.close()


def test_pruning_the_history_scans_without_holding_up_the_next_cell(tmp_path: Path) -> None:
    """The writer prunes after every large write lands: its scan of all versions must not block a cell."""
    import threading

    store = Store(tmp_path / "store", sync_interval=3600)
    entered, release = threading.Event(), threading.Event()
    scan = store._authentic_versions

    def slow_scan(first: int = 0):
        if first == 0 and not release.is_set():
            entered.set()
            release.wait(60)
        yield from scan(first)

    store._authentic_versions = slow_scan
    pruning = threading.Thread(target=store.prune_history, args=(0,))
    pruning.start()
    try:
        assert entered.wait(30)
        assert a_cell_commits_meanwhile(store, "z = 3"), "the cell waited for the history scan"
        assert not release.is_set()
    finally:
        release.set()
        pruning.join(30)
        store.close()


# -- an outcome committed after the reply (the outcome slot) -------------------------------------

DEFERRED_CHILD = """
import os, signal, time
from persistent_kernel.records import CellRecord, Pointer, Version
from persistent_kernel.store import Store, version_key
store = Store({path!r}, sync_interval=0, owner=True)
first = store.append(CellRecord(seq=0, code="a = 1", execution_count=1, started_at=time.time()))
first.status = "ok"
key = version_key(first.seq, 0)
version = Version("stored", ["a"], method="pickle", payload=(b"d" * 16).hex(), nbytes=5000)
store.commit_checkpoint(first, {{key: version}}, {{"a": Pointer("live", version=key.hex(), bound_at=1)}}, {{b"d" * 16: b"v" * 5000}}, defer=True)
second = store.append(CellRecord(seq=0, code="b = 2", execution_count=2, started_at=time.time()))
second.status = "ok"
store.commit_checkpoint(second, {{}}, {{}}, {{}}, {{"cwd": "/somewhere"}}, defer=True)
os.kill(os.getpid(), signal.SIGKILL)  # before anything settled the second cell's commit
"""


def test_an_outcome_left_in_the_outcome_slot_is_applied_by_the_next_owner(tmp_path: Path) -> None:
    path = tmp_path / "store"
    result = subprocess.run([sys.executable, "-c", DEFERRED_CHILD.format(path=str(path))], capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    reader = Store(path, sync_interval=0)  # not the owner: sees the record and its outcome, writes nothing
    try:
        assert [(r.code, r.status) for r in reader.records()] == [("a = 1", rec.OK), ("b = 2", rec.OK)]
        assert reader.count() == 2
        assert reader.get_meta("context") is None  # the second commit is not in LMDB yet
    finally:
        reader.close()
    store = Store(path, sync_interval=0, owner=True)
    try:
        first, second = store.records()
        assert (first.code, first.status, second.code, second.status) == ("a = 1", rec.OK, "b = 2", rec.OK)
        assert bytes(store.read_blob(b"d" * 16)) == b"v" * 5000  # the first cell's (settled by the second commit)
        assert store.get_meta("context") == {"cwd": "/somewhere"}  # the second cell's, taken in at the open
        assert store.append(new_record()).seq == 3
        assert store.check() == []
    finally:
        store.close()


def test_a_deferred_outcome_is_settled_before_anything_reads_or_writes_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", sync_interval=0, owner=True)
    try:
        record = store.append(new_record("a = 1"))
        record.status = rec.OK
        assert store.commit_checkpoint(record, {}, {"a": Pointer("deleted")}, {}, {"cwd": "/here"}, defer=True)
        assert store._pending is not None  # in the outcome slot only
        assert store.get_meta("context") == {"cwd": "/here"}  # a read settles it first
        assert store._pending is None
        assert [(r.code, r.status) for r in store.records()] == [("a = 1", rec.OK)]
        second = store.append(new_record("b = 2"))
        second.status = rec.OK
        assert store.set_outcome(second, defer=True)
        store.settle()
        assert store._pending is None
        assert [r.status for r in store.records()] == [rec.OK, rec.OK]
        third = store.append(new_record("c = 3"))
        third.status = rec.OK
        assert store.set_outcome(third, defer=True)
    finally:
        store.close()  # settles it
    store = Store(tmp_path / "store", sync_interval=0, owner=True)
    try:
        assert [(r.code, r.status) for r in store.records()] == [("a = 1", rec.OK), ("b = 2", rec.OK), ("c = 3", rec.OK)]
        assert store.check() == []
    finally:
        store.close()


def test_a_large_commit_is_not_deferred(store: Store) -> None:
    record = store.append(new_record("a = big"))
    record.status = rec.OK
    data = os.urandom(512 * 1024)
    assert store.commit_checkpoint(record, {}, {}, {b"e" * 16: data}, defer=True)
    assert store._pending is None  # above the outcome slot's limit: committed on the spot
    assert bytes(store.read_blob(b"e" * 16)) == data


def test_a_deferred_outcome_that_fails_to_commit_is_told_and_its_cell_kept_as_unrecorded(tmp_path: Path) -> None:
    store = Store(tmp_path / "capped", map_size=64 * 1024, max_map_size=128 * 1024, sync_interval=0, owner=True)
    failures: list[StoreWriteError] = []
    store.on_settle_failed = failures.append
    try:
        record = store.append(new_record("a = 1"))
        record.status = rec.OK
        too_big = {b"f" * 16: os.urandom(200 * 1024)}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("persistent_kernel.storecells.DEFER_MAX_BYTES", 1024 * 1024)
            assert store.commit_checkpoint(record, {}, {}, too_big, defer=True)  # answered: in the outcome slot
        store.settle()  # the map cannot hold it
        assert len(failures) == 1 and "size limit" in str(failures[0])
        assert store._pending is None
        nxt = store.append(new_record("b = 2"))  # records the first as "ran, outcome not recorded"
        assert nxt.seq == 2
        assert [(r.code, r.status) for r in store.records()] == [("a = 1", rec.UNRECORDED), ("b = 2", rec.STARTED)]
        assert store.check() == []
    finally:
        store.close()
    store = Store(tmp_path / "capped", sync_interval=0, max_map_size=128 * 1024, owner=True)
    try:  # the failed frame was cleared: the next owner does not apply it out of order
        assert [r.code for r in store.records()][:1] == ["a = 1"]
        with pytest.raises(KeyError):
            store.read_blob(b"f" * 16)
    finally:
        store.close()


def test_a_damaged_or_forged_outcome_slot_is_not_applied(tmp_path: Path) -> None:
    path = tmp_path / "store"
    result = subprocess.run([sys.executable, "-c", DEFERRED_CHILD.format(path=str(path))], capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    slot = path / "outcome"
    data = bytearray(slot.read_bytes())
    tag_end = 16 + 32  # the slot's header, then the frame's HMAC tag
    at = data.index(b"/somewhere", tag_end)
    data[at : at + 10] = b"/elsewhere"  # changed, and the slot's checksum made to match again
    import xxhash

    length = int.from_bytes(data[4:8], "little")
    data[8:16] = xxhash.xxh3_64_digest(bytes(data[16 : 16 + length]))
    slot.write_bytes(bytes(data))
    store = Store(path, sync_interval=0, owner=True)
    try:
        assert store.get_meta("context") is None  # refused: not applied
        assert any("outcome of cell #2" in what for what in store.refusals)
        # The cell's record written ahead still says it ran: kept as a cell the kernel stopped in.
        assert [(r.code, r.status) for r in store.records()] == [("a = 1", rec.OK), ("b = 2", rec.STARTED)]
        assert store.check() == []
    finally:
        store.close()


def test_a_deferred_outcome_that_fails_as_the_next_cell_commits_keeps_its_cell_as_unrecorded(tmp_path: Path) -> None:
    store = Store(tmp_path / "capped", map_size=64 * 1024, max_map_size=128 * 1024, sync_interval=0, owner=True)
    failures: list[StoreWriteError] = []
    store.on_settle_failed = failures.append
    try:
        first = store.append(new_record("a = big"))
        first.status = rec.OK
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("persistent_kernel.storecells.DEFER_MAX_BYTES", 1024 * 1024)
            assert store.commit_checkpoint(first, {}, {}, {b"f" * 16: os.urandom(200 * 1024)}, defer=True)
        second = store.append(new_record("b = 2"))  # runs while the first waits in the outcome slot
        second.status = rec.OK
        assert store.set_outcome(second, defer=True)  # settles the first (which cannot fit), then commits itself
        assert len(failures) == 1
        assert store._pending is None  # after a failed settle, committed on the spot: its own outcome is known
        store.append(new_record("c = 3"))
        assert [(r.code, r.status) for r in store.records()] == [("a = big", rec.UNRECORDED), ("b = 2", rec.OK), ("c = 3", rec.STARTED)]
        assert store.check() == []
    finally:
        store.close()


def test_a_record_planted_past_the_outcome_slots_cell_does_not_hide_its_commit(tmp_path: Path) -> None:
    path = tmp_path / "store"
    result = subprocess.run([sys.executable, "-c", DEFERRED_CHILD.format(path=str(path))], capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    env = lmdb.open(str(path), max_dbs=8)  # someone with write access adds a cell #3 (with no valid tag)
    cells, outcomes = env.open_db(b"cells"), env.open_db(b"outcomes")
    with env.begin(write=True) as txn:
        txn.put((3).to_bytes(8, "big"), CellRecord(seq=3, code="planted = 1", execution_count=3).encode_ahead(), db=cells)
        txn.put((3).to_bytes(8, "big"), b'{"status": "ok"}', db=outcomes)
    env.close()
    store = Store(path, sync_interval=0, owner=True)
    try:
        assert store.get_meta("context") == {"cwd": "/somewhere"}  # cell #2's commit, applied
        first, second, planted = store.records()
        assert (second.code, second.status) == ("b = 2", rec.OK)
        assert planted.status == rec.REFUSED
    finally:
        store.close()


def test_a_deferred_blob_is_the_bytes_of_its_cell_even_if_the_buffer_changes_before_the_settle(store: Store) -> None:
    buffer = bytearray(b"before" * 1000)  # a live buffer, as an array's is
    record = store.append(new_record("arr = ..."))
    record.status = rec.OK
    assert store.commit_checkpoint(record, {}, {}, {b"g" * 16: memoryview(buffer)}, defer=True)
    buffer[:6] = b"after!"  # the next cell changes the array in place before the commit is settled
    store.settle()
    assert bytes(store.read_blob(b"g" * 16)) == b"before" * 1000
