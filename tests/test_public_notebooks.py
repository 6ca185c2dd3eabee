"""Public notebooks with a SIGKILL in the middle, in CI (issue #13).

A few notebooks of ``tests/public_notebooks/`` (real tutorials nobody here wrote; see its
``SOURCES.md``) run through ``benchmarks/public_notebooks.py``: twice on the stock
``python3`` kernel (the reference; cells that differ between the two are left out), once
on ``persistent-python3`` without a crash, and with a SIGKILL after chosen cells and a
restore on the same session. Every later cell must print what the stock kernel printed,
except the differences listed in ``KNOWN_DIFFERENCES`` with a reason. A difference that is
not listed fails the test; remove an entry once it no longer shows.

Only notebooks that need nothing beyond the ``[test]`` extra (numpy, pandas, matplotlib).
The whole set with random kills: ``python benchmarks/public_notebooks.py`` (about 11 minutes
on 2 cores; it also needs scipy and scikit-learn).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import public_notebooks as runner

pytestmark = pytest.mark.fidelity  # the invariant these tests prove (tests/README.md)

# Notebook → the cells after which the kernel is SIGKILLed: fixed (not drawn) so that a
# failure names the same cell on every machine; each one lands where a restore has work.
KILL_POINTS = {
    # A class defined in the notebook (Point, instances of it), then a module the notebook
    # writes with %%file and imports (restored from the working directory).
    "scientific-python-lectures/Lecture-1-Introduction-to-Python-Programming.ipynb": [119, 122],
    # unittest.mock objects, which cannot be pickled: the restore replays the cell that made them.
    "learn-python3/intermediate/01_std_lib2.ipynb": [8],
    # DataFrames, a MultiIndex, dates, and files the notebook wrote (my_df.csv …).
    "handson-ml2/tools_pandas.ipynb": [104],
}

# (notebook, mode, cell) → why that cell prints differently on persistent-python3.
# mode: "differential" (no crash) or "kill-<k>" (after a SIGKILL after cell k).
KNOWN_DIFFERENCES: dict[tuple[str, str, int], str] = {}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, runner.NotebookReport]:
    chosen = [nb for nb in runner.find_notebooks() if nb.name in KILL_POINTS]
    assert len(chosen) == len(KILL_POINTS), "a notebook of KILL_POINTS is missing from tests/public_notebooks"
    done = runner.run_notebooks(chosen, points=KILL_POINTS, jobs=2, workdir=tmp_path_factory.mktemp("public-notebooks"), snapshot=False)
    return {r.name: r for r in done}


def _differences(reports: dict[str, runner.NotebookReport]) -> dict[tuple[str, str, int], runner.Difference]:
    found = {}
    for name, report in reports.items():
        for d in report.differential:
            found[name, "differential", d.cell] = d
        for kill in report.kills:
            for d in kill.differences:
                found[name, f"kill-{kill.kill_after}", d.cell] = d
    return found


def _show(items: dict[tuple[str, str, int], runner.Difference]) -> str:
    lines = []
    for (name, mode, cell), d in items.items():
        lines.append(f"{name} {mode} cell {cell} ({d.key}): {d.code.splitlines()[0] if d.code else ''}")
        lines += [f"    {x}" for x in d.diff.splitlines()[2:10]]
    lines.append("reproduce: python benchmarks/public_notebooks.py --notebooks '<notebook>' -v")
    return "\n".join(lines)


def test_the_notebooks_are_vendored_with_their_sources() -> None:
    notebooks = runner.find_notebooks()
    assert len(notebooks) >= 10
    sources = (runner.NOTEBOOKS / "SOURCES.md").read_text()
    assert all(f"`{nb.name}`" in sources for nb in notebooks), "every notebook needs a line in SOURCES.md"
    assert all(name in {nb.name for nb in notebooks} for name, _mode, _cell in KNOWN_DIFFERENCES)
    assert all(isinstance(why, str) and why for why in KNOWN_DIFFERENCES.values())


def test_kill_points_are_drawn_reproducibly() -> None:
    notebook = runner.find_notebooks("learn-python3/beginner/11_classes.ipynb")[0]
    points = runner.kill_points(notebook, 3, seed=7)
    assert points == runner.kill_points(notebook, 3, seed=7)
    assert len(set(points)) == 3 and all(1 <= k < len(notebook.cells) for k in points)


@pytest.mark.slow
def test_the_stock_reference_runs_every_cell(reports: dict[str, runner.NotebookReport]) -> None:
    broken = {name: r.reference_error for name, r in reports.items() if r.reference_error}
    assert not broken, f"the stock kernel did not get through these notebooks: {broken}"
    for name, report in reports.items():
        assert len(report.nondeterministic) < report.cells // 4, f"{name}: most cells differ between two stock runs"


@pytest.mark.slow
def test_every_difference_is_known(reports: dict[str, runner.NotebookReport]) -> None:
    found = _differences(reports)
    new = {key: d for key, d in found.items() if key not in KNOWN_DIFFERENCES}
    gone = sorted(key for key in KNOWN_DIFFERENCES if key not in found)
    if gone:
        warnings.warn(f"no longer different, remove from KNOWN_DIFFERENCES: {gone}", stacklevel=1)
    assert not new, f"{len(new)} cell(s) print differently on persistent-python3:\n" + _show(new)


@pytest.mark.slow
def test_every_kill_ran_and_restored(reports: dict[str, runner.NotebookReport]) -> None:
    for name, report in reports.items():
        assert [k.kill_after for k in report.kills] == KILL_POINTS[name]
        for kill in report.kills:
            assert not kill.error, f"{name} kill after cell {kill.kill_after}: {kill.error}"
            assert "Restored session" in kill.summary, f"{name} kill after cell {kill.kill_after}: no restore summary ({kill.summary!r})"
            assert kill.later > 0
