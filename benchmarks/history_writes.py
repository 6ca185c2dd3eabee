"""IPython's history writes and the trivial cell: what each kernel pays, with and without batching.

    python benchmarks/history_writes.py [--cells 1000] [--write-docs]

IPython commits every input to its history database from a thread woken by each cell;
this kernel batches those writes once the kernel is idle (``historywrites.py``), the
journal backing them. So "persistent / stock as shipped" mixes two things: what
persistence adds, and what the batching saves. This run separates them, four kernels
taking turns cell by cell (``y = 2`` beside 100 small variables):

- stock python3 as shipped (every cell written);
- stock python3 with ``--HistoryManager.db_cache_size=100`` (the same batching);
- persistent-python3 as shipped (batched);
- persistent-python3 with ``--PersistentKernel.history_write_delay=0`` (every cell written).

Persistence's own cost is persistent / stock with the same history writes, in both pairs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import Contender, Persistent, Stock, alternate, fresh_workdir, write_section  # noqa: E402
from run import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- history-writes -->"
SETUP = "\n".join(f"v{i} = list(range({i}))" for i in range(100))
CELL = "y = 2"
WARM_UP = 30

KERNELS = [
    ("stock", "stock python3, every cell written (as shipped)", Stock, []),
    ("stock-batched", "stock python3, `--HistoryManager.db_cache_size=100`", Stock, ["--HistoryManager.db_cache_size=100"]),
    ("persistent", "persistent-python3, batched once idle (as shipped)", Persistent, []),
    ("persistent-every-cell", "persistent-python3, `--PersistentKernel.history_write_delay=0`", Persistent, ["--PersistentKernel.history_write_delay=0"]),
]


def measure(root: Path, cells: int) -> dict[str, list[float]]:
    running: list[Contender] = []
    try:
        for name, _label, kind, arguments in KERNELS:
            contender = kind(fresh_workdir(root, name), extra_arguments=arguments)
            contender.name = name
            running.append(contender.start())
        for contender in running:
            contender.execute(SETUP)
        alternate(running, CELL, WARM_UP)
        return alternate(running, CELL, cells)
    finally:
        for contender in running:
            contender.stop()


def table(times: dict[str, list[float]], command: str) -> str:
    medians = {name: statistics.median(values) for name, values in times.items()}
    spread = {
        name: (statistics.quantiles(values, n=4)[0], statistics.quantiles(values, n=4)[2]) for name, values in times.items()
    }
    lines = [
        *provenance(command),
        "",
        "| kernel | median | quartiles | / stock as shipped | / stock with the same history writes |",
        "|---|---|---|---|---|",
    ]
    same = {"stock": "stock", "stock-batched": "stock-batched", "persistent": "stock-batched", "persistent-every-cell": "stock"}
    for name, label, _kind, _arguments in KERNELS:
        low, high = spread[name]
        lines.append(
            f"| {label} | {medians[name] * 1e3:.2f} ms | {low * 1e3:.2f}–{high * 1e3:.2f} ms | "
            f"{medians[name] / medians['stock']:.3f} | {medians[name] / medians[same[name]]:.3f} |"
        )
    saved = medians["stock"] - medians["stock-batched"]
    lines += [
        "",
        f"`{CELL}` beside 100 small variables, {len(times['stock'])} cells per kernel after {WARM_UP} warm-up cells, "
        f"the four kernels taking turns cell by cell. Batching IPython's history writes saves stock "
        f"{saved * 1e3:.2f} ms a cell; persistence's own cost is the last column of the two persistent rows.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--write-docs", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    command = f"python benchmarks/history_writes.py --cells {args.cells}"
    with tempfile.TemporaryDirectory(prefix="history-writes-") as root:
        times = measure(Path(root), args.cells)
    text = table(times, command)
    print(text)
    if args.write_docs:
        write_section(ROOT / "BENCHMARKS.md", MARK, "IPython's history writes and the trivial cell (issue #16)", text)


if __name__ == "__main__":
    main()
