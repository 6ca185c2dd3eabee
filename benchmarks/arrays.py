"""In-place changes to a large numpy array, side by side with the stock kernel: what `a[i] = x`
costs per cell on a 1 GiB array, what 50 such cells add to the store, a trivial cell beside
the array, and the restore after kill -9.

    python benchmarks/arrays.py [--cells 50] [--gib 1] [--kishu-cells 5] [--write-docs]

The kernels hold the same array (``np.arange``: every piece distinct, so nothing is shared
by accident) and run the same cells, taking turns cell by cell. Each `a[i] = x` cell writes
one element at a place far from the last one, so every cell touches another piece. The
store's size is read after the background writes are done. Kishu (when its venv can be made,
see ``contenders.ensure_kishu``) runs fewer cells: it stores the whole array at every cell.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import Kishu, Persistent, Stock, alternate, ensure_kishu, fresh_workdir, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- arrays -->"
ALLOWED_PER_CELL = 16 * 1024**2  # the bound: the array + 16 MiB a cell (our pieces are 8 MiB)
CHANGE = "k += 1\na[(k * 7_919_311) % a.size] = k"


def measure(root: Path, cells: int, gib: float, kishu_cells: int) -> dict:
    elements = int(gib * 1024**3) // 8
    setup = f"import numpy as np\na = np.arange({elements}, dtype=np.float64)\nk = 0"
    stock = Stock(fresh_workdir(root, "stock")).start()
    persistent = Persistent(fresh_workdir(root, "persistent")).start()
    result: dict = {"elements": elements, "nbytes": elements * 8, "cells": cells}
    try:
        for contender in (stock, persistent):
            contender.execute(setup, timeout=1800)
        persistent.wait_durable()
        result["store_after_setup"] = persistent.store_bytes() or 0
        print(f"  {cells} × a[i] = x …", flush=True)
        times = alternate([stock, persistent], CHANGE, cells)
        started = time.perf_counter()
        persistent.wait_durable()
        result["drain_s"] = time.perf_counter() - started
        result["store_after"] = persistent.store_bytes() or 0
        result["change"] = {name: sorted(values) for name, values in times.items()}
        print("  trivial cell beside it …", flush=True)
        trivial = alternate([stock, persistent], "z = 1", 30)
        result["trivial"] = {name: sorted(values) for name, values in trivial.items()}
        expected = stock.evaluate("(k, float(a.sum()))")
        print("  restore after kill -9 …", flush=True)
        persistent.kill()
        started = time.perf_counter()
        persistent.driver.start()
        restored = persistent.driver.execute("(k, float(a.sum()))").result
        result["restore_s"] = time.perf_counter() - started
        result["restored_equal"] = restored == expected
        result["expected"] = expected
    finally:
        stock.stop()
        persistent.stop()
    if kishu_cells:
        result["kishu"] = measure_kishu(root, setup, kishu_cells)
    return result


def measure_kishu(root: Path, setup: str, cells: int) -> dict:
    problem = ensure_kishu()
    if problem is not None:
        return {"problem": problem}
    kishu = Kishu(fresh_workdir(root, "kishu")).start()
    try:
        kishu.execute(setup, timeout=1800)
        before = kishu.store_bytes() or 0
        times = [kishu.execute(CHANGE, timeout=1800) for _ in range(cells)]
        return {"cells": cells, "times": sorted(times), "growth": ((kishu.store_bytes() or 0) - before) / cells}
    finally:
        kishu.stop()


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def table(result: dict, command: str) -> tuple[str, bool]:
    nbytes, cells = result["nbytes"], result["cells"]
    growth = result["store_after"] - result["store_after_setup"]
    allowed = nbytes + cells * ALLOWED_PER_CELL
    store_met = result["store_after"] <= allowed
    stock, ours = result["change"]["stock"], result["change"]["persistent"]
    trivial_stock, trivial_ours = result["trivial"]["stock"], result["trivial"]["persistent"]
    lines = [
        f"Command: `{command}` ({nbytes / 1024**3:.2f} GiB float64 array; medians, min–max in brackets).",
        "",
        "| | stock | persistent-python3 | ratio / extra | target | met |",
        "|---|---|---|---|---|---|",
        f"| `a[i] = x`, {cells} cells, each touching another piece | {_ms(stock):.1f} ms | {_ms(ours):.1f} ms ({ours[0] * 1000:.0f}–{ours[-1] * 1000:.0f}) "
        f"| {_ms(ours) - _ms(stock):+.1f} ms | — | — |",
        f"| store after those {cells} cells | — | {result['store_after'] / 1024**3:.3f} GiB ({growth / 1024**2:.0f} MiB added, "
        f"{growth / cells / 1024**2:.1f} MiB per cell) | — | ≤ {allowed / 1024**3:.3f} GiB (the array + {cells} × 16 MiB) | {'yes' if store_met else 'NO'} |",
        f"| trivial cell beside it (`z = 1`, 30 cells) | {_ms(trivial_stock):.2f} ms | {_ms(trivial_ours):.2f} ms ({trivial_ours[0] * 1000:.1f}–{trivial_ours[-1] * 1000:.1f}) "
        f"| {_ms(trivial_ours) / _ms(trivial_stock):.3f}× | ≤ 1.05× | {'yes' if _ms(trivial_ours) <= 1.05 * _ms(trivial_stock) else 'NO'} |",
        f"| restore after kill -9, to the first reply | — | {result['restore_s']:.2f} s | — | — | "
        f"{'exact' if result['restored_equal'] else 'DIFFERS'} |",
        "",
        f"The background writes of the {cells} cells were done {result['drain_s']:.2f} s after the last reply.",
    ]
    kishu = result.get("kishu")
    if kishu:
        if "problem" in kishu:
            lines.append(f"Kishu did not run: {kishu['problem']}.")
        else:
            lines.append(
                f"Kishu 0.3.4 on the same cells ({kishu['cells']} cells): {_ms(kishu['times']):.0f} ms per cell, "
                f"{kishu['growth'] / 1024**2:.0f} MiB added to its store per cell."
            )
    return "\n".join(lines), store_met


def write_docs(text: str) -> None:
    write_section(ROOT / "BENCHMARKS.md", MARK, "In-place changes to a large array (issue #16)", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--kishu-cells", type=int, default=0, help="also run Kishu for this many cells (0: not)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    command = "python benchmarks/arrays.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="arrays-") as root:
        result = measure(Path(root), args.cells, args.gib, args.kishu_cells)
    text, met = table(result, command.strip())
    print(text)
    if args.write_docs:
        write_docs(text)
    return 0 if met and result["restored_equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
