"""Serialization of co-variable groups, without a kernel."""

from __future__ import annotations

import sqlite3
import sys
import types
from pathlib import Path

import numpy
import pytest

from persistent_kernel.serialize import Unserializable, dumps, loads


@pytest.fixture
def main_module(monkeypatch):
    """A stand-in for IPython's user module as ``__main__`` (notebook code lives there)."""
    module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", module)
    return module


def roundtrip(values: dict, main=None) -> dict:
    s = dumps(values)
    return loads(s.method, s.payload, [bytearray(b) for b in s.buffers], main)


def test_plain_data_uses_stdlib_pickle_and_arrays_leave_the_stream() -> None:
    array = numpy.arange(1_000_000, dtype=numpy.float64)
    s = dumps({"a": array, "b": array, "meta": {"n": 1}})
    assert s.method == "pickle"
    assert len(s.buffers) == 1 and s.buffers[0].nbytes == 8_000_000  # once, out of band
    assert len(s.payload) < 1000
    back = loads(s.method, s.payload, [bytearray(b) for b in s.buffers])
    assert back["a"] is back["b"] and back["a"].flags.writeable and back["a"][-1] == 999_999


def test_equal_content_hashes_equal_and_a_change_does_not() -> None:
    one = dumps({"x": [1, 2, 3]})
    assert dumps({"x": [1, 2, 3]}).group_digest == one.group_digest
    assert dumps({"x": [1, 2, 4]}).group_digest != one.group_digest


def test_notebook_functions_and_classes_go_by_value_with_dill(main_module) -> None:
    exec(
        "class Card:\n    def show(self):\n        return 'card'\n"
        "hand = [Card(), Card()]\nscale = 2\ntimes = lambda v: v * scale\n",
        main_module.__dict__,
    )
    ns = main_module.__dict__
    s = dumps({"Card": ns["Card"], "hand": ns["hand"], "times": ns["times"]})
    assert s.method == "dill"
    back = loads(s.method, s.payload, s.buffers, main_module)
    assert isinstance(back["hand"][0], back["Card"]) and back["hand"][1].show() == "card"
    assert back["times"].__globals__ is ns  # the restored function sees the live namespace
    ns["scale"] = 5
    assert back["times"](2) == 10


def test_generators_and_connections_are_refused(tmp_path: Path) -> None:
    with pytest.raises(Unserializable, match="generator"):
        dumps({"g": (i for i in range(3))})
    with pytest.raises(Unserializable, match="sqlite3.Connection"):
        dumps({"conn": sqlite3.connect(str(tmp_path / "db.sqlite"))})


def test_file_handles_reopen_without_truncating(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    writer = path.open("w")
    writer.write("kept")
    s = dumps({"w": writer})
    writer.close()
    back = loads(s.method, s.payload, s.buffers)["w"]
    assert path.read_text() == "kept" and back.mode == "w" and back.tell() == 4
    back.write("!")
    back.close()
    assert path.read_text() == "kept!"


def test_a_deleted_file_is_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "gone.txt"
    path.write_text("x")
    handle = path.open()
    s = dumps({"h": handle})
    handle.close()
    path.unlink()
    with pytest.raises(FileNotFoundError):
        loads(s.method, s.payload, s.buffers)
    assert not path.exists()


def test_a_view_stored_as_a_copy_is_noted_for_the_restore() -> None:
    import numpy as np

    base = np.arange(20)
    notes = dumps({"strided": base[::2], "window": np.arange(20).reshape(4, 5)[:, 1::2]}).notes
    assert set(notes) == {"strided", "window"} and all("its own copy" in why for why in notes.values())
    assert dumps({"base": base, "view": base[2:5]}).notes == {}, "a view stored with its base stays a view"
    assert dumps({"base": base, "owner": np.ones(3)}).notes == {}
    s = dumps({"strided": base[::2]})
    restored = loads(s.method, s.payload, [bytearray(b) for b in s.buffers])["strided"]
    assert dumps({"strided": restored}).notes == {}, "once restored it is an array of its own: nothing to say"


def test_a_view_of_a_memmap_is_noted(tmp_path) -> None:
    import numpy as np

    mapped = np.memmap(tmp_path / "m.bin", dtype="int64", mode="w+", shape=(8,))
    notes = dumps({"mm": mapped, "part": mapped[2:5]}).notes
    assert list(notes) == ["part"] and "memmap" in notes["part"]


def test_a_library_global_comes_back_as_the_library_object_itself() -> None:
    """``from os import environ``, ``from matplotlib import rcParams``: never a detached copy."""
    import os

    import matplotlib

    from persistent_kernel.libraryrefs import library_objects

    holder = {"env": os.environ, "rc": matplotlib.rcParams, "path": sys.path, "out": sys.stdout}
    values = {"environ": os.environ, "rcParams": matplotlib.rcParams, "path": sys.path, "holder": holder}
    s = dumps(values)
    assert s.method == "pickle" and len(s.payload) < 1024, "references, not the objects' contents"
    back = loads(s.method, s.payload, [])
    assert back["environ"] is os.environ and back["rcParams"] is matplotlib.rcParams and back["path"] is sys.path
    assert back["holder"]["env"] is os.environ and back["holder"]["out"] is sys.stdout
    assert back["holder"]["path"] is not sys.path, "an exact list inside a container: by value (pickle never asks)"
    mine = {"not": "a library's"}
    index = library_objects()
    assert id(mine) not in index
    assert loads(*(lambda d: (d.method, d.payload, []))(dumps({"mine": mine})))["mine"] == mine


def test_a_library_object_whose_type_has_an_odd_module_is_indexed_safely() -> None:
    """``type(x).__module__`` may be a slot descriptor (seen on Python 3.10): never a failed checkpoint."""
    from persistent_kernel.libraryrefs import _rank

    odd = type("Odd", (), {"__slots__": ("__module__",)})
    assert _rank("somelib", odd.__new__(odd))[0] == 1


# -- bound methods whose function is named otherwise ------------------------------------------------


def _no_wraps(method):
    def m(self, *args):  # a decorator without functools.wraps: the method's function is named "m"
        return ("wrapped", method(self, *args))

    return m


class _Handlers:
    def __init__(self, tag):
        self.tag = tag
        self.callbacks = [self.handle, self.plain, self.kind, _Handlers.made]

    @_no_wraps
    def handle(self, x):
        return (self.tag, x)

    def plain(self, x):
        return (self.tag, "plain", x)

    @classmethod
    @_no_wraps
    def kind(cls, x):
        return (cls.__name__, x)

    @classmethod
    def made(cls):
        return cls.__name__


def _free(self, x):
    return (self.tag, "free", x)


def test_bound_methods_come_back_whatever_their_functions_are_named() -> None:
    import types as _types

    holder = _Handlers("t")
    holder.callbacks.append(_types.MethodType(_free, holder))  # bound to an instance, no class holds it
    values = roundtrip({"holder": holder, "alone": holder.handle})
    restored = values["holder"]
    assert [f(1) if i != 3 else f() for i, f in enumerate(restored.callbacks[:4])] == [
        ("wrapped", ("t", 1)), ("t", "plain", 1), ("wrapped", ("_Handlers", 1)), "_Handlers"
    ]
    assert restored.callbacks[4](2) == ("t", "free", 2)
    assert values["alone"].__self__ is restored and values["alone"](3) == ("wrapped", ("t", 3))
