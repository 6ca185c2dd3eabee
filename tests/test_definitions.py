"""Notebook functions and classes by reference (issue #13, classes 1–4).

Fast tests run definitions in a namespace whose ``__name__`` is ``__main__`` (what
the kernel's user namespace is) and round-trip them through the serializer and
the replayer in-process; the slow ones drive real kernels over a generated corpus
of class-making constructs held in several ways, SIGKILL them and compare.
"""

from __future__ import annotations

import contextlib
import enum
import io
import itertools
import pickle
import textwrap
import types
from typing import Any

import pytest

from persistent_kernel.definitionindex import DefinitionIndex, defined_names
from persistent_kernel.definitionreplay import DefinitionReplayer
from persistent_kernel.definitions import (
    apply_definition_state,
    definition_state,
    resolving,
)
from persistent_kernel.serialize import dumps, loads

from .kernels import check_store, crash_and_restart, kill_and_start, run

pytestmark = pytest.mark.fidelity  # the invariant these tests prove (tests/README.md)


class _Shell:
    """What the replayer uses of IPython's shell: the namespace, the cell transform and the compiler."""

    def __init__(self) -> None:
        self.user_ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.compile = types.SimpleNamespace(flags=0, cache=lambda source, number: f"<cell {number}>")

    @staticmethod
    def transform_cell(source: str) -> str:
        return source


class _Record:
    def __init__(self, seq: int, code: str, reads: list[str] | None = None) -> None:
        self.seq, self.code, self.reads, self.execution_count = seq, code, reads or [], seq


def _session(cells: list[str]) -> tuple[_Shell, DefinitionIndex, dict[int, _Record]]:
    """Run cells in a ``__main__`` namespace the way the checkpointer sees them."""
    shell = _Shell()
    index = DefinitionIndex(shell.user_ns)
    records = {}
    for seq, code in enumerate(cells, start=1):
        code = textwrap.dedent(code)
        before = {k: id(v) for k, v in shell.user_ns.items()}
        exec(compile(code, f"<cell {seq}>", "exec"), shell.user_ns)
        written = {k for k, v in shell.user_ns.items() if before.get(k) != id(v)}
        index.note_cell(seq, code, written, set())
        records[seq] = _Record(seq, code)
    return shell, index, records


def _restore(records: dict[int, _Record], stored: Any) -> tuple[dict[str, Any], DefinitionReplayer]:
    """Load ``stored`` (a Serialized) into a fresh namespace, re-creating definitions from ``records``."""
    shell = _Shell()
    replayer = DefinitionReplayer(shell, records.get, lambda name, seq: (False, None))
    with resolving(replayer):
        values = loads(stored.method, stored.payload, stored.buffers)
    shell.user_ns.update(values)
    return shell.user_ns, replayer


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(): pass", {"f"}),
        ("async def f(): pass", {"f"}),
        ("class A: pass\nclass B(A): pass", {"A", "B"}),
        ("@decorator\ndef f(): pass", {"f"}),
        ("def f(): pass\nf = wrap(f)", set()),  # rebound by another statement: not what the def makes
        ("def f(): pass\nfor f in range(3): pass", set()),
        ("def f(): pass\ndef f(): return 1", {"f"}),  # the last def wins, and replaying both gives it
        ("if True:\n    def f(): pass", set()),  # not at the top of the cell
        ("x = 1", set()),
        ("import os\nclass A: pass", {"A"}),
        ("def broken(:", set()),
    ],
)
def test_defined_names(source: str, expected: set[str]) -> None:
    assert defined_names(source) == frozenset(expected)


def test_key_of_names_top_level_and_nested_definitions_only() -> None:
    shell, index, _ = _session(
        [
            """
            class Outer:
                class Inner: pass
            def factory():
                class Local: pass
                return Local
            Made = factory()
            square = lambda x: x * x
            def f(): pass
            g = f
            """
        ]
    )
    ns = shell.user_ns
    assert index.key_of(ns["Outer"]) == "1:Outer"
    assert index.key_of(ns["Outer"].Inner) == "1:Outer.Inner"
    assert index.key_of(ns["f"]) == index.key_of(ns["g"]) == "1:f"
    assert index.key_of(ns["Made"]) is None  # made inside a function: by value
    assert index.key_of(ns["square"]) is None  # a lambda: by value
    exec("def f(): return 2", ns)  # rebound outside a checkpoint: the index no longer vouches for it
    assert index.key_of(ns["f"]) is None and index.key_of(ns["g"]) is None


