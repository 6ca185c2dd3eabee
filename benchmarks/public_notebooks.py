#!/usr/bin/env python
"""Public notebooks with a SIGKILL at random cells (issue #13).

Real notebooks nobody here wrote (textbooks, tutorials: ``tests/public_notebooks/``,
sources in its ``SOURCES.md``) run offline, code cell by code cell, and every cell's
text output is compared with the stock ``python3`` kernel's:

- reference: every cell on stock ``python3``, twice. A cell whose output differs
  between the two (clock, unseeded random, timings) is nondeterministic: counted, and
  left out of every comparison.
- differential: every cell on ``persistent-python3`` without a crash; each cell must
  show what the stock kernel showed.
- kill: K seeded random points per notebook. Cells 1..k on ``persistent-python3``,
  SIGKILL, a new kernel on the same session (the restore), cells k+1..n; every later
  cell must show what the stock kernel showed.

What is compared: stdout, stderr (less the kernel's "cannot be stored" notices),
execute_result text/plain and error names, with ``0x`` addresses, the kernels' cell
file names, the run's working directory and timings normalised. Figures are not
compared (MPLBACKEND=Agg; a figure's text/plain is a display, not a result).

Every run has a fresh copy of the notebook's folder (its data files) as working
directory and its own session. Runs go ``--jobs`` at a time (default 2).

    python benchmarks/public_notebooks.py                         # all notebooks, 3 kills each
    python benchmarks/public_notebooks.py --notebooks '*classes*' --kills 5 -v
    python benchmarks/public_notebooks.py --json /tmp/public-notebooks.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import json
import random
import re
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

# After the path: fidelity.py lives beside this file (and puts the project root on the path).
import fidelity
from fidelity import STOCK, Cell, normalise, split_notices

from persistent_kernel import KERNEL_NAME

NOTEBOOKS = fidelity.ROOT / "tests" / "public_notebooks"
CELL_TIMEOUT = 180.0  # seconds for one cell; the slowest model fits take a few seconds on stock


# -- notebooks ----------------------------------------------------------------------------


@dataclass
class Notebook:
    name: str  # path under tests/public_notebooks, e.g. "handson-ml2/tools_numpy.ipynb"
    path: Path
    cells: list[str]  # the code cells that are not blank, in order (what nbclient would run)


def load_notebook(path: Path, root: Path = NOTEBOOKS) -> Notebook:
    data = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in data["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if source.strip():
            cells.append(source)
    return Notebook(path.relative_to(root).as_posix(), path, cells)


def find_notebooks(globs: str = "*", root: Path = NOTEBOOKS) -> list[Notebook]:
    """Notebooks whose path under ``root`` matches one of the comma-separated globs."""
    patterns = [g.strip() for g in globs.split(",") if g.strip()]
    paths = sorted(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    chosen = [p for p in paths if any(fnmatch.fnmatch(p.relative_to(root).as_posix(), g) for g in patterns)]
    return [load_notebook(p, root) for p in chosen]


def kill_points(notebook: Notebook, kills: int, seed: int) -> list[int]:
    """``kills`` distinct k in 1..n-1 (kill after cell k), the same for a notebook and seed on every machine."""
    rng = random.Random(seed * 1_000_003 + zlib.crc32(notebook.name.encode()))
    candidates = range(1, len(notebook.cells))
    return sorted(rng.sample(candidates, min(kills, len(candidates))))


# -- normalising what a cell showed ----------------------------------------------------------

# Timings a cell prints (%time, %timeit, a tutorial's own time.time() deltas are caught by
# the nondeterminism check instead): the numbers vary, the words around them do not.
_TIMINGS = [
    (re.compile(r"(CPU times|Wall time):[^\n]*"), r"\1: <time>"),
    (re.compile(r"[\d.]+ [nµum]?s ± [\d.]+ [nµum]?s per loop[^\n]*"), "<timeit>"),
    (re.compile(r"\d+ loops?, best of \d+: [\d.]+ [nµum]?s per loop"), "<timeit>"),
]
_TMP_PATH = re.compile(r"/tmp/[\w.\-/]+")


def normalise_text(text: str, cwd: str) -> str:
    text = normalise(text, cwd)
    for pattern, replacement in _TIMINGS:
        text = pattern.sub(replacement, text)
    return _TMP_PATH.sub("<tmp>", text)


def cell_view(cell: Cell | None, cwd: str) -> dict[str, Any]:
    """What is compared of one cell; a cell that never ran (the kernel hung or died before it) is its own view."""
    if cell is None:
        return {"not_run": True}
    stderr, _notices = split_notices(cell.stderr)
    return {
        "stdout": normalise_text(cell.stdout, cwd),
        "stderr": normalise_text(stderr, cwd),
        "result": [normalise_text(r, cwd) for r in cell.results],
        "ename": cell.ename,
        "timed_out": cell.timed_out,
    }


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, str]:
    """(what differs, a short diff) between two cell views that are not equal."""
    for key in ("not_run", "timed_out", "ename", "stdout", "stderr", "result"):
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        if isinstance(x, (str, list)) and isinstance(y, (str, list)):
            xs = x if isinstance(x, str) else "\n".join(x)
            ys = y if isinstance(y, str) else "\n".join(y)
            return key, fidelity._diff(xs, ys, lines=10)
        return key, f"stock: {x!r}  persistent: {y!r}"
    return "", ""


# -- runs ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One pass over a notebook's cells in one session (with at most one kill in it)."""

    kernel: str
    kill_after: int | None = None  # cells run before the SIGKILL; None: no kill
    cells: list[Cell | None] = field(default_factory=list)
    cwd: str = ""
    summary: str = ""  # what the kernel printed about the restore
    startup_output: list[str] = field(default_factory=list)  # IOPub output published while the new kernel started
    error: str = ""  # why the run stopped early, if it did
    seconds: float = 0.0


