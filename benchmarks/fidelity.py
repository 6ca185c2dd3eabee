#!/usr/bin/env python
"""The fidelity corpus runner (issue #13): does everyday Python come back exactly after a crash?

Every scenario of ``tests/fidelity/scenarios.py`` (setup cells, then one probe cell
that prints a fingerprint of the state) runs on the stock ``python3`` kernel without
a crash: that is the reference. Then, per mode:

- ``differential``: all cells on ``persistent-python3``, no crash; every cell's stdout,
  stderr, execute_result text and error name must equal the stock kernel's (only
  ``0x…`` addresses, the kernels' temporary cell file names and the working directory
  are normalised). Shows that journaling and checkpointing change nothing a user sees
  (no user code run by a checkpoint: no extra ``print`` from ``__getstate__``, a
  metaclass …).
- ``kill``: setup on persistent-python3, SIGKILL, a new kernel on the same session,
  the probe; pass = probe stdout (and error name) equal to the reference's.
- ``restart``: the same with a clean shutdown instead of the kill.
- ``replay_all`` (yardstick): setup on a stock kernel, SIGKILL, a fresh stock kernel
  re-runs every setup cell (outputs discarded, execution counts kept), then the probe —
  the 40-line kernel that simply replays every cell.
- ``dill_session`` (yardstick): setup on a stock kernel, ``dill.dump_session``, SIGKILL,
  a fresh stock kernel ``dill.load_session``, then the probe. A dump that fails on one
  scenario's value would fail the whole notebook; here that scenario fails and its
  names are deleted so the others are still measured.

Scenarios run in batches (one kernel session runs many scenarios' setups, one crash,
then all probes), grouped by class; scenarios that change the same process-wide
setting never share a batch. A cell that hangs (probe: 10 s) fails its scenario and
the rest of the batch runs again from the start on fresh kernels.

    python benchmarks/fidelity.py                                 # everything, all modes
    python benchmarks/fidelity.py --classes functions,files --modes kill --limit 10
    python benchmarks/fidelity.py --names 'files.w.*' --modes differential,kill -v
    python benchmarks/fidelity.py --json /tmp/fidelity.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import difflib
import fnmatch
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from persistent_kernel import KERNEL_NAME
from persistent_kernel.authentication import KEY_ENV
from persistent_kernel.driver import KernelDriver
from tests.fidelity.scenarios import CLASSES, SCENARIOS, Scenario

STOCK = "python3"
MODES = ("differential", "kill", "restart", "replay_all", "dill_session")
EXTRA_MODES = ("determinism",)  # the corpus's own check: stock again, other batches, reversed order; must all pass
ON_STOCK = {"stock", "replay_all", "dill_session", "determinism"}  # runs that use the stock kernel


# -- what a run saw -----------------------------------------------------------------------


@dataclass
class Cell:
    status: str = ""
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    ename: str | None = None
    evalue: str | None = None
    timed_out: bool = False
    notice: str = ""  # the restore summary, a display of its own


@dataclass
class Outcome:
    """One scenario in one run: its setup cells, its probe, and what went wrong around them."""

    setup: list[Cell] = field(default_factory=list)
    probe: Cell | None = None
    error: str | None = None  # the run could not get to a probe result (timeout, restart failed, dump failed …)
    summary: str = ""  # the restore summary sentences that name this scenario (kill / restart)
    batch_summary: str = ""  # the whole restore summary of its batch
    cwd: str = ""


@dataclass
class Verdict:
    passed: bool
    reason: str = ""
    diff: str = ""
    note: str = ""  # restore summary about this scenario


# -- normalisation and comparison ---------------------------------------------------------

_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_CELL_FILE = re.compile(r"/[^\s'\"]*?/ipykernel_\d+/\d+\.py")
_IPYKERNEL_DIR = re.compile(r"ipykernel_\d+")


# What persistent-python3 says on a cell's stderr by design, about persistence itself:
# left out of the differential comparison (and listed in the verdict's note). A
# failure notice ("Could not snapshot the changes …") is not on this list: it counts.
KERNEL_NOTICES = [re.compile(r"^Note: .+ cannot be stored \(.*$", re.MULTILINE)]


def split_notices(stderr: str) -> tuple[str, list[str]]:
    found: list[str] = []
    for pattern in KERNEL_NOTICES:
        found += pattern.findall(stderr)
        stderr = pattern.sub("", stderr)
    return re.sub(r"\n{2,}", "\n", stderr).lstrip("\n"), found


def normalise(text: str, cwd: str = "") -> str:
    if not text:
        return ""
    if cwd:
        for path in {cwd, os.path.realpath(cwd)}:
            text = text.replace(path, "<cwd>")
    text = _CELL_FILE.sub("<cell>", text)
    text = _IPYKERNEL_DIR.sub("ipykernel_N", text)
    return _ADDRESS.sub("0x?", text)


def _cell_view(cell: Cell, cwd: str) -> dict[str, Any]:
    stderr, notices = split_notices(cell.stderr)
    return {
        "stdout": normalise(cell.stdout, cwd),
        "stderr": normalise(stderr, cwd),
        "notices": [normalise(n, cwd) for n in notices],
        "result": [normalise(r, cwd) for r in cell.results],
        "ename": cell.ename,
        "timed_out": cell.timed_out,
    }


def _diff(a: str, b: str, label_a: str = "stock", label_b: str = "persistent", lines: int = 12) -> str:
    out = list(difflib.unified_diff(a.splitlines(), b.splitlines(), label_a, label_b, lineterm="", n=1))
    if len(out) > lines:
        out = out[:lines] + [f"... ({len(out) - lines} more diff lines)"]
    return "\n".join(out)


def reference_problem(ref: Outcome) -> str | None:
    """Why the stock run cannot serve as a reference for this scenario (a bug in the corpus), or None."""
    if ref.error:
        return f"stock run: {ref.error}"
    if ref.probe is None:
        return "stock run: no probe"
    if ref.probe.timed_out:
        return "stock run: probe timed out"
    if ref.probe.ename:
        return f"stock run: probe raised {ref.probe.ename}: {ref.probe.evalue}"
    return None


def judge_differential(ref: Outcome, got: Outcome) -> Verdict:
    if got.error:
        return Verdict(False, got.error)
    a = [_cell_view(c, ref.cwd) for c in [*ref.setup, *([ref.probe] if ref.probe else [])]]
    b = [_cell_view(c, got.cwd) for c in [*got.setup, *([got.probe] if got.probe else [])]]
    if len(a) != len(b):
        return Verdict(False, f"{len(b)} cells ran, stock ran {len(a)}")
    notices = " | ".join(n for y in b for n in y["notices"])[:600]
    for i, (x, y) in enumerate(zip(a, b)):
        where = "probe" if i == len(a) - 1 else f"setup cell {i + 1}"
        for key in ("timed_out", "ename", "stdout", "stderr", "result"):
            if x[key] != y[key]:
                if key in ("stdout", "stderr", "result"):
                    xs = x[key] if isinstance(x[key], str) else "\n".join(x[key])
                    ys = y[key] if isinstance(y[key], str) else "\n".join(y[key])
                    return Verdict(False, f"{where}: {key} differs", _diff(xs, ys), notices)
                return Verdict(False, f"{where}: {key} {x[key]!r} != {y[key]!r}", "" if key != "ename" else f"persistent: {(got.setup + [got.probe])[i].evalue}", notices)
    return Verdict(True, note=notices)


def judge_probe(ref: Outcome, got: Outcome, label: str) -> Verdict:
    if got.error:
        return Verdict(False, got.error, note=got.summary)
    assert ref.probe is not None
    if got.probe is None:
        return Verdict(False, "no probe result", note=got.summary)
    a, b = normalise(ref.probe.stdout, ref.cwd), normalise(got.probe.stdout, got.cwd)
    if got.probe.timed_out:
        return Verdict(False, "probe timed out", _diff(a, b, "stock", label), got.summary)
    if a == b and ref.probe.ename == got.probe.ename:
        return Verdict(True, note=got.summary)
    if got.probe.ename and got.probe.ename != ref.probe.ename:
        reason = f"probe raised {got.probe.ename}: {(got.probe.evalue or '')[:160]}"
    else:
        reason = "probe stdout differs"
    return Verdict(False, reason, _diff(a, b, "stock", label), got.summary)


# -- running batches ----------------------------------------------------------------------

DILL_FIND = """
import dill as _fid_dill, json as _fid_json
_fid_bad = {}
for _fid_k, _fid_v in list(globals().items()):
    if _fid_k.startswith('_fid_') or _fid_k in ('In', '_ih', 'exit', 'quit', 'get_ipython', '__builtins__', '__builtin__'):
        continue
    try:
        _fid_dill.dumps(_fid_v)
    except BaseException as _fid_e:
        _fid_bad[_fid_k] = (type(_fid_e).__name__ + ': ' + str(_fid_e))[:160]