_CONSTRUCTS = {
    "subclass": (
        "class {p}Base:\n    tag = 'base'\n    def hello(self): return type(self).__name__\nclass {p}Sub({p}Base): pass",
        "{p}Sub()",
        "(isinstance(x, {p}Base), issubclass({p}Sub, {p}Base), {p}Sub.__bases__[0] is {p}Base, x.hello(), {p}Sub.tag)",
    ),
    "abc": (
        "import abc\nclass {p}A(abc.ABC):\n    @abc.abstractmethod\n    def f(self): ...\nclass {p}C({p}A):\n    def f(self): return 7",
        "{p}C()",
        "(isinstance(x, {p}A), x.f(), {p}C.__mro__[1] is {p}A)",
    ),
    "metaclass": (
        "class {p}Meta(type):\n    def __new__(m, name, bases, ns):\n        cls = super().__new__(m, name, bases, ns)\n"
        "        cls.made_by = m.__name__\n        return cls\nclass {p}K(metaclass={p}Meta): pass",
        "{p}K()",
        "(type({p}K) is {p}Meta, {p}K.made_by, isinstance(x, {p}K))",
    ),
    "namedtuple_typed": (
        "from typing import NamedTuple\nclass {p}P(NamedTuple):\n    x: int\n    y: int = 0\n    def norm2(self): return self.x ** 2 + self.y ** 2",
        "{p}P(3, 4)",
        "(x, x.norm2(), x._replace(y=0), {p}P._fields)",
    ),
    "namedtuple": ("import collections\n{p}P = collections.namedtuple('{p}P', 'a b')", "{p}P(1, 2)", "(x, x.a + x.b)"),
    "dataclass_frozen_slots": (
        "import dataclasses\n@dataclasses.dataclass(frozen=True, slots=True, order=True)\nclass {p}D:\n    a: int\n    b: str = 'x'",
        "{p}D(1)",
        "(x, x == {p}D(1), x < {p}D(2), hash(x) == hash({p}D(1)))",
    ),
    "dataclass_inheritance": (
        "import dataclasses\n@dataclasses.dataclass\nclass {p}B:\n    a: int = 0\n    items: list = dataclasses.field(default_factory=list)\n"
        "@dataclasses.dataclass\nclass {p}D({p}B):\n    c: int = 1\n    def total(self): return self.a + self.c + len(self.items)",
        "{p}D(2, [1])",
        "(x, isinstance(x, {p}B), x.total(), dataclasses.fields({p}D)[1].name)",
    ),
    "enum": (
        "import enum\nclass {p}Color(enum.Enum):\n    RED = 1\n    GREEN = 2\n    def describe(self): return f'{{self.name}}={{self.value}}'",
        "{p}Color.GREEN",
        "(x.describe(), x is {p}Color(2), list({p}Color))",
    ),
    "flag": (
        "import enum\nclass {p}Perm(enum.Flag):\n    R = 4\n    W = 2\n    X = 1",
        "{p}Perm.R | {p}Perm.W",
        "(x, {p}Perm.W in x, x & {p}Perm.X)",
    ),
    "protocol": (
        "from typing import Protocol, runtime_checkable\n@runtime_checkable\nclass {p}Sized(Protocol):\n    def size(self) -> int: ...\n"
        "class {p}Box:\n    def size(self): return 3",
        "{p}Box()",
        "(isinstance(x, {p}Sized), x.size())",
    ),
    "slots": (
        "class {p}S:\n    __slots__ = ('a', 'b')\n    def __init__(self): self.a, self.b = 1, [2]",
        "{p}S()",
        "(x.a, x.b, hasattr(x, '__dict__'))",
    ),
    "init_subclass": (
        "class {p}Plugin:\n    kinds = []\n    def __init_subclass__(cls, **kw):\n        super().__init_subclass__(**kw)\n        {p}Plugin.kinds.append(cls.__name__)\n"
        "class {p}CSV({p}Plugin): pass",
        "{p}CSV()",
        "({p}Plugin.kinds, isinstance(x, {p}Plugin))",
    ),
    "set_name": (
        "class {p}Field:\n    def __set_name__(self, owner, name): self.name = name\n    def __get__(self, obj, owner=None): return self.name if obj is None else obj.__dict__.get(self.name, 0)\n"
        "class {p}M:\n    size = {p}Field()",
        "{p}M()",
        "({p}M.size, x.size)",
    ),
    "nested": (
        "class {p}Outer:\n    class Inner:\n        def twice(self, n): return 2 * n",
        "{p}Outer.Inner()",
        "(isinstance(x, {p}Outer.Inner), x.twice(4), type(x).__qualname__)",
    ),
    "properties": (
        "class {p}T:\n    unit = 'C'\n    def __init__(self, c): self.c = c\n    @property\n    def f(self): return self.c * 9 / 5 + 32\n"
        "    @classmethod\n    def freezing(cls): return cls(0)\n    @staticmethod\n    def describe(): return 'temperature'",
        "{p}T(100)",
        "(x.f, {p}T.freezing().f, {p}T.describe(), {p}T.unit)",
    ),
}

