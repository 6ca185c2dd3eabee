"""A long session under load: 10,000 cells and 5,000 variables, then a kill -9.

Measures what a user of such a session waits for: the per-cell round trip late in
the session, the restore after SIGKILL, ``%persist history`` / ``status``, and the
command line's ``sessions`` / ``show`` / ``history``. Prints a Markdown table.

    python benchmarks/load.py --cells 10000 --variables 5000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from persistent_kernel.driver import KernelDriver

SESSION = "load"


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--variables", type=int, default=5_000)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="pk-load-"))
    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    env.update(PERSISTENT_KERNEL_HOME=str(home), PERSISTENT_KERNEL_SESSION=SESSION)
    k = KernelDriver(env=env).start()
    rows: list[tuple[str, str]] = []
    try:
        took, _ = timed(lambda: k.execute(f"for i in range({args.variables}):\n    globals()[f'v{{i}}'] = [i, str(i)]"))
        rows.append((f"cell creating {args.variables:,} variables", f"{took:.2f} s"))
        started = time.perf_counter()
        late: list[float] = []
        for n in range(args.cells - 1):
            code = f"v{n % args.variables}.append({n})" if n % 2 else f"y = {n}"
            t, result = timed(lambda code=code: k.execute(code))
            assert result.status == "ok", result.evalue
            if n >= args.cells - 201:
                late.append(t)
        rows.append((f"{args.cells:,} cells, wall time", f"{time.perf_counter() - started:.0f} s"))
        rows.append(("round trip of a cell, last 200 cells (median)", f"{statistics.median(late) * 1000:.1f} ms"))
        for command in ("%persist history", "%persist status"):
            took, _ = timed(lambda command=command: k.execute(command))
            rows.append((f"`{command}` round trip", f"{took * 1000:.0f} ms"))
        k.kill()
        took, _ = timed(lambda: k.start())
        first, result = timed(lambda: k.execute("pass"))
        rows.append(("restore after SIGKILL (start + first cell)", f"{took + first:.2f} s"))
        rows.append(("restore summary", "`" + result.said.strip()[:160] + "`"))
        check = k.evaluate(f"sum(len(globals()[f'v{{i}}']) for i in range({args.variables}))")
        expected = 2 * args.variables + (args.cells - 1) // 2
        rows.append(("values after the restore", "all correct" if int(check) == expected else f"WRONG: {check} != {expected}"))
        took, _ = timed(lambda: k.execute("%persist history"))
        rows.append(("`%persist history` after the restore", f"{took * 1000:.0f} ms"))
    finally:
        k.shutdown()
    cli = [sys.executable, "-m", "persistent_kernel"]
    for command in (["sessions"], ["show", SESSION], ["history", SESSION]):
        took, done = timed(lambda command=command: subprocess.run(cli + command, env=env, capture_output=True, check=False))
        rows.append((f"`persistent-kernel {' '.join(command)}`", f"{took:.2f} s (exit {done.returncode})"))
    size = sum(p.stat().st_size for p in home.rglob("*") if p.is_file())
    rows.append(("store on disk", f"{size / 1e6:.1f} MB"))
    print(f"| {args.cells:,} cells, {args.variables:,} variables | |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")
    subprocess.run(["rm", "-rf", str(home)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
