"""Objects that belong to a library, in a real kernel: many ipywidgets are many groups, so a cell
that changes one widget records that widget only, and a restore after SIGKILL brings them all back,
live (a widget holds a comm to the frontend: it is rebuilt by its cells, never loaded as a copy).

The unit tests (``test_tracking.py``) prove the rule over a corpus of library classes; this
proves it where the shared objects are the kernel itself, comms and traitlets' handlers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .kernels import check_store, crash_and_restart, open_store, run

pytestmark = [pytest.mark.slow, pytest.mark.durability, pytest.mark.fidelity]

PAIRS = 30


def _names_in_versions_of(home: Path, cell: int) -> list[list[str]]:
    store = open_store(home)
    try:
        return [sorted(version.names) for version in store.versions_between(cell, cell).get(cell, [])]
    finally:
        store.close()


def test_a_cell_changing_one_of_many_widgets_stores_that_widget_alone(kernel, pk_home: Path) -> None:
    k = kernel()
    run(k, "import ipywidgets as widgets\nfrom IPython.display import display\nclicks = []")
    for i in range(PAIRS):
        run(k, f"s{i} = widgets.IntSlider(description='s{i}')\nb{i} = widgets.Button()\nb{i}.on_click(lambda b: clicks.append({i}))\ndisplay(s{i}, b{i})")
    run(k, "s7.value = 42")
    cell = int(k.evaluate("get_ipython().kernel.journal.next_seq")) - 1
    k.shutdown()
    assert all(names == ["s7"] for names in _names_in_versions_of(pk_home, cell))  # no other widget recorded again
    k = kernel()
    said = k.execute("pass").said
    assert "Recomputed" in said and "could not" not in said, said
    registered = "get_ipython().kernel.comm_manager.comms"
    assert k.evaluate(f"all(w.comm.comm_id in {registered} for w in (s0, b0, s7, s29))") == "True"  # live, not copies
    expected = f"(42, 0, {PAIRS}, {PAIRS})"
    probe = "(s7.value, s8.value, len([n for n in dir() if n[0] == 's' and n[1:].isdigit()]), len([n for n in dir() if n[0] == 'b' and n[1:].isdigit()]))"
    assert k.evaluate(probe) == expected
    run(k, "s8.value = 5")
    crash_and_restart(k)
    assert k.evaluate("(s7.value, s8.value)") == "(42, 5)"
    check_store(pk_home)
