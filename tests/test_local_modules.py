"""The user's own modules edited while the kernel was dead (issue #13, class 10)."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest

from persistent_kernel.localmodules import LocalModuleTracker, restore_local_modules

from .kernels import run, start_and_restore

pytestmark = pytest.mark.fidelity  # the invariant these tests prove (tests/README.md)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_the_tracker_keeps_the_code_the_session_ran_not_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "pk_helper_a.py", "VALUE = 1\ndef f(): return VALUE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("pk_helper_a")
    try:
        tracker = LocalModuleTracker()
        first = tracker.capture()["pk_helper_a"]
        assert "def f(): return VALUE" in first["source"]
        _write(tmp_path / "pk_helper_a.py", "VALUE = 2\ndef f(): return -VALUE\n")
        assert tracker.capture()["pk_helper_a"] == first  # edited, not reloaded: the session runs the old code
        importlib.reload(module)
        assert "return -VALUE" in tracker.capture()["pk_helper_a"]["source"]  # reloaded: the new code is the session's
        assert not any(name.startswith(("numpy", "json", "pytest")) for name in tracker.capture())
    finally:
        sys.modules.pop("pk_helper_a", None)


def test_a_changed_module_comes_back_as_the_session_had_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pk_helper_b.py"
    _write(path, "def f(): return 'old'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from persistent_kernel.localmodules import _read

    recorded = {"pk_helper_b": _read(str(path))}
    assert restore_local_modules(recorded) == {}  # unchanged: imported as usual
    _write(path, "def f(): return 'new'\n")
    try:
        notes = restore_local_modules(recorded)
        assert "importlib.reload(pk_helper_b)" in notes["pk_helper_b.py"]
        module = sys.modules["pk_helper_b"]
        assert isinstance(module, types.ModuleType) and module.f() == "old" and module.__file__ == str(path)
        import importlib

        assert importlib.reload(module).f() == "new"
    finally:
        sys.modules.pop("pk_helper_b", None)


@pytest.mark.slow
def test_modules_edited_while_the_kernel_was_dead(kernel, tmp_path: Path) -> None:
    """Plain modules, a package and its submodule, a deleted module: the session's code and module
    variables come back, the summary names each changed file, and a reload takes the new code."""
    _write(tmp_path / "shapes.py", "SCALE = 2\ndef scale(x): return x * SCALE\nclass Box:\n    def __init__(self, v): self.v = v\n    def doubled(self): return self.v * 2\n")
    _write(tmp_path / "toolkit" / "__init__.py", "from .ops import add\nNAME = 'toolkit'\n")
    _write(tmp_path / "toolkit" / "ops.py", "def add(a, b): return a + b\n")
    _write(tmp_path / "gone.py", "def hello(): return 'hello'\n")
    _write(tmp_path / "untouched.py", "def same(): return 'same'\n")
    driver = kernel()
    run(
        driver,
        """
        import sys
        sys.path.insert(0, '.')
        import shapes, toolkit, toolkit.ops, gone, untouched
        from shapes import scale, Box
        from toolkit.ops import add
        from gone import hello
        box = Box(21)
        shapes.SCALE = 3
        toolkit.NAME = 'renamed'
        """,
    )
    probe = "print(scale(10), box.doubled(), shapes.SCALE, isinstance(box, shapes.Box), add(1, 2), toolkit.NAME, hello(), untouched.same())"
    before = driver.execute(probe).stdout
    driver.kill()
    _write(tmp_path / "shapes.py", "SCALE = 5\ndef scale(x): return -x\nclass Box:\n    def __init__(self, v): self.v = v\n    def doubled(self): return 0\n")
    _write(tmp_path / "toolkit" / "ops.py", "def add(a, b): return a * b\n")
    (tmp_path / "gone.py").unlink()
    summary = start_and_restore(driver)
    for changed in ("shapes.py", "ops.py", "gone.py"):
        assert f"{changed} changed since" in summary, summary
    assert "untouched.py" not in summary and "__init__.py" not in summary
    assert driver.execute(probe).stdout == before == "30 42 3 True 3 renamed hello same\n"
    out = driver.execute("import importlib\nimportlib.reload(shapes); importlib.reload(toolkit.ops)\nprint(shapes.scale(1), toolkit.ops.add(2, 3))")
    assert out.stdout == "-1 6\n", out.evalue