class NotebookRunner(fidelity.Runner):
    """fidelity.py's kernels (isolated home, key, session, code snapshot) on notebooks' folders."""

    def __init__(self, workdir: Path, *, cell_timeout: float = CELL_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(workdir, setup_timeout=cell_timeout, **kwargs)
        self.cell_timeout = cell_timeout

    def _env(self, session: str) -> dict[str, str]:
        env = super()._env(session)
        env.update(
            MPLBACKEND="Agg",
            # One BLAS thread: two runs share two cores, and sums come out in the same order every time.
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
        )
        return env

    def _fresh_cwd(self, notebook: Notebook, tag: str) -> Path:
        """A copy of the notebook's folder (its data files, scripts …), new for each run."""
        cwd = self.workdir / "runs" / tag
        shutil.copytree(notebook.path.parent, cwd, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
        return cwd

    def _next_tag(self, notebook: Notebook, label: str) -> str:
        with self._lock:
            self._counter += 1
            number = self._counter
        slug = re.sub(r"[^\w]+", "-", notebook.name.removesuffix(".ipynb")).strip("-")
        return f"{number:03d}-{slug}-{label}"

    def run_notebook(self, notebook: Notebook, kernel: str, label: str, kill_after: int | None = None) -> Run:
        tag = self._next_tag(notebook, label)
        cwd = self._fresh_cwd(notebook, tag)
        run = Run(kernel, kill_after, cwd=str(cwd))
        started = time.monotonic()
        driver = self._driver(kernel, tag, cwd)
        try:
            self._start(driver)
            for index, code in enumerate(notebook.cells):
                if index == kill_after:
                    self._kill_and_restore(driver, run)
                cell = self._exec(driver, code, self.cell_timeout)
                run.cells.append(cell)
                if cell.timed_out:
                    run.error = f"cell {index + 1} timed out or killed the kernel ({cell.ename or 'timeout'})"
                    break
        except Exception as e:  # noqa: BLE001  (a kernel that does not start: the cells not run compare as such)
            run.error = run.error or f"{type(e).__name__}: {str(e)[:300]}"
        finally:
            self._stop(driver)
        run.cells += [None] * (len(notebook.cells) - len(run.cells))
        run.seconds = time.monotonic() - started
        self.say(f"  {tag}: {run.seconds:.1f} s" + (f" ({run.error})" if run.error else ""))
        return run

    def _kill_and_restore(self, driver: Any, run: Run) -> None:
        driver.kill()
        self._start(driver)
        run.startup_output = [str(m.get("content", ""))[:200] for m in driver.startup_output]
        # A cell of its own after the restore, with no history, so execution counts stay the
        # stock kernel's (as fidelity.py does); the summary is read apart from any cell.
        first = self._exec(driver, "pass", self.cell_timeout, store_history=False)
        said = [driver.restore_summary(timeout=self.cell_timeout), first.stderr.strip(), first.stdout.strip()]
        run.summary = "\n".join(part for part in said if part)[:2000]


# -- judging ------------------------------------------------------------------------------


@dataclass
class Difference:
    cell: int  # 1-based, among the notebook's non-blank code cells
    key: str  # what differs first: stdout, stderr, result, ename, timed_out, not_run
    diff: str
    code: str  # the cell's first lines, to recognise it


@dataclass
class KillVerdict:
    kill_after: int
    later: int  # cells after the kill that are compared (deterministic ones)
    exact: int
    differences: list[Difference]
    summary: str
    notices: list[str]  # "cannot be stored" notices the persistent kernel printed in this run
    also_without_kill: list[int]  # differing cells that differ in the differential run too
    error: str = ""
    startup_output: list[str] = field(default_factory=list)

    @property
    def all_exact(self) -> bool:
        return self.later == self.exact and not self.error


@dataclass
class NotebookReport:
    name: str
    cells: int
    nondeterministic: list[int]
    reference_error: str
    stock_errors: dict[int, str]  # cells that raise on the stock kernel too (compared like any output): cell → error name
    differential: list[Difference]
    differential_error: str
    kills: list[KillVerdict]
    seconds: float

    def row(self) -> dict[str, Any]:
        return {
            "notebook": self.name,
            "cells": self.cells,
            "nondeterministic": len(self.nondeterministic),
            "differential_diffs": len(self.differential),
            "kills": len(self.kills),
            "kills_all_exact": sum(k.all_exact for k in self.kills),
            "later_exact": sum(k.exact for k in self.kills),
            "later_total": sum(k.later for k in self.kills),
        }


def _head(code: str, lines: int = 3) -> str:
    return "\n".join(code.strip().splitlines()[:lines])[:240]


def nondeterministic_cells(a: Run, b: Run) -> list[int]:
    """1-based cells whose output differs between two stock runs."""
    return [i + 1 for i, (x, y) in enumerate(zip(a.cells, b.cells)) if cell_view(x, a.cwd) != cell_view(y, b.cwd)]


def compare(notebook: Notebook, reference: Run, got: Run, cells: range, skip: set[int]) -> list[Difference]:
    """Cells (1-based numbers in ``cells``, less ``skip``) whose output differs from the reference."""
    found = []
    for number in cells:
        if number in skip:
            continue
        a = cell_view(reference.cells[number - 1], reference.cwd)
        b = cell_view(got.cells[number - 1], got.cwd)
        if a != b:
            key, diff = first_difference(a, b)
            found.append(Difference(number, key, diff, _head(notebook.cells[number - 1])))
    return found


def notices_of(run: Run) -> list[str]:
    return [n for c in run.cells if c is not None for n in split_notices(c.stderr)[1]]


def judge_kill(notebook: Notebook, reference: Run, got: Run, skip: set[int], differential: list[Difference]) -> KillVerdict:
    assert got.kill_after is not None
    later = range(got.kill_after + 1, len(notebook.cells) + 1)
    differences = compare(notebook, reference, got, later, skip)
    without_kill = {d.cell for d in differential}
    compared = sum(1 for n in later if n not in skip)
    return KillVerdict(
        kill_after=got.kill_after,
        later=compared,
        exact=compared - len(differences),
        differences=differences,
        summary=got.summary,
        notices=notices_of(got),
        also_without_kill=[d.cell for d in differences if d.cell in without_kill],
        error=got.error,
        startup_output=got.startup_output,
    )


def judge_notebook(notebook: Notebook, stock: tuple[Run, Run], differential: Run, kills: list[Run]) -> NotebookReport:
    reference, again = stock
    nondeterministic = nondeterministic_cells(reference, again)
    skip = set(nondeterministic)
    every_cell = range(1, len(notebook.cells) + 1)
    diff_differences = compare(notebook, reference, differential, every_cell, skip)
    return NotebookReport(
        name=notebook.name,
        cells=len(notebook.cells),
        nondeterministic=nondeterministic,
        reference_error=reference.error or again.error,
        stock_errors={i + 1: c.ename for i, c in enumerate(reference.cells) if c is not None and c.ename},
        differential=diff_differences,
        differential_error=differential.error,
        kills=[judge_kill(notebook, reference, k, skip, diff_differences) for k in kills],
        seconds=sum(r.seconds for r in (reference, again, differential, *kills)),
    )


# -- the whole thing ----------------------------------------------------------------------


STOCK_GAP = 1.5  # seconds between the two stock runs' starts, at least: a cell that prints the clock differs


@dataclass
class Task:
    notebook: Notebook
    label: str  # stock (both stock runs, one after the other), differential, kill-<k>
    kernel: str
    kill_after: int | None = None


def plan(notebook: Notebook, points: list[int]) -> list[Task]:
    tasks = [Task(notebook, "stock", STOCK), Task(notebook, "differential", KERNEL_NAME)]
    return tasks + [Task(notebook, f"kill-{k}", KERNEL_NAME, k) for k in points]


def perform(runner: NotebookRunner, task: Task) -> list[Run]:
    """The task's run, or for "stock" both reference runs: in sequence, so that their clocks differ."""
    if task.label != "stock":
        return [runner.run_notebook(task.notebook, task.kernel, task.label, task.kill_after)]
    first = runner.run_notebook(task.notebook, STOCK, "stock-1")
    if first.seconds < STOCK_GAP:
        time.sleep(STOCK_GAP - first.seconds)
    return [first, runner.run_notebook(task.notebook, STOCK, "stock-2")]


def run_notebooks(
    notebooks: list[Notebook],
    *,
    kills: int = 3,
    seed: int = 0,
    points: dict[str, list[int]] | None = None,
    jobs: int = 2,
    workdir: Path | None = None,
    cell_timeout: float = CELL_TIMEOUT,
    snapshot: bool = True,
    verbose: bool = False,
) -> list[NotebookReport]:
    """Every notebook's runs, ``jobs`` at a time; ``points`` (notebook name → kill points) overrides the seeded ones."""
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="public-notebooks-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    code = Path(fidelity.snapshot_code(workdir / "code")["path"]) if snapshot else None
    runner = NotebookRunner(workdir, cell_timeout=cell_timeout, verbose=verbose, code=code)
    try:
        chosen = {nb.name: (points or {}).get(nb.name) or kill_points(nb, kills, seed) for nb in notebooks}
        tasks = [t for nb in notebooks for t in plan(nb, chosen[nb.name])]
        # Longest notebooks first, so that the two workers finish together.
        tasks.sort(key=lambda t: -len(t.notebook.cells))
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            runs = list(pool.map(lambda t: perform(runner, t), tasks))
        by_task = {(t.notebook.name, t.label): r for t, r in zip(tasks, runs)}
        return [
            judge_notebook(
                nb,
                (by_task[nb.name, "stock"][0], by_task[nb.name, "stock"][1]),
                by_task[nb.name, "differential"][0],
                [by_task[nb.name, f"kill-{k}"][0] for k in chosen[nb.name]],
            )
            for nb in notebooks
        ]
    finally:
        runner.close()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


# -- output -------------------------------------------------------------------------------

COLUMNS = [
    ("notebook", "notebook"),
    ("cells", "cells"),
    ("nondet", "nondeterministic"),
    ("diff", "differential_diffs"),
    ("kills", "kills"),
    ("exact kills", "kills_all_exact"),
]


def render(reports: list[NotebookReport], diff_lines: int = 6) -> str:
    rows = [r.row() for r in reports]
    head = [label for label, _ in COLUMNS] + ["later cells exact"]
    body = [[str(row[key]) for _, key in COLUMNS] + [f"{row['later_exact']}/{row['later_total']}"] for row in rows]
    totals = ["total"] + [str(sum(row[key] for row in rows)) for _, key in COLUMNS[1:]]
    body.append(totals + [f"{sum(r['later_exact'] for r in rows)}/{sum(r['later_total'] for r in rows)}"])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*b) for b in body)]
    lines.append(f"\ntime in kernels: {sum(r.seconds for r in reports):.0f} s")
    for report in reports:
        lines += _details(report, diff_lines)
    return "\n".join(lines)


