"""Widgets, side by side with the stock kernel: a notebook with 1 and with 100 widgets (what a
cell that changes one of them costs, and the restore), and a slider drag.

    python benchmarks/widgets.py [--widgets 100] [--cells 20] [--drags 200] [--write-docs]

Each widget cell makes an ``IntSlider`` and a ``Button`` with an ``on_click`` callback and
displays both (the ipywidgets documentation's event notebook builds widgets this way), so
"100 widgets" is 200 widget variables. Both kernels run the same cells, taking turns cell by
cell. The restore is timed from the kernel's start to the reply of its first cell, after
kill -9. The drag is ``run.measure_widget``: a ``comm_msg`` as JupyterLab sends it, to idle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import Persistent, Stock, alternate, fresh_workdir, write_section  # noqa: E402
from run import measure_widget  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- widgets -->"
MAKE = "s{i} = widgets.IntSlider(description='s{i}')\nb{i} = widgets.Button(description='b{i}')\nb{i}.on_click(lambda b: print('clicked'))\ndisplay(s{i}, b{i})"
CHANGE = "k += 1\ns0.value = k"
RESTORES = 3


def measure(root: Path, count: int, cells: int) -> dict:
    stock = Stock(fresh_workdir(root, "stock")).start()
    persistent = Persistent(fresh_workdir(root, "persistent")).start()
    result: dict = {"count": count}
    try:
        for contender in (stock, persistent):
            contender.execute("import ipywidgets as widgets\nfrom IPython.display import display\nk = 0")
        making = {"stock": [], "persistent": []}
        for i in range(count):
            for contender in (stock, persistent):
                making[contender.name].append(contender.execute(MAKE.format(i=i)))
        result["making_last10"] = {name: statistics.median(times[-10:]) for name, times in making.items()}
        result["change"] = alternate([stock, persistent], CHANGE, cells)
        result["trivial"] = alternate([stock, persistent], "z = 1", cells)
        # values, and every widget live: its comm registered with the kernel, so its frontend reaches it
        probe = (
            "(s0.value, len([n for n in dir() if n[:1] in 'sb' and n[1:].isdigit()]), "
            "all(v.comm.comm_id in __import__('comm').get_comm_manager().comms for n, v in list(globals().items()) if n[:1] in 'sb' and n[1:].isdigit()))"
        )
        expected = stock.evaluate(probe)
        # Timed as a frontend with the cell queued sees it (the kernel's first reply), three times; then
        # once the way jupyter_client's wait_for_ready does it first (its quiet periods on IOPub included).
        restores, equal = [], True
        for _ in range(RESTORES):
            persistent.wait_durable()
            persistent.kill()
            started = time.perf_counter()
            restored = persistent.driver.start_and_execute(probe).result
            restores.append(time.perf_counter() - started)
            equal = equal and restored == expected
        persistent.wait_durable()
        persistent.kill()
        started = time.perf_counter()
        persistent.driver.start()
        restored = persistent.driver.execute(probe).result
        result["restore_ready_s"] = time.perf_counter() - started
        result["restore_s"] = statistics.median(restores)
        result["restores_s"] = restores
        result["restored_equal"] = equal and restored == expected
    finally:
        stock.stop()
        persistent.stop()
    return result


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms"


def table(results: list[dict], drag: str, command: str) -> tuple[str, bool]:
    lines = [
        f"Command: `{command}` (medians; the kernels take turns cell by cell).",
        "",
        "| widgets in the notebook | cell | stock | persistent-python3 | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        for label, key in (("`k += 1; s0.value = k`", "change"), ("`z = 1`", "trivial")):
            stock, ours = r[key]["stock"], r[key]["persistent"]
            lines.append(f"| {r['count']} | {label} | {_ms(stock)} | {_ms(ours)} | {statistics.median(ours) / statistics.median(stock):.2f}× |")
        made = r["making_last10"]
        lines.append(f"| {r['count']} | making a widget pair (last 10) | {made['stock'] * 1000:.1f} ms | {made['persistent'] * 1000:.1f} ms | {made['persistent'] / made['stock']:.2f}× |")
    lines.append("")
    for r in results:
        lines.append(
            f"Restore after kill -9 with {r['count']} widget pairs: {r['restore_s']:.2f} s to the first reply, median of "
            f"{len(r['restores_s'])} ({', '.join(f'{x:.2f}' for x in r['restores_s'])}; the cell sent as the kernel starts, as a frontend "
            f"with a cell queued does); {r['restore_ready_s']:.2f} s when the client first waits as jupyter_client's `wait_for_ready` "
            "does (a kernel_info each second, then IOPub quiet for 0.2 s, twice) "
            f"({'the same values, every widget live' if r['restored_equal'] else 'DIFFERENT'}; target ≤ 2 s: {'met' if r['restore_s'] <= 2 else 'NOT met'})."
        )
    few, many = results[0], results[-1]
    flat = statistics.median(many["change"]["persistent"]) <= 1.25 * statistics.median(few["change"]["persistent"])
    lines += ["", f"A cell changing one widget costs with {many['count']} what it costs with {few['count']}: {'yes' if flat else 'NO'} (within 25%).", "", drag]
    met = flat and all(r["restored_equal"] and r["restore_s"] <= 2 for r in results)
    return "\n".join(lines), met


def write_docs(text: str) -> None:
    write_section(ROOT / "BENCHMARKS.md", MARK, "Widgets: many of them, and a drag (issue #16)", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widgets", type=int, default=100)
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--drags", type=int, default=200)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    command = "python benchmarks/widgets.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="widgets-") as root:
        results = [measure(Path(root), count, args.cells) for count in (1, args.widgets)]
        drag = measure_widget(Path(root), args.drags)
    text, met = table(results, drag, command.strip())
    print(text)
    if args.write_docs:
        write_docs(text)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
