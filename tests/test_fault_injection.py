"""Crash consistency under fault injection: a short seeded run of benchmarks/fault_injection.py.

40 random cells (small values, aliasing, deletes, small arrays, one name holding a
17 MiB array so the background writer runs, generators, sqlite connections, locks),
8 SIGKILLs during cells, just after replies and when idle. After every kill the store
must pass its check() and the restored namespace must be the state after one completed
cell no earlier than the last one replied to. The full run is in docs/reliability.md.

The full run's first findings (docs/reliability.md, Findings) are fixed; seed 1 was
one of the seeds that hit them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.durability]

SEED = 1


def load_driver():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "fault_injection.py"
    spec = importlib.util.spec_from_file_location("fault_injection", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fault_injection", module)
    spec.loader.exec_module(module)
    return module


def test_program_is_reproducible():
    fi = load_driver()
    first, second = fi.make_program(SEED, 40, 17, 1), fi.make_program(SEED, 40, 17, 1)
    assert first.cells == second.cells and first.states == second.states
    assert fi.make_plan(SEED, first, 8) == fi.make_plan(SEED, second, 8)
    assert any(first.large)


@pytest.mark.parametrize("seed", range(1, 9))
def test_a_short_program_covers_every_kind_of_statement(seed):
    """However the weights fall, a 40-cell program deletes, advances a generator, makes a large
    array, an unstorable value and a chunked one (a set, a list of records or a dict)."""
    fi = load_driver()
    cells = "\n".join(fi.make_program(seed, 40, 17, 1).cells)
    for signs in [["del "], ["next(gen"], ["np.full("], ["sqlite3.connect", "threading.Lock", "for i in range(1000000))"], ["ids", "rec", "tab"]]:
        assert any(sign in cells for sign in signs), signs


def check_run(tmp_path: Path, large_vars: int, kernel_arguments: list[str] | None = None) -> None:
    fi = load_driver()
    result = fi.run(seed=SEED, cells=40, kills=8, large_mb=17, large_vars=large_vars, workdir=tmp_path, kernel_arguments=kernel_arguments)
    report = fi.table(result, "test")
    assert len(result.kills) == 8, report
    assert result.store_failures == [], report  # the store is never inconsistent, whatever else
    assert result.live_mismatches == [], report
    assert result.mismatches == [], report


def test_kills_restore_a_completed_cell(tmp_path: Path):
    check_run(tmp_path, large_vars=0)


def test_kills_restore_a_completed_cell_with_a_large_array(tmp_path: Path):
    check_run(tmp_path, large_vars=1)


def test_kills_restore_a_completed_cell_whose_commit_waited_in_the_outcome_slot(tmp_path: Path):
    # Each small cell's commit reaches LMDB only with the next cell's: every kill after a reply
    # finds the last one in the outcome slot alone.
    check_run(tmp_path, large_vars=0, kernel_arguments=["--PersistentKernel.settle_delay=600"])
