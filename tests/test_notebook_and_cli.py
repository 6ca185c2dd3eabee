"""The product as a user meets it: the install command, the demo (the notebooks: test_notebooks.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from persistent_kernel import KERNEL_NAME

pytestmark = pytest.mark.slow

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


@pytest.mark.fidelity
def test_demo_kills_and_restores_the_poker_table() -> None:
    done = subprocess.run([sys.executable, "-m", "persistent_kernel", "demo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kill -9" in done.stdout and "Restored session 'poker-table'" in done.stdout
    assert "Nothing was lost" in done.stdout
