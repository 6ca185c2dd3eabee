"""Per-cell cost of persistence, side by side with the stock ipykernel, in one run.

    python benchmarks/run.py [--cells 200] [--output BENCHMARKS.md]

Starts a stock ``python3`` kernel and a ``persistent-python3`` kernel, and times
the round trip of the same cell on each (execute_request sent → execute_reply
and the idle status received: what a frontend waits for), alternating between
the two so both see the same machine load. Prints a table and writes it, with
the machine and the command, into BENCHMARKS.md.
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


def table(rows: list[dict], cells: int) -> str:
    lines = [
        f"| case | stock python3 median (p90) | persistent-python3 median (p90) | ratio | target | met |",
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
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
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
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="where to write the table")
    args = parser.parse_args()
    rows = measure(max(args.cells, 30))
    text = table(rows, max(args.cells, 30))
    print(text)
    Path(args.output).write_text(
        "# Benchmarks\n\n"
        "Per-cell cost of persistence, measured side by side with the stock ipykernel in one run.\n\n"
        f"Command: `python benchmarks/run.py --cells {args.cells}`  \n"
        f"Machine: {machine()}  \n"
        f"Date: {time.strftime('%Y-%m-%d')}\n\n"
        + text
        + "\n\nThe persistent kernel commits two small LMDB transactions per cell (the record before the cell runs, "
        "its outcome after) with `sync=False`, and fsyncs in the background once a second; see docs/architecture.md.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