_HOLDINGS = {
    "alone": ("x_{p} = {make}", "x = x_{p}"),
    "list": ("xs_{p} = [{make}, {make}]", "x = xs_{p}[0]"),
    "dict_with_data": ("d_{p} = {{'obj': {make}, 'data': [1, 2, 3]}}", "x = d_{p}['obj']"),
    "aliased": ("a_{p} = {make}\nb_{p} = [a_{p}]", "x = a_{p}; assert b_{p}[0] is a_{p}"),
}


def _scenarios() -> list[tuple[str, list[str], str]]:
    """(name, cells, probe) for every construct held every way; names are prefixed per scenario."""
    scenarios = []
    for number, ((construct, (define, make, check)), (holding, (hold, bind))) in enumerate(
        itertools.product(_CONSTRUCTS.items(), _HOLDINGS.items())
    ):
        p = f"s{number}_"
        cells = [define.format(p=p), hold.format(p=p, make=make.format(p=p))]
        probe = f"{bind.format(p=p)}\nprint({check.format(p=p)!r}, {check.format(p=p)})"
        scenarios.append((f"{construct}-{holding}", cells, probe))
    return scenarios


def test_definitions_round_trip_by_reference_in_process() -> None:
    """Every construct held every way: one restore, identity and behaviour as before."""
    scenarios = _scenarios()
    cells = [cell for _name, scenario_cells, _probe in scenarios for cell in scenario_cells]
    shell, index, records = _session(cells)
    ns = shell.user_ns
    names = [n for n in ns if not n.startswith("__") and not isinstance(ns[n], types.ModuleType)]
    stored = dumps({n: ns[n] for n in names}, index.key_of)
    assert stored.method == "pickle"  # no dill: nothing here is stored by value

    def probe_all(namespace: dict[str, Any]) -> list[str]:
        out = []
        for _name, _cells, probe in scenarios:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(probe, namespace)
            out.append(printed.getvalue())
        return out

    before = probe_all(ns)
    restored, _replayer = _restore(records, stored)
    for module in [n for n in ns if isinstance(ns[n], types.ModuleType)]:
        restored[module] = ns[module]
    assert probe_all(restored) == before


