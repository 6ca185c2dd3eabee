"""The ``persistent-kernel`` command on real stores: sessions, show, history, rm, gc,
export/import, attach.

Stores are made by real kernels; the command runs as a subprocess, as a user
would run it, with ``PERSISTENT_KERNEL_HOME`` pointing at the test's home.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from persistent_kernel import archive
from persistent_kernel.catalog import CommandError, live_pid
from persistent_kernel.lock import SessionLock
from persistent_kernel.session import session_id_for
from persistent_kernel.store import FORMAT_VERSION, Store

from .kernels import kernel_env, run

slow = pytest.mark.slow  # these start kernels
pytestmark = pytest.mark.sessions  # the invariant these tests prove (tests/README.md)

BIG = "big = np.arange(3 * 2**20, dtype=np.float64)"  # 24 MiB: a large blob, written to a file
BIG_SUM = str(float(sum(range(3 * 2**20))))

CELLS = [
    "import numpy as np",
    BIG,
    "small = {'a': 1}; other = small",
    "gen = (i for i in range(3))",
    "y = 5; raise ValueError('boom')",
    "del other",
]


def cli(
    home: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persistent_kernel", *args],
        env=kernel_env(home),
        cwd=cwd,
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_json(home: Path, *args: str, cwd: Path | None = None) -> Any:
    done = cli(home, *args, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def notebook_env(session_env, notebook: Path) -> dict[str, str]:
    """A kernel as jupyter_server starts it for a notebook: JPY_SESSION_NAME, no explicit session."""
    env = session_env()
    del env["PERSISTENT_KERNEL_SESSION"]
    env["JPY_SESSION_NAME"] = str(notebook)
    return env


def fill(k) -> None:
    for code in CELLS:
        if "raise" in code:
            assert k.execute(code).ename == "ValueError"
        else:
            run(k, code)


def assert_restored(k) -> None:
    assert k.evaluate("float(big.sum())") == BIG_SUM
    assert (
        k.evaluate("(small, y, list(gen), 'other' in dir())")
        == "({'a': 1}, 5, [0, 1, 2], False)"
    )


def sessions_in(home: Path) -> list[str]:
    """Every entry under sessions/, hidden work directories included."""
    return sorted(os.listdir(home / "sessions"))


@slow
def test_list_show_history_gc_attach_and_rm_a_notebook_session(
    kernel, session_env, pk_home: Path, tmp_path: Path
) -> None:
    old = tmp_path / "work" / "old.ipynb"
    k = kernel(env=notebook_env(session_env, old))
    fill(k)
    sid = session_id_for("notebook", str(old))
    store_path = pk_home / "sessions" / sid

    # While the kernel runs: listed with its pid; rm and gc refuse to touch it.
    [row] = cli_json(pk_home, "sessions")["sessions"]
    assert (row["id"], row["notebook_path"], row["live"], row["pid"]) == (
        sid,
        str(old),
        True,
        k.pid,
    )
    table = cli(pk_home, "sessions").stdout
    assert sid in table and str(k.pid) in table and "just now" in table
    refused = cli(pk_home, "rm", "old", "--yes")
    assert refused.returncode == 1
    assert (
        f"persistent-kernel: error: session {sid} is in use by kernel process {k.pid}"
        in refused.stderr
    )
    assert store_path.is_dir()
    assert cli(pk_home, "gc", sid).returncode == 1
    [skipped] = cli_json(pk_home, "gc")["skipped"]
    assert skipped["session_id"] == sid
    assert f"is in use by kernel process {k.pid}; shut" in skipped["reason"]
    pid = k.pid
    k.shutdown()

    # Stopped: no pid any more (its pid is still written in kernel.lock, but nobody holds the lock).
    [row] = cli_json(pk_home, "sessions")["sessions"]
    assert (row["live"], row["pid"], row["cells"]) == (False, None, 6)
    assert row["size_bytes"] > 24 * 2**20
    assert SessionLock(store_path).holder() == pid

    # show: the facts %persist status shows, and every variable's kind and size.
    facts = cli_json(pk_home, "show", str(old))  # a notebook path names its session
    assert (facts["session_id"], facts["session_name"], facts["session_source"]) == (
        sid,
        "old.ipynb",
        "notebook",
    )
    assert facts["notebook_path"] == str(old) and facts["store_path"] == str(store_path)
    assert (
        facts["format_version"] == FORMAT_VERSION and facts["live"] is False and facts["pid"] is None
    )
    assert facts["cells"] == 6 and facts["cells_by_status"] == {"ok": 5, "error": 1}
    kinds = {v["name"]: (v["kind"], v["cell"]) for v in facts["variables"]}
    assert kinds == {
        "big": ("stored", "[2]"),
        "gen": ("recompute", "[4]"),
        "np": ("module", "[1]"),
        "small": ("stored", "[3]"),
        "y": ("stored", "[5]"),
    }
    big = next(v for v in facts["variables"] if v["name"] == "big")
    assert big["nbytes"] >= 24 * 2**20 and big["landed"] is True
    text = cli(pk_home, "show", sid[:5]).stdout  # a unique prefix
    assert f"Session:       old.ipynb  (id {sid})" in text
    assert "Identified by: jupyter_server: JPY_SESSION_NAME, confirmed by the kernel's connection file" in text
    assert "Kernel:        not running" in text
    assert "Cells:         6  (1 error, 5 ok)" in text
    assert "Last restore:  none" in text
    assert any(
        line.split()[:3] == ["big", "stored", "25.2"] for line in text.splitlines()
    )

    # history: the last N cells, what they changed, what was stored and what is recomputed.
    cells = cli_json(pk_home, "history", sid, "-n", "3")["cells"]
    assert [c["label"] for c in cells] == ["[4]", "[5]", "[6]"]
    assert (cells[0]["writes"], cells[0]["stored"], cells[0]["recompute"]) == (
        ["gen"],
        [],
        ["gen"],
    )
    assert (cells[1]["status"], cells[1]["error"], cells[1]["stored"]) == (
        "error",
        "ValueError: boom",
        ["y"],
    )
    assert (cells[2]["deletes"], cells[2]["writes"]) == (["other"], [])
    assert all(c["duration"] is not None and c["started_at"] for c in cells)
    text = cli(pk_home, "history", sid).stdout
    assert text.splitlines()[0].split() == [
        "CELL",
        "STARTED",
        "TOOK",
        "STATUS",
        "CHANGED",
        "STORED",
        "RECOMPUTE",
    ]
    assert (
        "big (25.2 MB)" in text
        and "del other" in text
        and "error (ValueError: boom)" in text
    )

    # gc: a planted unreferenced blob and a killed write's temporary file go; the referenced blob stays.
    blobs = store_path / "blobs"
    referenced = sorted(os.listdir(blobs))  # the array's pieces
    assert len(referenced) == 3
    (blobs / ("ab" * 16)).write_bytes(b"x" * 5000)
    (blobs / f".{'cd' * 16}.999.tmp").write_bytes(b"y" * 100)
    assert cli_json(pk_home, "gc", "--dry-run")["bytes"] == 5100
    assert len(os.listdir(blobs)) == 5
    result = cli_json(pk_home, "gc", sid)
    assert result["bytes"] == 5100 and result["skipped"] == []
    assert sorted(os.listdir(blobs)) == referenced
    store = Store(store_path, sync_interval=0)
    try:
        assert store.check() == []
    finally:
        store.close()
    assert "Freed 0 B in 1 session(s)." in cli(pk_home, "gc").stdout

    # The notebook is renamed and opened again: its kernel starts a fresh session under the new path.
    new = tmp_path / "work" / "renamed" / "new.ipynb"
    fresh = kernel(env=notebook_env(session_env, new))
    assert fresh.evaluate("'big' in dir()") == "False"
    new_sid = session_id_for("notebook", str(new))
    refused = cli(pk_home, "attach", sid, str(new))
    assert (
        refused.returncode == 1
        and f"session {new_sid} already exists" in refused.stderr
    )
    refused = cli(pk_home, "attach", sid, str(new), "--force")
    assert (
        refused.returncode == 1
        and f"in use by kernel process {fresh.pid}" in refused.stderr
    )
    fresh.shutdown()
    moved = cli_json(pk_home, "attach", sid, str(new), "--force")
    assert (moved["previous_id"], moved["session_id"], moved["replaced"]) == (
        sid,
        new_sid,
        True,
    )
    assert sessions_in(pk_home) == [new_sid]
    facts = cli_json(pk_home, "show", new_sid)
    assert (facts["session_name"], facts["notebook_path"], facts["cells"]) == (
        "new.ipynb",
        str(new),
        6,
    )

    # The kernel on the new path restores the session, large blob (kept by gc) included.
    k2 = kernel(env=notebook_env(session_env, new))
    assert_restored(k2)
    assert "Restored session 'new.ipynb'" in k2.execute("pass").said
    k2.shutdown()
    assert "Last restore:  20" in cli(pk_home, "show", new_sid).stdout
    assert cli_json(pk_home, "show", new_sid)["last_restore"]["loaded"] >= 3

    # rm on a stopped session: gone, and the listing says so.
    removed = cli_json(pk_home, "rm", new_sid, "--yes")
    assert removed["session_id"] == new_sid and removed["bytes"] > 24 * 2**20
    assert sessions_in(pk_home) == []
    assert cli(pk_home, "sessions").stdout.startswith("No sessions in ")


@slow
def test_export_then_import_under_a_new_name_restores_and_damage_is_refused(
    kernel, pk_home: Path, tmp_path: Path
) -> None:
    k = kernel("source")
    fill(k)
    k.shutdown()
    archive = tmp_path / "source.tar"
    exported = cli_json(pk_home, "export", "source", str(archive))
    assert (
        exported["session_id"] == "source"
        and exported["cells"] == 6
        and exported["files"] == 4  # data.mdb and the 24 MiB array's three pieces of 8 MiB
    )
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
        blob = next(m for m in tar.getmembers() if m.name.startswith("blobs/"))
    assert names[0] == "data.mdb" and names[-1] == "manifest.json" and len(names) == 5
    assert (
        manifest["format_version"] == FORMAT_VERSION
        and manifest["session"]["session_name"] == "source"
    )
    assert blob.size == 2**23 and manifest["files"][blob.name] == {
        "size": blob.size,
        "xxh3_128": blob.name.removeprefix("blobs/"),
    }

    # One flipped byte in a blob: refused, and nothing is left under sessions/.
    damaged = tmp_path / "damaged.tar"
    data = bytearray(archive.read_bytes())
    data[blob.offset_data + 1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    refused = cli(pk_home, "import", str(damaged), "--as", "damaged")
    assert refused.returncode == 1
    assert (
        f"{blob.name} does not match the manifest" in refused.stderr
        and "nothing imported" in refused.stderr
    )
    assert sessions_in(pk_home) == ["source"]

    # The same id again is refused without --force.
    refused = cli(pk_home, "import", str(archive))
    assert refused.returncode == 1 and "session source already exists" in refused.stderr

    # Under a new name (gzip this time): a kernel on it restores everything.
    packed = tmp_path / "source.tar.gz"
    assert (
        cli_json(pk_home, "export", "source", str(packed))["archive_bytes"]
        < exported["archive_bytes"]
    )
    imported = cli_json(pk_home, "import", str(packed), "--as", "copy")
    assert (imported["session_id"], imported["session_source"], imported["cells"]) == (
        "copy",
        "explicit",
        6,
    )
    assert sessions_in(pk_home) == ["copy", "source"]
    copy = kernel("copy")
    assert_restored(copy)
    # --force never replaces a session a live kernel holds.
    refused = cli(pk_home, "import", str(archive), "--as", "copy", "--force")
    assert (
        refused.returncode == 1
        and f"in use by kernel process {copy.pid}" in refused.stderr
    )
    copy.shutdown()
    text = cli(pk_home, "import", str(archive), "--as", "copy", "--force").stdout
    assert (
        "Imported session copy (6 cells)" in text
        and "replaced the session there" in text
    )
    assert sessions_in(pk_home) == ["copy", "source"]

    # An explicit session given to a notebook: its id becomes the notebook's, its meta says so.
    notebook = tmp_path / "nb" / "copy.ipynb"
    moved = cli_json(pk_home, "attach", "copy", str(notebook))
    new_sid = session_id_for("notebook", str(notebook))
    assert (moved["moved"], moved["replaced"], moved["session_id"]) == (
        True,
        False,
        new_sid,
    )
    assert sessions_in(pk_home) == [new_sid, "source"]
    facts = cli_json(pk_home, "show", str(notebook))
    assert (facts["session_source"], facts["notebook_path"], facts["cells"]) == (
        "notebook",
        str(notebook),
        6,
    )
    again = cli(pk_home, "attach", new_sid, str(notebook))
    assert again.returncode == 0 and "nothing to do" in again.stdout


def write_archive(
    path: Path, members: dict[str, bytes], links: dict[str, str] | None = None
) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)


@pytest.mark.parametrize(
    "members, links",
    [
        ({"data.mdb": b"x", "../escaped": b"evil", "manifest.json": b"{}"}, None),
        ({"data.mdb": b"x", "blobs/../../escaped": b"evil"}, None),
        ({"/tmp/escaped-absolute": b"evil"}, None),
        ({"data.mdb": b"x"}, {"blobs/" + "ab" * 16: "../../../escaped"}),
        ({"data.mdb\n": b"x", "manifest.json": b"{}"}, None),
    ],
    ids=["dot-dot", "nested-dot-dot", "absolute", "symlink", "newline"],
)
def test_an_archive_member_outside_the_layout_is_refused(
    members, links, pk_home: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "evil.tar"
    write_archive(archive, members, links)
    refused = cli(pk_home, "import", str(archive), "--as", "evil", cwd=tmp_path)
    assert refused.returncode == 1
    assert (
        "unexpected member" in refused.stderr and "nothing imported" in refused.stderr
    )
    assert sessions_in(pk_home) == []
    assert not (pk_home / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert not Path("/tmp/escaped-absolute").exists()


def test_usage_errors_exit_2_and_unknown_or_ambiguous_ids_exit_1(
    pk_home: Path, tmp_path: Path
) -> None:
    assert cli(pk_home, "sessions").stdout.startswith("No sessions in ")
    assert cli_json(pk_home, "sessions") == {"home": str(pk_home), "sessions": []}
    for name in ("alpha-one", "alpha-two"):
        store = Store(pk_home / "sessions" / name, sync_interval=0)
        report = {
            "session_name": name,
            "loaded": 1,
            "loaded_bytes": 10,
            "seconds": 0.1,
            "finished_at": time.time(),
        }
        store.set_meta(
            session_name=name, session_source="explicit", last_restore=report
        )
        store.close()

    assert cli(pk_home).returncode == 2
    bad = cli(pk_home, "history", "alpha-one", "-n", "many")
    assert bad.returncode == 2 and "invalid int value" in bad.stderr
    assert cli(pk_home, "frobnicate").returncode == 2

    missing = cli(pk_home, "show", "nope")
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        "persistent-kernel: error: no session matches 'nope'"
    )
    ambiguous = cli(pk_home, "show", "alpha")
    assert ambiguous.returncode == 1
    assert (
        "'alpha' matches 2 sessions" in ambiguous.stderr
        and "alpha-one" in ambiguous.stderr
        and "alpha-two" in ambiguous.stderr
    )
    assert cli(pk_home, "export", "nope", str(tmp_path / "x.tar")).returncode == 1
    assert not (tmp_path / "x.tar").exists()

    # No terminal to confirm on and no --yes: nothing is removed.
    unconfirmed = cli(pk_home, "rm", "alpha-one")
    assert unconfirmed.returncode == 1 and "pass --yes" in unconfirmed.stderr
    assert (pk_home / "sessions" / "alpha-one").is_dir()

    # The command line does not need IPython, not even to word the last restore.
    probe = "import sys; from persistent_kernel import cli; cli.main(['show', 'alpha-one']); print('IPython' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=kernel_env(pk_home),
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # The summary's wording belongs to restore.py; that it is the restore's own line is ours.
    assert (
        "Last restore:" in done.stdout and "Restored session 'alpha-one'" in done.stdout
    )
    assert done.stdout.strip().endswith("False")


def test_the_lock_probe_trusts_the_lock_not_the_pid_file(tmp_path: Path) -> None:
    holder = "import sys, time; from persistent_kernel.lock import SessionLock; SessionLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"
    child = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "held"
        lock = SessionLock(tmp_path)
        assert lock.is_held() and live_pid(tmp_path) == (True, child.pid)
        assert lock.is_held()  # probing did not take the lock away
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert (
        SessionLock(tmp_path).holder() == child.pid
    )  # the dead kernel's pid is still written there
    assert live_pid(tmp_path) == (False, None)
    assert live_pid(tmp_path / "no-such-session") == (False, None)


def make_store(path: Path, **meta: Any) -> None:
    """A store as a kernel leaves it, without a kernel: its meta only."""
    store = Store(path, sync_interval=0)
    store.set_meta(**meta)
    store.close()


def test_attach_refuses_a_directory_without_a_store_and_keeps_the_session_there(
    pk_home: Path, tmp_path: Path
) -> None:
    notebook = tmp_path / "nb.ipynb"
    sid = session_id_for("notebook", str(notebook))
    make_store(pk_home / "sessions" / sid, session_name="nb.ipynb")
    (pk_home / "sessions" / "junk").mkdir()  # a kernel that died before its store
    refused = cli(pk_home, "attach", "junk", str(notebook), "--force")
    assert refused.returncode == 1
    assert refused.stderr.startswith("persistent-kernel: error: ")
    assert "holds no session store" in refused.stderr
    assert sessions_in(pk_home) == sorted(["junk", sid])
    assert cli_json(pk_home, "show", sid)["session_name"] == "nb.ipynb"


def test_a_failed_attach_puts_both_sessions_back(
    pk_home: Path, tmp_path: Path, monkeypatch
) -> None:
    root = pk_home / "sessions"
    notebook = tmp_path / "nb.ipynb"
    sid = session_id_for("notebook", str(notebook))
    make_store(root / "old", session_name="old")
    make_store(root / sid, session_name="in the way")

    def fail(self, **items):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Store, "set_meta", fail)
    with pytest.raises(CommandError) as refused:
        archive.attach(root / "old", str(notebook), force=True)
    assert "No space left on device" in str(refused.value)
    assert "the session it was to replace is back in place" in str(refused.value)
    monkeypatch.undo()
    assert sessions_in(pk_home) == sorted(["old", sid])
    for name, session_name in (("old", "old"), (sid, "in the way")):
        assert cli_json(pk_home, "show", name)["session_name"] == session_name


def test_a_damaged_store_is_listed_with_its_problem_and_show_says_why(
    pk_home: Path,
) -> None:
    make_store(pk_home / "sessions" / "fine", session_name="fine")
    damaged = pk_home / "sessions" / "damaged"
    damaged.mkdir(parents=True)
    (damaged / "data.mdb").write_bytes(os.urandom(64 * 1024))
    listed = cli(pk_home, "sessions", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)["sessions"]}
    assert rows["fine"]["problem"] is None and rows["fine"]["cells"] == 0
    assert "cannot open the store" in rows["damaged"]["problem"]
    table = cli(pk_home, "sessions")
    assert table.returncode == 0 and "? cannot open the store" in table.stdout
    for command in ("show", "history"):
        shown = cli(pk_home, command, "damaged")
        assert shown.returncode == 1 and shown.stdout == ""
        assert shown.stderr.startswith(
            "persistent-kernel: error: cannot open the store"
        )
        assert "Traceback" not in shown.stderr


def test_gc_removes_the_work_directories_interrupted_commands_left(
    pk_home: Path,
) -> None:
    root = pk_home / "sessions"
    make_store(root / "kept", session_name="kept")
    sizes = {".removing-a-1234": 1000, ".replaced-b-5678": 500, ".import-old": 300}
    for name, size in {**sizes, ".import-new": 7, ".export-new": 9}.items():
        (root / name / "blobs").mkdir(parents=True)
        (root / name / "blobs" / "file").write_bytes(b"x" * size)
    two_days_ago = time.time() - 2 * 86400
    os.utime(root / ".import-old", (two_days_ago, two_days_ago))
    dry = cli_json(pk_home, "gc", "--dry-run")
    assert {left["name"]: left["bytes"] for left in dry["leftovers"]} == sizes
    assert dry["bytes"] == 1800 and len(sessions_in(pk_home)) == 6
    text = cli(pk_home, "gc").stdout
    assert ".removing-a-1234: freed 1.0 KB (left by an interrupted command)" in text
    assert "Freed 1.8 KB in 1 session(s)." in text
    assert sessions_in(pk_home) == [".export-new", ".import-new", "kept"]
    assert cli_json(pk_home, "gc")["leftovers"] == []


def test_import_as_strips_the_name_as_the_kernel_does(
    pk_home: Path, tmp_path: Path
) -> None:
    make_store(pk_home / "sessions" / "source", session_name="source")
    packed = tmp_path / "source.tar"
    assert cli(pk_home, "export", "source", str(packed)).returncode == 0
    imported = cli_json(pk_home, "import", str(packed), "--as", "  copy \n")
    assert (imported["session_id"], imported["session_name"]) == ("copy", "copy")
    assert sessions_in(pk_home) == ["copy", "source"]
    assert cli_json(pk_home, "show", " copy ")["session_id"] == "copy"
    blank = cli(pk_home, "import", str(packed), "--as", "  ")
    assert blank.returncode == 1 and "--as needs a session name" in blank.stderr
    assert sessions_in(pk_home) == ["copy", "source"]
