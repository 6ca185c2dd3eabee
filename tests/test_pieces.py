"""Large buffers stored as pieces: a small in-place change to a big array stores the pieces it
touched, the history budget counts pieces, and a restore maps the pieces back in place as one
writable array, each checked where it lies.

No kernel process: an in-process IPython shell, a real LMDB store in a temp dir, and the piece
size made small (``serialize.PIECE_BYTES`` and ``PIECES_ABOVE_BYTES``, module constants) so that arrays of a few MiB
stand for gigabytes.
"""

from __future__ import annotations

import mmap
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from persistent_kernel import records as rec
from persistent_kernel import serialize
from persistent_kernel.blobfiles import BlobFiles
from persistent_kernel.checkpoint import Checkpointer
from persistent_kernel.errors import Unauthentic
from persistent_kernel.journal import Journal
from persistent_kernel.restore import restore_session
from persistent_kernel.session import resolve_session
from persistent_kernel.store import Store

PIECE = 64 * 1024  # a multiple of the page size, like the real 8 MiB


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serialize, "PIECE_BYTES", PIECE)
    monkeypatch.setattr(serialize, "PIECES_ABOVE_BYTES", PIECE)


class Session:
    """One session's journal and checkpointer around an in-process shell, reopened at will."""

    def __init__(self, shell: Any, home: Path, large_blob_bytes: int = 1024) -> None:
        self.shell = shell
        self.session = resolve_session({"PERSISTENT_KERNEL_HOME": str(home), "PERSISTENT_KERNEL_SESSION": "pieces"})
        self.large_blob_bytes = large_blob_bytes
        self.journal = self._open()
        self.checkpointer = Checkpointer(shell, large_blob_bytes=large_blob_bytes)
        self.checkpointer.adopt({})

    def _open(self) -> Journal:
        journal = Journal(self.session, sync_interval=0, lock_timeout=0.2)
        assert journal.open()
        return journal

    def run(self, code: str) -> None:
        record = self.journal.begin(code, execution_count=self.shell.execution_count)
        result = self.shell.run_cell(code, store_history=True)
        assert result.success, result.error_in_exec
        checkpoint = self.checkpointer.prepare(record.seq, code)
        assert self.journal.finish(record, rec.OK, 0.01, checkpoint=checkpoint)
        self.checkpointer.applied(checkpoint)
        assert self.journal.writer is not None and self.journal.writer.drain(30)

    @property
    def store(self) -> Store:
        assert self.journal.store is not None
        return self.journal.store

    def files(self) -> set[bytes]:
        return set(self.store.files.digests())

    def restart(self) -> Any:
        """Close, forget the namespace, open again and restore; returns the report."""
        assert self.store.check() == []
        self.journal.close()
        self.shell.reset(new_session=False)
        self.journal = self._open()
        report, states, _stale = restore_session(self.shell, self.journal)
        self.checkpointer = Checkpointer(self.shell, large_blob_bytes=self.large_blob_bytes)
        self.checkpointer.adopt(states)
        return report

    def close(self) -> None:
        self.journal.close()


@pytest.fixture
def session(shell: Any, tmp_path: Path) -> Iterator[Session]:
    opened = Session(shell, tmp_path)
    yield opened
    opened.close()


def _mapping_under(array: np.ndarray) -> Any:
    base: Any = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


# -- the serializer ----------------------------------------------------------------------------