def test_definition_state_is_data_only_and_comes_back() -> None:
    shell, index, records = _session(
        [
            """
            import functools
            def counted(f):
                @functools.wraps(f)
                def wrapper(*a):
                    nonlocal calls
                    calls += 1
                    wrapper.last = a
                    return f(*a)
                calls = 0
                return wrapper
            @counted
            def square(x, *, power=2): return x ** power
            def scaled(x, k=[1]): return x * k[0]
            class Config:
                level = 1
                mode = 'a'
            @functools.cache
            def fib(n, step=1): return n if n < 2 else fib(n - step) + fib(n - 2)
            """,
            "square(3); square(4); scaled.__defaults__[0][0] = 5; Config.level = 9; fib(12); fib(5, step=1)",
        ]
    )
    ns = shell.user_ns
    state = definition_state(ns["square"])
    assert state["attrs"] == {"last": (4,)} and 1 in state["closure"].values() or 2 in state["closure"].values()
    stored = dumps({n: ns[n] for n in ("square", "scaled", "Config", "fib")}, index.key_of)
    restored, replayer = _restore(records, stored)
    assert restored["square"].last == (4,) and restored["square"](2) == 4
    assert restored["square"].__closure__ is not None
    assert restored["scaled"](2) == 10
    assert restored["Config"].level == 9 and restored["Config"].mode == "a"
    assert restored["fib"].cache_info().currsize == ns["fib"].cache_info().currsize
    assert restored["fib"](5, step=1) == 5 and restored["fib"].cache_info().hits == 1
    info = ns["fib"].cache_info()
    assert replayer.notes["fib"] == f"its cache is back, but cache_info() counts from zero (it had {info.hits} hits, {info.misses} misses)"


def test_a_bounded_lru_cache_is_named_not_exact() -> None:
    shell, index, records = _session(["import functools\n@functools.lru_cache(maxsize=32)\ndef f(n): return n", "f(1); f(2)"])
    stored = dumps({"f": shell.user_ns["f"]}, index.key_of)
    restored, replayer = _restore(records, stored)
    assert restored["f"](3) == 3
    assert "starts empty" in replayer.notes["f"]


def test_enum_classes_carry_no_state_and_other_state_survives_pickle() -> None:
    shell, index, _ = _session(["import enum\nclass E(enum.Enum):\n    A = 1", "class C:\n    x = [1]\n    def m(self): pass"])
    assert definition_state(shell.user_ns["E"]) is None
    state = definition_state(shell.user_ns["C"])
    assert state == {"attrs": {"x": [1]}}
    copy = pickle.loads(pickle.dumps(state))
    apply_definition_state(shell.user_ns["C"], copy)
    assert shell.user_ns["C"].x == [1]


def test_a_definition_reads_what_its_cell_read_as_it_stood_before() -> None:
    """A metaclass that fills a registry: replaying the class finds the registry as it was before its cell."""
    shell, index, records = _session(
        [
            "REGISTRY = {}",
            "class Meta(type):\n    def __new__(m, name, bases, ns):\n        cls = super().__new__(m, name, bases, ns)\n"
            "        REGISTRY[name] = cls\n        return cls\nclass Plugin(metaclass=Meta): pass\nclass CSV(Plugin): pass",
        ]
    )
    records[2].reads = ["REGISTRY"]
    ns = shell.user_ns
    stored = dumps({"REGISTRY": ns["REGISTRY"], "CSV": ns["CSV"], "Plugin": ns["Plugin"]}, index.key_of)
    fresh = _Shell()
    registry_before: dict[str, Any] = {}
    replayer = DefinitionReplayer(fresh, records.get, lambda name, seq: (name == "REGISTRY", registry_before))
    with resolving(replayer):
        values = loads(stored.method, stored.payload, stored.buffers)
    assert values["REGISTRY"]["CSV"] is values["CSV"] and values["REGISTRY"]["Plugin"] is values["Plugin"]
    assert issubclass(values["CSV"], values["Plugin"])
    assert set(registry_before) == {"Plugin", "CSV"}  # the replay filled the old registry, not the restored one
    assert "REGISTRY" not in fresh.user_ns and "Meta" not in fresh.user_ns  # bindings put back