print(_fid_json.dumps(_fid_bad))
for _fid_k in [k for k in globals() if k.startswith('_fid_')]:
    del globals()[_fid_k]
"""


class CellTimeout(Exception):
    pass


class Runner:
    def __init__(
        self,
        workdir: Path,
        *,
        probe_timeout: float = 10,
        setup_timeout: float = 30,
        verbose: bool = False,
        kernel_log: Path | None = None,
        code: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.home = workdir / "pk-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.key = workdir / "key" / "key"
        self.key.parent.mkdir(mode=0o700, exist_ok=True)
        self.probe_timeout = probe_timeout
        self.setup_timeout = setup_timeout
        self.verbose = verbose
        self.code = code  # a copy of persistent_kernel the kernels import instead of the working tree's
        self._log_path = kernel_log or workdir / "kernels.log"
        self._log = open(self._log_path, "ab")
        self._counter = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._log.close()

    def say(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    # -- kernels ---------------------------------------------------------------

    def _env(self, session: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "PERSISTENT_KERNEL_SESSION")}
        env.update(
            PERSISTENT_KERNEL_HOME=str(self.home),
            PERSISTENT_KERNEL_SESSION=session,
            PYTHONHASHSEED="0",  # set and str reprs in the same order in every kernel
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        env[KEY_ENV] = str(self.key)
        if self.code is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.code), env.get("PYTHONPATH", "")) if p)
        return env

    def _start(self, driver: KernelDriver, attempts: int = 3) -> None:
        """Start (or start again) a kernel; a kernel that dies while starting is tried again."""
        for attempt in range(attempts):
            try:
                driver.start()
                return
            except Exception:
                if driver.km is not None:
                    try:
                        driver.km.shutdown_kernel(now=True)
                    except Exception:
                        pass
                    driver.km = None
                if attempt == attempts - 1:
                    raise
                time.sleep(3)

    def _driver(self, kernel: str, session: str, cwd: Path) -> KernelDriver:
        return KernelDriver(kernel, env=self._env(session), cwd=str(cwd), kernel_log=self._log, startup_timeout=60)

    def _exec(self, driver: KernelDriver, code: str, timeout: float, **kwargs: Any) -> Cell:
        try:
            r = driver.execute(code, timeout=timeout, **kwargs)
        except TimeoutError:
            return Cell(status="timeout", timed_out=True)
        except Exception as e:  # the kernel died under the request, the channels broke …
            return Cell(status="error", ename=type(e).__name__, evalue=str(e), timed_out=True)
        return Cell(r.status, r.stdout, r.stderr, list(r.results), r.ename, r.evalue, notice=r.notice)

    @staticmethod
    def _stop(driver: KernelDriver) -> None:
        if driver.km is None:
            return
        try:
            driver.kill()
        except Exception:
            pass

    def _between(self, scenarios: list[Scenario], cwd: Path) -> None:
        for s in scenarios:
            if s.between:
                subprocess.run([sys.executable, "-c", s.between], cwd=cwd, check=False, timeout=60, capture_output=True)

    # -- one batch ---------------------------------------------------------------

    def run_batch(self, run: str, batch: list[Scenario]) -> tuple[dict[str, Outcome], list[list[Scenario]]]:
        """Run ``batch`` in one session: results for the scenarios that got an answer, and batches to run again."""
        with self._lock:
            self._counter += 1
            tag = f"{run}-{self._counter}"
        cwd = self.workdir / tag
        cwd.mkdir(parents=True)
        kernel = STOCK if run in ON_STOCK else KERNEL_NAME
        out = {s.name: Outcome(cwd=str(cwd)) for s in batch}
        started = time.monotonic()
        driver = self._driver(kernel, tag, cwd)
        try:
            self._start(driver)
        except Exception as e:
            for o in out.values():
                o.error = f"kernel did not start: {type(e).__name__}: {e}"
            return out, []
        try:
            # 1. every scenario's setup
            for i, s in enumerate(batch):
                for code in s.setup:
                    cell = self._exec(driver, code, self.setup_timeout)
                    out[s.name].setup.append(cell)
                    if cell.timed_out:
                        out[s.name].error = f"setup cell {len(out[s.name].setup)} timed out or killed the kernel ({cell.ename or 'timeout'})"
                        self.say(f"  {tag}: {s.name}: {out[s.name].error}")
                        self._stop(driver)
                        return {s.name: out[s.name]}, [[t for t in batch if t is not s]]
            # 2. the crash, restart, replay or dump
            summary = ""
            summary_details: list[str] = []
            if run == "dill_session":
                return self._dill_session(driver, batch, out, cwd, tag)
            if run == "kill" or run == "replay_all":
                driver.kill()
            elif run == "restart":
                driver.shutdown()
            self._between(batch, cwd)
            if run in ("kill", "restart", "replay_all"):
                try:
                    self._start(driver)
                except Exception as e:
                    for o in out.values():
                        o.error = o.error or f"kernel did not start after the {run}: {type(e).__name__}: {str(e)[:200]}"
                    return out, []
                if driver.startup_output:
                    self.say(f"  {tag}: published at startup: {driver.startup_output[:3]}")
                if run in ("kill", "restart"):
                    # A cell of its own after the restart (no history, so execution counts stay
                    # the stock kernel's) takes whatever a restore printed.
                    first = self._exec(driver, "pass", self.setup_timeout, store_history=False)
                    try:  # the notice itself goes to the first cell with history (a probe), apart from its output
                        summary = driver.restore_summary(timeout=self.setup_timeout) or first.stderr.strip()[:300]
                    except Exception as e:  # noqa: BLE001 - the probes will say what is wrong with the kernel
                        summary = f"{type(e).__name__}: {e}"
                    if first.stdout.strip():
                        self.say(f"  {tag}: printed while restoring: {first.stdout[:300]!r}")
                    # The summary names at most a few variables per kind ("and 4 more"); the
                    # status lists every one: a scenario is named if either names it.
                    try:
                        status = driver.execute("%persist status", timeout=self.setup_timeout, store_history=False).text
                    except Exception as e:  # noqa: BLE001 - the probes will say what is wrong with the kernel
                        status = f"{type(e).__name__}: {e}"
                    details = [line.strip() for line in status.splitlines()]
                    summary_details[:] = [line for line in details if any(w in line for w in _STATUS_NAMING)]
            if run == "replay_all":
                for s in batch:
                    for code in s.setup:
                        cell = self._exec(driver, code, self.setup_timeout)
                        if cell.timed_out:
                            out[s.name].error = "replaying a setup cell timed out"
                            self._stop(driver)
                            return {s.name: out[s.name]}, [[t for t in batch if t is not s]]
            # 3. the probes
            return self._probes(driver, batch, out, summary, tag, summary_details)
        finally:
            self._stop(driver)
            self.say(f"  {tag}: {len(batch)} scenarios in {time.monotonic() - started:.1f} s")

    def _probes(
        self, driver: KernelDriver, batch: list[Scenario], out: dict[str, Outcome], summary: str, tag: str, details: list[str] | None = None
    ) -> tuple[dict[str, Outcome], list[list[Scenario]]]:
        done: dict[str, Outcome] = {}
        for i, s in enumerate(batch):
            o = out[s.name]
            if o.error:
                done[s.name] = o
                continue
            cell = self._exec(driver, s.probe, self.probe_timeout)
            o.probe = cell
            o.batch_summary = summary
            o.summary = _about(summary, s.prefix) or "; ".join(line for line in details or () if s.prefix in line)[:600]
            done[s.name] = o
            if cell.timed_out:
                o.error = f"probe timed out after {self.probe_timeout:g} s" if cell.status == "timeout" else f"probe: {cell.ename}: {cell.evalue}"
                self.say(f"  {tag}: {s.name}: {o.error}")
                self._stop(driver)
                return done, [batch[i + 1 :]]
        return done, []

    def _dill_session(self, a: KernelDriver, batch: list[Scenario], out: dict[str, Outcome], cwd: Path, tag: str) -> tuple[dict[str, Outcome], list[list[Scenario]]]:
        """dump_session on kernel ``a``, load_session on a fresh stock kernel, the probes there.

        A value that fails the dump or the load would fail the whole notebook's session. To
        measure each scenario as if it were the notebook's only one, the scenario that owns
        it fails, its names are deleted in ``a`` and the dump and load are tried again; a
        load error that names no scenario halves the batch.
        """
        path = str(cwd / "session.dill")
        self._between(batch, cwd)  # files change before any load; ``a`` keeps what it loaded
        live = list(batch)
        for attempt in range(len(batch) + 1):
            problem = self._dill_dump(a, live, out, cwd)
            live = [s for s in live if not out[s.name].error]
            if problem:
                for s in live:
                    out[s.name].error = problem
                return out, []
            if not live:
                return out, []
            b = self._driver(STOCK, f"{tag}-load{attempt}", cwd)
            try:
                self._start(b)
            except Exception as e:
                for s in live:
                    out[s.name].error = f"kernel did not start: {type(e).__name__}: {e}"
                return out, []
            try:
                load = self._exec(b, f"import dill as _fid_dill\n_fid_dill.load_session({path!r})\ndel _fid_dill", self.setup_timeout, silent=True, store_history=False)
                if not load.timed_out and load.status == "ok":
                    self._stop(a)
                    return self._probes(b, batch, out, "", tag)
            finally:
                self._stop(b)
            why = f"dill.load_session failed: {load.ename}: {(load.evalue or '')[:200]}"
            named = next((s for s in live if s.prefix in (load.evalue or "")), None)
            if named is None:
                failed = {n: o for n, o in out.items() if o.error}
                if len(live) == 1:
                    out[live[0].name].error = why
                    return {**failed, live[0].name: out[live[0].name]}, []
                half = len(live) // 2
                return failed, [live[:half], live[half:]]
            out[named.name].error = why
            live.remove(named)
            self._forget(a, [named.prefix], [])
        return out, []

    def _forget(self, driver: KernelDriver, prefixes: list[str], names: list[str]) -> None:
        code = (
            f"for _fid_k in [k for k in list(globals()) if k.startswith({tuple(prefixes)!r}) or k in {names!r}]:\n"
            "    if _fid_k in ('Out', '_oh'):\n"
            "        globals()[_fid_k].clear()\n"
            "    else:\n"
            "        del globals()[_fid_k]\n"
            "del _fid_k"
        )
        self._exec(driver, code, self.setup_timeout, silent=True, store_history=False)

    def _dill_dump(self, driver: KernelDriver, batch: list[Scenario], out: dict[str, Outcome], cwd: Path) -> str | None:
        """dump_session; a value it cannot dump fails its scenario and is deleted, and the dump is tried again."""
        path = str(cwd / "session.dill")
        prefixes = {s.prefix: s for s in batch}
        last = ""
        for _attempt in range(4):
            dump = self._exec(driver, f"import dill as _fid_dill\n_fid_dill.dump_session({path!r})\ndel _fid_dill", self.setup_timeout, silent=True, store_history=False)
            if dump.timed_out:
                return "dill.dump_session timed out"
            if dump.status == "ok":
                return None
            last = f"{dump.ename}: {(dump.evalue or '')[:200]}"
            found = self._exec(driver, DILL_FIND, self.setup_timeout, silent=True, store_history=False)
            try:
                bad = json.loads(found.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                return f"dill.dump_session failed: {last}"
            if not bad:
                return f"dill.dump_session failed: {last}"
            doomed: list[str] = []
            for name, err in bad.items():
                owner = next((s for p, s in prefixes.items() if name.startswith(p)), None)
                if owner is not None:
                    if not out[owner.name].error:
                        out[owner.name].error = f"dill.dump_session cannot dump {name}: {err}"
                    doomed.append(owner.prefix)
                else:
                    doomed.append(name)  # Out, _, _12 …: results of cells, not any one scenario's
            self._forget(driver, [p for p in doomed if p in prefixes], [n for n in doomed if n not in prefixes])
        return f"dill.dump_session failed: {last}"

    # -- many batches ------------------------------------------------------------

    def run(self, run: str, batches: list[list[Scenario]], jobs: int = 1) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        pending = [list(b) for b in batches if b]

        def work(batch: list[Scenario]) -> None:
            queue = [batch]
            while queue:
                current = queue.pop(0)
                if not current:
                    continue
                done, again = self.run_batch(run, current)
                results.update(done)
                queue.extend(b for b in again if b)

        if jobs <= 1:
            for b in pending:
                work(b)
        else:
            with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
                list(pool.map(work, pending))
        return results


_STATUS_NAMING = ("is not exact", "could not be rebuilt", "recomputed by replaying", "not restored", "failed in replay")


def _about(summary: str, prefix: str) -> str:
    """The sentences of a restore summary that name one scenario's variables."""
    if not summary or prefix not in summary:
        return ""
    sentences = re.split(r"(?<=\.)\s+(?=[A-Z])", summary)
    return " ".join(s for s in sentences if prefix in s)[:600]