def _details(report: NotebookReport, diff_lines: int) -> list[str]:
    lines: list[str] = []
    if report.reference_error:
        lines.append(f"  stock reference: {report.reference_error}")
    if report.stock_errors:
        lines.append("  raise on stock too: " + ", ".join(f"cell {n} {e}" for n, e in report.stock_errors.items()))
    if report.differential or report.differential_error:
        lines.append(f"  differential: {len(report.differential)} cell(s) differ" + (f"; {report.differential_error}" if report.differential_error else ""))
        lines += _difference_lines(report.differential[:3], diff_lines)
    for kill in report.kills:
        if kill.all_exact:
            continue
        where = f"  kill after cell {kill.kill_after}: {kill.later - kill.exact}/{kill.later} later cells differ"
        if kill.also_without_kill:
            where += f" ({len(kill.also_without_kill)} differ without a kill too)"
        lines.append(where + (f"; {kill.error}" if kill.error else ""))
        if kill.summary:
            lines.append(f"    restore: {kill.summary.splitlines()[0][:300]}")
        lines += _difference_lines(kill.differences[:1], diff_lines)
    if lines:
        lines.insert(0, f"\n== {report.name}")
    return lines


def _difference_lines(differences: list[Difference], diff_lines: int) -> list[str]:
    lines = []
    for d in differences:
        lines.append(f"    cell {d.cell} ({d.key}): {d.code.splitlines()[0][:100] if d.code else ''}")
        lines += [f"        {x}" for x in d.diff.splitlines()[2 : 2 + diff_lines]]
    return lines


