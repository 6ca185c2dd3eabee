"""A long session, side by side with the stock kernel: does a trivial cell cost more after thousands of cells?

    python benchmarks/long_session.py [--cells 6000] [--stretch 1000] [--write-docs]

IPython adds names to the namespace with every cell (``_iN``, and ``_N`` for results), so
anything the kernel does per cell over the whole namespace grows with the session. Both
kernels run the same trivial cell (``y = 2`` beside 100 small variables), taking turns cell
by cell; the table gives the median round trip and the ratio to stock for each stretch of
cells, and the ratio's change from the first stretch to the last.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import Persistent, Stock, alternate, fresh_workdir, write_section  # noqa: E402
from run import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- long-session -->"
SETUP = "\n".join(f"v{i} = list(range({i}))" for i in range(100))
CELL = "y = 2"


def measure(root: Path, cells: int) -> dict[str, list[float]]:
    running = [Stock(fresh_workdir(root, "stock")).start(), Persistent(fresh_workdir(root, "persistent")).start()]
    try:
        for contender in running:
            contender.execute(SETUP)
            for _ in range(20):  # warm up
                contender.execute(CELL)
        return alternate(running, CELL, cells)
    finally:
        for contender in running:
            contender.stop()


def table(times: dict[str, list[float]], stretch: int, command: str) -> str:
    lines = [
        *provenance(command),
        "",
        "| cells | stock median | persistent median | ratio |",
        "|---|---|---|---|",
    ]
    ratios = []
    for start in range(0, len(times["stock"]), stretch):
        stock = statistics.median(times["stock"][start : start + stretch])
        persistent = statistics.median(times["persistent"][start : start + stretch])
        ratios.append(persistent / stock)
        lines.append(f"| {start + 1}–{start + stretch} | {stock * 1e3:.2f} ms | {persistent * 1e3:.2f} ms | {ratios[-1]:.3f} |")
    lines += [
        "",
        f"`{CELL}` beside 100 small variables, the two kernels taking turns cell by cell after 20 warm-up cells. "
        f"The ratio moved by {ratios[-1] - ratios[0]:+.3f} from the first stretch to the last.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=6000)
    parser.add_argument("--stretch", type=int, default=1000)
    parser.add_argument("--write-docs", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    command = f"python benchmarks/long_session.py --cells {args.cells} --stretch {args.stretch}"
    with tempfile.TemporaryDirectory(prefix="long-session-") as root:
        times = measure(Path(root), args.cells)
    text = table(times, args.stretch, command)
    print(text)
    if args.write_docs:
        write_section(ROOT / "BENCHMARKS.md", MARK, "A long session: the trivial cell after thousands of cells (issue #16)", text)


if __name__ == "__main__":
    main()