# -- selection and batching ---------------------------------------------------------------


def available(s: Scenario) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in s.requires)


def sample(scenarios: list[Scenario], per_class: int) -> list[Scenario]:
    """At most ``per_class`` scenarios of each class, spread over its list (every k-th), in corpus order."""
    by_cls: dict[str, list[Scenario]] = {}
    for s in scenarios:
        by_cls.setdefault(s.cls, []).append(s)
    chosen: set[str] = set()
    for items in by_cls.values():
        if len(items) <= per_class:
            chosen.update(s.name for s in items)
        else:
            step = len(items) / per_class
            chosen.update(items[int(i * step)].name for i in range(per_class))
    return [s for s in scenarios if s.name in chosen]


def make_batches(scenarios: list[Scenario], size: int) -> list[list[Scenario]]:
    """Batches of one class each; scenarios with the same ``key`` never share one."""
    batches: list[list[Scenario]] = []
    for cls in CLASSES:
        open_: list[list[Scenario]] = []
        for s in (s for s in scenarios if s.cls == cls):
            for b in open_:
                if len(b) < size and not any(s.conflicts(t) for t in b):
                    b.append(s)
                    break
            else:
                open_.append([s])
        batches.extend(open_)
    return batches


# -- the whole thing ----------------------------------------------------------------------


