"""The product as a user meets it: a notebook through nbclient, the install command, the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from persistent_kernel import KERNEL_NAME
from persistent_kernel.driver import KernelDriver

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_poker_notebook_runs_and_its_table_comes_back(session_env, monkeypatch, tmp_path: Path) -> None:
    env = session_env("poker")
    for key in ("PERSISTENT_KERNEL_HOME", "PERSISTENT_KERNEL_SESSION"):
        monkeypatch.setenv(key, env[key])
    nb = nbformat.read(NOTEBOOKS / "poker_table.ipynb", as_version=4)
    assert nb.metadata.kernelspec.name == KERNEL_NAME
    NotebookClient(nb, timeout=60, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(tmp_path)}}).execute()
    table_cell = nb.cells[5]
    table = "".join(o.get("text", "") for o in table_cell.outputs if o.output_type == "stream")
    assert "board:" in table

    # A new kernel on the same session: the notebook's last cell sees the same table.
    with KernelDriver(env=env, cwd=str(tmp_path)) as k:
        last = k.execute(nb.cells[7].source)
        assert last.status == "ok"
        assert "Restored session 'poker'" in last.stderr
        hands_and_board = lambda text: [line.split("|")[0] for line in text.splitlines()]  # noqa: E731
        assert hands_and_board(last.stdout) == hands_and_board(table)
        # The last cell ran once in the notebook and once here: the pot in bet's
        # default argument came back and grew by 15 again.
        assert last.result == "90"  # 10 + 25 + 25 + 15 (notebook) + 15 (now)
        assert "'ada': 75" in last.stdout  # printed before this bet: 100 - 10 - 15


def test_install_writes_a_kernelspec_for_this_python(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    done = subprocess.run(
        [sys.executable, "-m", "persistent_kernel", "install", "--prefix", str(prefix), "--name", "pk-test", "--display-name", "PK test"],
        capture_output=True, text=True, check=True,
    )
    spec_dir = prefix / "share" / "jupyter" / "kernels" / "pk-test"
    assert str(spec_dir) in done.stdout
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and spec["argv"][1:3] == ["-m", "persistent_kernel.launcher"]
    assert spec["display_name"] == "PK test"
    assert {"logo-32x32.png", "logo-64x64.png", "logo-svg.svg"} <= {p.name for p in spec_dir.iterdir()}


def test_install_user_goes_to_the_user_data_dir(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    subprocess.run([sys.executable, "-m", "persistent_kernel", "install", "--user"], env=env, check=True, capture_output=True)
    assert (tmp_path / "data" / "kernels" / KERNEL_NAME / "kernel.json").is_file()


def test_install_refuses_two_destinations() -> None:
    done = subprocess.run([sys.executable, "-m", "persistent_kernel", "install", "--user", "--prefix", "/x"], capture_output=True, text=True)
    assert done.returncode == 2 and "not allowed with" in done.stderr


def test_pip_installed_kernelspec_is_registered() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert spec.display_name == "Python 3 (persistent)"
    assert spec.argv[1:3] == ["-m", "persistent_kernel.launcher"]


def test_demo_kills_and_restores_the_poker_table() -> None:
    done = subprocess.run([sys.executable, "-m", "persistent_kernel", "demo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kill -9" in done.stdout and "Restored session 'poker-table'" in done.stdout
    assert "Nothing was lost" in done.stdout