@pytest.mark.parametrize("nbytes", [PIECE + 8, 3 * PIECE, 5 * PIECE + 100, 16 * PIECE])
def test_a_change_to_one_element_moves_one_piece_and_the_group_digest(nbytes: int) -> None:
    rng = np.random.default_rng(nbytes)
    array = rng.integers(0, 255, nbytes, dtype=np.uint8)
    before = serialize.dumps({"a": array})
    [(buffer_digest, pieces)] = before.pieces.items()
    assert before.buffer_digests == [buffer_digest]
    assert len(pieces) == -(-nbytes // PIECE) and sum(view.nbytes for _, view in pieces) == nbytes
    for _ in range(5):
        index = int(rng.integers(0, nbytes))
        array[index] ^= 0xFF
        after = serialize.dumps({"a": array})
        changed = [i for i, ((old, _), (new, _)) in enumerate(zip(before.pieces[before.buffer_digests[0]], after.pieces[after.buffer_digests[0]])) if old != new]
        assert changed == [index // PIECE]
        assert after.group_digest != before.group_digest
        before = after
    assert serialize.dumps({"a": array}).group_digest == before.group_digest  # unchanged: the same digest


def test_a_buffer_of_one_piece_or_less_is_stored_whole() -> None:
    small = serialize.dumps({"a": np.zeros(PIECE, dtype=np.uint8)})
    assert small.pieces == {} and small.buffer_digests == [serialize.digest(small.buffers[0])]


def test_a_pieced_buffer_never_shares_a_digest_with_the_bytes_of_its_piece_digests() -> None:
    array = np.arange(3 * PIECE // 8, dtype=np.int64)
    pieced = serialize.dumps({"a": array})
    [(buffer_digest, pieces)] = pieced.pieces.items()
    spoof = np.frombuffer(b"".join(d for d, _ in pieces), dtype=np.uint8).copy()
    assert serialize.dumps({"a": spoof}).buffer_digests[0] != buffer_digest


# -- storing and restoring ------------------------------------------------------------------------


def test_in_place_changes_store_only_the_pieces_they_touch_and_restore_exactly(session: Session) -> None:
    session.run(f"import numpy as np\na = np.arange({40 * PIECE // 8}, dtype=np.int64)")
    first = session.files()
    assert len(first) == 40
    rng = random.Random(7)
    for cell in range(12):
        index = rng.randrange(40 * PIECE // 8)
        known = session.files()
        session.run(f"a[{index}] = {-cell - 1}")
        assert len(session.files() - known) == 1, f"cell {cell}: one touched piece, one new file"
    session.run("a[:: 3 * a.size // 8] += 1")  # a strided change touches a few pieces
    expected = session.shell.user_ns["a"].copy()
    report = session.restart()
    restored = session.shell.user_ns["a"]
    assert not report.lost
    assert restored.dtype == expected.dtype and restored.shape == expected.shape
    assert np.array_equal(restored, expected)
    assert isinstance(_mapping_under(restored), mmap.mmap)  # mapped in place, not read into memory
    assert restored.flags.writeable


def test_a_restored_array_is_private_memory_and_keeps_storing_by_pieces(session: Session) -> None:
    session.run(f"import numpy as np\na = np.ones({10 * PIECE // 8}) * 2.5")
    session.restart()
    files_before = {digest: session.store.files.path(digest).read_bytes() for digest in session.files()}
    session.run(f"a[{PIECE // 8 * 3 + 5}] = -1.0")  # writes to the mapping never reach the stored files
    assert all(session.store.files.path(d).read_bytes() == data for d, data in files_before.items())
    assert len(session.files() - set(files_before)) == 1
    session.restart()
    a = session.shell.user_ns["a"]
    assert a[PIECE // 8 * 3 + 5] == -1.0 and (np.delete(a, PIECE // 8 * 3 + 5) == 2.5).all()


@pytest.mark.parametrize(
    "setup, check",
    [
        # the last piece shorter than the others, a dtype with odd element size
        (f"x = np.arange({7 * PIECE + 13}, dtype=np.uint8)", "x.sum()"),
        (f"x = np.zeros(({PIECE // 64}, 9), dtype='S3')\nx[5, 2] = b'abc'", "x.tobytes()"),
        # every piece the same bytes: one file, mapped at every place
        (f"x = np.zeros({12 * PIECE // 8})", "float(x.sum()), x.shape"),
        # a Fortran-ordered 2-d array, a structured dtype
        (f"x = np.asfortranarray(np.arange({6 * PIECE // 8}, dtype=np.float64).reshape(-1, 8))", "x.flags.f_contiguous, x[3, 5], x[-1, -1]"),
        (f"x = np.zeros({3 * PIECE // 16}, dtype=[('i', '<i8'), ('f', '<f8')])\nx['i'] = np.arange(x.size)", "x['i'][-1], x['f'].sum()"),
        # views of a pieced base keep sharing its memory
        (f"x = np.arange({5 * PIECE // 8})\nv = x[{PIECE // 8 - 3}:{3 * PIECE // 8}]\nw = x[::7]", "np.shares_memory(x, v), np.shares_memory(x, w), v[0], w[-1]"),
    ],
)
def test_arrays_of_many_shapes_come_back_equal_from_their_pieces(session: Session, setup: str, check: str) -> None:
    session.run("import numpy as np\n" + setup)
    expected = session.shell.ev(check)
    before = {name: np.array(value, copy=True) for name, value in session.shell.user_ns.items() if isinstance(value, np.ndarray)}
    assert session.checkpointer is not None
    report = session.restart()
    assert not report.lost
    for name, value in before.items():
        assert np.array_equal(session.shell.user_ns[name], value) and session.shell.user_ns[name].dtype == value.dtype
    assert repr(session.shell.ev(check)) == repr(expected)


def test_a_dataframe_block_is_stored_by_pieces(session: Session) -> None:
    session.run(f"import pandas as pd, numpy as np\ndf = pd.DataFrame({{'x': np.arange({4 * PIECE // 8}), 'y': np.arange({4 * PIECE // 8}) * 0.5}})")
    count = len(session.files())
    session.run("df.iloc[5, 1] = -2.0")
    assert len(session.files()) - count == 1
    expected = session.shell.user_ns["df"].copy()
    session.restart()
    import pandas as pd

    pd.testing.assert_frame_equal(session.shell.user_ns["df"], expected)


def test_pieces_kept_in_lmdb_are_copied_in(shell: Any, tmp_path: Path) -> None:
    session = Session(shell, tmp_path, large_blob_bytes=0)  # nothing is a file: every piece in the cell's transaction
    try:
        session.run(f"import numpy as np\na = np.arange({6 * PIECE // 8 + 3})")
        assert session.files() == set()
        session.run("a[4] = -4")
        session.restart()
        a = session.shell.user_ns["a"]
        assert a[4] == -4 and a[-1] == 6 * PIECE // 8 + 2 and a.flags.writeable
    finally:
        session.close()


def test_a_changed_byte_in_one_piece_is_refused(session: Session) -> None:
    session.run(f"import numpy as np\na = np.arange({4 * PIECE // 8})")
    version = next(v for _, v in session.store._authentic_versions() if "a" in v.names)
    piece = bytes.fromhex(version.pieces[version.buffers[0]][2])
    path = session.store.files.path(piece)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))
    with pytest.raises(Unauthentic):
        session.store.read_pieces([bytes.fromhex(p) for p in version.pieces[version.buffers[0]]])


def test_a_missing_piece_is_a_missing_blob(session: Session) -> None:
    session.run(f"import numpy as np\na = np.arange({4 * PIECE // 8})")
    version = next(v for _, v in session.store._authentic_versions() if "a" in v.names)
    pieces = [bytes.fromhex(p) for p in version.pieces[version.buffers[0]]]
    session.store.files.path(pieces[1]).unlink()
    with pytest.raises(KeyError):
        session.store.read_pieces(pieces)


def test_the_history_budget_counts_pieces(session: Session) -> None:
    nbytes = 32 * PIECE
    session.run(f"import numpy as np\na = np.zeros({nbytes // 8}) + np.arange({nbytes // 8})")
    for cell in range(20):
        session.run(f"a[{cell * (PIECE // 8) + 1}] = -1")
    stored = session.store.blob_bytes()
    assert stored <= nbytes + 20 * PIECE + 64 * 1024  # the array once, one piece per change (plus pickles)
    # the budget is for the past: the current version's pieces are never counted or pruned
    freed = session.store.prune_history(4 * PIECE)
    assert freed >= 16 * PIECE and session.store.blob_bytes() <= nbytes + 4 * PIECE + 64 * 1024
    expected = session.shell.user_ns["a"].copy()
    session.restart()
    assert np.array_equal(session.shell.user_ns["a"], expected)  # the current version keeps every piece it needs


# -- the mapping itself -------------------------------------------------------------------------


def test_pieces_are_laid_end_to_end_in_one_mapping(tmp_path: Path) -> None:
    files = BlobFiles(tmp_path)
    page = mmap.PAGESIZE
    chunks = [os.urandom(2 * page), os.urandom(page), b"in lmdb" * 100, os.urandom(page + 17)]
    digests = [serialize.digest(c) for c in chunks]
    for d, c in zip(digests, chunks):
        if not c.startswith(b"in lmdb"):
            files.write(d, bytearray(c))
    region, spans = files.map_pieces(digests + [digests[0]], {digests[2]: bytearray(chunks[2])})
    assert bytes(region) == b"".join(chunks + [chunks[0]])  # a piece after an unaligned one is copied in
    assert spans[1] == (2 * page, page) and len(spans) == 5
    region[0:4] = b"\x00\x00\x00\x00"
    assert files.path(digests[0]).read_bytes() == chunks[0]  # private: the file is untouched
