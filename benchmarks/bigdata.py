"""Big-data benchmarks: a cell beside, reading, and changing a 1 GB value, on every contender.

Imported by ``run.py``; each function returns the rows of one table (dicts) and
prints progress. Timings are medians over several cells on a fresh kernel per
contender and dataset; contenders run one after another in the same run.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from contenders import CellFailed, Contender, Persistent, Stock, alternate, fresh_workdir

GIB = 1024**3

DATASETS = {
    "numpy": (
        "import numpy as np\nbig = np.random.default_rng(0).random({n} // 8)",
        "m = float(big[:1000].mean())",
        "big[0] += 1.0",
    ),
    "pandas": (
        "import numpy as np, pandas as pd\n"
        "big = pd.DataFrame(np.random.default_rng(0).random(({n} // 8 // 16, 16)), columns=[f'c{{i}}' for i in range(16)])",
        "m = float(big['c0'].iloc[:1000].mean())",
        "big.iloc[0, 0] += 1.0",
    ),
}


class MemorySampler:
    """Peak resident memory of a process (all of it, and the anonymous part) while running."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read(pid: int) -> tuple[int, int]:
        rss = anon = 0
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
        return rss, anon

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss, anon = self.read(self.pid)
            except OSError:
                return
            self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
            time.sleep(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def disk_seconds(directory: Path, nbytes: int) -> float:
    """Time to write ``nbytes`` to a file and fsync it: the disk's own speed, the yardstick for durability."""
    path = directory / "disk-probe.bin"
    chunk = os.urandom(64 * 1024**2)
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(max(1, -(-nbytes // len(chunk)))):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def _modify_rows(contender: Contender, modify: str, cells: int, row: dict[str, Any]) -> None:
    baseline_rss, baseline_anon = MemorySampler.read(contender.pid)
    times, durable, peaks = [], [], []
    for _ in range(cells):
        with MemorySampler(contender.pid) as sampler:
            times.append(contender.execute(modify, timeout=1800))
            if isinstance(contender, Persistent):
                durable.append(contender.wait_durable())
        peaks.append((sampler.peak_rss, sampler.peak_anon))
    row["modify_ms"] = statistics.median(times) * 1000
    if durable:
        row["durable_s"] = statistics.median(durable)
    row["baseline_rss"], row["baseline_anon"] = baseline_rss, baseline_anon
    row["peak_rss"] = max(p[0] for p in peaks)
    row["peak_anon"] = max(p[1] for p in peaks)
    row["store_bytes"] = contender.store_bytes()


def big_value_cases(root: Path, kinds: list[type[Contender]], nbytes: int, cells: int, slow_cells: int) -> list[dict[str, Any]]:
    """For each dataset: round trips beside / reading / changing the value, memory, durability.

    Stock and persistent-python3 run at the same time, taking turns cell by cell
    for the cells beside and reading the value (``4 × cells`` each: these are
    quick and noisy); dill and Kishu, whose cells take seconds, run alone.
    """
    rows = []
    for dataset, (setup, read, modify) in DATASETS.items():
        fast = [kind for kind in kinds if kind in (Stock, Persistent)]
        groups = [fast] + [[kind] for kind in kinds if kind not in fast]
        for group in groups:
            slow = group != fast
            n = slow_cells if slow else cells
            print(f"  {dataset} / {', '.join(kind.name for kind in group)} …", flush=True)
            running: list[Contender] = []
            group_rows = {kind.name: {"dataset": dataset, "contender": kind.name, "label": kind.label, "cells": n} for kind in group}
            try:
                for kind in group:
                    contender = kind(fresh_workdir(root, f"{dataset}-{kind.name}")).start()
                    running.append(contender)
                    contender.execute(setup.format(n=nbytes), timeout=1800)
                    if isinstance(contender, Persistent):
                        contender.wait_durable()
                    for _ in range(3):
                        contender.execute("y = 2")
                quick = n if slow else 4 * n
                for key, code in (("untouched_ms", "y = 2"), ("read_ms", read)):
                    for name, values in alternate(running, code, quick).items():
                        group_rows[name][key] = statistics.median(values) * 1000
                for contender in running:
                    _modify_rows(contender, modify, n, group_rows[contender.name])
            except (CellFailed, TimeoutError, RuntimeError, OSError) as exc:
                for row in group_rows.values():
                    row.setdefault("error", str(exc)[:200])
            finally:
                for contender in running:
                    try:
                        contender.stop()
                    except Exception:  # noqa: BLE001 - a contender that died already
                        pass
                    contender.remove()  # gigabytes per contender: free the disk for the next
            rows.extend(group_rows[kind.name] for kind in group)
    return rows


RESTORE_ROUNDS = 3


def restore_case(root: Path, kinds: list[type[Contender]], nbytes: int) -> dict[str, Any]:
    """Restore of a session with the 1 GB array and 1,000 small variables, against its yardstick.

    Three rounds, each a stock start, a read of the store's files and a restore after kill -9;
    medians of each (a single start on this VM moves by ±0.2 s, and so did the ratio of two
    single figures).
    """
    import numpy

    setup = [
        "import numpy as np\nbig = np.random.default_rng(0).random({n} // 8)".format(n=nbytes),
        "\n".join(f"v{i} = {{'i': {i}, 'name': 'variable {i}', 'values': list(range({i % 20}))}}" for i in range(1000)),
    ]
    persistent = Persistent(fresh_workdir(root, "restore-persistent")).start()
    for cell in setup:
        persistent.execute(cell, timeout=1800)
    persistent.wait_durable()
    starts, reads, restores = [], [], []
    for _ in range(RESTORE_ROUNDS):
        # Yardstick: a stock kernel's start, and reading the array's bytes back from the store's files.
        stock = Stock(fresh_workdir(root, "restore-stock"))
        started = time.perf_counter()
        stock.start()
        stock.execute("pass")
        starts.append(time.perf_counter() - started)
        stock.stop()
        stock.remove()
        persistent.kill()
        started = time.perf_counter()
        # The array's bytes are its pieces' files (the small variables are in LMDB): all of them.
        for blob in (persistent.store_path / "blobs").iterdir():
            numpy.fromfile(blob, dtype=numpy.uint8)
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        persistent.driver.start()
        first = persistent.driver.execute("(len([k for k in globals() if k.startswith('v')]), float(big[0]))")
        restores.append(time.perf_counter() - started)
    result: dict[str, Any] = {
        "stock_start_s": statistics.median(starts),
        "read_store_s": statistics.median(reads),
        "restore_s": statistics.median(restores),
        "rounds": {"stock_start_s": starts, "read_store_s": reads, "restore_s": restores},
        "restored": first.result,
        "summary": first.said.strip(),
    }
    started = time.perf_counter()
    persistent.execute("_ = float(big.sum())")
    result["first_full_pass_s"] = time.perf_counter() - started
    persistent.stop()
    persistent.remove()
    return result


def growth_case(root: Path, kinds: list[type[Contender]], nbytes: int, cells: int) -> list[dict[str, Any]]:
    """Store growth over ``cells`` cells that each change one small variable beside the untouched 1 GB."""
    rows = []
    for kind in kinds:
        if kind is Stock:
            continue
        contender = kind(fresh_workdir(root, f"growth-{kind.name}")).start()
        print(f"  growth / {kind.name} …", flush=True)
        row: dict[str, Any] = {"contender": kind.name, "label": kind.label, "cells": cells}
        try:
            contender.execute("import numpy as np\nbig = np.random.default_rng(0).random({n} // 8)\ncounter = 0".format(n=nbytes), timeout=1800)
            if isinstance(contender, Persistent):
                contender.wait_durable()
            before = contender.store_bytes() or 0
            started = time.perf_counter()
            for _ in range(cells):
                contender.execute("counter += 1", timeout=1800)
            row["seconds"] = time.perf_counter() - started
            row["growth"] = (contender.store_bytes() or 0) - before
        except (CellFailed, TimeoutError, RuntimeError, OSError) as exc:
            row["error"] = str(exc)[:200]
        finally:
            contender.stop()
            contender.remove()
        rows.append(row)
    return rows


def retention_case(root: Path, nbytes: int, cells: int, budget: int) -> dict[str, Any]:
    """Store size when the whole 1 GB array changes in every cell, under the history budget."""
    persistent = Persistent(fresh_workdir(root, "retention"), extra_arguments=[f"--PersistentKernel.history_budget={budget}"]).start()
    # Random values: every 16 MiB piece is distinct, and ``big += 1.0`` changes every one of them. (Over
    # ``np.zeros`` all the pieces are one content-addressed piece, and a version costs 16 MiB, not 1 GB.)
    persistent.execute("import numpy as np\nbig = np.random.default_rng(0).random({n} // 8)".format(n=nbytes), timeout=1800)
    persistent.wait_durable()
    started = time.perf_counter()
    for _ in range(cells):
        persistent.execute("big += 1.0", timeout=1800)
        persistent.wait_durable()  # every version lands: the budget, not superseding, bounds the store
    seconds = time.perf_counter() - started
    size = persistent.store_bytes() or 0
    latest = float(persistent.evaluate("float(big[0])"))  # what the store must give back as the latest state
    persistent.stop()
    from persistent_kernel.restore import state_as_of
    from persistent_kernel.store import Store

    store = Store(persistent.store_path, sync_interval=0)
    try:
        history = store.name_history("big")
        pruned = sum(1 for p in history if (version := store.version(p.version_key)) is not None and version.pruned)
        values, missing = state_as_of(store, history[1].seq)
        early = missing.get("big", "loadable")
        values, missing = state_as_of(store, history[-1].seq)
        latest_ok = "big" in values and float(values["big"][0]) == latest
        problems = store.check()
    finally:
        store.close()
        persistent.remove()
    return {
        "cells": cells,
        "budget": budget,
        "store_bytes": size,
        "seconds": seconds,
        "early": early,
        "latest_ok": latest_ok,
        "problems": problems,
        "versions": len(history),
        "pruned": pruned,
    }
