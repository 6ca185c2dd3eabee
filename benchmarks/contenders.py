"""The kernels the benchmarks compare, behind one small interface.

- ``stock``: the stock ``python3`` ipykernel (the baseline);
- ``dill``: the stock kernel with ``dill.dump_module`` (formerly ``dump_session``) of the
  whole namespace after every cell, the approach users write by hand;
- ``kishu``: a stock ipykernel with Kishu 0.3.4 attached (``kishu_row``), in its own venv,
  installed from PyPI on first use;
- ``persistent``: persistent-python3.

Each contender runs a cell and returns its round trip (execute_request sent → execute_reply
and idle received), knows its kernel's pid and the bytes its store holds on disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from persistent_kernel import KERNEL_NAME
from persistent_kernel.driver import KernelDriver
from persistent_kernel.session import resolve_session

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import kishu_row

KISHU_VENV = Path(os.environ.get("KISHU_VENV", Path.home() / ".cache" / "persistent_kernel" / "kishu-venv"))


def compile_package() -> None:
    """Byte-compile persistent_kernel, as pip does when it installs the wheel.

    The stock kernel's modules come compiled from site-packages. An editable (development)
    install under ``PYTHONDONTWRITEBYTECODE`` would instead compile our ~70 modules from
    source at every kernel start (measured: ~0.2 s), a cost no installed copy pays.
    """
    import compileall

    import persistent_kernel

    compileall.compile_dir(str(Path(persistent_kernel.__file__).parent), quiet=1)


compile_package()


class CellFailed(RuntimeError):
    pass


def _dir_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Contender:
    name = ""
    label = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> Contender:
        raise NotImplementedError

    def execute(self, code: str, timeout: float = 600) -> float:
        raise NotImplementedError

    def evaluate(self, expression: str) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def store_bytes(self) -> int | None:
        return None

    def stop(self) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        """Delete the contender's working directory and store (call after ``stop``)."""
        shutil.rmtree(self.workdir, ignore_errors=True)


class _DriverContender(Contender):
    kernel_name = "python3"

    def __init__(self, workdir: Path, extra_arguments: list[str] | None = None) -> None:
        super().__init__(workdir)
        self.env = dict(os.environ, PERSISTENT_KERNEL_HOME=str(workdir / "pk-home"), PERSISTENT_KERNEL_SESSION="bench")
        self.driver = KernelDriver(
            self.kernel_name, env=self.env, cwd=str(workdir), kernel_log=subprocess.DEVNULL, extra_arguments=extra_arguments
        )

    def start(self) -> Contender:
        self.driver.start()
        return self

    def execute(self, code: str, timeout: float = 600) -> float:
        started = time.perf_counter()
        result = self.driver.execute(code, timeout=timeout)
        elapsed = time.perf_counter() - started
        if result.status != "ok":
            raise CellFailed(f"{self.name}: {code!r} failed: {result.ename}: {result.evalue}")
        return elapsed

    def evaluate(self, expression: str) -> str:
        return self.driver.evaluate(expression)

    @property
    def pid(self) -> int:
        return self.driver.km.provisioner.process.pid

    def stop(self) -> None:
        if self.driver.km is not None:
            self.driver.shutdown()


class Stock(_DriverContender):
    name = "stock"
    label = "stock python3"


class DillEveryCell(_DriverContender):
    name = "dill"
    label = "stock + `dill.dump_module()` after every cell"

    def start(self) -> Contender:
        super().start()
        target = self.workdir / "session.pkl"
        self.execute(
            "import dill as _dill\n"
            f"get_ipython().events.register('post_run_cell', lambda _result: _dill.dump_module({str(target)!r}))"
        )
        return self

    def store_bytes(self) -> int | None:
        path = self.workdir / "session.pkl"
        return path.stat().st_size if path.exists() else 0


