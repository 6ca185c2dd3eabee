"""Authenticated state: a store is an attack surface (loading a pickle runs code, replaying a cell runs code).

Every record, blob and large file carries an HMAC-SHA256 tag under the user's
key; these tests plant what an attacker with write access to a store would plant
and show that none of it runs, that the rest of the session comes back, and that
the user is told.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
import subprocess
import sys
import threading
from pathlib import Path

import lmdb
import pytest
import xxhash

from persistent_kernel.authentication import KEY_ENV, Authenticator, load_key
from persistent_kernel.errors import KeyUnusable, NotPrivate, StoreNotAuthenticated, Unauthentic
from persistent_kernel.lock import SessionLock
from persistent_kernel.records import REFUSED, CellRecord, Pointer, Version
from persistent_kernel.store import Store, version_key

from .kernels import check_store, crash_and_restart, kernel_env, run, store_path

pytestmark = pytest.mark.robustness  # the invariant these tests prove (tests/README.md)

# -- the key ----------------------------------------------------------------------------


def test_the_key_is_created_private_on_first_use_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "key"
    first = load_key(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_key(path) == first


def test_kernels_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_key(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["key"]  # no temporary file left


def test_a_key_other_users_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "key"
    load_key(path)
    path.chmod(0o644)
    with pytest.raises(KeyUnusable, match=f"chmod 600 {path}"):
        load_key(path)


def test_a_damaged_key_is_refused_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("not a key\n")
    path.chmod(0o600)
    with pytest.raises(KeyUnusable, match="damaged"):
        load_key(path)
    assert path.read_text() == "not a key\n"


# -- the store, without a kernel ----------------------------------------------------------


def _fill(store: Store) -> tuple[CellRecord, bytes]:
    record = store.append(CellRecord(seq=0, code="x = [1, 2]", execution_count=1))
    record.status, record.checkpointed = "ok", True
    key = version_key(record.seq, 0)
    blob = pickle.dumps({"x": [1, 2]})
    digest = bytes(16)  # content addressing is the store's caller's business; any 16 bytes do here
    version = Version("stored", ["x"], method="pickle", payload=digest.hex())
    store.commit_checkpoint(record, {key: version}, {"x": Pointer("live", version=key.hex())}, {digest: blob})
    return record, digest


def _put_raw(path: Path, db: bytes, key: bytes, value: bytes) -> None:
    """What an attacker with write access does: change LMDB behind the store's back."""
    env = lmdb.open(str(path), max_dbs=8)
    try:
        with env.begin(write=True, db=env.open_db(db)) as txn:
            txn.put(key, value)
    finally:
        env.close()


