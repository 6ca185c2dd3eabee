"""What replayed cells start must not change the restored namespace (issue #13, classes 5 and 6)."""

from __future__ import annotations

import time

import pytest

from .kernels import crash_and_restart, run

pytestmark = pytest.mark.fidelity  # the invariant these tests prove (tests/README.md)


@pytest.mark.slow
def test_threads_a_replayed_cell_starts_do_not_overwrite_the_restore(kernel) -> None:
    driver = kernel()
    run(
        driver,
        """
        import threading, time
        def late_writer(delay, value):
            time.sleep(delay)
            global flag, log
            flag = value
            log.append(value)
        log = []
        workers = [threading.Thread(target=late_writer, args=(0.2 * i, f'thread {i}'), name=f'w{i}') for i in range(1, 4)]
        for w in workers:
            w.start()
        """,
    )
    for w in range(3):
        run(driver, "workers[%d].join()" % w)
    run(driver, "flag = 'cell'; log.append('cell')")
    summary = crash_and_restart(driver)
    assert "Recomputed" in summary and "workers" in summary
    time.sleep(1.0)  # longer than any replayed thread runs
    assert driver.execute("print(flag, log, [w.is_alive() for w in workers])").stdout == (
        "cell ['thread 1', 'thread 2', 'thread 3', 'cell'] [False, False, False]\n"
    )


@pytest.mark.slow
def test_a_thread_still_running_after_the_wait_is_named(kernel) -> None:
    driver = kernel()
    run(driver, "import threading\nstop = threading.Event()\nforever = threading.Thread(target=stop.wait, name='forever')\nforever.start()")
    summary = crash_and_restart(driver)
    assert "thread forever (started again by a replayed cell and still running" in summary
    run(driver, "stop.set(); forever.join(5)")


# Stored containers, unstorable objects made over them in a later cell, then the container changed.
_BASES = {
    "list": ("[1, 2, 3]", "{v}.append(4)"),
    "dict": ("{'a': 1, 'b': 2}", "{v}['a'] = 10"),
    "bytearray": ("bytearray(b'hello')", "{v}[0] = ord('j')"),
    "items": ("{'a': Item(1), 'b': Item(2)}", "{v}['a'].n = 100"),
    "instance": ("Item([1, 2])", "{v}.n.append(3)"),
}
_DERIVED = {
    "generator": ("(x for x in {v})", "list({d})"),
    "iterator": ("iter({v})", "list({d})"),
    "enumerate": ("enumerate({v})", "list({d})"),
    "memoryview": ("memoryview({v})", "bytes({d})"),
    "weakvalues": ("weakref.WeakValueDictionary({v})", "sorted((k, v.n) for k, v in {d}.items())"),
    "keys_view": ("{v}.keys()", "sorted({d})"),
    "bound_method": ("{v}.append", "{d}.__self__ is {v}"),
    "attribute_iter": ("iter({v}.n)", "list({d})"),
}
_FITS = {
    "list": {"generator", "iterator", "enumerate", "bound_method"},
    "dict": {"generator", "iterator", "keys_view"},
    "bytearray": {"memoryview", "generator", "iterator"},
    "items": {"weakvalues", "keys_view", "iterator"},
    "instance": {"attribute_iter"},
}


def _sharing_scenarios() -> list[tuple[list[str], str]]:
    scenarios = []
    for base, (make, change) in _BASES.items():
        for derived in sorted(_FITS[base]):
            build, show = _DERIVED[derived]
            v, d = f"{base}_{derived}_base", f"{base}_{derived}_made"
            cells = [f"{v} = {make}", f"{d} = {build.format(v=v)}", change.format(v=v)]
            scenarios.append((cells, f"print({show.format(v=v, d=d)}, shown({v}))"))
    return scenarios


@pytest.mark.slow
def test_objects_rebuilt_by_replay_share_the_restored_objects(kernel, tmp_path) -> None:
    """Over every container and what is built on it: the same cells on stock ipykernel (no crash) and on
    ours with a SIGKILL before the probes print the same, so the rebuilt object is built on the restored
    object itself and sees the changes made to it after it was built."""
    setup = [
        "import weakref\nclass Item:\n    def __init__(self, n): self.n = n\n"
        "def shown(v):\n    return {k: getattr(x, 'n', x) for k, x in v.items()} if isinstance(v, dict) else getattr(v, 'n', v)"
    ]
    scenarios = _sharing_scenarios()
    cells = setup + [cell for scenario_cells, _probe in scenarios for cell in scenario_cells]
    probes = [probe for _cells, probe in scenarios]

    stock = kernel(kernel_name="python3")
    for cell in cells:
        run(stock, cell)
    expected = [stock.execute(probe) for probe in probes]
    assert all(out.status == "ok" and out.stdout for out in expected), [out.evalue for out in expected]
    expected = [out.stdout for out in expected]
    stock.shutdown()

    driver = kernel()
    for cell in cells:
        run(driver, cell)
    run(
        driver,
        f"import numpy as np\nmapped = np.memmap({str(tmp_path / 'm.bin')!r}, dtype='int64', mode='w+', shape=(8,))\n"
        "mapped[:] = np.arange(8); mapped.flush()",
    )
    summary = crash_and_restart(driver)
    assert "Not exact" not in summary, summary
    assert [driver.execute(probe).stdout for probe in probes] == expected
    # The memmap writes to its file again (never truncated, same shape and offset).
    out = driver.execute("mapped[0] = 42; mapped.flush(); print(type(mapped).__name__, mapped.mode, np.fromfile(mapped.filename, dtype='int64').tolist())")
    assert out.stdout == "memmap r+ [42, 1, 2, 3, 4, 5, 6, 7]\n"
