"""A slider drag on one interpreter, three kernels taking turns: stock, persistent with the
handler watched through ``sys.monitoring`` (Python 3.12+, the default there), and persistent
with the trace function (what Python 3.10-3.11 use) — what the watcher alone costs a drag.

    python benchmarks/drag_watchers.py [--drags 400] [--write-docs]

Run it with a Python 3.12+ environment (``python3.12 -m venv … && pip install '.[test]'``); on
3.10-3.11 both persistent kernels use the trace function. The drag is ``run.drag``: the
``comm_msg`` JupyterLab's widget manager sends, timed to the kernel's idle status.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import Persistent, Stock, fresh_workdir, write_section  # noqa: E402
from run import WIDGET_SETUP, drag  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- drag-watchers -->"
WARM_UP = 20
# The kernel's recorder falls back to the trace function when it cannot have a sys.monitoring tool id.
FORCE_TRACE = (
    "import persistent_kernel.events as _events\n_events._MONITOR._tried = True\n_events._MONITOR._tool = None\ndel _events"
)
WATCHER = "__import__('persistent_kernel.events').events._MONITOR._tool"


def measure(root: Path, drags: int) -> str:
    kernels = {
        "stock python3": Stock(fresh_workdir(root, "stock")).start(),
        "persistent-python3, sys.monitoring": Persistent(fresh_workdir(root, "monitoring")).start(),
        "persistent-python3, trace function": Persistent(fresh_workdir(root, "trace")).start(),
    }
    times: dict[str, list[float]] = {label: [] for label in kernels}
    try:
        kernels["persistent-python3, trace function"].execute(FORCE_TRACE)
        comms = {}
        for label, kernel in kernels.items():
            kernel.execute(WIDGET_SETUP)
            comms[label] = ast.literal_eval(kernel.evaluate("slider.model_id"))
            for i in range(WARM_UP):
                drag(kernel.driver, comms[label], i + 1)
        for i in range(drags):
            order = list(kernels.items())
            shift = i % len(order)
            for label, kernel in order[shift:] + order[:shift]:
                times[label].append(drag(kernel.driver, comms[label], 1000 + i))
        tools = {label: kernel.evaluate(WATCHER) for label, kernel in kernels.items() if label != "stock python3"}
    finally:
        for kernel in kernels.values():
            kernel.stop()
    stock = statistics.median(times["stock python3"])
    lines = [
        f"Python {sys.version.split()[0]}; {drags} drags per kernel, taking turns, after {WARM_UP} warm-up drags.",
        "",
        "| slider drag → idle | median (p90) | ratio to stock |",
        "|---|---|---|",
    ]
    for label, spent in times.items():
        p90 = statistics.quantiles(spent, n=10)[-1]
        lines.append(
            f"| {label} | {statistics.median(spent) * 1000:.2f} ms ({p90 * 1000:.2f}) | {statistics.median(spent) / stock:.3f} |"
        )
    lines += ["", f"sys.monitoring tool id held by each persistent kernel (None: the trace function): {tools}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drags", type=int, default=400)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drag-watchers-") as root:
        text = measure(Path(root), args.drags)
    command = "python benchmarks/drag_watchers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = f"`{command.strip()}`\n\n{text}"
    print(text)
    if args.write_docs:
        write_section(ROOT / "BENCHMARKS.md", MARK, "A drag: what watching the handler costs (issue #16)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
