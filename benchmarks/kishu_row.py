"""A stock ipykernel with Kishu 0.3.4 checkpointing after every cell, for the benchmark.

Kishu (PyPI ``kishu``, illinoisdata) lives in its own venv (its pins drag in old ``typing``/
``dataclasses`` backports, flask, pandas...), so the kernel runs under ``KISHU_PYTHON``.
``contenders.ensure_kishu`` makes that venv on first use (``~/.cache/persistent_kernel/kishu-venv``):

    python3 -m venv VENV && VENV/bin/pip install kishu==0.3.4 ipykernel numpy pandas

``kishu init NB.ipynb`` normally asks a running Jupyter server which kernel holds the notebook
and then executes ``from kishu import init_kishu; init_kishu("/abs/NB.ipynb")`` in it. We skip
the server and run that same line ourselves against an empty ``.ipynb`` we write into
``workdir`` (Kishu reads that file after every cell, so it must exist). The kernel gets
``ENV_KISHU_TEST_MODE=1`` (no JavaScript "save notebook"/"reload page" requests to a frontend
that isn't there; the per-cell commit path is unchanged) and ``KISHU_PATH_ROOT=workdir`` (its
config.ini goes to ``workdir/.kishu`` instead of ``~/.kishu``). From then on IPython's
``post_run_cell`` hook commits every cell synchronously, before the execute_reply, into the
SQLite file ``workdir/kishu_bench.kishudb``.

Driver side needs only jupyter_client (and the stdlib); run the self-test with
``KISHU_PYTHON=VENV/bin/python python benchmarks/kishu_row.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import jupyter_client
from jupyter_client.kernelspec import KernelSpecManager

KISHU_PYTHON = os.environ.get("KISHU_PYTHON", "python-with-kishu")  # contenders.ensure_kishu sets it
KISHU_VERSION = "0.3.4"
NOTEBOOK = "kishu_bench.ipynb"  # its store is kishu_bench.kishudb beside it
SPEC_NAME = "kishu-python3"


def kishu_available() -> str | None:
    """None if ``KISHU_PYTHON`` can run a Kishu kernel, otherwise a one-line reason."""
    if not os.path.exists(KISHU_PYTHON):
        return f"kishu {KISHU_VERSION} not installed: no python at {KISHU_PYTHON} (set KISHU_PYTHON)"
    probe = subprocess.run([KISHU_PYTHON, "-c", "import ipykernel, kishu; print(kishu.__version__)"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or ["no output"]
        return f"kishu {KISHU_VERSION} not importable with {KISHU_PYTHON}: {lines[-1]}"
    if probe.stdout.strip() != KISHU_VERSION:
        return f"{KISHU_PYTHON} has kishu {probe.stdout.strip()}, not {KISHU_VERSION}"
    return None


def store_path(workdir: str) -> Path:
    return Path(workdir, NOTEBOOK).with_suffix(".kishudb")


def store_bytes(workdir: str) -> int:
    """Size on disk of Kishu's SQLite store (with any -wal/-journal beside it)."""
    return sum(p.stat().st_size for p in Path(workdir).glob(store_path(workdir).name + "*"))


def commit_count(workdir: str) -> int:
    with sqlite3.connect(store_path(workdir)) as con:
        return con.execute("select count(*) from commit_entry").fetchone()[0]


def execute(kc: jupyter_client.BlockingKernelClient, code: str, timeout: float = 120.0) -> tuple[float, dict]:
    """Round trip of one cell: execute_request sent -> execute_reply and iopub idle received."""
    started = time.perf_counter()
    msg_id = kc.execute(code)
    reply, idle = None, False
    while reply is None or not idle:
        if reply is None:
            reply = kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") != msg_id:
                reply = None
                continue
        while not idle:
            msg = kc.get_iopub_msg(timeout=timeout)
            idle = (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle")
    return time.perf_counter() - started, reply["content"]


def start_kishu_kernel(workdir: str) -> tuple[jupyter_client.KernelManager, jupyter_client.BlockingKernelClient]:
    """Start an ipykernel under ``KISHU_PYTHON`` in ``workdir`` with Kishu attached; returns km, kc."""
    workdir = os.path.abspath(workdir)
    spec_dir = Path(workdir, "kernels", SPEC_NAME)
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [KISHU_PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python 3 (kishu {KISHU_VERSION})", "language": "python"}))
    notebook = Path(workdir, NOTEBOOK)
    if not notebook.exists():
        notebook.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(ENV_KISHU_TEST_MODE="1", KISHU_PATH_ROOT=workdir)

    km = jupyter_client.KernelManager(kernel_name=SPEC_NAME,
                                      kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]))
    # Kishu takes the kernel id from the connection file's name, so it must be kernel-<id>.json.
    km.connection_file = str(Path(workdir, f"kernel-{uuid.uuid4()}.json"))
    with open(Path(workdir, "kernel.log"), "ab") as log:  # kernel stdout/stderr
        km.start_kernel(env=env, cwd=workdir, stdout=log, stderr=log)
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        _, content = execute(kc, f"from kishu import init_kishu; init_kishu({str(notebook)!r})")
        if content["status"] != "ok":
            raise RuntimeError(f"init_kishu failed: {content.get('ename')}: {content.get('evalue')}")
    except Exception:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        raise
    return km, kc


if __name__ == "__main__":
    reason = kishu_available()
    if reason:
        raise SystemExit(reason)
    workdir = tempfile.mkdtemp(prefix="kishu-row-")
    t0 = time.perf_counter()
    km, kc = start_kishu_kernel(workdir)
    print(f"kernel + kishu ready in {time.perf_counter() - t0:.2f} s; store {store_path(workdir)}")
    try:
        commits0 = commit_count(workdir)
        times = []
        for _ in range(10):
            elapsed, content = execute(kc, "x = 1")
            assert content["status"] == "ok", content
            times.append(elapsed * 1000)
        print("x = 1 round trips (ms):", " ".join(f"{t:.1f}" for t in times))
        print(f"  median {statistics.median(times):.1f} ms, min {min(times):.1f} ms;"
              f" commits {commits0} -> {commit_count(workdir)}")
        before = store_bytes(workdir)
        elapsed, content = execute(kc, "import numpy as np; a = np.ones(10_000_000)")
        assert content["status"] == "ok", content
        print(f"80 MB array cell: {elapsed * 1000:.0f} ms; store {before / 1e6:.2f} MB -> "
              f"{store_bytes(workdir) / 1e6:.2f} MB; commits now {commit_count(workdir)}")
        elapsed, _ = execute(kc, "x = 1")
        print(f"x = 1 with the array in the namespace: {elapsed * 1000:.1f} ms")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
