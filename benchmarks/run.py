"""persistent_kernel against the stock ipykernel, side by side, in one run.

    python benchmarks/run.py [--cells 200] [--array-mb 200] [--output BENCHMARKS.md]

1. Round trip of a cell (execute_request sent → execute_reply and idle received:
   what a frontend waits for) on a stock ``python3`` kernel and on
   ``persistent-python3``, alternating so both see the same machine load.
2. Restore: a session with a 5 s cell and a large numpy array is killed with
   SIGKILL; the time until the new kernel has answered its first cell, against
   re-running every cell on a stock kernel (what a user does without us).
3. Store size after ``a = <100 MB array>; b = a; a[0] = 42; a[1] = 43``.

Prints the tables and writes them, with the machine and the command, into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from persistent_kernel import KERNEL_NAME, __version__
from persistent_kernel.driver import KernelDriver

ROOT = Path(__file__).resolve().parent.parent

# (case, setup code run once, the timed cell, target ratio)
CASES = [
    ("trivial cell (`x = 1`)", "", "x = 1", 1.15),
    ("trivial cell, namespace of 100 small variables", "\n".join(f"v{i} = list(range({i}))" for i in range(100)), "y = 2", 1.15),
    ("cell printing a line", "", "print('hello')", 1.15),
]


def round_trip(driver: KernelDriver, code: str) -> float:
    started = time.perf_counter()
    result = driver.execute(code)
    elapsed = time.perf_counter() - started
    if result.status != "ok":
        raise RuntimeError(f"{code!r} failed: {result.ename}: {result.evalue}")
    return elapsed


def measure(cells: int) -> list[dict]:
    home = tempfile.mkdtemp(prefix="pk-bench-")
    env = dict(os.environ, PERSISTENT_KERNEL_HOME=home, PERSISTENT_KERNEL_SESSION="bench")
    rows = []
    for case, setup, code, target in CASES:
        stock = KernelDriver("python3", env=env, kernel_log=subprocess.DEVNULL).start()
        persistent = KernelDriver(KERNEL_NAME, env=dict(env, PERSISTENT_KERNEL_SESSION=f"bench-{len(rows)}"), kernel_log=subprocess.DEVNULL).start()
        try:
            for driver in (stock, persistent):
                if setup:
                    driver.execute(setup)
                for _ in range(20):  # warm up both
                    round_trip(driver, code)
            times: dict[str, list[float]] = {"stock": [], "persistent": []}
            for i in range(cells):
                order = (("stock", stock), ("persistent", persistent)) if i % 2 else (("persistent", persistent), ("stock", stock))
                for name, driver in order:
                    times[name].append(round_trip(driver, code))
        finally:
            stock.shutdown()
            persistent.shutdown()
        stock_median = statistics.median(times["stock"])
        persistent_median = statistics.median(times["persistent"])
        rows.append(
            {
                "case": case,
                "stock_ms": stock_median * 1000,
                "persistent_ms": persistent_median * 1000,
                "stock_p90_ms": statistics.quantiles(times["stock"], n=10)[-1] * 1000,
                "persistent_p90_ms": statistics.quantiles(times["persistent"], n=10)[-1] * 1000,
                "ratio": persistent_median / stock_median,
                "target": target,
            }
        )
    return rows


RESTORE_CELLS = [
    "import numpy as np, time",
    "big = np.random.default_rng(0).random({n})",
    "time.sleep(5)\nslow = 'five seconds of work'",
    "summary = float(big[:1000].sum())",
    "big[0] = 42.0",
]


def measure_restore(array_mb: int) -> str:
    home = tempfile.mkdtemp(prefix="pk-bench-restore-")
    env = dict(os.environ, PERSISTENT_KERNEL_HOME=home, PERSISTENT_KERNEL_SESSION="restore")
    cells = [c.format(n=array_mb * 1024 * 1024 // 8) for c in RESTORE_CELLS]

    stock = KernelDriver("python3", env=env, kernel_log=subprocess.DEVNULL)
    started = time.perf_counter()
    stock.start()
    stock_start = time.perf_counter() - started
    for cell in cells:
        round_trip(stock, cell)
    rerun = time.perf_counter() - started
    stock.shutdown()

    persistent = KernelDriver(KERNEL_NAME, env=env, kernel_log=subprocess.DEVNULL).start()
    for cell in cells:
        round_trip(persistent, cell)
    persistent.kill()
    started = time.perf_counter()
    persistent.start()
    first = persistent.execute("float(big[0]), slow")
    restore = time.perf_counter() - started
    persistent.shutdown()
    assert first.result == "(42.0, 'five seconds of work')", first
    summary = first.stderr.strip()
    return "\n".join(
        [
            f"| session: {len(cells)} cells, a {array_mb} MB array, one 5 s cell | time | ratio to re-running |",
            "|---|---|---|",
            f"| stock python3: start + re-run every cell | {rerun:.2f} s | 1.00 |",
            f"| stock python3: start only | {stock_start:.2f} s | {stock_start / rerun:.2f} |",
            f"| persistent-python3: SIGKILL → new kernel → first cell answered | {restore:.2f} s | {restore / rerun:.2f} |",
            "",
            f"The restored kernel said: `{summary}`",
        ]
    )


def measure_store_size() -> str:
    home = tempfile.mkdtemp(prefix="pk-bench-size-")
    env = dict(os.environ, PERSISTENT_KERNEL_HOME=home, PERSISTENT_KERNEL_SESSION="size")
    from persistent_kernel.session import resolve_session
    from persistent_kernel.store import Store

    path = resolve_session(env).store_path
    steps = ["import numpy as np\na = np.ones(100 * 1024 * 1024 // 8)", "b = a", "a[0] = 42", "a[1] = 43"]
    rows = ["| after | blob bytes stored | growth | data.mdb on disk |", "|---|---|---|---|"]
    driver = KernelDriver(KERNEL_NAME, env=env, kernel_log=subprocess.DEVNULL).start()
    previous = 0
    for step in steps:
        round_trip(driver, step)
        driver.kill()  # measure what a crash would leave behind
        store = Store(path, sync_interval=0)
        stored = store.blob_bytes()
        store.close()
        disk = (path / "data.mdb").stat().st_size
        rows.append(f"| `{step.splitlines()[-1]}` | {stored / 1e6:.1f} MB | {(stored - previous) / 1e6:+.2f} MB | {disk / 1e6:.1f} MB |")
        previous = stored
        driver.start()
    driver.shutdown()
    target = 3.1 * 100 * 1024 * 1024
    rows.append("")
    rows.append(
        f"Target: ≤ 3.1 × 100 MiB = {target / 1e6:.0f} MB for the three distinct versions, and `b = a` adding < 1 MB: "
        f"{'met' if previous <= target else 'NOT met'} ({previous / 1e6:.1f} MB). "
        "For reference, Kishu 0.3.4 stored the array three times for `a = …; b = a; a[0] = 42` (a 315 MB store)."
    )
    return "\n".join(rows)


def table(rows: list[dict], cells: int) -> str:
    lines = [
        "| case | stock python3 median (p90) | persistent-python3 median (p90) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['stock_ms']:.2f} ms ({r['stock_p90_ms']:.2f}) | {r['persistent_ms']:.2f} ms ({r['persistent_p90_ms']:.2f}) "
            f"| {r['ratio']:.3f} | ≤ {r['target']:.2f} | {'yes' if r['ratio'] <= r['target'] else 'NO'} |"
        )
    return "\n".join(lines) + f"\n\nRound trip = execute_request sent → execute_reply and idle received, {cells} cells per kernel, alternating, after 20 warm-up cells."


def machine() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    import ipykernel
    import lmdb

    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"ipykernel {ipykernel.__version__}, lmdb {lmdb.__version__}, persistent_kernel {__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200, help="timed cells per kernel and case (≥ 30)")
    parser.add_argument("--array-mb", type=int, default=200, help="size of the array in the restore benchmark")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="where to write the table")
    args = parser.parse_args()
    rows = measure(max(args.cells, 30))
    text = "## Per-cell round trip\n\n" + table(rows, max(args.cells, 30))
    print(text, flush=True)
    restore = "## Restore\n\n" + measure_restore(args.array_mb)
    print("\n" + restore, flush=True)
    size = "## Store size with aliasing\n\n" + measure_store_size()
    print("\n" + size, flush=True)
    text = "\n\n".join([text, restore, size])
    Path(args.output).write_text(
        "# Benchmarks\n\n"
        "Per-cell cost of persistence, measured side by side with the stock ipykernel in one run.\n\n"
        f"Command: `python benchmarks/run.py --cells {args.cells} --array-mb {args.array_mb}`  \n"
        f"Machine: {machine()}  \n"
        f"Date: {time.strftime('%Y-%m-%d')}\n\n"
        + text
        + "\n\nPer cell, the persistent kernel commits the record before the cell runs and, after it, one "
        "transaction with the outcome and the versions of the groups the cell changed (`sync=False`, fsynced "
        "in the background once a second); see docs/architecture.md.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
