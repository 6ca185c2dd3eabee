"""A replica on object storage (issue #18), against a real S3 server (moto's server mode on
127.0.0.1, through s3fs), side by side in one run:

- cells' round trip with a replica against the same kernel without one (taking turns);
- replication lag: from a small cell's reply until the replica's manifest names it;
- resume on an empty node: ``--gib`` GiB + 1,000 variables, from the kernel's start to the
  reply of its first cell, against the download of the same bytes from the same server
  plus a stock kernel's start;
- random kills with node switches: each round starts a kernel on a new, empty node, runs
  cells, waits until the replica has them (acknowledged and replicated), runs a few more,
  and is SIGKILLed at a random moment; the next node must have every replicated cell.

    python benchmarks/replica.py [--cells 40] [--gib 1] [--kills 20] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from contenders import Persistent, Stock, alternate, fresh_workdir, write_section  # noqa: E402

from persistent_kernel import replica as rep  # noqa: E402
from tests.s3server import s3_server  # noqa: E402

MARK = "<!-- replica -->"
ROUNDS = 3  # of --cells cells each, per round-trip row
RESUMES = 3  # resumes on an empty node (and yardsticks), the median taken
SESSION = "bench"


class Node(Persistent):
    """A persistent kernel on a node of its own (its own home), on the shared replica."""

    def __init__(self, workdir: Path, url: str, env: dict[str, str], name: str = "replicated", label: str = "persistent-python3 + replica") -> None:
        super().__init__(workdir)
        self.name, self.label = name, label
        self.env.update(env, PERSISTENT_KERNEL_REPLICA=url)
        self.driver.env.update(self.env)


def through(url: str) -> int:
    manifest = rep.Replica(url, SESSION).manifest()
    return manifest.through if manifest is not None else 0


def wait_replicated(url: str, seq: int, timeout: float = 600) -> float:
    started = time.perf_counter()
    while through(url) < seq:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"the replica never reached execution #{seq}")
        time.sleep(0.005)
    return time.perf_counter() - started


def last_seq(node: Node) -> int:
    return int(node.evaluate("get_ipython().kernel.journal.store.last_committed_seq()"))


def measure(root: Path, cells: int, gib: float, kills: int, seed: int) -> dict:
    result: dict = {}
    with s3_server(root / "moto.log") as s3:
        # 1. round trips, with and without a replica, taking turns. Two kernels without one: the
        # ratio is against their mean, and their ratio to each other is the run's A/A spread
        # (two identical kernels differed by 1-5 % on this VM: as much as the target allows, or more).
        plain = Persistent(fresh_workdir(root, "plain")).start()
        twin = Persistent(fresh_workdir(root, "plain-twin")).start()
        twin.name = "twin"
        node = Node(fresh_workdir(root, "node-a"), s3.url, s3.env).start()
        try:
            for contender in (plain, twin, node):
                contender.execute("x = 0")
            wait_replicated(s3.url, last_seq(node))  # the replica's worker is up (its first use costs a second of CPU)
            alternate([plain, twin, node], "z = 1", 10)  # warm up
            for key, code in (("trivial", "z = 1"), ("change", "x += 1")):
                times: dict[str, list[float]] = {"persistent": [], "twin": [], "replicated": []}
                for _ in range(ROUNDS):
                    for name, values in alternate([plain, twin, node], code, cells).items():
                        times[name] += values
                result[key] = times
            # 2. lag after a small cell
            lags = []
            for i in range(cells):
                node.execute(f"y = {i}")
                lags.append(wait_replicated(s3.url, last_seq(node)))
            result["lag"] = lags
            # 3. a large session, then node A is killed
            nbytes = int(gib * 2**30)
            node.execute(f"import numpy as np\nbig = np.random.default_rng(5).random({nbytes // 8})\ntotal = float(big.sum())", timeout=1800)
            node.execute("for i in range(1000):\n    globals()[f'v{i}'] = i", timeout=600)
            node.wait_durable(1800)
            wait_replicated(s3.url, last_seq(node), timeout=1800)
            expected = node.evaluate("total, v999")
            node.kill()
        finally:
            plain.stop()
            twin.stop()
            node.stop()
        # the yardstick: the same bytes downloaded from the same server, and a stock kernel's start;
        # then node B. Each RESUMES times, taking turns (1 GiB of I/O is noisy on this VM): medians.
        replica = rep.Replica(s3.url, SESSION)
        manifest = replica.manifest()
        files = {name.rsplit("/", 1)[-1] for name in replica.fs.ls(replica._path("files"), detail=False)}
        downloads, stock_starts, resumes, same = [], [], [], True
        for attempt in range(RESUMES):
            download_dir = Path(tempfile.mkdtemp(dir=root))
            os.sync()  # each timing starts with no dirty pages of the one before it to write back
            started = time.perf_counter()
            for digest in files:
                replica.get_file(digest, download_dir / digest)
            downloads.append(time.perf_counter() - started)
            result["download_bytes"] = sum(p.stat().st_size for p in download_dir.iterdir())
            shutil.rmtree(download_dir)
            stock = Stock(fresh_workdir(root, f"stock-{attempt}"))
            os.sync()
            started = time.perf_counter()
            stock.start()
            stock.execute("1")
            stock_starts.append(time.perf_counter() - started)
            stock.stop()
            b = Node(fresh_workdir(root, f"node-b-{attempt}"), s3.url, s3.env)
            os.sync()
            started = time.perf_counter()
            b.start()
            restored = b.evaluate("total, v999")
            resumes.append(time.perf_counter() - started)
            same &= restored == expected
            b.stop()
            b.remove()
        result["download_s"] = statistics.median(downloads)
        result["stock_start_s"] = statistics.median(stock_starts)
        result["resume_s"] = statistics.median(resumes)
        result["resumes"] = resumes
        result["resume_same"] = same
        result["segments"] = len(manifest.segments) if manifest else 0
        # 4. random kills with node switches
        rng = random.Random(seed)
        lost = 0
        rounds = []
        previous_ack = 0
        for k in range(kills):
            n = Node(fresh_workdir(root, f"kill-{k}"), s3.url, s3.env).start()
            try:
                counter = int(n.evaluate("globals().get('counter', 0)"))
                log_ok = n.evaluate("globals().get('log', []) == list(range(1, globals().get('counter', 0) + 1))") == "True"
                if counter < previous_ack or not log_ok:
                    lost += 1
                n.execute("counter = globals().get('counter', 0)\nlog = globals().get('log', [])")
                for _ in range(rng.randint(1, 4)):
                    n.execute("counter += 1\nlog.append(counter)")
                wait_replicated(s3.url, last_seq(n))
                previous_ack = int(n.evaluate("counter"))  # acknowledged and replicated
                for _ in range(rng.randint(0, 3)):
                    n.execute("counter += 1\nlog.append(counter)")
                time.sleep(rng.uniform(0, 0.05))
                n.kill()
                rounds.append((counter, previous_ack))
            finally:
                n.stop()
        last = Node(fresh_workdir(root, "kill-final"), s3.url, s3.env).start()
        final = int(last.evaluate("globals().get('counter', 0)"))
        if final < previous_ack:
            lost += 1
        last.stop()
        result["kills"] = kills
        result["lost"] = lost
        result["final_counter"] = final
        result["last_ack"] = previous_ack
    return result


def table(result: dict, command: str) -> tuple[str, bool]:
    def median_ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    rows = ["| measure | without replica | with replica | ratio or figure | target |", "|---|---|---|---|---|"]
    met = True
    for label, key in (("`z = 1` round trip", "trivial"), ("`x += 1` round trip", "change")):
        a, twin, b = (median_ms(result[key][name]) for name in ("persistent", "twin", "replicated"))
        without = (a + twin) / 2
        ok = b / without <= 1.02
        met &= ok
        rows.append(
            f"| {label} | {a:.2f} ms and {twin:.2f} ms (A/A {twin / a:.3f}×) | {b:.2f} ms | {b / without:.3f}× | ≤ 1.02× {'met' if ok else 'NOT met'} |"
        )
    lag = result["lag"]
    lag_p90 = statistics.quantiles(lag, n=10, method="inclusive")[-1]
    ok = max(lag) <= 1.0
    met &= ok
    rows.append(f"| replication lag after a small cell | | median {median_ms(lag):.0f} ms, p90 {lag_p90 * 1000:.0f} ms, max {max(lag) * 1000:.0f} ms | | ≤ 1 s {'met' if ok else 'NOT met'} |")
    yardstick = result["download_s"] + result["stock_start_s"]
    ratio = result["resume_s"] / yardstick
    ok = ratio <= 2.0 and result["resume_same"]
    met &= ok
    rows.append(
        f"| resume on an empty node ({result['download_bytes'] / 2**30:.2f} GiB + 1,000 variables) | download {result['download_s']:.2f} s + "
        f"stock start {result['stock_start_s']:.2f} s = {yardstick:.2f} s | {result['resume_s']:.2f} s | {ratio:.2f}× | ≤ 2× {'met' if ok else 'NOT met'} |"
    )
    ok = result["lost"] == 0
    met &= ok
    rows.append(
        f"| random kills with node switches | | {result['kills']} kills, {result['lost']} acknowledged-and-replicated cells lost | "
        f"last counter {result['final_counter']} (acknowledged {result['last_ack']}) | 0 lost {'met' if ok else 'NOT met'} |"
    )
    text = "\n".join(rows) + (
        f"\n\nCommand: `{command}`. Round trips are medians of {ROUNDS} × {len(result['change']['replicated']) // ROUNDS} cells taken in "
        "turns by three kernels: two without a replica (the ratio is against the mean of their medians; their ratio to each "
        "other, A/A, is the run-to-run spread of identical kernels) and one with a replica, whose requests run in a worker "
        "process of their own (`replicaworker`), so the object store's client never runs in the kernel; the lag is "
        "from a cell's reply until the replica's manifest names that cell, polled from another process. The resume "
        f"yardstick (median of {RESUMES}, taking turns with node B, each timing after `sync`) downloads the replica's files one by one with s3fs and "
        "starts a stock kernel; node B (resumes: " + ", ".join(f"{r:.2f} s" for r in result["resumes"]) + ") fetches the "
        f"same files in parallel ({rep.DOWNLOAD_THREADS} threads), rebuilds the store, and restores. Restored values "
        f"equal: {result['resume_same']}. Replica segments after the run: {result['segments']}."
    )
    return text, met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    command = "python benchmarks/replica.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="pk-replica-bench-") as root:
        result = measure(Path(root), args.cells, args.gib, args.kills, args.seed)
    text, met = table(result, command.strip())
    print(text)
    if args.write_docs:
        write_section(ROOT / "BENCHMARKS.md", MARK, "A replica on object storage (issue #18)", text)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
