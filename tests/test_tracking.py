"""Read tracking and co-variable grouping, without a kernel."""

from __future__ import annotations

import types

import numpy

from persistent_kernel.tracking import Groups, ReadTracker, names_loaded, rebound, user_names


def notebook(source: str) -> dict:
    """A namespace whose functions and classes count as notebook-defined."""
    ns: dict = {"__name__": "__main__"}
    exec(compile(source, "<cell>", "exec"), ns)
    return ns


def test_names_loaded_sees_nested_code_and_augmented_assignment() -> None:
    assert names_loaded("y = [f(v) for v in data]\nlambda: other\nz += 1") >= {"f", "data", "other", "z"}
    assert names_loaded("%magic not python") is None


def test_reads_widen_through_notebook_functions_classes_and_instances() -> None:
    ns = notebook(
        "rows = []\nlimit = 3\n"
        "def helper():\n    return limit\n"
        "def add(x):\n    rows.append(x)\n    return helper()\n"
        "class Table:\n    def deal(self):\n        return deck.pop()\n"
        "deck = [1, 2]\ntable = Table()\nunrelated = 5\n"
    )
    tracker = ReadTracker()
    assert tracker.reads("add(1)", ns) == {"add", "rows", "helper", "limit"}
    assert tracker.reads("table.deal()", ns) == {"table", "deck"}
    assert tracker.reads("%time add(1)", ns, transform=lambda s: "get_ipython().run_line_magic('time', 'add(1)')") == set()


def test_a_class_statement_reads_what_its_metaclass_and_bases_hooks_read() -> None:
    # `class Csv(Plugin)` runs PluginMeta.__new__/__init__ and Plugin.__init_subclass__:
    # the registries they fill are read (and so checked for changes) by that cell.
    ns = notebook(
        "REGISTRY = {}\nORDER = []\nSEEN = []\n"
        "class Meta(type):\n    def __new__(m, name, bases, body):\n        cls = super().__new__(m, name, bases, body)\n"
        "        REGISTRY[name] = cls\n        return cls\n    def __init__(cls, *a):\n        ORDER.append(cls)\n"
        "class Plugin(metaclass=Meta):\n    def __init_subclass__(cls, **kw):\n        SEEN.append(cls)\n"
    )
    tracker = ReadTracker()
    assert tracker.reads("class Csv(Plugin):\n    key = 'csv'", ns) >= {"Plugin", "REGISTRY", "ORDER", "SEEN"}
    assert tracker.reads("class Other(metaclass=Meta):\n    pass", ns) >= {"Meta", "REGISTRY", "ORDER"}


def test_identity_scan_sees_rebinding_and_deletion_but_not_ipython_names() -> None:
    ns = {"a": [1], "b": 2, "_i3": "code", "Out": {}, "__name__": "__main__", "preset": 1}
    hidden = {"preset": ns["preset"]}
    before = user_names(ns, hidden)
    assert set(before) == {"a", "b"}
    ns["a"] = [1]
    del ns["b"]
    ns["c"] = 3
    assert rebound(before, user_names(ns, hidden)) == ({"a", "c"}, {"b"})


def test_groups_join_variables_sharing_objects_and_split_when_they_stop() -> None:
    shared = [1]
    ns = notebook("class Card:\n    pass\n")
    ns.update(a=shared, b={"x": shared}, c=[2], card1=ns["Card"](), card2=ns["Card"]())
    groups = Groups()
    for name in ("a", "b", "c", "card1", "card2", "Card"):
        groups.update(name, ns[name], ns)
    assert groups.group_of("a") == {"a", "b"}
    assert groups.group_of("c") == {"c"}
    assert groups.group_of("card1") == {"card1", "card2", "Card"}  # one class object: one group
    ns["b"] = {"x": [1]}
    groups.update("b", ns["b"], ns)
    assert groups.group_of("a") == {"a"}


def test_numpy_views_join_their_base_and_functions_their_closures() -> None:
    base = numpy.arange(10)
    box = {"n": 0}
    ns = notebook("def make(box):\n    def read():\n        return box\n    return read\n")
    ns.update(base=base, view=base[2:5], reader=ns["make"](box), box=box)
    groups = Groups()
    for name in ("base", "view", "reader", "box", "make"):
        groups.update(name, ns[name], ns)
    assert groups.group_of("view") == {"base", "view"}
    assert groups.group_of("reader") == {"reader", "box"}


def test_modules_and_library_types_never_join_groups() -> None:
    ns = {"np": numpy, "x": numpy.zeros(3), "y": numpy.ones(3), "mod": types}
    groups = Groups()
    for name in ns:
        groups.update(name, ns[name], ns)
    assert groups.group_of("x") == {"x"}  # the shared float64 dtype does not merge arrays
    assert groups.group_of("np") == {"np"}