def test_every_kind_of_tampering_is_refused_and_named(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = Store(path, sync_interval=0, owner=True)
    record, digest = _fill(store)
    assert store.check() == []
    store.close()

    key = version_key(record.seq, 0)
    _put_raw(path, b"versions", key, json.dumps({"kind": "stored", "names": ["x"], "method": "pickle", "inline": "AA==", "buffers": []}).encode())
    _put_raw(path, b"blobs", digest + (0).to_bytes(4, "big"), pickle.dumps({"x": "planted"}))
    _put_raw(path, b"cells", record.seq.to_bytes(8, "big"), CellRecord(seq=record.seq, code="import os", execution_count=1).encode_ahead())
    _put_raw(path, b"meta", b"context", json.dumps({"sys_path": ["/tmp/evil"]}).encode())

    store = Store(path, sync_interval=0)
    try:
        assert store.version(key) is None
        assert store.missing_reason(key.hex()).startswith("its stored record failed authentication")
        with pytest.raises(Unauthentic):
            store.read_blob(digest)
        (refused,) = store.records()
        assert (refused.status, refused.code, refused.label) == (REFUSED, "", f"refused record #{record.seq}")
        assert store.get_meta("context") is None
        assert set(store.refusals) >= {f"version {key.hex()}", f"blob {digest.hex()}", f"cell record #{record.seq}", "metadata 'context'"}
        problems = store.check()
        assert sum("fails authentication" in p for p in problems) == 4, problems
    finally:
        store.close()


def test_a_tag_made_with_another_key_does_not_verify(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = Store(path, sync_interval=0, owner=True)
    record, _ = _fill(store)
    store_id = bytes.fromhex(store.get_meta("store_id"))
    store.close()
    forged = CellRecord(seq=record.seq, code="import os", execution_count=1).encode_ahead()
    key = record.seq.to_bytes(8, "big")
    _put_raw(path, b"cells", key, forged)
    _put_raw(path, b"tags", b"c" + key, Authenticator(b"\x01" * 32, store_id).tag(b"c", key, forged))
    store = Store(path, sync_interval=0)
    try:
        assert [r.status for r in store.records()] == [REFUSED]
    finally:
        store.close()


def test_the_cell_left_in_the_write_ahead_slot_is_authenticated_too(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = Store(path, sync_interval=0, owner=True)
    store.append(CellRecord(seq=0, code="y = 1", execution_count=1))  # running when the kernel "dies"
    slot = (path / "ahead").read_bytes()
    store.close()
    start = slot.index(b'"code":"y = 1"')
    (path / "ahead").write_bytes(slot[:start] + b'"code":"z = 9"' + slot[start + 14 :])  # same length; fix the frame's checksum
    length = int.from_bytes(slot[4:8], "little")
    frame = bytearray((path / "ahead").read_bytes())
    frame[8:16] = xxhash.xxh3_64_digest(bytes(frame[16 : 16 + length]))
    (path / "ahead").write_bytes(bytes(frame))
    store = Store(path, sync_interval=0, owner=True)
    try:
        assert list(store.records()) == []  # not taken in: nothing of it is trusted
        assert any("running when the kernel stopped" in r for r in store.refusals)
    finally:
        store.close()


def test_an_older_store_is_not_loaded_until_its_owner_trusts_it(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = Store(path, sync_interval=0, owner=True)
    _fill(store)
    store.close()
    _downgrade(path)
    with pytest.raises(StoreNotAuthenticated, match="persistent-kernel trust store"):
        Store(path, sync_interval=0, owner=True)
    reader = Store(path, sync_interval=0)  # a command-line tool reads it, unverified, and says so
    assert reader.authenticated is False and [r.code for r in reader.records()] == ["x = [1, 2]"]
    reader.close()
    trusted = Store(path, sync_interval=0, owner=True, trust=True)
    assert trusted.signed > 0 and trusted.check() == []
    trusted.close()


def _downgrade(path: Path) -> None:
    """Make a store look like one from format 3: no tags, no store id."""
    env = lmdb.open(str(path), max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            txn.drop(env.open_db(b"tags", txn=txn), delete=True)
            meta = env.open_db(b"meta", txn=txn)
            txn.put(b"format_version", b"3", db=meta)
            txn.delete(b"store_id", db=meta)
    finally:
        env.close()


# -- real kernels -----------------------------------------------------------------------------

slow = pytest.mark.slow


class _Evil:
    """A pickle that runs code when it is loaded: it writes a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('this ran')",))


@slow
def test_a_planted_pickle_and_a_planted_cell_never_run_and_the_rest_is_restored(kernel, pk_home: Path, tmp_path: Path) -> None:
    k = kernel()
    run(k, "a = 41")
    run(k, "victim = {'k': list(range(5))}")
    run(k, "b = a + 1")
    k.kill()

    path = store_path(pk_home)
    reader = Store(path, sync_interval=0)
    pointer = reader.pointers_as_of()["victim"]
    last_seq = max(r.seq for r in reader.records())
    store_id = bytes.fromhex(reader.get_meta("store_id"))
    reader.close()

    # The payload is live: loaded anywhere, it runs (the control for what follows).
    marker = tmp_path / "pickle-ran"
    payload = pickle.dumps({"victim": _Evil(marker)})
    pickle.loads(payload)
    assert marker.read_text() == "this ran"
    marker.unlink()

    # 1. victim's stored version now holds the malicious pickle.
    evil_version = {"kind": "stored", "names": ["victim"], "method": "pickle", "inline": base64.b64encode(payload).decode(), "buffers": []}
    _put_raw(path, b"versions", pointer.version_key, json.dumps(evil_version).encode())
    # 2. A cell appended to the journal, as if it had run, with a tag made under another key.
    seq = last_seq + 1
    key = seq.to_bytes(8, "big")
    forged = CellRecord(seq=seq, code="pwned = True", execution_count=4).encode_ahead()
    _put_raw(path, b"cells", key, forged)
    _put_raw(path, b"outcomes", key, json.dumps({"status": "ok", "checkpointed": False}).encode())
    _put_raw(path, b"tags", b"c" + key, Authenticator(b"\x02" * 32, store_id).tag(b"c", key, forged))

    k.start()
    first = k.execute("pass")
    assert not marker.exists()
    assert k.evaluate("(a, b, victim, 'pwned' in dir())") == "(41, 42, {'k': [0, 1, 2, 3, 4]}, False)"
    assert "Refused 2 stored records that failed authentication" in first.said, first.said
    assert "cell record #4; the stored value of victim from cell [2]" in first.said
    assert "nothing in them was loaded or run" in first.said
    assert "Recomputed victim by replaying cell [2]" in first.said
    status = k.execute("%persist status").text
    assert "Authentication" in status and "failed authentication" in status
    k.shutdown()
    assert not marker.exists()


@slow
def test_a_changed_byte_in_a_large_file_is_refused_and_the_array_recomputed(kernel, pk_home: Path) -> None:
    k = kernel(extra_arguments=["--PersistentKernel.large_blob_bytes=1048576"])
    run(k, "import numpy as np")
    run(k, "big = np.arange(4 * 2**20, dtype=np.int64)")  # 32 MiB: four pieces, a file each
    run(k, "small = 7")
    k.execute("%persist status")  # waits for nothing; the drain below makes sure it landed
    assert "Writing" not in k.execute("import time; time.sleep(0.5)\n%persist status").text
    k.kill()
    files = [p for p in (store_path(pk_home) / "blobs").iterdir() if not p.name.startswith(".")]
    assert len(files) == 4  # stored as four pieces of 8 MiB
    data = bytearray(files[1].read_bytes())
    data[6 * 2**20] ^= 0xFF  # deep inside one piece, not at its start
    files[1].write_bytes(bytes(data))
    k = kernel(extra_arguments=["--PersistentKernel.large_blob_bytes=1048576"])
    first = k.execute("pass")
    assert k.evaluate("(int(big.sum()), small)") == f"({sum(range(4 * 2**20))}, 7)"
    assert "large value file" in first.said and "Recomputed big" in first.said, first.said


@slow
def test_an_older_store_waits_for_trust_then_restores(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "x = 'kept'")
    k.shutdown()
    path = store_path(pk_home)
    _downgrade(path)
    k = kernel()
    first = k.execute("1 + 1")
    assert first.result == "2"
    assert "Persistence is off for this kernel" in first.stderr and "persistent-kernel trust test-session" in first.stderr
    assert k.evaluate("'x' in dir()") == "False"
    k.shutdown()
    env = kernel_env(pk_home)
    done = subprocess.run([sys.executable, "-m", "persistent_kernel", "trust", "test-session", "--yes"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Signed session test-session" in done.stdout
    k = kernel()
    assert k.evaluate("x") == "'kept'"
    k.shutdown()
    check_store(pk_home)


@slow
def test_an_archive_from_another_key_is_imported_only_with_trust(kernel, pk_home: Path, tmp_path: Path) -> None:
    k = kernel()
    run(k, "x = {'from': 'elsewhere'}")
    k.shutdown()
    archive = tmp_path / "session.tar"
    env = kernel_env(pk_home)
    done = subprocess.run([sys.executable, "-m", "persistent_kernel", "export", "test-session", str(archive)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr

    other_home = tmp_path / "other-home"
    other = dict(env, PERSISTENT_KERNEL_HOME=str(other_home), **{KEY_ENV: str(tmp_path / "other-user" / "key")})
    command = [sys.executable, "-m", "persistent_kernel", "import", str(archive), "--as", "imported"]
    refused = subprocess.run(command, env=other, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    assert "was not written by a persistent-kernel holding your key" in refused.stderr and "--trust" in refused.stderr
    assert not (other_home / "sessions" / "imported").exists()
    done = subprocess.run([*command, "--trust"], env=other, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    k = kernel("imported", env=dict(other, PERSISTENT_KERNEL_SESSION="imported"))
    assert k.evaluate("x") == "{'from': 'elsewhere'}"
    k.shutdown()


@slow
def test_a_crash_and_restore_leaves_every_record_authentic(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "import numpy as np\nv = np.ones(3)")
    run(k, "d = {'v': v}; del v")
    crash_and_restart(k)
    assert k.evaluate("float(d['v'].sum())") == "3.0"
    k.shutdown()
    check_store(pk_home)  # check() verifies every tag and every file


# -- files someone else could change (found by a red-team review) ----------------------------


def test_a_symlink_in_place_of_a_stores_file_is_never_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    for name in ("ahead", "kernel.lock", "data.mdb"):
        path = tmp_path / f"store-{name}"
        path.mkdir()
        (path / name).symlink_to(victim)
        with pytest.raises(NotPrivate, match="symbolic link"):
            if name == "kernel.lock":
                SessionLock(path).acquire(timeout=0.1)
            else:
                Store(path, sync_interval=0, owner=True)
    assert victim.read_text() == "keep me\n"


def test_a_large_file_others_can_write_or_a_fifo_is_refused_not_mapped(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = Store(path, sync_interval=0, owner=True)
    data = bytes(range(256)) * 4096
    digest = xxhash.xxh3_128_digest(data)
    store.files.write(digest, data, seal=lambda hashes: store.put_file_tag(digest, hashes))
    assert bytes(store.read_blob(digest)) == data
    store.files.path(digest).chmod(0o666)  # a file someone else could change after it is verified
    with pytest.raises(Unauthentic, match="can be written by other users"):
        store.read_blob(digest)
    store.files.path(digest).unlink()
    os.mkfifo(store.files.path(digest), 0o600)  # opening a FIFO would block the restore forever
    with pytest.raises(Unauthentic, match="not a regular file"):
        store.read_blob(digest)
    store.close()


def test_records_forgotten_and_put_back_do_not_verify(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = Store(path, sync_interval=0, owner=True)
    record, _ = _fill(store)
    key = record.seq.to_bytes(8, "big")
    env = store._env  # the raw values and tags, as a copy of the directory would keep them
    with env.begin() as txn:
        saved = {
            db: (bytes(txn.get(key, db=store._env.open_db(db, txn=txn))), bytes(txn.get(kind + key, db=store._tags)))
            for db, kind in ((b"cells", b"c"), (b"outcomes", b"o"))
        }
    store.clear()  # %persist forget
    store.close()
    for db, (value, tag) in saved.items():
        _put_raw(path, db, key, value)
        _put_raw(path, b"tags", (b"c" if db == b"cells" else b"o") + key, tag)
    store = Store(path, sync_interval=0)
    try:
        assert [r.status for r in store.records()] == [REFUSED]
    finally:
        store.close()


@slow
def test_another_sessions_store_put_in_place_is_left_alone(kernel, pk_home: Path) -> None:
    k = kernel("notebook-b")
    run(k, "secret_of_b = 1")
    k.shutdown()
    k = kernel("notebook-a")
    run(k, "a = 1")
    k.shutdown()
    a, b = store_path(pk_home, "notebook-a"), store_path(pk_home, "notebook-b")
    (a / "data.mdb").write_bytes((b / "data.mdb").read_bytes())
    k = kernel("notebook-a")
    first = k.execute("'secret_of_b' in dir()")
    assert first.result == "False"
    assert "belongs to session notebook-b, not notebook-a" in first.stderr, first.stderr
    k.shutdown()


def test_the_segments_of_many_buffers_hashed_together_are_each_buffers_own() -> None:
    """A value stored as pieces is checked with every piece hashed at once, on every core:
    the digests must be the ones each piece gets on its own (and the writer's, streamed)."""
    from persistent_kernel.authentication import SEGMENT_BYTES, SegmentHasher, segment_hashes, segment_hashes_of

    buffers = [b"", os.urandom(10), os.urandom(SEGMENT_BYTES), os.urandom(SEGMENT_BYTES + 5)]
    together = segment_hashes_of(buffers, workers=2)
    assert together == [segment_hashes(buffer, workers=1) for buffer in buffers]
    streamed = SegmentHasher()
    streamed.update(buffers[3])
    assert together[3] == streamed.finish() and len(together[3]) == 2


# -- sealed files: a verified large file is not hashed again while it is unchanged --------------


def _counting_checks(store: Store, monkeypatch) -> list[bytes]:
    hashed: list[bytes] = []
    check = store._check_file

    def counted(blob_digest, mapping, hashes=None):
        hashed.append(blob_digest)
        return check(blob_digest, mapping, hashes)

    monkeypatch.setattr(store, "_check_file", counted)
    return hashed


def test_a_file_the_kernel_wrote_is_sealed_and_any_write_to_it_breaks_the_seal(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "store"
    store = Store(path, sync_interval=0, owner=True)
    data = os.urandom(3 * 2**20)
    digest = xxhash.xxh3_128_digest(data)
    store.write_file(digest, data)
    store.close()
    store = Store(path, sync_interval=0, owner=True)  # a restore in a new kernel
    hashed = _counting_checks(store, monkeypatch)
    assert bytes(store.read_blob(digest)) == data
    assert hashed == []  # sealed when written: not hashed again
    # The same bytes written again in place: same size, same content, but written: hashed again.
    file = store.files.path(digest)
    with open(file, "r+b") as handle:
        handle.write(data[:10])
    assert bytes(store.read_blob(digest)) == data
    assert hashed == [digest]
    # A changed byte, the size kept: refused, as without seals.
    changed = bytearray(data)
    changed[2**20] ^= 0xFF
    with open(file, "r+b") as handle:
        handle.write(changed)
    with pytest.raises(Unauthentic):
        store.read_blob(digest)
    store.close()


def test_a_restore_seals_a_file_it_verified_once_it_is_old_enough_and_a_reader_never_does(tmp_path: Path, monkeypatch) -> None:
    import persistent_kernel.storeblobs as storeblobs

    path = tmp_path / "store"
    store = Store(path, sync_interval=0, owner=True)
    data = os.urandom(2**20)
    digest = xxhash.xxh3_128_digest(data)
    store.files.write(digest, data, seal=lambda hashes: store.put_file_tag(digest, hashes))  # no seal
    hashed = _counting_checks(store, monkeypatch)
    bytes(store.read_blob(digest))
    bytes(store.read_blob(digest))
    assert hashed == [digest, digest]  # written a moment ago: not sealed by a reading
    monkeypatch.setattr(storeblobs, "SEAL_AFTER", 0.0)
    store.close()
    reader = Store(path, sync_interval=0)  # not the owner: reads, writes no seal
    hashed = _counting_checks(reader, monkeypatch)
    bytes(reader.read_blob(digest))
    bytes(reader.read_blob(digest))
    assert hashed == [digest, digest]
    reader.close()
    store = Store(path, sync_interval=0, owner=True)
    hashed = _counting_checks(store, monkeypatch)
    bytes(store.read_blob(digest))  # verified, and sealed
    bytes(store.read_blob(digest))
    assert hashed == [digest]
    store.close()


def test_a_seal_from_another_key_or_another_file_does_not_hold(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "store"
    store = Store(path, sync_interval=0, owner=True)
    data = os.urandom(2**20)
    digest = xxhash.xxh3_128_digest(data)
    store.write_file(digest, data)
    store.close()
    # The file replaced by a copy of itself (a backup put back, a sync): another inode, hashed again.
    file = Path(str(store.files.path(digest)))
    copy = file.with_name("copy")
    copy.write_bytes(file.read_bytes())
    copy.chmod(0o600)
    os.replace(copy, file)
    store = Store(path, sync_interval=0, owner=True)
    hashed = _counting_checks(store, monkeypatch)
    assert bytes(store.read_blob(digest)) == data
    assert hashed == [digest]
    store.close()
    # A seal made with another key: not this user's, so the file is hashed (and, tagged with
    # this user's key, found authentic).
    reader = Store(path, sync_interval=0)
    other = Authenticator(os.urandom(32), reader._auth.store_id)
    reader.close()
    env = lmdb.open(str(path), max_dbs=8)
    tags = env.open_db(b"tags")
    with env.begin(write=True, db=tags) as txn:
        txn.put(b"F" + digest, other.file_seal(digest, os.stat(file)))
    env.close()
    store = Store(path, sync_interval=0, owner=True)
    hashed = _counting_checks(store, monkeypatch)
    assert bytes(store.read_blob(digest)) == data
    assert hashed == [digest]
    store.close()
