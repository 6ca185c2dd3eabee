"""Install the ``persistent-python3`` kernelspec, like ``python -m ipykernel install``.

``pip install`` already places the kernelspec in ``<prefix>/share/jupyter/kernels``
(wheel shared-data). This is for other places: ``--user``, ``--sys-prefix``,
``--prefix DIR``, or a second copy under another ``--name``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

from . import DISPLAY_NAME, KERNEL_NAME


def bundled_kernelspec_dir() -> Path:
    """The kernelspec files shipped with the package (or the checkout, for an editable install)."""
    packaged = resources.files("persistent_kernel") / "kernelspec" / KERNEL_NAME
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "kernelspec" / KERNEL_NAME
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"the {KERNEL_NAME} kernelspec files are missing from this installation")


def install(
    *,
    user: bool = False,
    prefix: str | None = None,
    kernel_name: str = KERNEL_NAME,
    display_name: str = DISPLAY_NAME,
) -> str:
    """Install the kernelspec; returns the directory it was written to.

    The kernel command names this Python (``sys.executable``), so the kernel runs
    in the environment that ran the install.
    """
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / kernel_name
        shutil.copytree(bundled_kernelspec_dir(), staged)
        spec_file = staged / "kernel.json"
        spec = json.loads(spec_file.read_text())
        spec["argv"][0] = sys.executable
        spec["display_name"] = display_name
        spec_file.write_text(json.dumps(spec, indent=1) + "\n")
        return KernelSpecManager().install_kernel_spec(str(staged), kernel_name, user=user, prefix=prefix)
