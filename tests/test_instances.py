"""Instances of notebook classes: stored from their memory, no user code run (issue #13, class 2).

A generated corpus: every hook pickle or the checkpoint's tracking could call (``__reduce__``,
``__reduce_ex__``, ``__getstate__``, ``__setstate__``, ``__getattr__``, ``__getattribute__``,
a ``__class__`` property, ``__iter__``/``items``/``keys``/``values`` of a container subclass,
``__setattr__``, ``__init__``, ``__new__``, ``__eq__``/``__hash__``) on every base this module
rebuilds (object, slots, list, dict, set, ABC, Generic, frozen dataclass), logging when it runs.
Storing — serializing and walking the object for sharing — must log nothing, and the loaded
copy must have the same state, items and class.
"""

from __future__ import annotations

import itertools
import sys
import textwrap
import types

import pytest

from persistent_kernel.definitionindex import DefinitionIndex
from persistent_kernel.definitions import resolving
from persistent_kernel.serialize import Unserializable, dumps, loads
from persistent_kernel.tracking import reachable_ids

HOOKS = {
    "reduce": "def __reduce__(self):\n    LOG.append('reduce'); return (type(self), ())",
    "reduce_ex": "def __reduce_ex__(self, protocol):\n    LOG.append('reduce_ex'); return (type(self), ())",
    "getstate": "def __getstate__(self):\n    LOG.append('getstate'); return {}",
    "setstate": "def __setstate__(self, state):\n    LOG.append('setstate')",
    "getattr": "def __getattr__(self, name):\n    LOG.append('getattr ' + name); raise AttributeError(name)",
    "getattribute": (
        "def __getattribute__(self, name):\n"
        "    if not name.startswith('__'):\n        LOG.append('getattribute ' + name)\n"
        "    return object.__getattribute__(self, name)"
    ),
    "class_property": "@property\ndef __class__(self):\n    LOG.append('__class__'); return int",
    "setattr": "def __setattr__(self, name, value):\n    LOG.append('setattr'); object.__setattr__(self, name, value)",
    "init": "def __init__(self, *a, **k):\n    LOG.append('init')",
    "new": "def __new__(cls, *a, **k):\n    LOG.append('new'); return super().__new__(cls)",
    "eq_hash": "def __eq__(self, other):\n    LOG.append('eq'); return self is other\ndef __hash__(self):\n    LOG.append('hash'); return 1",
    "getnewargs": "def __getnewargs__(self):\n    LOG.append('getnewargs'); return ()",
}
CONTAINER_HOOKS = {
    "iter": "def __iter__(self):\n    LOG.append('iter'); return iter(())",
    "items": "def items(self):\n    LOG.append('items'); return []",
    "keys": "def keys(self):\n    LOG.append('keys'); return []",
    "values": "def values(self):\n    LOG.append('values'); return []",
    "len": "def __len__(self):\n    LOG.append('len'); return 0",
    "getitem": "def __getitem__(self, key):\n    LOG.append('getitem'); raise KeyError(key)",
}
# base -> (class statement head, how an instance gets its contents without the hooks)
BASES = {
    "object": ("class Obj:", "obj = object.__new__(Obj)"),
    "slots": ("class Obj:\n    __slots__ = ('a', '__private', '__dict__')", "obj = object.__new__(Obj)"),
    "list": ("class Obj(list):", "obj = list.__new__(Obj); list.extend(obj, [1, 'two', [3]])"),
    "dict": ("class Obj(dict):", "obj = dict.__new__(Obj); dict.update(obj, {'k': 1, 2: [3]})"),
    "set": ("class Obj(set):", "obj = set.__new__(Obj); set.update(obj, {1, 'two'})"),
    "abc": ("import abc\nclass Obj(abc.ABC):", "obj = object.__new__(Obj)"),
    "generic": ("import typing\nT = typing.TypeVar('T')\nclass Obj(typing.Generic[T]):", "obj = object.__new__(Obj)"),
    "subclass": ("class Base:\n    pass\nclass Obj(Base):", "obj = object.__new__(Obj)"),
}


def _cases() -> list[tuple[str, str, tuple[str, ...]]]:
    cases = []
    hooks = list(HOOKS)
    for base in BASES:
        extra = list(CONTAINER_HOOKS) if base in ("list", "dict", "set") else []
        for hook in hooks + extra:
            cases.append((base, hook, (hook,)))
        # every hook at once, and pairs
        cases.append((base, "all", tuple(hooks + extra)))
        for pair in itertools.islice(itertools.combinations(hooks + extra, 2), 0, None, 7):
            cases.append((base, "+".join(pair), pair))
    return cases


CASES = _cases()


@pytest.fixture
def main_module(monkeypatch):
    module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", module)
    return module


def run_cell(main_module: types.ModuleType, source: str) -> DefinitionIndex:
    """Run ``source`` as notebook cell 1; its classes are then stored by reference, as in the kernel."""
    ns = main_module.__dict__
    exec(source, ns)
    index = DefinitionIndex(ns)
    index.note_cell(1, source, written=set(ns), deleted=set())
    return index


