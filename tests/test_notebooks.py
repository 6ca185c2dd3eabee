"""The demo notebooks, run through nbclient on the persistent kernel with a kill -9 in the middle.

Each notebook in ``notebooks/`` tags one cell ``kill-kernel``, the point where the kernel dies:

- a markdown cell: the kernel is SIGKILLed after the cells before it have run;
- a code cell: it is the cell running when the kernel dies (in real life the allocation the
  OOM killer ends, here e.g. a sleep). The harness SIGKILLs the kernel as soon as the cell has
  shown output (or died on its own); the cell must not finish.

Every demo's kill-kernel cell is a code cell that SIGKILLs its own kernel a couple of seconds in, so
a user's Run All (here: plain nbclient, no harness) crashes there within seconds and the notebook
says what to do next; ``test_demo_notebook_run_top_to_bottom_crashes_within_seconds`` checks that.

A fresh kernel then starts on the same session, as after a death in a frontend (jupyter_server's
restarter calls ``restart_kernel(now=True)``; nbclient then needs a new client), and the rest of
the notebook runs on it. Every cell after the kill must succeed, the first code cell after it
shows the ``Restored session`` summary (a display in its first cell), and cells tagged ``check`` hold ``assert``
statements about the restored state: the notebook checks itself. Notebook-specific assertions
are in ``EXTRA_CHECKS``.

The executed notebook, outputs included, is written to the test's tmp directory as
``<name>.executed.ipynb`` (its path is printed, so pytest shows it on a failure).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode

from persistent_kernel import KERNEL_NAME

pytestmark = [pytest.mark.slow, pytest.mark.fidelity]

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
DEMOS = ["poker_table", "crash_recovery", "time_travel"]
KILL_TAG, CHECK_TAG = "kill-kernel", "check"
CELL_TIMEOUT = 60  # seconds per cell
KILL_DEADLINE = 30  # seconds a kill-kernel code cell may take to show output


@dataclass
class Run:
    """An executed notebook and where its kill was."""

    nb: NotebookNode
    path: Path  # the executed copy, with outputs
    kill_index: int
    before: list[NotebookNode]  # code cells run on the first kernel
    after: list[NotebookNode]  # code cells run on the second

    @property
    def summary(self) -> str:
        return notice(self.after[0])


def tags(cell: NotebookNode) -> list[str]:
    return cell.metadata.get("tags", [])


def code_cells(cells: list[NotebookNode]) -> list[NotebookNode]:
    return [c for c in cells if c.cell_type == "code" and c.source.strip()]


def stream(cell: NotebookNode, name: str) -> str:
    return "".join(
        o.text
        for o in cell.get("outputs", [])
        if o.output_type == "stream" and o.name == name
    )


def notice(cell: NotebookNode) -> str:
    """The restore summary in a cell's outputs: a display of its own, marked in its metadata."""
    return "".join(
        o.data.get("text/plain", "")
        for o in cell.get("outputs", [])
        if o.output_type == "display_data" and "notice" in o.get("metadata", {}).get("persistent_kernel", {})
    )


def result(cell: NotebookNode) -> str | None:
    results = [
        o.data.get("text/plain")
        for o in cell.get("outputs", [])
        if o.output_type == "execute_result"
    ]
    return results[-1] if results else None


def errors(cell: NotebookNode) -> list[str]:
    return [
        f"{o.ename}: {o.evalue}"
        for o in cell.get("outputs", [])
        if o.output_type == "error"
    ]


def kill(client: NotebookClient) -> None:
    """SIGKILL the kernel process, as the OOM killer does, and wait until it is gone."""
    process = client.km.provisioner.process
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def restart(client: NotebookClient) -> None:
    """A new kernel process on the same session and connection, and a new client for it."""
    run_sync(client.km.restart_kernel)(now=True)
    client.kc.stop_channels()
    client.kc = None
    client.start_new_kernel_client()


