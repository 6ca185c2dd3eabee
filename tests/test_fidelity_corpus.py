"""The fidelity corpus in CI (issue #13): does everyday Python come back exactly after a crash?

A sample of every class of ``tests/fidelity/scenarios.py`` runs on the stock ``python3``
kernel (the reference) and on ``persistent-python3`` through ``benchmarks/fidelity.py``:

- differential: the persistent kernel without a crash must show exactly what the stock
  kernel shows, cell by cell (stdout, stderr, results, error names);
- kill: after a SIGKILL and a restore, every probe must print what the stock kernel
  printed, except the scenarios listed in ``tests/fidelity/known.py`` with a reason.
  A scenario that fails and is not listed fails the test; remove an entry once it passes.

The whole corpus in every mode: ``python benchmarks/fidelity.py`` (about 20 minutes on 2 cores).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from .fidelity.known import KNOWN_DIFFERENT, KNOWN_INEXACT, KNOWN_SILENT
from .fidelity.scenarios import CLASSES, SCENARIOS, by_name, problems, sizes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fidelity as runner

pytestmark = pytest.mark.fidelity  # the invariant these tests prove (tests/README.md)

PER_CLASS = 12  # scenarios of each class in the sample (spread over the class): 144 scenarios, ~2 min on 2 cores


def test_corpus_is_well_formed() -> None:
    assert len(SCENARIOS) >= 400
    assert all(sizes()[cls] > 0 for cls in CLASSES)
    assert problems() == []
    unknown = sorted(set(KNOWN_INEXACT) - set(by_name()))
    assert not unknown, f"known.py names scenarios the corpus no longer has: {unknown}"
    assert all(isinstance(why, str) and why for why in KNOWN_INEXACT.values())
    assert not sorted(set(KNOWN_DIFFERENT) - set(by_name())), "known.py names differential scenarios the corpus no longer has"
    assert KNOWN_SILENT <= set(KNOWN_INEXACT)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> runner.Report:
    chosen = runner.sample(SCENARIOS, PER_CLASS)
    return runner.run_corpus(chosen, ["differential", "kill"], batch=40, workdir=tmp_path_factory.mktemp("fidelity"))


def _show(failures: list[tuple[str, runner.Verdict]]) -> str:
    lines = []
    for name, v in failures:
        lines.append(f"{name}: {v.reason}" + (f"   [restore: {v.note}]" if v.note else ""))
        lines += [f"    {d}" for d in v.diff.splitlines()[2:10]]
        lines.append(f"    reproduce: python benchmarks/fidelity.py --names '{name}' --modes differential,kill")
    return "\n".join(lines)


@pytest.mark.slow
def test_the_sample_has_a_usable_reference(report: runner.Report) -> None:
    assert not report.broken, f"the stock kernel failed these scenarios (a bug in the corpus): {report.broken}"
    assert not report.skipped or all(by_name()[n].requires for n in report.skipped)


@pytest.mark.slow
def test_differential_shows_nothing_the_stock_kernel_would_not(report: runner.Report) -> None:
    failures = [(n, v) for items in report.failures("differential").values() for n, v in items]
    new = [(n, v) for n, v in failures if n not in KNOWN_DIFFERENT]
    assert not new, f"{len(new)} scenario(s) look different on persistent-python3 without any crash:\n" + _show(new)


@pytest.mark.slow
def test_kill_failures_are_all_known(report: runner.Report) -> None:
    failures = [(n, v) for items in report.failures("kill").values() for n, v in items]
    new = [(n, v) for n, v in failures if n not in KNOWN_INEXACT]
    fixed = sorted(n for n, v in report.verdicts["kill"].items() if v.passed and n in KNOWN_INEXACT)
    if fixed:
        warnings.warn(f"now exact after a SIGKILL, remove from tests/fidelity/known.py: {fixed}", stacklevel=1)
    assert not new, f"{len(new)} scenario(s) no longer come back exactly after a SIGKILL (not in KNOWN_INEXACT):\n" + _show(new)
    silent = [(n, v) for n, v in failures if n not in KNOWN_SILENT and not v.note]
    assert not silent, f"{len(silent)} scenario(s) come back inexact and the restore summary does not say so:\n" + _show(silent)
