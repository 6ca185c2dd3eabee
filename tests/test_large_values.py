"""Large values: written to files in the background, loaded back by mapping, pruned by a budget.

Real kernels killed with SIGKILL while a large write is in flight; the store is
checked after each scenario and the restored array must equal one complete version.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from persistent_kernel.restore import state_as_of

from .kernels import check_store, crash_and_restart, open_store, run, start_and_restore

pytestmark = [pytest.mark.slow, pytest.mark.durability]

# 1 MiB: tests stay small; written in the background (not before the reply), so a kill can find a write in flight.
SMALL_THRESHOLD = ["--PersistentKernel.large_blob_bytes=1048576", "--PersistentKernel.land_before_reply_bytes=0"]


def wait_until_written(k) -> None:
    deadline = time.monotonic() + 60
    while k.evaluate("get_ipython().kernel.journal.writer.pending") != "0":
        assert time.monotonic() < deadline, "the background writer never finished"
        time.sleep(0.05)


def test_a_large_array_lands_in_a_file_and_comes_back_mapped(kernel, pk_home: Path) -> None:
    k = kernel(extra_arguments=SMALL_THRESHOLD)
    run(k, "import numpy as np\nbig = np.arange(2_000_000, dtype=np.float64)\nsmall = [1, 2]")
    run(k, "big[0] = -1.0; view = big")
    wait_until_written(k)
    summary = crash_and_restart(k)
    assert "replayed" not in summary, summary
    assert k.evaluate("(float(big[0]), float(big[-1]), view is big, small)") == "(-1.0, 1999999.0, True, [1, 2])"
    # Writable, and a change stays in memory (the mapping is private) and is stored as a new version.
    run(k, "big[1] = 7.0")
    wait_until_written(k)
    crash_and_restart(k)
    assert k.evaluate("(float(big[0]), float(big[1]))") == "(-1.0, 7.0)"
    k.shutdown()
    store = open_store(pk_home)
    try:
        assert len(list(store.files.digests())) >= 2  # each distinct version of the array is a file
        assert store.check() == []
    finally:
        store.close()


def test_sigkill_while_the_large_write_is_in_flight(kernel, pk_home: Path) -> None:
    # 8 MB at 4 MB/s: the write of cell 2 takes ~2 s, and the kill comes right after the reply.
    k = kernel(extra_arguments=[*SMALL_THRESHOLD, "--PersistentKernel.write_throttle=4"])
    run(k, "import numpy as np\nbig = np.zeros(1_000_000)\nn = 1")
    wait_until_written(k)
    run(k, "big += 1.0\nn += 1")
    assert k.evaluate("get_ipython().kernel.journal.writer.pending") == "1"  # the kill lands mid-write
    summary = crash_and_restart(k)
    # The version of cell 2 never landed: the array is rebuilt from cell 1's version by replaying cell 2,
    # and `n` (stored whole at cell 2) is not incremented twice.
    assert "still being written" in summary, summary
    assert k.evaluate("(float(big.min()), float(big.max()), n)") == "(1.0, 1.0, 2)"
    k.shutdown()
    check_store(pk_home)


def test_a_value_changed_while_it_is_written_is_never_taken_for_a_version(kernel, pk_home: Path) -> None:
    k = kernel(extra_arguments=[*SMALL_THRESHOLD, "--PersistentKernel.write_throttle=4"])
    run(k, "import numpy as np\nbig = np.zeros(1_000_000)")
    wait_until_written(k)
    run(k, "big[:] = 1.0")  # its write starts …
    run(k, "big[:] = 2.0")  # … and this changes the array under it: a torn write, dropped
    wait_until_written(k)
    assert k.evaluate("get_ipython().kernel.journal.writer.dropped") == "1"
    crash_and_restart(k)
    assert k.evaluate("(float(big.min()), float(big.max()))") == "(2.0, 2.0)"
    k.shutdown()
    store = open_store(pk_home)
    try:
        assert store.check() == []
        # No landed version holds a mix: every landed file hashes to its name.
        import xxhash

        for blob in store.files.digests():
            assert xxhash.xxh3_128_digest(store.files.path(blob).read_bytes()) == blob
        # Time travel to the dropped version says what happened to it.
        torn = [p for p in store.name_history("big") if store.version(p.version_key).dropped]
        assert len(torn) == 1
        _values, missing = state_as_of(store, torn[0].seq)
        assert "never reached the disk" in missing["big"] and "changed while it was being written" in missing["big"]
    finally:
        store.close()


def test_history_budget_prunes_old_versions_never_the_latest(kernel, pk_home: Path) -> None:
    # Each version is 8 MB; a budget of 20 MB keeps at most two past versions.
    k = kernel(extra_arguments=[*SMALL_THRESHOLD, "--PersistentKernel.history_budget=20000000"])
    run(k, "import numpy as np\nbig = np.zeros(1_000_000)")
    for i in range(1, 7):
        run(k, f"big[:] = {i}.0")
        wait_until_written(k)
    k.shutdown()
    store = open_store(pk_home)
    try:
        on_disk = sum(store.files.size(b) or 0 for b in store.files.digests())
        assert on_disk <= 20_000_000 + 8_000_000 + 4096
        assert store.check() == []
        history = store.name_history("big")
        latest = store.version(history[-1].version_key)
        assert latest.is_landed
        first = store.version(history[0].version_key)
        assert first.pruned
        values, missing = state_as_of(store, history[0].seq)
        assert "big" not in values and "pruned" in missing["big"]
        values, missing = state_as_of(store, history[-1].seq)
        assert float(values["big"][0]) == 6.0
    finally:
        store.close()
    k.start()
    assert k.evaluate("float(big.sum())") == str(6.0 * 1_000_000)


def test_a_large_dataframe_round_trips_through_files(kernel, pk_home: Path) -> None:
    k = kernel(extra_arguments=SMALL_THRESHOLD)
    run(k, "import numpy as np, pandas as pd\ndf = pd.DataFrame(np.arange(400_000.0).reshape(-1, 4), columns=list('abcd'))")
    run(k, "df.iloc[0, 0] = -5.0\ntotal = float(df['b'].sum())")
    wait_until_written(k)
    crash_and_restart(k)
    assert k.evaluate("(float(df.iloc[0, 0]), float(df['b'].sum()) == total, df.shape)") == "(-5.0, True, (100000, 4))"
    run(k, "df['e'] = df['a'] * 2")  # the restored (mapped) frame takes changes like any other
    wait_until_written(k)
    crash_and_restart(k)
    assert k.evaluate("float(df['e'].iloc[0])") == "-10.0"
    k.shutdown()
    check_store(pk_home)


def test_forget_drops_large_files_and_pending_writes(kernel, pk_home: Path) -> None:
    k = kernel(extra_arguments=[*SMALL_THRESHOLD, "--PersistentKernel.write_throttle=4"])
    run(k, "import numpy as np\nbig = np.ones(1_000_000)")
    run(k, "%persist forget")
    k.shutdown()
    store = open_store(pk_home)
    try:
        assert list(store.files.digests()) == []
        assert store.check() == []
    finally:
        store.close()


def test_a_replay_from_the_previous_version_reads_what_the_cell_read(kernel, pk_home: Path) -> None:
    # Cell 2 changes the array with `n`, then changes `n`; its array write is killed in flight.
    # The replay of cell 2 must use n == 1 (as cell 2 found it), not the stored n == 2.
    k = kernel(extra_arguments=[*SMALL_THRESHOLD, "--PersistentKernel.write_throttle=4"])
    run(k, "import numpy as np\nbig = np.zeros(1_000_000)\nn = 1")
    wait_until_written(k)
    run(k, "big += n\nn += 1")
    assert k.evaluate("get_ipython().kernel.journal.writer.pending") == "1"
    crash_and_restart(k)
    assert k.evaluate("(float(big.max()), n)") == "(1.0, 2)"
    k.shutdown()
    check_store(pk_home)


@pytest.mark.parametrize("threshold", [SMALL_THRESHOLD, []], ids=["files", "lmdb"])
def test_views_of_a_restored_array_stay_views_through_more_restores(kernel, pk_home: Path, threshold) -> None:
    k = kernel(extra_arguments=threshold)
    run(k, "import numpy as np\nbig = np.arange(1_000_000, dtype=np.float64)\nm = big.reshape(1000, 1000)")
    wait_until_written(k)
    crash_and_restart(k)
    run(k, "big *= 2")
    wait_until_written(k)
    summary = crash_and_restart(k)
    assert "(8.0 MB)" in summary, summary  # stored once, not once per variable
    run(k, "big[5] = 99.0")
    assert k.evaluate("(np.shares_memory(m, big), float(m[0, 5]))") == "(True, 99.0)"
    k.shutdown()
    check_store(pk_home)


def test_a_value_renamed_while_its_write_is_pending_is_rebuilt(kernel, pk_home: Path) -> None:
    # `x = big; del big` before either write lands: x has no version of its own to start
    # from, but its bytes are big's, and big has a landed version before the change.
    k = kernel(extra_arguments=[*SMALL_THRESHOLD, "--PersistentKernel.write_throttle=4"])
    run(k, "import numpy as np\nbig = np.zeros(1_000_000)")
    wait_until_written(k)
    run(k, "big += 1")
    run(k, "x = big\ndel big")
    crash_and_restart(k)
    assert k.evaluate("(float(x.min()), float(x.max()), 'big' in globals())") == "(1.0, 1.0, False)"
    k.shutdown()
    check_store(pk_home)


def test_a_restart_during_a_long_write_leaves_a_consistent_store(kernel, pk_home: Path) -> None:
    # 40 MB at 4 MB/s: the write needs ~10 s; the shutdown waits shutdown_drain_timeout (1 s here),
    # calls the write off, and the next kernel rebuilds the value from its previous version.
    k = kernel(extra_arguments=[*SMALL_THRESHOLD, "--PersistentKernel.write_throttle=4", "--PersistentKernel.shutdown_drain_timeout=1"])
    run(k, "import numpy as np\nbig = np.zeros(5_000_000)")
    k.shutdown()  # a clean shutdown with nothing throttled yet… lands or calls off; either way consistent
    check_store(pk_home)
    k.start()
    run(k, "big += 3.0")
    k.shutdown()
    check_store(pk_home)
    store = open_store(pk_home)
    try:
        assert not any(name.endswith(".tmp") for name in (p.name for p in store.files.directory.iterdir()))
    finally:
        store.close()
    k.start()
    assert k.evaluate("(float(big.min()), float(big.max()))") == "(3.0, 3.0)"


NON_REPRODUCIBLE = (
    "import os, time, numpy as np\n"
    "from_urandom = np.frombuffer(os.urandom(3 * 1024**2), dtype=np.uint8)\n"
    "from_fresh_rng = np.random.default_rng().random(400_000)\n"  # seeded from the OS, not the global state
    "from_clock = np.full(300_000, time.time_ns())\n"
    "from_file = np.fromfile('input.bin', dtype=np.uint8)\n"
    "sums = [int(a.sum()) for a in (from_urandom, from_fresh_rng * 1e6, from_clock % 1000, from_file)]"
)
PROBE = "print([int(a.sum()) for a in (from_urandom, from_fresh_rng * 1e6, from_clock % 1000, from_file)] == sums)"


@pytest.mark.slow
def test_large_values_no_replay_could_make_again_are_durable_before_the_reply(kernel, tmp_path: Path) -> None:
    """Random bytes, a generator seeded by the OS, the clock, a file changed afterwards: killed right after
    the reply, every value comes back exactly (they landed before the reply; none is replayed)."""
    (tmp_path / "input.bin").write_bytes(os.urandom(2 * 1024**2))
    k = kernel(extra_arguments=["--PersistentKernel.large_blob_bytes=1048576"])
    run(k, NON_REPRODUCIBLE)
    k.kill()  # at once: nothing is left to land
    (tmp_path / "input.bin").write_bytes(os.urandom(2 * 1024**2))
    summary = start_and_restore(k)
    assert "replayed" not in summary and "Not exact" not in summary, summary
    assert k.execute(PROBE).stdout == "True\n"


@pytest.mark.slow
def test_a_value_lost_in_its_landing_window_that_replay_cannot_make_again_is_named(kernel, tmp_path: Path) -> None:
    """Written in the background (land_before_reply_bytes=0) and killed mid-write: the replay draws other
    bytes, and the summary says so instead of passing them off as the session's."""
    (tmp_path / "input.bin").write_bytes(os.urandom(2 * 1024**2))
    k = kernel(extra_arguments=[*SMALL_THRESHOLD, "--PersistentKernel.write_throttle=4"])
    run(k, NON_REPRODUCIBLE)
    assert k.evaluate("get_ipython().kernel.journal.writer.pending") != "0"  # the kill lands mid-write
    k.kill()
    (tmp_path / "input.bin").write_bytes(os.urandom(2 * 1024**2))
    summary = start_and_restore(k)
    for name in ("from_urandom", "from_fresh_rng", "from_clock", "from_file"):
        assert name in summary.split("Not exact:")[1], summary
    assert k.execute(PROBE).stdout == "False\n"