def roundtrip(main_module: types.ModuleType, index: DefinitionIndex, values: dict) -> dict:
    stored = dumps(values, index.key_of)
    with resolving(live=index):
        return loads(stored.method, stored.payload, stored.buffers, main_module)


def _define(main_module: types.ModuleType, base: str, hooks: tuple[str, ...]) -> DefinitionIndex:
    head, make = BASES[base]
    body = "\n".join({**HOOKS, **CONTAINER_HOOKS}[hook] for hook in hooks) or "pass"
    source = "LOG = []\n" + head + "\n" + textwrap.indent(body, "    ") + "\n" + make + "\n"
    source += "object.__getattribute__(obj, '__dict__').update(x=1, nested={'n': [1, 2]})\n"
    if base == "slots":
        source += "object.__setattr__(obj, 'a', 'slot a')\nobject.__setattr__(obj, '_Obj__private', 'slot p')\n"
    index = run_cell(main_module, source)
    main_module.LOG.clear()
    return index


def _state(obj: object) -> tuple:
    kind = type(obj)
    items = None
    if issubclass(kind, list):
        items = list.copy(obj)
    elif issubclass(kind, dict):
        items = sorted(dict.items(obj), key=repr)
    elif issubclass(kind, set):
        items = sorted(set.__iter__(obj), key=repr)
    slots = {}
    for name in ("a", "_Obj__private"):
        descriptor = vars(kind).get(name)
        if descriptor is not None:
            slots[name] = descriptor.__get__(obj, kind)
    return (object.__getattribute__(obj, "__dict__"), slots, items)


@pytest.mark.parametrize(("base", "label", "hooks"), CASES, ids=[f"{b}-{label}" for b, label, _ in CASES])
def test_storing_runs_no_user_code_and_the_copy_is_exact(main_module, base: str, label: str, hooks: tuple[str, ...]) -> None:
    index = _define(main_module, base, hooks)
    ns = main_module.__dict__
    obj = ns["obj"]
    values = {"obj": obj, "pair": [obj, {"o": obj}]}
    reachable_ids(values["pair"], ns)  # the checkpoint's walk for sharing
    stored = dumps(values, index.key_of)
    assert ns["LOG"] == [], f"storing ran user code: {ns['LOG']}"
    with resolving(live=index):
        back = loads(stored.method, stored.payload, stored.buffers, main_module)
    assert ns["LOG"] == [], f"loading ran user code: {ns['LOG']}"
    copy = back["obj"]
    assert type(copy) is type(obj) and copy is not obj
    assert back["pair"][0] is copy and back["pair"][1]["o"] is copy
    assert _state(copy) == _state(obj)


def test_a_self_referencing_container_subclass_comes_back_pointing_at_itself(main_module) -> None:
    index = run_cell(main_module, "class Tree(list):\n    def __iter__(self):\n        raise RuntimeError('user code')\nt = Tree([1]); list.append(t, t); t.name = 'root'\n")
    back = roundtrip(main_module, index, {"t": main_module.t})["t"]
    assert list.__getitem__(back, 1) is back and back.name == "root" and list.__getitem__(back, 0) == 1


def test_a_class_whose_hooks_leave_out_what_cannot_be_stored_is_stored_through_them(main_module) -> None:
    # The state holds a generator: stored from memory it cannot be, so the class's own
    # __getstate__/__setstate__ get their turn (they run, once) and the value is kept.
    index = run_cell(
        main_module,
        textwrap.dedent(
            """
            class Stream:
                def __init__(self, n):
                    self.n = n
                    self.source = (i for i in range(n))
                def __getstate__(self):
                    return {'n': self.n}
                def __setstate__(self, state):
                    self.n = state['n']
                    self.source = (i for i in range(self.n))
            s = Stream(3)
            """
        ),
    )
    back = roundtrip(main_module, index, {"s": main_module.s})["s"]
    assert back.n == 3 and list(back.source) == [0, 1, 2]


def test_a_class_with_state_that_cannot_be_stored_either_way_is_refused(main_module) -> None:
    index = run_cell(main_module, "class Holder:\n    pass\nh = Holder(); h.g = (i for i in range(2))\n")
    with pytest.raises(Unserializable, match="generator"):
        dumps({"h": main_module.h}, index.key_of)


def test_library_classes_and_enum_members_keep_their_own_reduction(main_module) -> None:
    index = run_cell(
        main_module,
        "import enum, collections\n"
        "class Color(enum.Enum):\n    RED = 1\n"
        "class Counts(collections.Counter):\n    pass\n"
        "class Failure(Exception):\n    pass\n"
        "red = Color.RED; counts = Counts('aab'); failure = Failure('x', 2)\n",
    )
    ns = main_module.__dict__
    back = roundtrip(main_module, index, {"red": ns["red"], "counts": ns["counts"], "failure": ns["failure"]})
    assert back["red"] is ns["Color"].RED
    assert back["counts"] == {"a": 2, "b": 1} and type(back["counts"]) is ns["Counts"]
    assert back["failure"].args == ("x", 2)