def to_json(reports: list[NotebookReport], settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta": {**fidelity._meta(), "settings": settings},
        "table": [r.row() for r in reports],
        "notebooks": {r.name: asdict(r) for r in reports},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--notebooks", default="*", help="comma-separated globs on paths under tests/public_notebooks (default: all)")
    p.add_argument("--kills", type=int, default=3, help="random kill points per notebook (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill points (default 0)")
    p.add_argument("--limit", type=int, help="at most N notebooks (the first ones of the selection)")
    p.add_argument("--jobs", type=int, default=2, help="runs at the same time (default 2)")
    p.add_argument("--cell-timeout", type=float, default=CELL_TIMEOUT)
    p.add_argument("--json", help="write every verdict and diff here")
    p.add_argument("--workdir", help="keep the runs' working directories, stores and kernel log here")
    p.add_argument("--diff-lines", type=int, default=6)
    p.add_argument("--no-snapshot", action="store_true", help="kernels import persistent_kernel/ from the working tree as it changes (default: a copy taken at the start)")
    p.add_argument("--list", action="store_true", help="list the selected notebooks, their cells and kill points, and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)

    notebooks = find_notebooks(args.notebooks)
    if args.limit:
        notebooks = notebooks[: args.limit]
    if not notebooks:
        p.error(f"no notebook under {NOTEBOOKS} matches {args.notebooks!r}")
    if args.list:
        for nb in notebooks:
            print(f"{nb.name}: {len(nb.cells)} cells, kill after {kill_points(nb, args.kills, args.seed)}")
        return 0
    print(f"{len(notebooks)} notebooks, {sum(len(nb.cells) for nb in notebooks)} code cells, {args.kills} kills each", file=sys.stderr)
    started = time.monotonic()
    reports = run_notebooks(
        notebooks,
        kills=args.kills,
        seed=args.seed,
        jobs=args.jobs,
        workdir=Path(args.workdir) if args.workdir else None,
        cell_timeout=args.cell_timeout,
        snapshot=not args.no_snapshot,
        verbose=args.verbose,
    )
    print(render(reports, args.diff_lines))
    print(f"wall clock: {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.json:
        settings = {"kills": args.kills, "seed": args.seed, "notebooks": args.notebooks, "jobs": args.jobs}
        Path(args.json).write_text(json.dumps(to_json(reports, settings), indent=1, default=str))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
