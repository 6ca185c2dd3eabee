"""The storage core type-checks (mypy, configured in pyproject.toml's ``[tool.mypy]``): part of the README's test command."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed: pip install '.[test]'")
def test_mypy_finds_nothing(tmp_path: Path) -> None:
    # The files and options are in pyproject.toml, found from the repo root. A fresh cache (about a
    # second): mypy trusts a cached file whose size and mtime second are unchanged, which an edit can keep.
    command = [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