class Persistent(_DriverContender):
    name = "persistent"
    label = "persistent-python3"
    kernel_name = KERNEL_NAME

    @property
    def store_path(self) -> Path:
        return resolve_session(self.env).store_path

    def store_bytes(self) -> int | None:
        return _dir_bytes(self.store_path)

    def wait_durable(self, timeout: float = 600) -> float:
        return wait_durable(self.driver, timeout)

    def kill(self) -> None:
        self.driver.kill()


def wait_durable(driver: KernelDriver, timeout: float = 600) -> float:
    """Seconds until a persistent kernel's background writer has nothing left to write."""
    started = time.perf_counter()
    while driver.evaluate("get_ipython().kernel.journal.writer.pending") != "0":
        if time.perf_counter() - started > timeout:
            raise TimeoutError("background writes did not finish")
        time.sleep(0.01)
    return time.perf_counter() - started


def alternate(running: list[Contender], code: str, cells: int) -> dict[str, list[float]]:
    """Round trips of ``code`` per contender, the contenders taking turns cell by cell
    (who goes first rotates), so all see the same machine load."""
    times: dict[str, list[float]] = {c.name: [] for c in running}
    for i in range(cells):
        shift = i % len(running)
        for contender in running[shift:] + running[:shift]:
            times[contender.name].append(contender.execute(code))
    return times


def ensure_kishu() -> str | None:
    """Make a venv with Kishu 0.3.4 if there is none; None when usable, else why not."""
    if "KISHU_PYTHON" not in os.environ:
        python = KISHU_VENV / "bin" / "python"
        if not python.exists():
            try:
                subprocess.run([sys.executable, "-m", "venv", str(KISHU_VENV)], check=True, capture_output=True)
                subprocess.run(
                    [str(python), "-m", "pip", "install", "-q", f"kishu=={kishu_row.KISHU_VERSION}", "ipykernel", "numpy", "pandas"],
                    check=True,
                    capture_output=True,
                    timeout=900,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                shutil.rmtree(KISHU_VENV, ignore_errors=True)
                detail = getattr(exc, "stderr", b"") or b""
                tail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else [str(exc)]
                return f"kishu {kishu_row.KISHU_VERSION} could not be installed: {tail[0] if tail else exc}"
        kishu_row.KISHU_PYTHON = str(python)
    return kishu_row.kishu_available()


class Kishu(Contender):
    name = "kishu"
    label = f"stock + Kishu {kishu_row.KISHU_VERSION}"

    def start(self) -> Contender:
        self.km, self.kc = kishu_row.start_kishu_kernel(str(self.workdir))
        return self

    def execute(self, code: str, timeout: float = 600) -> float:
        elapsed, content = kishu_row.execute(self.kc, code, timeout=timeout)
        if content["status"] != "ok":
            raise CellFailed(f"kishu: {code!r} failed: {content.get('ename')}: {content.get('evalue')}")
        return elapsed

    def evaluate(self, expression: str) -> str:
        msg_id = self.kc.execute("", silent=True, user_expressions={"value": expression})
        reply = self.kc.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=60)
        return reply["content"]["user_expressions"]["value"]["data"]["text/plain"]

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid

    def store_bytes(self) -> int | None:
        return kishu_row.store_bytes(str(self.workdir))

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def all_contenders(root: Path) -> tuple[list[type[Contender]], str | None]:
    """The contender classes to run, and why Kishu is missing (None when it runs)."""
    kishu_problem = ensure_kishu()
    kinds: list[type[Contender]] = [Stock, DillEveryCell, Persistent]
    if kishu_problem is None:
        kinds.insert(2, Kishu)
    return kinds, kishu_problem


def fresh_workdir(root: Path, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    return path


def write_section(path: Path, mark: str, title: str, text: str) -> None:
    """Put ``text`` under ``## title`` between two ``mark`` lines of ``path`` (replacing what was there)."""
    document = path.read_text()
    section = f"{mark}\n## {title}\n\n{text}\n{mark}"
    if mark in document:
        head, _, rest = document.partition(mark)
        _, _, tail = rest.partition(mark)
        document = head + section + tail
    else:
        document = document.rstrip() + "\n\n" + section + "\n"
    path.write_text(document)
