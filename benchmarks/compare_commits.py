"""The persistent kernel at another commit against the working tree, head to head in one run.

    python benchmarks/compare_commits.py BASE [--cells 150] [--restores 3]

For a change that must not cost anything (a restructuring): both kernels run at
once, their cells alternating, so the machine's drift hits both alike. Cases: a
trivial cell beside a 1 GB DataFrame and beside 100 small variables; then a
SIGKILL and the time from a new kernel's start to its first reply (the restore),
with 1,000 more small variables beside the DataFrame. BASE is checked out into a
temporary git worktree and put first on the kernels' PYTHONPATH.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from persistent_kernel.driver import KernelDriver  # noqa: E402

CASES = {
    "trivial cell beside a 1 GB DataFrame": (
        "import numpy as np, pandas as pd\nbig = pd.DataFrame(np.random.default_rng(0).random((2**27 // 16, 16)))",
        "\n".join(f"w{i} = [{i}]" for i in range(1000)),
    ),
    "trivial cell beside 100 small variables": ("\n".join(f"v{i} = {i}" for i in range(100)), ""),
}


def start(tree: str, home: str) -> KernelDriver:
    env = dict(os.environ, PYTHONPATH=tree, PERSISTENT_KERNEL_HOME=home, PERSISTENT_KERNEL_SESSION="compare")
    env.pop("JPY_SESSION_NAME", None)
    return KernelDriver(env=env).start()


def timed(kernel: KernelDriver, code: str) -> float:
    started = time.perf_counter()
    reply = kernel.execute(code)
    elapsed = time.perf_counter() - started
    if reply.status != "ok":
        raise RuntimeError(reply.text)
    return elapsed


def compare(trees: dict[str, str], cells: int, restores: int) -> list[tuple[str, str, str, str]]:
    rows = []
    for case, (setup, before_restore) in CASES.items():
        homes = {name: tempfile.mkdtemp(prefix=f"compare-{name}-") for name in trees}
        kernels = {name: start(tree, homes[name]) for name, tree in trees.items()}
        try:
            for kernel in kernels.values():
                kernel.execute(setup, timeout=600)
                for _ in range(20):
                    timed(kernel, "y = 2")
            times: dict[str, list[float]] = {name: [] for name in kernels}
            for i in range(cells):
                order = list(kernels) if i % 2 else list(reversed(kernels))
                for name in order:
                    times[name].append(timed(kernels[name], "y = 2"))
            base, head = (statistics.median(times[name]) for name in trees)
            rows.append((case, f"{base * 1000:.2f} ms", f"{head * 1000:.2f} ms", f"{head / base:.3f}"))
            if before_restore:
                for kernel in kernels.values():
                    kernel.execute(before_restore)
            restored: dict[str, list[float]] = {name: [] for name in kernels}
            for attempt in range(restores):
                # Who restores first alternates: a kernel that has just restored keeps the machine
                # busy for a moment (its background work), which the other one would always pay.
                for name in list(kernels) if attempt % 2 else list(reversed(kernels)):
                    kernels[name].kill()
                    started = time.perf_counter()
                    kernels[name] = start(trees[name], homes[name])
                    kernels[name].execute("1")
                    restored[name].append(time.perf_counter() - started)
            base, head = (statistics.median(restored[name]) for name in trees)
            rows.append((f"{case}: SIGKILL → first reply", f"{base:.2f} s", f"{head:.2f} s", f"{head / base:.3f}"))
        finally:
            for kernel in kernels.values():
                kernel.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the commit to compare the working tree against")
    parser.add_argument("--cells", type=int, default=150, help="timed cells per kernel and case")
    parser.add_argument("--restores", type=int, default=3, help="SIGKILL and restore, per kernel and case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="compare-base-") as worktree:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", worktree, args.base], check=True)
        try:
            rows = compare({args.base: worktree, "working tree": str(ROOT)}, args.cells, args.restores)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", worktree], check=False)
    print(f"| case | {args.base} | working tree | ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