@dataclass
class Report:
    scenarios: list[Scenario]
    modes: list[str]
    skipped: list[str]
    broken: dict[str, str]  # scenario → why the stock reference is unusable
    setup_errors: dict[str, str]  # scenario → a setup cell that raised on the stock kernel (some scenarios mean to)
    verdicts: dict[str, dict[str, Verdict]]  # mode → scenario → verdict
    seconds: dict[str, float]
    summaries: dict[str, list[str]] = field(default_factory=dict)
    code: dict[str, Any] = field(default_factory=dict)  # the snapshot of persistent_kernel/ the kernels ran, if any

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for cls in CLASSES:
            names = [s.name for s in self.scenarios if s.cls == cls]
            if not names:
                continue
            row: dict[str, Any] = {
                "class": cls,
                "scenarios": len(names),
                "skipped": sum(n in self.skipped for n in names),
                "broken": sum(n in self.broken for n in names),
            }
            for mode in self.modes:
                vs = [self.verdicts[mode][n] for n in names if n in self.verdicts[mode]]
                row[mode] = (sum(v.passed for v in vs), len(vs))
            rows.append(row)
        return rows

    def failures(self, mode: str) -> dict[str, list[tuple[str, Verdict]]]:
        out: dict[str, list[tuple[str, Verdict]]] = {}
        for s in self.scenarios:
            v = self.verdicts.get(mode, {}).get(s.name)
            if v is not None and not v.passed:
                out.setdefault(s.cls, []).append((s.name, v))
        return out

    def render(self, diff_lines: int = 6, modes_with_failures: list[str] | None = None) -> str:
        lines = []
        rows = self.table()
        head = ["class", "n", "skip", "broken", *self.modes]
        body = [[r["class"], str(r["scenarios"]), str(r["skipped"]), str(r["broken"]), *(f"{r[m][0]}/{r[m][1]}" for m in self.modes)] for r in rows]
        totals = ["total", str(sum(r["scenarios"] for r in rows)), str(sum(r["skipped"] for r in rows)), str(sum(r["broken"] for r in rows))]
        for m in self.modes:
            totals.append(f"{sum(r[m][0] for r in rows)}/{sum(r[m][1] for r in rows)}")
        body.append(totals)
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines.append(fmt.format(*head))
        lines.append(fmt.format(*("-" * w for w in widths)))
        lines += [fmt.format(*b) for b in body]
        lines.append("")
        lines.append("time per run: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items()))
        if self.code:
            lines.append(f"code: snapshot {self.code.get('sha256')} of persistent_kernel/ taken {self.code.get('taken')}")
        if self.broken:
            lines.append("")
            lines.append(f"Corpus errors (the stock reference failed; not counted): {len(self.broken)}")
            lines += [f"  {n}: {why}" for n, why in self.broken.items()]
        if self.setup_errors:
            lines.append("")
            lines.append(f"Setup cells that raised on the stock kernel too (compared like any output): {len(self.setup_errors)}")
            lines += [f"  {n}: {why}" for n, why in self.setup_errors.items()]
        for mode in modes_with_failures if modes_with_failures is not None else self.modes:
            fails = self.failures(mode)
            if not fails:
                continue
            lines.append("")
            lines.append(f"== {mode}: {sum(map(len, fails.values()))} failing")
            for cls, items in fails.items():
                lines.append(f"-- {cls} ({len(items)})")
                for name, v in items:
                    lines.append(f"  {name}: {v.reason}" + (f"   [restore: {v.note}]" if v.note else ""))
                    if v.diff and diff_lines:
                        for d in v.diff.splitlines()[2 : 2 + diff_lines]:
                            lines.append(f"      {d}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": {**_meta(), "code_snapshot": self.code},
            "modes": self.modes,
            "seconds": self.seconds,
            "sizes": {cls: sum(s.cls == cls for s in self.scenarios) for cls in CLASSES},
            "table": [{**r, **{m: {"passed": r[m][0], "total": r[m][1]} for m in self.modes}} for r in self.table()],
            "skipped": self.skipped,
            "broken": self.broken,
            "stock_setup_errors": self.setup_errors,
            "restore_summaries": self.summaries,
            "scenarios": {
                s.name: {
                    "class": s.cls,
                    "prefix": s.prefix,
                    "modes": {m: asdict(self.verdicts[m][s.name]) for m in self.modes if s.name in self.verdicts[m]},
                }
                for s in self.scenarios
            },
        }


def _meta() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except Exception:
            return ""

    versions = {}
    for mod in ("ipykernel", "IPython", "dill", "numpy", "pandas", "matplotlib"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": versions,
        "commit": git("rev-parse", "HEAD"),
        "dirty": git("status", "--short", "--", "persistent_kernel").splitlines(),
        "cpus": os.cpu_count(),
    }


def snapshot_code(dest: Path, attempts: int = 20, wait: float = 15) -> dict[str, Any]:
    """Copy ``persistent_kernel/`` as it is now to ``dest``, for kernels to import all run long.

    The working tree may change while the corpus runs (others edit it): the run then still
    measures one version of the code. A copy that does not import (an edit half-way) is
    taken again a little later.
    """
    import hashlib

    last = ""
    for _ in range(attempts):
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(ROOT / "persistent_kernel", dest / "persistent_kernel", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        env = {**os.environ, "PYTHONPATH": str(dest)}
        check = subprocess.run(
            [sys.executable, "-c", "import persistent_kernel, persistent_kernel.kernel, persistent_kernel.launcher; print(persistent_kernel.__file__)"],
            env=env, cwd=dest, capture_output=True, text=True, timeout=120,
        )
        if check.returncode == 0 and check.stdout.strip().startswith(str(dest)):
            digest = hashlib.sha256()
            for f in sorted((dest / "persistent_kernel").rglob("*.py")):
                digest.update(f.relative_to(dest).as_posix().encode() + b"\0" + f.read_bytes())
            return {"path": str(dest), "sha256": digest.hexdigest()[:16], "taken": datetime.datetime.now().isoformat(timespec="seconds")}
        last = "\n".join((check.stderr or check.stdout).strip().splitlines()[-1:])
        time.sleep(wait)
    raise RuntimeError(f"persistent_kernel/ does not import (tried {attempts} times): {last}")


def run_corpus(
    scenarios: list[Scenario],
    modes: list[str],
    *,
    batch: int = 40,
    jobs: int = 1,
    workdir: Path | None = None,
    probe_timeout: float = 10,
    verbose: bool = False,
    keep: bool = False,
    snapshot: bool = False,
) -> Report:
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="fidelity-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    code_info: dict[str, Any] = {}
    if snapshot:
        code_info = snapshot_code(workdir / "code")
        code_info["git_status"] = _meta()["dirty"]
    runner = Runner(workdir, probe_timeout=probe_timeout, verbose=verbose, code=Path(code_info["path"]) if code_info else None)
    try:
        skipped = [s.name for s in scenarios if not available(s)]
        todo = [s for s in scenarios if s.name not in skipped]
        batches = make_batches(todo, batch)
        seconds: dict[str, float] = {}
        t = time.monotonic()
        runner.say(f"stock reference: {len(todo)} scenarios in {len(batches)} batches")
        reference = runner.run("stock", batches, jobs)
        seconds["stock"] = time.monotonic() - t
        broken = {}
        for s in todo:
            why = reference_problem(reference[s.name]) if s.name in reference else "stock run: no result"
            if why:
                broken[s.name] = why
        setup_errors = {}
        for s in todo:
            for i, c in enumerate(reference[s.name].setup if s.name in reference else []):
                if c.ename:
                    setup_errors[s.name] = f"setup cell {i + 1}: {c.ename}: {(c.evalue or '')[:120]}"
                    break
        valid = [s for s in todo if s.name not in broken]
        batches = make_batches(valid, batch)
        verdicts: dict[str, dict[str, Verdict]] = {}
        summaries: dict[str, list[str]] = {}
        for mode in modes:
            t = time.monotonic()
            mode_batches = batches
            if mode == "determinism":
                mode_batches = make_batches(list(reversed(valid)), max(3, batch // 3))
            runner.say(f"{mode}: {len(valid)} scenarios in {len(mode_batches)} batches")
            got = runner.run(mode, mode_batches, jobs)
            seconds[mode] = time.monotonic() - t
            vs = {}
            for s in valid:
                o = got.get(s.name)
                if o is None:
                    vs[s.name] = Verdict(False, "no result")
                elif mode == "differential":
                    vs[s.name] = judge_differential(reference[s.name], o)
                else:
                    vs[s.name] = judge_probe(reference[s.name], o, mode)
            verdicts[mode] = vs
            if mode in ("kill", "restart"):
                summaries[mode] = sorted({o.batch_summary for o in got.values() if o.batch_summary})
        return Report(scenarios, list(modes), skipped, broken, setup_errors, verdicts, seconds, summaries, code_info)
    finally:
        runner.close()
        if own and not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", help=f"comma-separated classes (default all): {', '.join(CLASSES)}")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated modes (default all): {', '.join(MODES)}; 'determinism' checks the corpus (stock twice, other batches, reversed order); '' runs only the stock reference")
    p.add_argument("--names", help="only scenarios whose name matches this glob (comma-separated globs)")
    p.add_argument("--batch", type=int, default=40, help="scenarios per kernel session (default 40)")
    p.add_argument("--limit", type=int, help="at most N scenarios per class, spread over the class")
    p.add_argument("--jobs", type=int, default=1, help="batches run at the same time (default 1)")
    p.add_argument("--probe-timeout", type=float, default=10)
    p.add_argument("--json", help="write every verdict, the table and the restore summaries here")
    p.add_argument("--workdir", help="keep kernels' working directories, stores and log here")
    p.add_argument("--diff-lines", type=int, default=6)
    p.add_argument("--no-snapshot", action="store_true", help="kernels import persistent_kernel/ from the working tree as it changes (default: a copy taken at the start)")
    p.add_argument("--list", action="store_true", help="list the selected scenarios and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES + EXTRA_MODES]
    if unknown:
        p.error(f"unknown mode(s) {unknown}; choose from {MODES + EXTRA_MODES}")
    scenarios = list(SCENARIOS)
    if args.classes:
        wanted = [c.strip() for c in args.classes.split(",")]
        bad = [c for c in wanted if c not in CLASSES]
        if bad:
            p.error(f"unknown class(es) {bad}; choose from {CLASSES}")
        scenarios = [s for s in scenarios if s.cls in wanted]
    if args.names:
        globs = args.names.split(",")
        scenarios = [s for s in scenarios if any(fnmatch.fnmatch(s.name, g) for g in globs)]
    if args.limit:
        scenarios = sample(scenarios, args.limit)
    if args.list:
        for s in scenarios:
            print(s.name)
        return 0
    print(f"{len(scenarios)} scenarios, modes: {', '.join(modes)}", file=sys.stderr)
    report = run_corpus(
        scenarios,
        modes,
        batch=args.batch,
        jobs=args.jobs,
        workdir=Path(args.workdir) if args.workdir else None,
        probe_timeout=args.probe_timeout,
        verbose=args.verbose,
        keep=bool(args.workdir),
        snapshot=not args.no_snapshot,
    )
    print(report.render(args.diff_lines))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1, default=str))
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