# -- real kernels ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_construct_held_every_way_survives_sigkill(kernel, pk_home) -> None:
    scenarios = _scenarios()
    driver = kernel()
    for _name, cells, _probe in scenarios:
        for cell in cells:
            run(driver, cell)
    run(driver, "pass")
    before = {name: driver.execute(probe).stdout for name, _cells, probe in scenarios}
    assert all(out.strip() for out in before.values())
    summary = crash_and_restart(driver)
    assert "Restored session" in summary
    after = {name: driver.execute(probe).stdout for name, _cells, probe in scenarios}
    different = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    assert different == {}
    driver.shutdown()
    check_store(pk_home)


@pytest.mark.slow
def test_a_checkpoint_runs_no_user_code(kernel) -> None:
    """A metaclass that prints and keeps a registry: the cell prints once, as on stock ipykernel, and
    the registry holds the very classes after a restore."""
    driver = kernel()
    define = (
        "REGISTRY = {}\nclass Meta(type):\n    def __new__(m, name, bases, ns):\n        cls = super().__new__(m, name, bases, ns)\n"
        "        REGISTRY[name] = cls\n        print('registered', name)\n        return cls\n"
        "class Plugin(metaclass=Meta): pass\nclass CSV(Plugin): pass\nplugins = [CSV(), Plugin()]"
    )
    assert driver.execute(define).stdout == "registered Plugin\nregistered CSV\n"
    for _ in range(3):  # later cells touching the classes print nothing
        assert driver.execute("plugins.append(CSV()); len(REGISTRY)").stdout == ""
    probe = "print(sorted(REGISTRY), REGISTRY['CSV'] is CSV, type(plugins[0]) is CSV, isinstance(plugins[1], Plugin), len(plugins))"
    before = driver.execute(probe).stdout
    kill_and_start(driver)
    restored = driver.execute("pass")
    assert "registered" not in restored.stdout  # the replay of the definitions printed nothing
    assert driver.execute(probe).stdout == before == "['CSV', 'Plugin'] True True True 5\n"


@pytest.mark.slow
def test_shared_closure_cells_and_stateful_decorators_survive_sigkill(kernel) -> None:
    driver = kernel()
    run(
        driver,
        """
        import functools
        def make_account():
            balance = 0
            def deposit(n):
                nonlocal balance
                balance += n
                return balance
            def get():
                return balance
            return deposit, get
        deposit, get_balance = make_account()
        deposit(10)
        def counted(f):
            count = 0
            @functools.wraps(f)
            def wrapper(*a):
                nonlocal count
                count += 1
                wrapper.seen = count
                return f(*a)
            return wrapper
        @counted
        def square(x): return x * x
        square(2); square(3)
        p = functools.partial(square, 5)
        @functools.singledispatch
        def show(x): return 'any'
        @show.register
        def _(x: int): return 'int'
        """,
    )
    kill_and_start(driver)
    out = driver.execute("deposit(5); print(get_balance(), square.seen, p(), square.seen, show(1), show('a'))")
    assert out.stdout == "15 2 25 3 int any\n", out.stderr


@pytest.mark.parametrize("flavour", ["Enum", "IntEnum", "Flag", "StrEnum"])
def test_an_enums_later_attributes_and_its_members_attributes_are_data(flavour: str) -> None:
    if flavour == "StrEnum" and not hasattr(enum, "StrEnum"):
        pytest.skip("StrEnum is Python 3.11+")
    value = {"Enum": "1", "IntEnum": "1", "Flag": "1", "StrEnum": "'r'"}[flavour]
    shell, index, records = _session(
        [
            f"import enum\nclass Base(enum.{flavour}):\n    def describe(self):\n        return self.name.lower()\nclass Color(Base):\n    RED = {value}",
            "Color.RED.note = 'noted'\nColor.RED.seen = [1]\nBase.late = 'late'\nColor.counter = 3",
        ]
    )
    ns = shell.user_ns
    stored = dumps({"Color": ns["Color"], "Base": ns["Base"], "red": ns["Color"].RED}, index.key_of)
    restored, _ = _restore(records, stored)
    color = restored["Color"]
    assert restored["red"] is color.RED and color.RED.note == "noted" and color.RED.seen == [1]
    assert restored["Base"].late == "late" and color.late == "late" and color.counter == 3
    assert color.RED.describe() == "red" and issubclass(color, restored["Base"])