def test_immutable_values_held_by_two_names_join_their_groups() -> None:
    text, blob, span, z = "a sentence, not a name", b"\x00\x01\x02", range(3, 90, 7), complex(1, 2)
    cases = {
        "text": text, "blob": blob, "span": span, "z": z,
        "holder": {"t": text, "b": [blob], "r": (span,), "z": z},  # inside containers, any depth
        "alias": text,
        "lonely": "a sentence, not a name".upper().lower(),  # equal, not the same object
        "name_like": "price", "other_name_like": "price",  # interned by CPython: same after a restore anyway
        "small": 7, "also_small": 7, "big": 2**100, "same_big": None,
    }
    cases["same_big"] = cases["big"]
    groups = Groups()
    for name, value in cases.items():
        groups.update(name, value, cases)
    assert groups.group_of("text") == {"text", "blob", "span", "z", "holder", "alias"}
    assert groups.group_of("lonely") == {"lonely"}
    assert groups.group_of("name_like") == {"name_like"} and groups.group_of("small") == {"small"}
    assert groups.group_of("big") == {"big"}, "ints are written by value by pickle: grouping them would buy nothing"
    groups.remove("holder")
    groups.update("alias", "something else, now", cases)
    assert groups.group_of("text") == {"text"}
    groups.remove("text")
    groups.update("holder", {"t": text}, cases)
    assert groups.group_of("holder") == {"holder"}, "no variable holds the text any more: it is a plain value again"


# -- what belongs to a library groups nothing ------------------------------------------------------

_FAKE_LIBRARY = '''
import traitlets

REGISTRY = {}


class Model(traitlets.HasTraits):
    value = traitlets.Int()

    @traitlets.observe("value")
    def _changed(self, change):
        pass

    @traitlets.validate("value")
    def _check(self, proposal):
        return proposal["value"]


def helper(x):
    return x


class Plain:
    def __init__(self):
        self.callback = helper
        self.method = Plain.method
        self.kind = Plain

    def method(self):
        return 1


def make_counter():
    state = [0]

    def bump():
        state[0] += 1
        return state[0]

    return bump


def make_class():
    return type("Made", (), {})
'''


def _fake_library(tmp_path, monkeypatch) -> types.ModuleType:
    """A module that counts as an installed library (not the user's own module, which is stored by value)."""
    import importlib

    from persistent_kernel import libraryrefs

    (tmp_path / "fakelib_tracking.py").write_text(_FAKE_LIBRARY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(libraryrefs, "local_file", lambda name, module: None)
    return importlib.import_module("fakelib_tracking")


def _library_factories(lib: types.ModuleType) -> dict:
    import argparse
    import collections
    import csv
    import decimal
    import email.message
    import http.cookies
    import json
    import logging
    import pathlib
    import random
    import string
    import textwrap

    return {
        "model": lib.Model,
        "plain": lib.Plain,
        "argparse": lambda: argparse.ArgumentParser(prog="p"),
        "logger": lambda: logging.Logger("a"),
        "encoder": json.JSONEncoder,
        "decoder": json.JSONDecoder,
        "random": random.Random,
        "context": decimal.Context,
        "path": lambda: pathlib.PurePosixPath("a", "b"),
        "counter": lambda: collections.Counter("abc"),
        "template": lambda: string.Template("$x and $y"),
        "wrapper": textwrap.TextWrapper,
        "sniffer": csv.Sniffer,
        "message": email.message.Message,
        "cookie": http.cookies.SimpleCookie,
        "rng": lambda: numpy.random.default_rng(1),
        "traitlets_config": lambda: __import__("traitlets.config", fromlist=["Config"]).Config(a=1),
        "dataframe": lambda: __import__("pandas").DataFrame({"a": [1, 2]}),
    }


def test_two_objects_of_a_library_class_never_group_through_what_the_library_owns(tmp_path, monkeypatch) -> None:
    """They share the class's functions, its traitlets handlers, module globals: all stored as
    references, so each may be stored alone. What they share *themselves* still groups."""
    lib = _fake_library(tmp_path, monkeypatch)
    for kind, make in _library_factories(lib).items():
        first, second = make(), make()
        ns = {"first": first, "second": second, "alias": first, "holder": {"inner": [first]}, "other": {"x": second}}
        groups = Groups()
        for name, value in ns.items():
            groups.update(name, value, ns)
        assert groups.group_of("first") == {"first", "alias", "holder"}, kind
        assert groups.group_of("second") == {"second", "other"}, kind


def test_what_a_library_makes_at_run_time_still_groups(tmp_path, monkeypatch) -> None:
    """A closure or a class a library function returns is not named in its module: it is
    pickled by value, so the variables sharing it must be stored together."""
    lib = _fake_library(tmp_path, monkeypatch)
    bump = lib.make_counter()
    made = lib.make_class()
    ns = {
        "bump": bump, "holder": {"f": bump},
        "one": made(), "two": made(),
        "registry_a": {"r": lib.REGISTRY}, "registry_b": [lib.REGISTRY],  # a module global: a reference, no group
        "reg": lib.REGISTRY, "same_reg": lib.REGISTRY,  # the variables' own value: grouped as ever
    }
    groups = Groups()
    for name, value in ns.items():
        groups.update(name, value, ns)
    assert groups.group_of("bump") == {"bump", "holder"}
    assert groups.group_of("one") == {"one", "two"}
    assert groups.group_of("registry_a") == {"registry_a"} and groups.group_of("registry_b") == {"registry_b"}
    assert groups.group_of("reg") == {"reg", "same_reg"}