def run_killed_cell(client: NotebookClient, cell: NotebookNode, index: int) -> None:
    """Execute the cell and SIGKILL the kernel while it runs, as soon as the cell has shown output."""
    killed = threading.Event()

    def killer() -> None:
        process = client.km.provisioner.process
        deadline = time.monotonic() + KILL_DEADLINE
        while (
            not cell.get("outputs")
            and process.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        kill(client)
        killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        client.execute_cell(cell, index)
    except DeadKernelError:
        pass
    else:
        pytest.fail(
            f"cell {index} (tagged {KILL_TAG}) finished before the kernel was killed; it must run until killed"
        )
    finally:
        thread.join(timeout=KILL_DEADLINE + 30)
    assert killed.is_set()


def run_with_kill(name: str, env: dict[str, str], workdir: Path, outdir: Path) -> Run:
    source = NOTEBOOKS / f"{name}.ipynb"
    assert source.exists(), f"notebooks/{name}.ipynb is missing"
    nb = nbformat.read(source, as_version=4)
    assert nb.metadata.kernelspec.name == KERNEL_NAME
    stored_outputs = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not stored_outputs, (
        f"{source.name}: cells {stored_outputs} have stored outputs or execution counts; clear them"
    )
    kill_at = [i for i, c in enumerate(nb.cells) if KILL_TAG in tags(c)]
    assert len(kill_at) == 1, (
        f"{source.name}: exactly one cell must be tagged {KILL_TAG!r}, found {kill_at}"
    )
    kill_index = kill_at[0]
    checks = [c for c in nb.cells[kill_index + 1 :] if CHECK_TAG in tags(c)]
    assert checks, f"{source.name}: no cell after the kill is tagged {CHECK_TAG!r}"
    assert all(
        c.cell_type == "code" and re.search(r"^\s*assert\b", c.source, re.MULTILINE)
        for c in checks
    ), (
        f"{source.name}: cells tagged {CHECK_TAG!r} are code cells with assert statements"
    )

    path = outdir / f"{name}.executed.ipynb"
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        with client.setup_kernel(env=env):
            for index, cell in enumerate(nb.cells):
                if index == kill_index:
                    if cell.cell_type == "code":
                        run_killed_cell(client, cell, index)
                    else:
                        kill(client)
                    restart(client)
                else:
                    client.execute_cell(cell, index)
    finally:
        nbformat.write(nb, path)
        print(f"executed notebook: {path}")

    run = Run(
        nb,
        path,
        kill_index,
        code_cells(nb.cells[:kill_index]),
        code_cells(nb.cells[kill_index + 1 :]),
    )
    for cell in run.after:
        assert not errors(cell), (
            f"{path}: a cell after the kill failed: {errors(cell)}\n{cell.source}"
        )
    assert re.search(
        r"^Restored session '[^']+': loaded \d+ variables? \(",
        run.summary,
        re.MULTILINE,
    ), run.summary
    return run


def check_poker_table(run: Run) -> None:
    hands_and_board = lambda text: [line.split("|")[0] for line in text.splitlines()]
    table_before, table_after = run.before[-1], run.after[0]
    assert "board:" in stream(table_before, "stdout")
    # The same hands and board on the new kernel; the chips as they were (ada bet 10).
    assert hands_and_board(stream(table_after, "stdout")) == hands_and_board(
        stream(table_before, "stdout")
    )
    assert "'ada': 90" in stream(table_after, "stdout")
    # bet's pot, kept in its default argument, came back and grew by 15.
    assert result(table_after) == "75"  # 10 + 25 + 25 + 15
    # Everything was loaded from the store: no cell was replayed (the one that killed the kernel is named).
    assert "Restored session 'poker_table'" in run.summary
    assert not re.search(r"Recomputed|Could not rebuild|replayed \d+ cell", run.summary), run.summary


def check_crash_recovery(run: Run) -> None:
    killed = run.nb.cells[run.kill_index]
    assert (
        f"Cell [{killed.execution_count}] was running when the kernel died and was not replayed"
        in run.summary
    )
    # Everything was loaded from the store: nothing recomputed, lost or replayed.
    assert not re.search(r"Recomputed|Could not rebuild|replayed \d+ cell", run.summary)
    printed = "".join(stream(c, "stdout") for c in run.before + run.after)
    before = re.search(r"fingerprint before the kill: (\w+)", printed)
    after = re.search(r"fingerprint after the kill: +(\w+)", printed)
    assert before and after and before.group(1) == after.group(1), printed


def check_time_travel(run: Run) -> None:
    printed = [stream(c, "stdout") for c in run.before]
    good = next(text for text in printed if "(cell [" in text).split(",")[0]  # "slope 3.03"
    # After the checkout and after the kill alike: the good fit, not the mistake made after it.
    assert stream(run.before[-1], "stdout").startswith(good)
    assert stream(run.after[0], "stdout").startswith(good)
    history = next(c for c in run.before if c.source.startswith("%persist history"))
    shown = "".join(o.get("data", {}).get("text/html", "") for o in history.outputs)
    assert "<table" in shown and "np.clip" in shown  # the HTML table JupyterLab renders


EXTRA_CHECKS: dict[str, Callable[[Run], None]] = {
    "poker_table": check_poker_table,
    "crash_recovery": check_crash_recovery,
    "time_travel": check_time_travel,
}


@pytest.mark.parametrize("name", DEMOS)
def test_demo_notebook_survives_a_kill(name: str, session_env, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    run = run_with_kill(name, session_env(name), workdir, tmp_path)
    EXTRA_CHECKS[name](run)


CRASH_WITHIN = 20  # seconds from the start of the kill-kernel cell to nbclient seeing the kernel dead


@pytest.mark.parametrize("name", DEMOS)
def test_demo_notebook_run_top_to_bottom_crashes_within_seconds(name: str, session_env, tmp_path: Path) -> None:
    """As a user runs it (Run All; here plain nbclient, no harness): the kill-kernel cell ends its own
    kernel within seconds, nothing after it runs, and the rest runs on the kernel Jupyter starts next."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    kill_index = next(i for i, c in enumerate(nb.cells) if KILL_TAG in tags(c))
    assert nb.cells[kill_index].cell_type == "code", f"{name}: the crash must be a cell that runs, not a note"
    started: dict[int, float] = {}
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(workdir)}},
        on_cell_execute=lambda cell, cell_index: started.__setitem__(cell_index, time.monotonic()),
    )
    with pytest.raises(DeadKernelError):
        client.execute(env=session_env(name))
    died_after = time.monotonic() - started[kill_index]
    print(f"{name}: the kernel died {died_after:.1f} s into the kill-kernel cell")
    assert max(started) == kill_index, "cells after the crash ran on the dead kernel"
    assert died_after < CRASH_WITHIN, f"the crash took {died_after:.0f} s"
    # What the notebook tells the user to do next: run the cells below on the new kernel.
    with client.setup_kernel(env=session_env(name)):
        for index in range(kill_index + 1, len(nb.cells)):
            client.execute_cell(nb.cells[index], index)
    after = code_cells(nb.cells[kill_index + 1 :])
    assert all(not errors(c) for c in after), [errors(c) for c in after]
    assert "Restored session" in notice(after[0]) and "Restored session" not in stream(after[0], "stderr")
