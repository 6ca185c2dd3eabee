"""The fidelity corpus: small scenarios, generated as constructs × ways of holding them.

A :class:`Scenario` is a few setup cells and one probe cell whose stdout is a
deterministic fingerprint of the state the setup left (reprs, ``is`` /
``isinstance`` checks, results of calls — never addresses, ids or timings). The
runner (``benchmarks/fidelity.py``) runs the setup on a kernel, crashes or
restarts it (or not), runs the probe and compares its stdout with what the stock
``python3`` kernel printed for the same cells without a crash.

Templates are written with ``$`` where a scenario's private prefix goes
(``$obj`` → ``s17_obj``), so every name, file and module a scenario creates is
its own and many scenarios share one kernel. In the templates of a construct,
``TARGET`` in a setup cell is the expression that reaches the held value (``$o``,
``$box[0]``, ``$d['obj']`` …); a probe binds ``$o`` to it first.

Scenarios are generated, not written one by one: add a construct to a table and
it is tried in every way of holding it.
"""

from __future__ import annotations

import ast
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CLASSES = (
    "hierarchy",
    "metaclass_registry",
    "class_constructs",
    "functions",
    "shared_rebuilt",
    "threads",
    "settings",
    "ipython_state",
    "local_modules",
    "locks",
    "files",
    "data_model",
)


@dataclass(frozen=True)
class Scenario:
    cls: str
    name: str
    setup: list[str]
    probe: str
    between: str | None = None  # Python run in the test process (cwd = the kernel's) between setup and probe: after the kill
    requires: tuple[str, ...] = ()  # importable modules the scenario needs; skipped without them
    prefix: str = ""  # every name, file and module the scenario creates starts with it
    key: str | None = None  # process-wide settings it changes (comma-separated): scenarios sharing one never share a kernel

    def conflicts(self, other: Scenario) -> bool:
        return bool(self.key and other.key and set(self.key.split(",")) & set(other.key.split(",")))

    @property
    def cells(self) -> list[str]:
        return [*self.setup, self.probe]


def _clean(code: str) -> str:
    return textwrap.dedent(code).strip("\n")


class _Corpus:
    def __init__(self) -> None:
        self.items: list[Scenario] = []

    def add(
        self,
        cls: str,
        name: str,
        setup: Iterable[str],
        probe: str,
        *,
        between: str | None = None,
        requires: Iterable[str] = (),
        key: str | None = None,
    ) -> None:
        assert cls in CLASSES, cls
        prefix = f"s{len(self.items)}_"

        def fill(code: str) -> str:
            return _clean(code).replace("$", prefix)

        self.items.append(
            Scenario(
                cls=cls,
                name=f"{cls}.{name}",
                setup=[fill(c) for c in setup if _clean(c)],
                probe=fill(probe),
                between=fill(between) if between else None,
                requires=tuple(requires),
                prefix=prefix,
                key=key,
            )
        )


# -- ways of holding a value ----------------------------------------------------------
#
# Each holder: (setup cells building it from a MAKE expression, the expression that
# reaches the value, a line the probe prints about the holder itself).


@dataclass(frozen=True)
class Holder:
    name: str
    build: Callable[[str], list[str]]
    access: str
    about: str = ""


HOLDERS = {
    "alone": Holder("alone", lambda make: [f"$o = {make}"], "$o"),
    "list": Holder("list", lambda make: [f"$box = [{make}, 'pad']"], "$box[0]", "print('held:', len($box), $box[1])"),
    "dict": Holder(
        "dict",
        lambda make: [f"$d = {{'rows': [1, 2, 3], 'obj': {make}, 'n': 7}}"],
        "$d['obj']",
        "print('held:', $d['rows'], $d['n'], sorted($d))",
    ),
    "alias": Holder("alias", lambda make: [f"$a = {make}\n$b = $a"], "$b", "print('held:', $a is $b)"),
    "cells": Holder(
        "cells",
        lambda make: [f"$x = {make}", "$holder = {'x': $x}"],
        "$holder['x']",
        "print('held:', $holder['x'] is $x)",
    ),
    "attr": Holder(
        "attr",
        lambda make: ["class $Holder:\n    def __init__(self, item):\n        self.item = item", f"$h = $Holder({make})"],
        "$h.item",
        "print('held:', type($h).__name__.split('_', 1)[1], isinstance($h, $Holder))",
    ),
}


def _probe(holder: Holder, checks: str) -> str:
    lines = []
    if holder.access != "$o":
        lines.append(f"$o = {holder.access}")
    if holder.about:
        lines.append(holder.about)
    lines.append(_clean(checks))
    return "\n".join(lines)


def _after(cells: Iterable[str], holder: Holder) -> list[str]:
    return [_clean(c).replace("TARGET", holder.access) for c in cells]


@dataclass(frozen=True)
class Construct:
    """A value made by ``make`` after the ``defs`` cells, changed by ``after`` cells, checked by ``checks`` on ``$o``."""

    name: str
    defs: tuple[str, ...]
    make: str
    checks: str
    after: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    key: str | None = None


def C(name: str, defs: str | Iterable[str], make: str, checks: str, after: str | Iterable[str] = (), requires: Iterable[str] = (), key: str | None = None) -> Construct:
    defs = (defs,) if isinstance(defs, str) else tuple(defs)
    after = (after,) if isinstance(after, str) else tuple(after)
    return Construct(name, tuple(d for d in defs if _clean(d)), make, checks, after, tuple(requires), key)


def _expand(corpus: _Corpus, cls: str, constructs: Iterable[Construct], holders: Iterable[str], group: str = "") -> None:
    for con in constructs:
        for hname in holders:
            holder = HOLDERS[hname]
            setup = [*con.defs, *holder.build(con.make), *_after(con.after, holder)]
            name = f"{group + '.' if group else ''}{con.name}.{hname}"
            corpus.add(cls, name, setup, _probe(holder, con.checks), requires=con.requires, key=con.key)


# ======================================================================================
# hierarchy: notebook classes whose base is another notebook class, an ABC, a metaclass
# ======================================================================================


@dataclass(frozen=True)
class Kind:
    name: str
    defs: tuple[str, ...]  # cells defining the classes (one class per cell where it can)
    base: str  # the root notebook class
    parent: str  # the leaf's first direct base
    leaf: str
    make: str  # an instance of the leaf
    other: str  # another object of the hierarchy
    checks: str = ""
    later: tuple[str, ...] = ()  # cells run after the instances exist


KINDS = [
    Kind(
        "plain",
        (
            """
            class $Base:
                kind = 'base'
                def __init__(self, v):
                    self.v = v
                def describe(self):
                    return f'{type(self).__name__[len("$"):]}:{self.v}:{self.kind}'
            """,
            """
            class $Sub($Base):
                kind = 'sub'
                def describe(self):
                    return 'sub/' + super().describe()
            """,
        ),
        "$Base", "$Base", "$Sub", "$Sub(1)", "$Base(2)",
        "print($o.describe(), $o.v, $Base(5).describe())",
    ),
    Kind(
        "three_levels",
        (
            """
            class $Base:
                def __init__(self, v):
                    self.v = v
                def chain(self):
                    return ['base']
            """,
            """
            class $Mid($Base):
                def chain(self):
                    return ['mid'] + super().chain()
            """,
            """
            class $Leaf($Mid):
                def chain(self):
                    return ['leaf'] + super().chain()
            """,
        ),
        "$Base", "$Mid", "$Leaf", "$Leaf(3)", "$Mid(4)",
        "print($o.chain(), isinstance($o, $Mid), issubclass($Leaf, $Mid), $Mid.__bases__[0] is $Base)",
    ),
    Kind(
        "mixin",
        (
            """
            class $Mixin:
                def tag(self):
                    return 'mixin:' + type(self).__name__[len("$"):]
            """,
            """
            class $Base:
                def __init__(self, v):
                    self.v = v
            """,
            """
            class $Leaf($Mixin, $Base):
                pass
            """,
        ),
        "$Base", "$Mixin", "$Leaf", "$Leaf(5)", "$Base(6)",
        "print($o.tag(), isinstance($o, $Mixin), $Leaf.__bases__[1] is $Base)",
    ),
    Kind(
        "abc",
        (
            """
            from abc import ABC, abstractmethod
            class $Shape(ABC):
                @abstractmethod
                def area(self): ...
                def describe(self):
                    return f'area={self.area()}'
            """,
            """
            class $Square($Shape):
                def __init__(self, v):
                    self.v = v
                def area(self):
                    return self.v ** 2
            """,
            """
            class $Virtual:
                def area(self):
                    return 0
            $Shape.register($Virtual)
            """,
        ),
        "$Shape", "$Shape", "$Square", "$Square(3)", "$Virtual()",
        """
        print($o.describe(), issubclass($Virtual, $Shape), isinstance($Virtual(), $Shape), sorted($Shape.__abstractmethods__))
        try:
            $Shape()
        except TypeError:
            print('abstract: cannot instantiate')
        """,
    ),
    Kind(
        "abc_register_later",
        (
            """
            import abc
            class $Base(abc.ABC):
                @abc.abstractmethod
                def run(self): ...
            """,
            """
            class $Impl($Base):
                def __init__(self, v):
                    self.v = v
                def run(self):
                    return self.v * 10
            """,
        ),
        "$Base", "$Base", "$Impl", "$Impl(4)", "$Impl(5)",
        """
        print($o.run(), issubclass($Late, $Base), isinstance($Late(), $Base), issubclass(tuple, $Base), isinstance((1,), $Base), issubclass(list, $Base))
        """,
        later=("class $Late:\n    def run(self):\n        return 0\n$Base.register($Late)", "$Base.register(tuple)"),
    ),
    Kind(
        "abcmeta_property",
        (
            """
            from abc import ABCMeta, abstractmethod
            class $Base(metaclass=ABCMeta):
                @property
                @abstractmethod
                def size(self): ...
            """,
            """
            class $Sized($Base):
                def __init__(self, v):
                    self.v = v
                @property
                def size(self):
                    return len(str(self.v))
            """,
            """
            $Base.register(str)
            """,
        ),
        "$Base", "$Base", "$Sized", "$Sized(12345)", "$Sized(1)",
        "print($o.size, isinstance('text', $Base), issubclass(str, $Base), type($Base).__name__)",
    ),
    Kind(
        "metaclass",
        (
            """
            class $Meta(type):
                def __new__(mcls, name, bases, ns):
                    ns.setdefault('label', name[len("$"):].upper())
                    return super().__new__(mcls, name, bases, ns)
                def describe_cls(cls):
                    return f'{cls.label} via {type(cls).__name__[len("$"):]}'
            """,
            """
            class $Base(metaclass=$Meta):
                def __init__(self, v):
                    self.v = v
            """,
            """
            class $Sub($Base):
                pass
            """,
        ),
        "$Base", "$Base", "$Sub", "$Sub(7)", "$Base(8)",
        "print(type($Sub) is $Meta, type(type($o)) is $Meta, $Sub.describe_cls(), $Sub.label, $Base.label, isinstance($Sub, $Meta))",
    ),
    Kind(
        "metaclass_call",
        (
            """
            class $Counting(type):
                def __call__(cls, *args, **kwargs):
                    obj = super().__call__(*args, **kwargs)
                    cls.made = getattr(cls, 'made', 0) + 1
                    return obj
            class $Base(metaclass=$Counting):
                def __init__(self, v):
                    self.v = v
            """,
            """
            class $Sub($Base):
                pass
            """,
        ),
        "$Base", "$Base", "$Sub", "$Sub(1)", "$Base(2)",
        "print($Sub.made, getattr($Base, 'made', 0), type($Sub) is $Counting); $Sub(9); print($Sub.made)",
    ),
    Kind(
        "collections_abc",
        (
            """
            import collections.abc
            class $Bag(collections.abc.Mapping):
                def __init__(self, data):
                    self._d = dict(data)
                def __getitem__(self, k):
                    return self._d[k]
                def __iter__(self):
                    return iter(self._d)
                def __len__(self):
                    return len(self._d)
            """,
            """
            class $Sub($Bag):
                def total(self):
                    return sum(self.values())
            """,
        ),
        "$Bag", "$Bag", "$Sub", "$Sub({'a': 1, 'b': 2})", "$Bag({'z': 0})",
        "print(dict($o.items()), len($o), $o.total(), isinstance($o, collections.abc.Mapping), 'a' in $o, $o.get('q', 'none'))",
    ),
    Kind(
        "builtin_list",
        (
            """
            class $Base(list):
                def total(self):
                    return sum(self)
            """,
            """
            class $Sub($Base):
                def mean(self):
                    return self.total() / len(self)
            """,
        ),
        "$Base", "$Base", "$Sub", "$Sub([1, 2, 3])", "$Base([4])",
        "print($o, list($o), $o.total(), $o.mean(), isinstance($o, list)); $o.append(6); print($o.total())",
    ),
    Kind(
        "builtin_dict",
        (
            """
            class $Base(dict):
                def __missing__(self, key):
                    return key * 2
            """,
            """
            class $Sub($Base):
                def keys_sorted(self):
                    return sorted(self)
            """,
        ),
        "$Base", "$Base", "$Sub", "$Sub(a=1, b=2)", "$Base(z=0)",
        "print($o, $o['x'], $o.keys_sorted(), isinstance($o, dict), type($o).__name__[len('$'):])",
    ),
    Kind(
        "exception",
        (
            """
            class $AppError(Exception):
                pass
            """,
            """
            class $NotFound($AppError):
                def __init__(self, key):
                    super().__init__(key)
                    self.key = key
            """,
        ),
        "$AppError", "$AppError", "$NotFound", "$NotFound('k1')", "$AppError('generic')",
        """
        try:
            raise $o
        except $AppError as $e:
            print('caught', type($e).__name__[len('$'):], $e.key, $e.args, $e is $o, str($e))
        """,
    ),
    Kind(
        "generic",
        (
            """
            from typing import Generic, TypeVar
            $T = TypeVar('$T')
            class $Box(Generic[$T]):
                def __init__(self, v):
                    self.v = v
                def get(self):
                    return self.v
            """,
            """
            class $IntBox($Box[int]):
                def double(self):
                    return self.v * 2
            """,
        ),
        "$Box", "$Box", "$IntBox", "$IntBox(21)", "$Box('s')",
        "print($o.get(), $o.double(), $IntBox.__orig_bases__[0].__args__, $IntBox.__orig_bases__[0].__origin__ is $Box)",
    ),
    Kind(
        "dataclass",
        (
            """
            from dataclasses import dataclass, fields
            @dataclass
            class $Base:
                v: int
            """,
            """
            @dataclass
            class $Sub($Base):
                w: int = 0
                def total(self):
                    return self.v + self.w
            """,
        ),
        "$Base", "$Base", "$Sub", "$Sub(1, 2)", "$Base(3)",
        "print($o, [f.name for f in fields($o)], $o.total(), $o == $Sub(1, 2), $o == $Base(1))",
    ),
    Kind(
        "enum_base",
        (
            """
            import enum
            class $Base(enum.Enum):
                def describe(self):
                    return f'{self.name.lower()}={self.value}'
            """,
            """
            class $Color($Base):
                RED = 1
                GREEN = 2
            """,
        ),
        "$Base", "$Base", "$Color", "$Color.RED", "$Color.GREEN",
        "print($o, $o.describe(), $o is $Color(1), $o is $Color['RED'], list($Color))",
    ),
]

HIERARCHY_HOLDERS = ("same_cell", "alone", "list", "dict", "alias", "cells")


def _hierarchy(corpus: _Corpus) -> None:
    for kind in KINDS:
        for hname in HIERARCHY_HOLDERS:
            holder = HOLDERS["alone" if hname == "same_cell" else hname]
            if hname == "list":
                build = [f"$box = [{kind.make}, {kind.other}, {kind.make}]"]
                about = "print('held:', len($box), [type(i).__name__[len('$'):] for i in $box], $box[0] is $box[2])"
                holder = Holder("list", lambda make: [], "$box[0]", about)
            else:
                build = holder.build(kind.make)
            defs = [_clean(d) for d in kind.defs]
            if hname == "same_cell":
                setup = ["\n".join([*defs, *build])]
            else:
                setup = [*defs, *build]
            setup += [*kind.later, *_after(["TARGET.note = 'noted'"], holder), f"{kind.base}.late = 'late'"]
            common = f"""
            print(type($o).__name__[len('$'):], type($o) is {kind.leaf}, isinstance($o, {kind.leaf}), isinstance($o, {kind.base}))
            print(issubclass({kind.leaf}, {kind.base}), {kind.leaf}.__bases__[0] is {kind.parent}, [c.__name__ for c in type($o).__mro__])
            print({kind.base}.late, {kind.leaf}.late, $o.late, getattr($o, 'note', None))
            """
            corpus.add("hierarchy", f"{kind.name}.{hname}", setup, _probe(holder, _clean(common) + "\n" + _clean(kind.checks)))


# ======================================================================================
# metaclass_registry: the plugin pattern, and hooks that would show user code being run
# ======================================================================================

REGISTRY_PROBE = """
print(sorted($REGISTRY))
print($REGISTRY['csv'] is $Csv, $REGISTRY['json'] is $Json, len($REGISTRY))
print($REGISTRY['csv']().run(), $REGISTRY['json']().run(), issubclass($Csv, $Plugin), isinstance($Json(), $Plugin))
"""

MECHANISMS = {
    "meta_new": (
        """
        $REGISTRY = {}
        class $PluginMeta(type):
            def __new__(mcls, name, bases, ns):
                cls = super().__new__(mcls, name, bases, ns)
                print('registering', name[len('$'):])
                if bases:
                    $REGISTRY[ns['key']] = cls
                return cls
        """,
        """
        class $Plugin(metaclass=$PluginMeta):
            def run(self):
                return type(self).__name__[len('$'):] + ' ran'
        """,
        "print(type($Csv) is $PluginMeta)",
    ),
    "meta_init": (
        """
        $REGISTRY = {}
        class $PluginMeta(type):
            def __init__(cls, name, bases, ns):
                super().__init__(name, bases, ns)
                print('init', name[len('$'):], 'with', sorted(k for k in ns if not k.startswith('__')))
                if bases:
                    $REGISTRY[cls.key] = cls
        """,
        """
        class $Plugin(metaclass=$PluginMeta):
            def run(self):
                return self.key + ' ran'
        """,
        "print(type($Json).__name__[len('$'):])",
    ),
    "init_subclass": (
        """
        $REGISTRY = {}
        """,
        """
        class $Plugin:
            def __init_subclass__(cls, **kwargs):
                super().__init_subclass__(**kwargs)
                print('subclassed', cls.__name__[len('$'):])
                $REGISTRY[cls.key] = cls
            def run(self):
                return self.key + ' ran'
        """,
        "print($Plugin.__subclasses__() == [$Csv, $Json])",
    ),
    "decorator": (
        """
        $REGISTRY = {}
        def $register(cls):
            print('decorated', cls.__name__[len('$'):])
            $REGISTRY[cls.key] = cls
            return cls
        """,
        """
        class $Plugin:
            def run(self):
                return self.key + ' ran'
        """,
        "print($register.__name__[len('$'):])",
    ),
    "class_attribute": (
        """
        class $PluginMeta(type):
            def __new__(mcls, name, bases, ns):
                cls = super().__new__(mcls, name, bases, ns)
                print('new', name[len('$'):])
                if bases:
                    bases[0].registry[ns['key']] = cls
                return cls
        """,
        """
        class $Plugin(metaclass=$PluginMeta):
            registry = {}
            def run(self):
                return self.key + ' ran'
        $REGISTRY = $Plugin.registry
        """,
        "print($REGISTRY is $Plugin.registry, $Csv.registry is $Plugin.registry)",
    ),
    "meta_prepare": (
        """
        $REGISTRY = {}
        class $PluginMeta(type):
            @classmethod
            def __prepare__(mcls, name, bases):
                print('prepare', name[len('$'):])
                return {'order': []}
            def __new__(mcls, name, bases, ns):
                ns['order'] = [k for k in ns if not k.startswith('__') and k != 'order']
                cls = super().__new__(mcls, name, bases, dict(ns))
                if bases:
                    $REGISTRY[ns['key']] = cls
                return cls
        """,
        """
        class $Plugin(metaclass=$PluginMeta):
            def run(self):
                return self.key + ' ran'
        """,
        "print($Csv.order, $Json.order)",
    ),
}


def _plugin(name: str, key: str, mechanism: str) -> str:
    deco = "@$register\n" if mechanism == "decorator" else ""
    return f"{deco}class ${name}($Plugin):\n    key = '{key}'\n    def extra(self):\n        return '{key}-extra'"


def _metaclass_registry(corpus: _Corpus) -> None:
    for mech, (registry_cell, base_cell, check) in MECHANISMS.items():
        csv, json_ = _plugin("Csv", "csv", mech), _plugin("Json", "json", mech)
        arrangements = {
            "one_cell": ["\n".join([_clean(registry_cell), _clean(base_cell), csv, json_])],
            "split": [registry_cell, base_cell, csv, json_],
            "late_plugin": [
                registry_cell,
                base_cell,
                csv,
                "$made = [$Csv(), $Csv()]",
                json_,
                "$made.append($Json())",
            ],
        }
        for arr, setup in arrangements.items():
            probe = _clean(REGISTRY_PROBE) + "\n" + _clean(check)
            if arr == "late_plugin":
                probe += "\nprint([m.extra() for m in $made], [type(m) is $REGISTRY[m.key] for m in $made])"
            corpus.add("metaclass_registry", f"{mech}.{arr}", setup, probe)

    # Hooks a checkpoint must never call: each logs (and prints) when it runs; the
    # probe prints the log. The differential mode compares every cell's stdout, so a
    # checkpoint that pickles, copies, hashes or compares through user code shows.
    observers = {
        "getstate": (
            """
            def __init__(self, v):
                self.v = v
            def __getstate__(self):
                print('getstate', self.v)
                $LOG.append('getstate')
                return self.__dict__
            """,
            "",
        ),
        "setstate": (
            """
            def __init__(self, v):
                self.v = v
            def __setstate__(self, state):
                print('setstate')
                $LOG.append('setstate')
                self.__dict__.update(state)
            """,
            "",
        ),
        "reduce": (
            """
            def __init__(self, v):
                self.v = v
            def __reduce__(self):
                print('reduce', self.v)
                $LOG.append('reduce')
                return (type(self), (self.v,))
            """,
            "",
        ),
        "getattr": (
            """
            def __init__(self, v):
                self.v = v
            def __getattr__(self, name):
                print('getattr', name)
                $LOG.append(name)
                raise AttributeError(name)
            """,
            "",
        ),
        "getattribute": (
            """
            def __init__(self, v):
                self.v = v
            def __getattribute__(self, name):
                if not name.startswith('_'):
                    print('getattribute', name)
                    $LOG.append(name)
                return object.__getattribute__(self, name)
            """,
            "",
        ),
        "eq_hash": (
            """
            def __init__(self, v):
                self.v = v
            def __eq__(self, other):
                print('eq')
                $LOG.append('eq')
                return isinstance(other, type(self)) and other.v == self.v
            def __hash__(self):
                print('hash')
                $LOG.append('hash')
                return hash(self.v)
            """,
            "$keyed = {$obj: 'value'}",
        ),
        "repr_str": (
            """
            def __init__(self, v):
                self.v = v
            def __repr__(self):
                $LOG.append('repr')
                return f'Obs({self.v})'
            def __str__(self):
                $LOG.append('str')
                return 'obs'
            def __format__(self, spec):
                $LOG.append('format')
                return 'obs'
            """,
            "",
        ),
        "len_bool": (
            """
            def __init__(self, v):
                self.v = v
            def __len__(self):
                print('len')
                $LOG.append('len')
                return 1
            def __bool__(self):
                print('bool')
                $LOG.append('bool')
                return True
            """,
            "",
        ),
        "sizeof": (
            """
            def __init__(self, v):
                self.v = v
            def __sizeof__(self):
                print('sizeof')
                $LOG.append('sizeof')
                return 64
            """,
            "",
        ),
        "copy_deepcopy": (
            """
            def __init__(self, v):
                self.v = v
            def __copy__(self):
                print('copy')
                $LOG.append('copy')
                return type(self)(self.v)
            def __deepcopy__(self, memo):
                print('deepcopy')
                $LOG.append('deepcopy')
                return type(self)(self.v)
            """,
            "",
        ),
        "del": (
            """
            def __init__(self, v):
                self.v = v
            def __del__(self):
                print('del', self.v)
                $LOG.append('del')
            """,
            "",
        ),
        "property": (
            """
            def __init__(self, v):
                self.v = v
            @property
            def computed(self):
                print('computing')
                $LOG.append('computed')
                return self.v * 2
            """,
            "",
        ),
        "class_property": (
            """
            def __init__(self, v):
                self.v = v
            @property
            def __class__(self):
                print('asked for __class__')
                $LOG.append('__class__')
                return int
            """,
            "",
        ),
        "iter_list_subclass": (None, ""),
        "items_dict_subclass": (None, ""),
        "init_subclass_set_name": (None, ""),
    }
    for obs, (body, extra) in observers.items():
        if obs == "iter_list_subclass":
            defs = """
            $LOG = []
            class $Obs(list):
                def __iter__(self):
                    print('iter')
                    $LOG.append('iter')
                    return super().__iter__()
            """
            make = "$Obs([1, 2, 3])"
        elif obs == "items_dict_subclass":
            defs = """
            $LOG = []
            class $Obs(dict):
                def items(self):
                    print('items')
                    $LOG.append('items')
                    return super().items()
                def __iter__(self):
                    print('iter')
                    $LOG.append('iter')
                    return super().__iter__()
            """
            make = "$Obs(a=1)"
        elif obs == "init_subclass_set_name":
            defs = """
            $LOG = []
            class $Field:
                def __set_name__(self, owner, name):
                    print('set_name', name)
                    $LOG.append('set_name')
                    self.name = name
            class $Base:
                def __init_subclass__(cls, **kw):
                    print('init_subclass', cls.__name__[len('$'):])
                    $LOG.append('init_subclass')
            """
            make = None
        else:
            defs = "$LOG = []\nclass $Obs:\n" + textwrap.indent(_clean(body), "    ")
            make = "$Obs(1)"
        if make is None:
            setup = [defs, "class $Sub($Base):\n    f = $Field()", "$obj = $Sub()", "$obj.x = 1"]
        else:
            setup = [defs, f"$obj = {make}", *([extra] if extra else []), "$pair = [$obj, {'o': $obj}]", "$n = 1"]
        probe = "print($LOG)\nprint(type($obj).__name__[len('$'):], $pair[0] is $obj if '$pair' in globals() else None)" if make else "print($LOG)\nprint(type($obj).__name__[len('$'):], $Sub.f.name)"
        corpus.add("metaclass_registry", f"observer.{obs}", setup, probe)


# ======================================================================================
# class_constructs: namedtuple, NamedTuple, dataclasses, enums, Protocol, TypedDict …
# ======================================================================================

CLASS_CONSTRUCTS = [
    C(
        "namedtuple",
        "from collections import namedtuple\n$Point = namedtuple('$Point', 'x y')",
        "$Point(1, 2)",
        """
        print(tuple($o), $o._asdict(), $o._replace(y=5), $o == (1, 2), hash($o) == hash((1, 2)))
        print(type($o) is $Point, isinstance($o, tuple), $Point._fields, $o.x + $o.y)
        """,
    ),
    C(
        "namedtuple_defaults_rename",
        "from collections import namedtuple\n$Rec = namedtuple('$Rec', ['id', 'def', 'size'], defaults=[0], rename=True)",
        "$Rec(7, 'kw')",
        "print(tuple($o), $Rec._fields, $Rec._field_defaults, $o.size, type($o) is $Rec)",
    ),
    C(
        "namedtuple_subclass",
        """
        from collections import namedtuple
        class $Vec(namedtuple('$VecBase', 'x y')):
            __slots__ = ()
            def norm2(self):
                return self.x ** 2 + self.y ** 2
            def __repr__(self):
                return f'Vec({self.x}, {self.y})'
        """,
        "$Vec(3, 4)",
        "print($o, $o.norm2(), $o == (3, 4), type($o) is $Vec, [c.__name__[len('$'):] for c in $Vec.__mro__[:2]])",
    ),
    C(
        "typing_namedtuple",
        """
        from typing import NamedTuple
        class $Employee(NamedTuple):
            name: str
            dept: str = 'eng'
            level: int = 1
            def title(self):
                return f'{self.name} ({self.dept} L{self.level})'
        """,
        "$Employee('ada', level=3)",
        """
        print(tuple($o), $o.title(), $Employee._field_defaults, $Employee.__annotations__ == {'name': str, 'dept': str, 'level': int})
        print($o._replace(dept='ops').title(), type($o) is $Employee, hash($o) == hash(('ada', 'eng', 3)))
        """,
    ),
    C(
        "dataclass_plain",
        """
        import dataclasses
        @dataclasses.dataclass
        class $Item:
            name: str
            qty: int = 0
            def total(self, price):
                return self.qty * price
        """,
        "$Item('bolt', 3)",
        """
        print(repr($o).split('(', 1)[1], $o == $Item('bolt', 3), $o.total(2), dataclasses.asdict($o))
        print([f.name for f in dataclasses.fields($o)], dataclasses.is_dataclass($o), type($o) is $Item)
        $o.qty += 1
        print($o.qty, $Item.__hash__ is None)
        """,
        after="TARGET.name = 'nut'",
    ),
    C(
        "dataclass_frozen",
        """
        from dataclasses import dataclass, FrozenInstanceError
        @dataclass(frozen=True)
        class $Key:
            a: int
            b: str
        """,
        "$Key(1, 'x')",
        """
        print(repr($o).split('(', 1)[1], hash($o) == hash($Key(1, 'x')), {$o: 'v'}[$Key(1, 'x')], $o == $Key(1, 'x'))
        try:
            $o.a = 2
        except FrozenInstanceError:
            print('frozen')
        """,
    ),
    C(
        "dataclass_slots",
        """
        from dataclasses import dataclass
        @dataclass(slots=True)
        class $Pt:
            x: float
            y: float = 0.0
            def shifted(self, d):
                return $Pt(self.x + d, self.y + d)
        """,
        "$Pt(1.5)",
        """
        print(repr($o).split('(', 1)[1], $Pt.__slots__, hasattr($o, '__dict__'), $o.shifted(1) == $Pt(2.5, 1.0))
        try:
            $o.z = 1
        except AttributeError:
            print('no z')
        """,
        after="TARGET.y = 2.5",
    ),
    C(
        "dataclass_order",
        """
        from dataclasses import dataclass, field
        @dataclass(order=True)
        class $Version:
            major: int
            minor: int
            label: str = field(default='', compare=False)
        """,
        "[$Version(1, 2, 'b'), $Version(1, 0, 'a'), $Version(0, 9)]",
        "print([(v.major, v.minor, v.label) for v in sorted($o)], $o[0] > $o[1], max($o).label, $Version(1, 2) == $o[0])",
    ),
    C(
        "dataclass_inheritance",
        """
        from dataclasses import dataclass, fields
        @dataclass
        class $Animal:
            name: str
            legs: int = 4
            def speak(self):
                return '...'
        """,
        "None",
        """
        print(type($o).__name__[len('$'):], [f.name for f in fields($o)], $o.speak(), $o.legs, $o.indoor, isinstance($o, $Animal))
        print($o == $Cat('tom', 4, True))
        """,
        after=(
            """
            @dataclass
            class $Cat($Animal):
                indoor: bool = True
                def speak(self):
                    return 'meow'
            """,
            "TARGET = $Cat('tom')",
        ),
    ),
    C(
        "dataclass_default_factory",
        """
        from dataclasses import dataclass, field
        @dataclass
        class $Basket:
            owner: str
            items: list = field(default_factory=list)
            tags: dict = field(default_factory=lambda: {'new': True})
        """,
        "[$Basket('a'), $Basket('b')]",
        """
        $o[0].items.append('egg')
        print($o[0].items, $o[1].items, $o[0].items is $o[1].items, $o[1].tags, $Basket('c').tags)
        """,
        after="TARGET[1].items.append('milk')",
    ),
    C(
        "dataclass_post_init",
        """
        from dataclasses import dataclass, field, InitVar, KW_ONLY
        @dataclass
        class $Account:
            owner: str
            opening: InitVar[int] = 0
            _: KW_ONLY
            currency: str = 'EUR'
            balance: int = field(init=False, repr=False)
            def __post_init__(self, opening):
                self.balance = opening * 100
        """,
        "$Account('ada', 5, currency='CHF')",
        "print(repr($o).split('(', 1)[1], $o.balance, $o.currency, $Account('bo').balance)",
    ),
    C(
        "enum",
        """
        import enum
        class $Color(enum.Enum):
            RED = 1
            GREEN = 2
            BLUE = 3
            def describe(self):
                return f'{self.name.lower()}#{self.value}'
            @classmethod
            def default(cls):
                return cls.GREEN
        """,
        "$Color.RED",
        """
        print($o, $o.describe(), $o is $Color(1), $o is $Color['RED'], $Color.default() is $Color.GREEN)
        print([c.name for c in $Color], $o == $Color.RED, hash($o) == hash($Color.RED), isinstance($o, $Color))
        """,
    ),
    C(
        "intenum",
        """
        import enum
        class $Level(enum.IntEnum):
            LOW = 1
            HIGH = 10
            def doubled(self):
                return self * 2
        """,
        "$Level.HIGH",
        "print($o, $o + 1, $o > 5, $o == 10, $o.doubled(), sorted([$Level.HIGH, $Level.LOW]), $o is $Level(10))",
    ),
    C(
        "flag",
        """
        import enum
        class $Perm(enum.Flag):
            R = enum.auto()
            W = enum.auto()
            X = enum.auto()
        """,
        "$Perm.R | $Perm.W",
        "print($o, $Perm.R in $o, $Perm.X in $o, $o & $Perm.W, $o == $Perm.R | $Perm.W, [p.name for p in $o], ($o | $Perm.X).value)",
    ),
    C(
        "intflag",
        """
        import enum
        class $Mode(enum.IntFlag):
            A = 1
            B = 2
            C = 4
        """,
        "$Mode.A | $Mode.C",
        "print($o, int($o), $o | 2, $Mode.B in $o, $o == 5)",
    ),
    C(
        "strenum",
        """
        import enum
        class $Fmt(enum.StrEnum):
            CSV = enum.auto()
            JSON = 'json-lines'
            def ext(self):
                return '.' + self.value.split('-')[0]
        """,
        "$Fmt.CSV",
        "print($o, repr(str($o)), $o == 'csv', $o.ext(), $Fmt('json-lines') is $Fmt.JSON, $Fmt.JSON.ext(), $o.upper())",
    ),
    C(
        "enum_unique_aliases",
        """
        import enum
        class $Status(enum.Enum):
            OK = 0
            GOOD = 0
            BAD = 1
            def __str__(self):
                return self.name.title()
        """,
        "[$Status.GOOD, $Status.BAD]",
        "print([str(s) for s in $o], $o[0] is $Status.OK, list($Status.__members__), $Status(1) is $o[1])",
    ),
    C(
        "protocol",
        """
        from typing import Protocol, runtime_checkable
        @runtime_checkable
        class $Greeter(Protocol):
            def greet(self) -> str: ...
        class $English:
            def greet(self):
                return 'hello'
        class $Mute:
            pass
        """,
        "[$English(), $Mute()]",
        "print([isinstance(x, $Greeter) for x in $o], $o[0].greet(), issubclass($English, $Greeter), isinstance('s', $Greeter))",
    ),
    C(
        "typeddict",
        """
        from typing import TypedDict, NotRequired
        class $Movie(TypedDict):
            title: str
            year: int
            rating: NotRequired[float]
        """,
        "$Movie(title='Alien', year=1979)",
        "print($o, type($o) is dict, sorted($Movie.__required_keys__), sorted($Movie.__optional_keys__), $Movie.__name__[len('$'):])",
        after="TARGET['rating'] = 8.5",
    ),
    C(
        "slots",
        """
        class $Slotted:
            __slots__ = ('a', 'b')
            def __init__(self, a, b):
                self.a, self.b = a, b
            def pair(self):
                return (self.a, self.b)
        class $SlottedChild($Slotted):
            __slots__ = ('c',)
            def __init__(self, a, b, c):
                super().__init__(a, b)
                self.c = c
        """,
        "$SlottedChild(1, [2], 'c')",
        """
        print($o.pair(), $o.c, hasattr($o, '__dict__'), $Slotted.__slots__, $SlottedChild.__slots__)
        try:
            $o.other = 1
        except AttributeError:
            print('slots hold')
        """,
        after="TARGET.b.append(3)",
    ),
    C(
        "init_subclass",
        """
        class $Base:
            kinds = []
            def __init_subclass__(cls, /, tag=None, **kwargs):
                super().__init_subclass__(**kwargs)
                cls.tag = tag
                $Base.kinds.append(cls.__name__[len('$'):])
        class $Red($Base, tag='red'):
            pass
        class $Plain($Base):
            pass
        """,
        "$Red()",
        "print($o.tag, $Plain.tag, $Base.kinds, isinstance($o, $Base))",
    ),
    C(
        "set_name_descriptor",
        """
        class $Typed:
            def __init__(self, kind):
                self.kind = kind
            def __set_name__(self, owner, name):
                self.name = '_' + name
            def __get__(self, obj, owner=None):
                if obj is None:
                    return self
                return getattr(obj, self.name)
            def __set__(self, obj, value):
                if not isinstance(value, self.kind):
                    raise TypeError(f'{self.name[1:]} must be {self.kind.__name__}')
                setattr(obj, self.name, value)
        class $Person:
            age = $Typed(int)
            name = $Typed(str)
            def __init__(self, name, age):
                self.name, self.age = name, age
        """,
        "$Person('ada', 36)",
        """
        print($o.name, $o.age, $Person.age.name, $Person.name.kind.__name__)
        try:
            $o.age = 'old'
        except TypeError as $err:
            print('refused:', $err)
        $o.age = 40
        print($o.age, vars($o))
        """,
    ),
    C(
        "class_decorator",
        """
        import functools
        def $with_greeting(cls):
            cls.greet = lambda self: f'hi from {type(self).__name__[len("$"):]}'
            cls.decorated = True
            return cls
        @$with_greeting
        @functools.total_ordering
        class $Rank:
            def __init__(self, n):
                self.n = n
            def __eq__(self, other):
                return self.n == other.n
            def __lt__(self, other):
                return self.n < other.n
            __hash__ = None
        """,
        "$Rank(2)",
        "print($o.greet(), $Rank.decorated, $o >= $Rank(1), $o <= $Rank(1), $o > $Rank(2), sorted([$Rank(3), $o])[0].n)",
    ),
    C(
        "nested_class",
        """
        class $Outer:
            class Inner:
                class Deep:
                    def where(self):
                        return type(self).__qualname__[len('$'):]
                def __init__(self, v):
                    self.v = v
            def __init__(self):
                self.inner = $Outer.Inner(5)
        """,
        "$Outer()",
        "print(type($o.inner).__qualname__[len('$'):], $o.inner.v, isinstance($o.inner, $Outer.Inner), $Outer.Inner.Deep().where())",
    ),
    C(
        "class_in_function",
        """
        def $make_class(base_value):
            class Local:
                factor = base_value
                def __init__(self, v):
                    self.v = v
                def scaled(self):
                    return self.v * self.factor
            return Local
        $Doubler = $make_class(2)
        $Tripler = $make_class(3)
        """,
        "[$Doubler(5), $Tripler(5)]",
        """
        print([x.scaled() for x in $o], type($o[0]).__qualname__[len('$'):], type($o[0]) is $Doubler, type($o[1]) is $Tripler)
        print($Doubler is $Tripler, isinstance($o[1], $Doubler), $Doubler(1).scaled())
        """,
    ),
    C(
        "class_in_function_closure",
        """
        def $make_counter_class():
            created = []
            class Tracked:
                def __init__(self, name):
                    self.name = name
                    created.append(name)
                @staticmethod
                def all_created():
                    return list(created)
            return Tracked
        $Tracked = $make_counter_class()
        """,
        "$Tracked('first')",
        "print($o.name, $Tracked.all_created()); $Tracked('second'); print($Tracked.all_created(), type($o) is $Tracked)",
        after="$second = $Tracked('late')",
    ),
    C(
        "properties",
        """
        import functools
        class $Temp:
            def __init__(self, celsius):
                self._c = celsius
            @property
            def celsius(self):
                return self._c
            @celsius.setter
            def celsius(self, value):
                if value < -273.15:
                    raise ValueError('too cold')
                self._c = value
            @celsius.deleter
            def celsius(self):
                self._c = 0
            @property
            def fahrenheit(self):
                return self._c * 9 / 5 + 32
            @functools.cached_property
            def expensive(self):
                return [self._c] * 3
        """,
        "$Temp(20)",
        """
        print($o.celsius, $o.fahrenheit, $o.expensive, 'expensive' in vars($o))
        $o.celsius = 30
        print($o.fahrenheit, $o.expensive)
        del $o.celsius
        print($o.celsius)
        try:
            $o.celsius = -300
        except ValueError as $err:
            print($err)
        """,
        after="TARGET.expensive",
    ),
    C(
        "class_static_methods",
        """
        class $Money:
            rate = {'EUR': 1.0, 'USD': 0.5}
            def __init__(self, cents, cur='EUR'):
                self.cents, self.cur = cents, cur
            @classmethod
            def parse(cls, text):
                amount, cur = text.split()
                return cls(int(float(amount) * 100), cur)
            @staticmethod
            def fmt(cents):
                return f'{cents / 100:.2f}'
            def in_eur(self):
                return self.fmt(self.cents * self.rate[self.cur])
        """,
        "$Money.parse('12.50 USD')",
        "print($o.cents, $o.cur, $o.in_eur(), $Money.fmt(5), type($Money.parse('1 EUR')) is $Money, $Money.parse.__self__ is $Money)",
        after="$Money.rate['USD'] = 0.9",
    ),
    C(
        "eq_hash_keys",
        """
        class $Coord:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def __eq__(self, other):
                return isinstance(other, $Coord) and (self.x, self.y) == (other.x, other.y)
            def __hash__(self):
                return hash((self.x, self.y))
            def __repr__(self):
                return f'C({self.x},{self.y})'
        """,
        "{$Coord(0, 0): 'origin', $Coord(1, 2): 'p'}",
        "print($o[$Coord(1, 2)], $Coord(0, 0) in $o, sorted(map(repr, $o)), {$Coord(1, 2), $Coord(1, 2)})",
    ),
    C(
        "dunder_protocols",
        """
        class $Deck:
            def __init__(self, cards):
                self.cards = list(cards)
            def __len__(self):
                return len(self.cards)
            def __getitem__(self, i):
                return self.cards[i]
            def __contains__(self, c):
                return c in self.cards
            def __iter__(self):
                return iter(self.cards)
            def __add__(self, other):
                return $Deck(self.cards + other.cards)
            def __call__(self, n):
                return self.cards[:n]
            def __bool__(self):
                return bool(self.cards)
            def __repr__(self):
                return f'Deck{self.cards}'
        """,
        "$Deck('AKQ')",
        "print($o, len($o), $o[0], 'K' in $o, list($o), $o + $Deck('J'), $o(2), bool($Deck([])), $o[::-1])",
        after="TARGET.cards.append('J')",
    ),
    C(
        "class_level_state",
        """
        class $Counter:
            instances = 0
            registry = []
            def __init__(self, name):
                type(self).instances += 1
                $Counter.registry.append(self)
                self.name = name
        """,
        "$Counter('a')",
        "$Counter('c'); print($Counter.instances, [c.name for c in $Counter.registry], $Counter.registry[0] is $o)",
        after="$Counter('b')",
    ),
    C(
        "class_attr_instance",
        """
        class $Node:
            def __init__(self, v, parent=None):
                self.v, self.parent = v, parent
        $Node.ROOT = $Node('root')
        """,
        "$Node('child', $Node.ROOT)",
        "print($o.parent is $Node.ROOT, $o.parent.v, type($Node.ROOT) is $Node, isinstance($o, $Node))",
    ),
    C(
        "context_manager",
        """
        class $Tracker:
            def __init__(self):
                self.log = []
                self.depth = 0
            def __enter__(self):
                self.depth += 1
                self.log.append('enter')
                return self
            def __exit__(self, *exc):
                self.depth -= 1
                self.log.append('exit:' + (exc[0].__name__ if exc[0] else 'ok'))
                return True
        """,
        "$Tracker()",
        """
        with $o:
            raise KeyError('x')
        print($o.log, $o.depth)
        """,
        after="with TARGET:\n    pass",
    ),
    C(
        "generic_stack",
        """
        from typing import Generic, TypeVar
        $T = TypeVar('$T')
        class $Stack(Generic[$T]):
            def __init__(self):
                self.items: list = []
            def push(self, x):
                self.items.append(x)
                return self
            def pop(self):
                return self.items.pop()
        """,
        "$Stack[int]().push(1).push(2)",
        "print($o.items, $o.pop(), type($o) is $Stack, $Stack[int].__origin__ is $Stack, $Stack.__parameters__[0] is $T)",
    ),
    C(
        "singleton_new",
        """
        class $Config:
            _instance = None
            def __new__(cls):
                if cls._instance is None:
                    cls._instance = super().__new__(cls)
                    cls._instance.values = {}
                return cls._instance
        """,
        "$Config()",
        "print($o is $Config(), $Config._instance is $o, $o.values); $Config().values['b'] = 2; print($o.values)",
        after="TARGET.values['a'] = 1",
    ),
    C(
        "exception_custom_args",
        """
        class $HttpError(Exception):
            def __init__(self, status, message):
                super().__init__(message)
                self.status = status
        """,
        "$HttpError(404, 'missing')",
        "print(type($o).__name__[len('$'):], $o.status, $o.args, str($o), isinstance($o, Exception))",
    ),
    C(
        "getattr_proxy",
        """
        class $Record:
            def __init__(self, **data):
                self._data = data
            def __getattr__(self, name):
                try:
                    return self._data[name]
                except KeyError:
                    raise AttributeError(name) from None
        """,
        "$Record(a=1, b='two')",
        "print($o.a, $o.b, hasattr($o, 'c'), sorted($o._data))",
        after="TARGET._data['c'] = 3",
    ),
    C(
        "getattr_keyerror_proxy",
        """
        class $Bunch:
            def __init__(self, **data):
                self.__dict__['data'] = data
            def __getattr__(self, name):
                return self.data[name]
            def __setattr__(self, name, value):
                self.data[name] = value
        """,
        "$Bunch(x=1)",
        "print($o.x, $o.y, sorted($o.data))",
        after="TARGET.y = 2",
    ),
    C(
        "user_reduce",
        """
        class $Conn:
            def __init__(self, dsn):
                self.dsn = dsn
                self.opened = 1
            def __reduce__(self):
                return (type(self), (self.dsn,))
        """,
        "$Conn('db://x')",
        "print($o.dsn, $o.opened, type($o) is $Conn)",
        after="TARGET.opened += 1",
    ),
    C(
        "class_getitem",
        """
        class $Registry:
            seen = []
            def __class_getitem__(cls, item):
                cls.seen.append(item)
                return f'{cls.__name__[len("$"):]}[{item}]'
        """,
        "$Registry['a']",
        "print($o, $Registry['b'], $Registry.seen)",
    ),
]


# ======================================================================================
# functions: closures, decorators with state, partial, singledispatch, caches, generators
# ======================================================================================

F = C  # same shape: defs, make (the callable the holders hold), checks on $o, after cells

FUNCTIONS = [
    F(
        "closure_counter",
        """
        def $make_counter(start=0):
            n = start
            def inc():
                nonlocal n
                n += 1
                return n
            return inc
        $count = $make_counter(10)
        $count(); $count()
        """,
        "$count",
        "print($o(), $o(), $count(), $o.__closure__[0].cell_contents, $o is $count)",
        after="TARGET()",
    ),
    F(
        "bank_account_shared_cell",
        """
        def $account(opening):
            balance = opening
            def deposit(x):
                nonlocal balance
                balance += x
                return balance
            def read():
                return balance
            return deposit, read
        $deposit, $read = $account(100)
        $deposit(50)
        """,
        "$deposit",
        "print($o(5), $read(), $deposit.__closure__[0] is $read.__closure__[0]); $deposit(1); print($read())",
        after="TARGET(20)",
    ),
    F(
        "bank_account_dict",
        """
        def $account():
            balance = 0
            def deposit(x):
                nonlocal balance
                balance += x
            def read():
                return balance
            return {'deposit': deposit, 'read': read}
        $acct = $account()
        """,
        "$acct",
        "$o['deposit'](7); print($o['read'](), $acct['read']())",
        after="TARGET['deposit'](3)",
    ),
    F(
        "decorator_call_counter",
        """
        import functools
        def $counted(f):
            @functools.wraps(f)
            def wrapper(*args, **kwargs):
                wrapper.calls += 1
                return f(*args, **kwargs)
            wrapper.calls = 0
            return wrapper
        @$counted
        def $square(x):
            '''Square x.'''
            return x * x
        $square(2); $square(3)
        """,
        "$square",
        "print($o.calls, $o(4), $o.calls, $o.__name__[len('$'):], $o.__doc__, $o.__wrapped__(5), $o.calls)",
        after="TARGET(9)",
    ),
    F(
        "decorator_closure_state",
        """
        def $memo_log(f):
            log = []
            def wrapper(x):
                log.append(x)
                return f(x)
            wrapper.log = log
            return wrapper
        @$memo_log
        def $neg(x):
            return -x
        $neg(1)
        """,
        "$neg",
        "print($o(2), $o.log, $neg.log is $o.log); $neg(3); print($o.log)",
    ),
    F(
        "wraps_chain",
        """
        import functools, inspect
        def $deco_a(f):
            @functools.wraps(f)
            def a(*args, **kw):
                return ['a'] + f(*args, **kw)
            return a
        def $deco_b(f):
            @functools.wraps(f)
            def b(*args, **kw):
                return ['b'] + f(*args, **kw)
            return b
        @$deco_a
        @$deco_b
        def $base(x: int, *, y: str = 'z') -> list:
            '''doc of base'''
            return [x, y]
        """,
        "$base",
        "print($o(1), $o.__name__[len('$'):], $o.__doc__, str(inspect.signature($o)), $o.__wrapped__.__wrapped__(2), inspect.unwrap($o)(3))",
    ),
    F(
        "partial",
        """
        import functools
        def $power(base, exp=2):
            return base ** exp
        $cube = functools.partial($power, exp=3)
        """,
        "$cube",
        "print($o(2), $o.keywords, $o.func is $power, $o.args, functools.partial($o, 3)())",
    ),
    F(
        "partial_of_lambda",
        """
        import functools
        $add = lambda a, b, c=0: a + b + c
        $add10 = functools.partial($add, 10, c=1)
        """,
        "$add10",
        "print($o(5), $o.func is $add, $o.args, $o.keywords)",
    ),
    F(
        "partialmethod",
        """
        import functools
        class $Cell:
            def __init__(self):
                self.alive = False
            def set_state(self, state):
                self.alive = state
            set_alive = functools.partialmethod(set_state, True)
        """,
        "$Cell()",
        "print($o.alive); $o.set_alive(); print($o.alive, type($Cell.__dict__['set_alive']).__name__)",
    ),
    F(
        "singledispatch",
        """
        import functools
        @functools.singledispatch
        def $show(x):
            return f'obj:{x!r}'
        @$show.register(int)
        def _(x):
            return f'int:{x}'
        @$show.register
        def _(x: list):
            return 'list:' + ','.join($show(i) for i in x)
        class $Money:
            def __init__(self, v):
                self.v = v
        @$show.register($Money)
        def _(x):
            return f'money:{x.v}'
        """,
        "$show",
        "print($o(1), $o('s'), $o([1, 'a']), $o($Money(3)), sorted(t.__name__.rsplit('_', 1)[-1] for t in $o.registry), $o.dispatch(bool).__name__)",
    ),
    F(
        "singledispatchmethod",
        """
        import functools
        class $Formatter:
            @functools.singledispatchmethod
            def fmt(self, arg):
                return 'other'
            @fmt.register
            def _(self, arg: int):
                return 'int'
            @fmt.register
            def _(self, arg: str):
                return 'str'
        """,
        "$Formatter()",
        "print($o.fmt(1), $o.fmt('x'), $o.fmt(1.5))",
    ),
    F(
        "lru_cache",
        """
        import functools
        @functools.lru_cache(maxsize=64)
        def $fib(n):
            return n if n < 2 else $fib(n - 1) + $fib(n - 2)
        $fib(20)
        """,
        "$fib",
        "print($o.cache_info().currsize, $o.cache_info()); print($o(25), $o.cache_info())",
    ),
    F(
        "cache",
        """
        import functools
        $calls = []
        @functools.cache
        def $slow_sq(x):
            $calls.append(x)
            return x * x
        $slow_sq(3); $slow_sq(4); $slow_sq(3)
        """,
        "$slow_sq",
        "print($o(3), $o(5), $calls, $o.cache_info().currsize, $o.cache_info().hits)",
    ),
    F(
        "cached_method_on_instance",
        """
        import functools
        class $Circle:
            def __init__(self, r):
                self.r = r
                self.computed = 0
            @functools.cached_property
            def area(self):
                self.computed += 1
                return 3 * self.r ** 2
        """,
        "$Circle(2)",
        "print($o.area, $o.computed, $o.area, $o.computed, vars($o))",
        after="TARGET.area",
    ),
    F(
        "generator_function",
        """
        def $countdown(n):
            while n > 0:
                yield n
                n -= 1
            yield 'liftoff'
        $gen = $countdown(5)
        next($gen); next($gen)
        """,
        "$gen",
        "print(next($o), next($o), list($o), list($gen))",
    ),
    F(
        "generator_send",
        """
        def $averager():
            total = count = 0
            avg = None
            while True:
                x = yield avg
                total += x
                count += 1
                avg = total / count
        $avg = $averager()
        next($avg)
        $avg.send(10)
        """,
        "$avg",
        "print($o.send(20), $o.send(30))",
        after="TARGET.send(0)",
    ),
    F(
        "generator_in_class",
        """
        class $Tree:
            def __init__(self, v, *kids):
                self.v, self.kids = v, kids
            def walk(self):
                yield self.v
                for k in self.kids:
                    yield from k.walk()
        $tree = $Tree(1, $Tree(2, $Tree(3)), $Tree(4))
        $walker = $tree.walk()
        next($walker)
        """,
        "$walker",
        "print(next($o), list($o))",
    ),
    F(
        "coroutine",
        """
        import asyncio
        async def $double(x):
            await asyncio.sleep(0)
            return x * 2
        async def $pipeline(xs):
            return [await $double(x) for x in xs]
        """,
        "$pipeline",
        "print(await $o([1, 2, 3]), await $double(5), asyncio.iscoroutinefunction($o))",
    ),
    F(
        "coroutine_object_pending",
        """
        async def $answer():
            return 42
        $pending = $answer()
        """,
        "$pending",
        "print(type($o).__name__, await $o)",
    ),
    F(
        "async_generator",
        """
        async def $ticks(n):
            for i in range(n):
                yield i * i
        async def $collect(agen):
            return [x async for x in agen]
        """,
        "$ticks",
        "print(await $collect($o(4)))",
    ),
    F(
        "lambda",
        "$sq = lambda x: x * x",
        "$sq",
        "print($o(7), $o.__name__, $o is $sq, list(map($o, range(4))))",
    ),
    F(
        "lambdas_default_capture",
        "$adders = [lambda x, i=i: x + i for i in range(3)]",
        "$adders",
        "print([f(10) for f in $o], [f.__defaults__ for f in $o])",
    ),
    F(
        "lambda_global_late_binding",
        """
        $scale = 2
        $scaled = lambda x: x * $scale
        """,
        "$scaled",
        "print($o(5)); $scale = 10; print($o(5))",
        after="$scale = 3",
    ),
    F(
        "mutable_default",
        """
        def $append_to(x, bucket=[]):
            bucket.append(x)
            return bucket
        $append_to(1); $append_to(2)
        """,
        "$append_to",
        "print($o(3), $o.__defaults__, $o.__defaults__[0] is $append_to.__defaults__[0])",
    ),
    F(
        "kwdefaults_annotations",
        """
        def $config(a, /, b=2, *, c=3, **rest) -> dict:
            return dict(a=a, b=b, c=c, **rest)
        $config.__kwdefaults__['c'] = 30
        """,
        "$config",
        "import inspect\nprint($o(1), $o.__kwdefaults__, str(inspect.signature($o)), $o.__annotations__)",
    ),
    F(
        "function_attributes",
        """
        def $handler(x):
            '''Handle x.'''
            $handler.seen.append(x)
            return x
        $handler.seen = []
        $handler.meta = {'route': '/x', 'methods': ('GET',)}
        $handler(1)
        """,
        "$handler",
        "print($o.meta, $o.seen, $o.__doc__, $o.__qualname__[len('$'):], $o.__module__); $o(2); print($handler.seen)",
    ),
    F(
        "recursive",
        """
        def $fact(n):
            return 1 if n <= 1 else n * $fact(n - 1)
        def $is_even(n):
            return True if n == 0 else $is_odd(n - 1)
        def $is_odd(n):
            return False if n == 0 else $is_even(n - 1)
        """,
        "$fact",
        "print($o(10), $is_even(10), $is_odd(7))",
    ),
    F(
        "recursive_closure",
        """
        def $make_walker():
            def walk(node, depth=0):
                if isinstance(node, list):
                    return max((walk(n, depth + 1) for n in node), default=depth + 1)
                return depth
            return walk
        $depth = $make_walker()
        """,
        "$depth",
        "print($o([1, [2, [3]], []]), $o(5))",
    ),
    F(
        "global_constant_rebound",
        """
        $PI = 3
        def $area(r):
            return $PI * r * r
        """,
        "$area",
        "print($o(1), $o(2))",
        after="$PI = 3.14",
    ),
    F(
        "global_statement",
        """
        $count = 0
        def $bump(by=1):
            global $count
            $count += by
            return $count
        $bump(); $bump(5)
        """,
        "$bump",
        "print($o(), $count)",
    ),
    F(
        "currying",
        """
        def $curry3(f):
            return lambda a: lambda b: lambda c: f(a, b, c)
        $vol = $curry3(lambda a, b, c: a * b * c)
        $vol2 = $vol(2)
        """,
        "$vol2",
        "print($o(3)(4), $vol(1)(1)(1))",
    ),
    F(
        "bound_method",
        """
        class $Acc:
            def __init__(self):
                self.items = []
            def add(self, x):
                self.items.append(x)
                return len(self.items)
        $acc = $Acc()
        $add = $acc.add
        $add('a')
        """,
        "$add",
        "print($o('b'), $acc.items, $o.__self__ is $acc, $o.__func__ is $Acc.add)",
    ),
    F(
        "operator_callables",
        """
        import operator
        $getter = operator.itemgetter(1, 0)
        $attr = operator.attrgetter('real')
        $caller = operator.methodcaller('split', ',')
        """,
        "[$getter, $attr, $caller]",
        "print($o[0](['a', 'b']), $o[1](3 + 4j), $o[2]('x,y'))",
    ),
    F(
        "builtin_method_refs",
        """
        $seen = set()
        $mark = $seen.add
        $mark('a')
        """,
        "$mark",
        "$o('b'); print(sorted($seen), $o.__self__ is $seen)",
    ),
]

FUNCTION_HOLDERS = {
    "name": Holder("name", lambda make: [f"$o = {make}"], "$o"),
    "dict": Holder("dict", lambda make: [f"$reg = {{'main': {make}, 'other': len}}"], "$reg['main']", "print('held:', sorted($reg))"),
    "namespace": Holder(
        "namespace",
        lambda make: ["import types", f"$ns = types.SimpleNamespace(fn={make})"],
        "$ns.fn",
        "print('held:', type($ns).__name__)",
    ),
}


def _functions(corpus: _Corpus) -> None:
    for con in FUNCTIONS:
        for hname, holder in FUNCTION_HOLDERS.items():
            setup = [*con.defs, *holder.build(con.make), *_after(con.after, holder)]
            corpus.add("functions", f"{con.name}.{hname}", setup, _probe(holder, con.checks), requires=con.requires)


# ======================================================================================
# shared_rebuilt: objects that share state with stored values and cannot be pickled
# ======================================================================================

# (name, setup cells, probe): the iterator is advanced once in setup; the probe
# changes the underlying data after the restore and reads through the iterator.
ITERATORS = [
    ("genexpr", "$g = (x * 10 for x in $data)"),
    ("generator_function", "def $walk(seq):\n    for x in seq:\n        yield x\n$g = $walk($data)"),
    ("list_iterator", "$g = iter($data)"),
    ("map", "$g = map(str, $data)"),
    ("filter", "$g = filter(lambda x: x % 2, $data)"),
    ("zip", "$g = zip($data, $data)"),
    ("enumerate", "$g = enumerate($data)"),
    ("reversed", "$g = reversed($data)"),
    ("islice", "import itertools\n$g = itertools.islice($data, 0, None, 1)"),
    ("chain", "import itertools\n$g = itertools.chain($data, ['tail'])"),
    ("cycle", "import itertools\n$g = itertools.cycle($data)"),
    ("count", "import itertools\n$g = itertools.count(100, 5)"),
    ("dict_items_iter", "$dd = {i: i for i in $data}\n$g = iter($dd.items())"),
    ("tee", "import itertools\n$g, $g2 = itertools.tee($data)"),
]


def _shared_rebuilt(corpus: _Corpus) -> None:
    for name, make in ITERATORS:
        take = "[next($g) for _ in range(3)]" if name == "cycle" else "list($g)" if name != "count" else "[next($g) for _ in range(3)]"
        for arrangement in ("same_cell", "separate_cells"):
            if arrangement == "same_cell":
                setup = [f"$data = [1, 2, 3, 4, 5]\n{make}\nnext($g)"]
            else:
                setup = ["$data = [1, 2, 3, 4, 5]", make, "next($g)", "$data.append(6)"]
            probe = f"print(next($g))\n$data.append(7)\nprint({take}, $data)"
            corpus.add("shared_rebuilt", f"iterator.{name}.{arrangement}", setup, probe)

    weak = {
        "weakvaluedict": (
            "$wvd = weakref.WeakValueDictionary({i: n for i, n in enumerate($nodes)})",
            "print(sorted($wvd.keys()), $wvd[0] is $nodes[0], $wvd[2].v)\ndel $nodes[1]\ngc.collect()\nprint(sorted($wvd.keys()))",
        ),
        "weakkeydict": (
            "$wkd = weakref.WeakKeyDictionary({n: n.v * 10 for n in $nodes})",
            "print(sorted($wkd.values()), $wkd[$nodes[0]])\ndel $nodes[0]\ngc.collect()\nprint(sorted($wkd.values()))",
        ),
        "weakset": (
            "$ws = weakref.WeakSet($nodes)",
            "print(len($ws), $nodes[0] in $ws)\n$nodes.pop()\ngc.collect()\nprint(len($ws))",
        ),
        "weakref": (
            "$r = weakref.ref($nodes[0])",
            "print($r() is $nodes[0], $r().v)\n$nodes.clear()\ngc.collect()\nprint($r())",
        ),
        "proxy": (
            "$p = weakref.proxy($nodes[2])",
            "print($p.v)\n$nodes[2].v = 99\nprint($p.v)",
        ),
        "weakmethod": (
            "$wm = weakref.WeakMethod($nodes[1].get)",
            "print($wm()(), $wm().__self__ is $nodes[1])",
        ),
        "finalize": (
            "$fin = weakref.finalize($nodes[1], $gone.append, 'node1')",
            "print($fin.alive, $gone)\ndel $nodes[1]\ngc.collect()\nprint($fin.alive, $gone)",
        ),
    }
    node_defs = "import weakref, gc\nclass $Node:\n    def __init__(self, v):\n        self.v = v\n    def get(self):\n        return self.v\n$gone = []"
    for name, (make, probe) in weak.items():
        for arrangement in ("same_cell", "separate_cells"):
            if arrangement == "same_cell":
                setup = [node_defs + "\n$nodes = [$Node(i) for i in range(3)]\n" + make]
            else:
                setup = [node_defs, "$nodes = [$Node(i) for i in range(3)]", make]
            corpus.add("shared_rebuilt", f"weak.{name}.{arrangement}", setup, probe)

    views = {
        "memoryview": ("$mv = memoryview($buf)", "$buf[0] = ord('J')\nprint(bytes($mv), $mv.obj is $buf)\n$mv[1] = ord('E')\nprint($buf)"),
        "memoryview_slice": ("$mv = memoryview($buf)[1:4]", "$buf[1] = ord('A')\nprint(bytes($mv), len($mv))"),
        "memoryview_cast": ("$mv = memoryview($buf).cast('B', shape=[5])", "$buf[4] = ord('!')\nprint($mv.tolist()[-1], $mv.shape)"),
        "numpy_frombuffer": ("import numpy as np\n$arr = np.frombuffer($buf, dtype=np.uint8)", "$buf[0] = 1\nprint($arr[:2], $arr.base is not None)"),
        "mappingproxy": ("import types\n$cfg = {'a': 1}\n$ro = types.MappingProxyType($cfg)", "$cfg['b'] = 2\nprint(dict($ro), len($ro))"),
        "dict_keys_view": ("$cfg = {'a': 1}\n$keys = $cfg.keys()\n$vals = $cfg.values()", "$cfg['z'] = 26\nprint(sorted($keys), sorted($vals))"),
        "chainmap": ("import collections\n$defaults = {'color': 'red', 'size': 1}\n$user = {}\n$cm = collections.ChainMap($user, $defaults)", "$defaults['shape'] = 'round'\n$user['size'] = 5\nprint(dict($cm), $cm.maps[0] is $user)"),
        "bound_method_of_list": ("$items = []\n$push = $items.append", "$push(1)\nprint($items, $push.__self__ is $items)"),
        "partial_over_list": ("import functools\n$sink = []\n$add = functools.partial(list.append, $sink)", "$add('x')\nprint($sink)"),
        "sqlite_memory_one_cell": (
            "import sqlite3\n$conn = sqlite3.connect(':memory:')\n$conn.execute('create table t (x)')\n$conn.execute('insert into t values (1), (2)')\n$conn.commit()",
            "print($conn.execute('select sum(x) from t').fetchone())",
        ),
        "sqlite_file": (
            "import sqlite3\n$conn = sqlite3.connect('$db.sqlite')\n$conn.execute('create table t (x)')\n$conn.execute('insert into t values (1), (2)')\n$conn.commit()",
            "print($conn.execute('select sum(x) from t').fetchone())",
        ),
        "pandas_on_numpy_nocopy": (
            "import numpy as np, pandas as pd\n$arr = np.zeros((3, 2))\n$frame = pd.DataFrame($arr, copy=False)",
            "$arr[0, 0] = 5\nprint($frame.iloc[0, 0], $frame.shape)",
        ),
        "numpy_view_chain": (
            "import numpy as np\n$arr = np.arange(12)\n$v1 = $arr[2:10]\n$v2 = $v1[::2]",
            "$arr[4] = -1\nprint($v1, $v2, $v2.base is $arr)",
        ),
    }
    for name, (make, probe) in views.items():
        req = ("numpy",) if "np" in make else ()
        req += ("pandas",) if "pd." in make else ()
        lines = make.split("\n")
        for arrangement in ("same_cell", "separate_cells"):
            if arrangement == "same_cell":
                setup = ["$buf = bytearray(b'hello')\n" + make]
            else:
                setup = ["$buf = bytearray(b'hello')", *lines]
            corpus.add("shared_rebuilt", f"view.{name}.{arrangement}", setup, probe, requires=req)

    memmaps = {
        "w_plus": ("$mm = np.memmap('$mm.dat', dtype='int32', mode='w+', shape=(4,))\n$mm[:] = [1, 2, 3, 4]\n$mm.flush()", "$mm[0] = 99\n$mm.flush()\nprint($mm.tolist(), np.fromfile('$mm.dat', dtype='int32').tolist())"),
        "r_plus": ("np.arange(6, dtype='int16').tofile('$mm.dat')\n$mm = np.memmap('$mm.dat', dtype='int16', mode='r+')", "$mm[-1] = -5\n$mm.flush()\nprint($mm.tolist(), np.fromfile('$mm.dat', dtype='int16').tolist())"),
        "readonly": ("np.arange(5, dtype='float32').tofile('$mm.dat')\n$mm = np.memmap('$mm.dat', dtype='float32', mode='r')", "print($mm.tolist(), $mm.flags.writeable)"),
        "offset_shape": ("np.arange(10, dtype='int64').tofile('$mm.dat')\n$mm = np.memmap('$mm.dat', dtype='int64', mode='r+', offset=16, shape=(2, 2))", "$mm[1, 1] = 0\n$mm.flush()\nprint($mm.tolist(), np.fromfile('$mm.dat', dtype='int64').tolist())"),
        "view_of_memmap": ("$mm = np.memmap('$mm.dat', dtype='uint8', mode='w+', shape=(6,))\n$half = $mm[3:]", "$half[:] = 7\n$mm.flush()\nprint($mm.tolist(), np.fromfile('$mm.dat', dtype='uint8').tolist())"),
        "written_after_kill_file_changed": ("$mm = np.memmap('$mm.dat', dtype='int32', mode='w+', shape=(3,))\n$mm[:] = 5\n$mm.flush()", "print($mm.tolist())"),
    }
    for name, (make, probe) in memmaps.items():
        setup = ["import numpy as np", *make.split("\n")]
        between = None
        if name == "written_after_kill_file_changed":
            between = "import numpy as np\nm = np.memmap('$mm.dat', dtype='int32', mode='r+', shape=(3,))\nm[:] = 8\nm.flush()\ndel m"
        corpus.add("shared_rebuilt", f"memmap.{name}", setup, probe, requires=("numpy",), between=between)


# ======================================================================================
# threads: a thread that changes a global, joined
# ======================================================================================


def _threads(corpus: _Corpus) -> None:
    targets = {
        "rebind_int": ("$value = 0", "def $work():\n    global $value\n    $value = 42", "print($value)"),
        "rebind_str": ("$value = 'before'", "def $work():\n    global $value\n    $value = 'after:' + 'thread'", "print($value)"),
        "append_list": ("$value = []", "def $work():\n    for i in range(3):\n        $value.append(i)", "print($value)"),
        "dict_item": ("$value = {'status': 'pending'}", "def $work():\n    $value['status'] = 'done'\n    $value['n'] = 3", "print($value)"),
        "instance_attr": (
            "class $Job:\n    def __init__(self):\n        self.state = 'new'\n$value = $Job()",
            "def $work():\n    $value.state = 'finished'",
            "print($value.state)",
        ),
        "counter_with_lock": (
            "import threading\n$value = 0\n$lk = threading.Lock()",
            "def $work():\n    global $value\n    for _ in range(1000):\n        with $lk:\n            $value += 1",
            "print($value)",
        ),
    }
    for name, (init, work, check) in targets.items():
        n_threads = 4 if name == "counter_with_lock" else 1
        start = f"$threads = [threading.Thread(target=$work) for _ in range({n_threads})]\nfor $t in $threads:\n    $t.start()"
        join = "for $t in $threads:\n    $t.join()"
        modes = {
            "join_same_cell": ["import threading\n" + init, work, start + "\n" + join],
            "join_next_cell": ["import threading\n" + init, work, start, join],
            "join_in_probe": ["import threading, time\n" + init, work, start, "time.sleep(0.3)"],
        }
        for mode, setup in modes.items():
            probe = check + "\nprint([t.is_alive() for t in $threads])"
            if mode == "join_in_probe":
                probe = join + "\n" + probe
            corpus.add("threads", f"{name}.{mode}", setup, probe)
    extra = {
        "thread_object_held": (["import threading\n$out = []\n$t = threading.Thread(target=$out.append, args=('x',), name='$worker')\n$t.start(); $t.join()"], "print($t.is_alive(), $t.name, $out, $t.daemon)"),
        "thread_subclass": (
            [
                "import threading\nclass $Worker(threading.Thread):\n    def __init__(self, n):\n        super().__init__()\n        self.n = n\n        self.result = None\n    def run(self):\n        self.result = sum(range(self.n))",
                "$w = $Worker(100)\n$w.start()\n$w.join()",
            ],
            "print($w.result, $w.is_alive(), isinstance($w, threading.Thread))",
        ),
        "executor_result": (
            ["import concurrent.futures\n$ex = concurrent.futures.ThreadPoolExecutor(max_workers=2)\n$fut = $ex.submit(pow, 2, 10)\n$result = $fut.result()"],
            "print($result, $fut.result(timeout=2), $fut.done(), $ex.submit(pow, 3, 2).result(timeout=5))",
        ),
        "executor_map": (
            ["import concurrent.futures\nwith concurrent.futures.ThreadPoolExecutor(2) as $pool:\n    $squares = list($pool.map(lambda x: x * x, range(5)))"],
            "print($squares)",
        ),
        "timer": (
            ["import threading, time\n$fired = []\n$timer = threading.Timer(0.05, $fired.append, args=['fired'])\n$timer.start()", "time.sleep(0.3)\n$timer.join()"],
            "print($fired, $timer.is_alive())",
        ),
        "thread_local": (
            ["import threading\n$tl = threading.local()\n$tl.x = 5"],
            "print(getattr($tl, 'x', None))",
        ),
        "daemon_waiting_on_event": (
            [
                "import threading\n$ev = threading.Event()\n$results = []\ndef $waiter():\n    if $ev.wait(600):\n        $results.append('woken')\n$t = threading.Thread(target=$waiter, daemon=True)\n$t.start()",
            ],
            "print($t.is_alive())\n$ev.set()\n$t.join(5)\nprint($t.is_alive(), $results)",
        ),
        "thread_rebinds_later_unnamed": (
            [
                "import threading, time\n$flag = 'old'\ndef $late():\n    global $flag\n    time.sleep(0.1)\n    $flag = 'new'\nthreading.Thread(target=$late).start()",
                "time.sleep(0.4)",
            ],
            "print($flag)",
        ),
    }
    for name, (setup, probe) in extra.items():
        corpus.add("threads", name, setup, probe)


# ======================================================================================
# settings: process-wide configuration a notebook sets
# ======================================================================================


def _settings(corpus: _Corpus) -> None:
    pd_opts = [
        ("display.max_columns", "7", "pd.DataFrame([range(12)])"),
        ("display.precision", "3", "pd.DataFrame({'a': [1.23456789, 2.5]})"),
        ("display.max_rows", "4", "pd.Series(range(10))"),
        ("display.width", "40", "pd.DataFrame([range(10)], columns=[f'column{i}' for i in range(10)])"),
        ("display.max_colwidth", "8", "pd.DataFrame({'t': ['a long piece of text']})"),
        ("display.float_format", "'{:.1f}%'.format", "pd.Series([0.25, 12.5])"),
        ("display.show_dimensions", "True", "pd.DataFrame({'a': [1]})"),
    ]
    for opt, value, frame in pd_opts:
        short = opt.split(".")[-1]
        for how in ("set_option", "options_attr") if short in ("precision", "max_columns") else ("set_option",):
            if how == "set_option":
                cell = f"import pandas as pd\npd.set_option('{opt}', {value})"
            else:
                cell = f"import pandas as pd\npd.options.{opt} = {value}"
            probe = f"print(repr(pd.get_option('{opt}')) if '{short}' != 'float_format' else pd.get_option('{opt}') is not None)\nprint({frame})"
            corpus.add("settings", f"pandas.{short}.{how}", [cell], probe, requires=("pandas",), key="pandas:display")  # display options interact
    np_print = [
        ("precision", "np.set_printoptions(precision=3)", "np.array([1 / 3, 2 / 3])"),
        ("threshold", "np.set_printoptions(threshold=5, edgeitems=2)", "np.arange(20)"),
        ("suppress", "np.set_printoptions(suppress=True)", "np.array([1e-10, 1.5])"),
        ("linewidth", "np.set_printoptions(linewidth=30)", "np.arange(15)"),
        ("formatter", "np.set_printoptions(formatter={'int': lambda v: f'<{v}>'})", "np.arange(3)"),
        ("sign", "np.set_printoptions(sign='+')", "np.array([1.0, -2.0])"),
    ]
    for name, cell, arr in np_print:
        probe = f"opts = None\nprint({{k: v for k, v in np.get_printoptions().items() if k in ('precision', 'threshold', 'edgeitems', 'suppress', 'linewidth', 'sign')}})\nprint({arr})\nprint(repr({arr}))"
        probe = probe.replace("opts = None\n", "")
        corpus.add("settings", f"numpy.printoptions.{name}", ["import numpy as np\n" + cell], probe, requires=("numpy",), key="numpy:printoptions")
    np_err = {
        "divide_raise": ("np.seterr(divide='raise')", "try:\n    np.array([1.0]) / 0\n    print('no error')\nexcept FloatingPointError as $e:\n    print('raised', $e)"),
        "all_ignore": ("np.seterr(all='ignore')", "print((np.array([1.0, 0.0]) / 0).tolist(), np.sqrt(np.array([-1.0])).tolist())"),
        "over_raise_invalid_ignore": ("np.seterr(over='raise', invalid='ignore')", "print((np.array([np.inf]) - np.inf).tolist())\ntry:\n    np.array([1e308]) * 10\nexcept FloatingPointError:\n    print('overflow raised')"),
        "errcall": ("$errs = []\nnp.seterrcall(lambda kind, flag: $errs.append(kind))\nnp.seterr(divide='call')", "np.array([1.0]) / 0\nprint($errs, np.geterrcall() is not None)"),
    }
    for name, (cell, check) in np_err.items():
        probe = "print(np.geterr())\n" + check
        corpus.add("settings", f"numpy.seterr.{name}", ["import numpy as np\n" + cell], probe, requires=("numpy",), key="numpy:seterr")
    mpl = {
        "rcparams_linewidth": ("matplotlib.rcParams['lines.linewidth'] = 3.5", "['lines.linewidth']"),
        "rcparams_figsize": ("matplotlib.rcParams['figure.figsize'] = [4.0, 2.5]", "['figure.figsize']"),
        "rcparams_font": ("matplotlib.rcParams.update({'font.size': 15, 'axes.grid': True})", "['font.size', 'axes.grid']"),
        "rc_function": ("matplotlib.rc('lines', markersize=11)", "['lines.markersize']"),
        "style_ggplot": ("import matplotlib.pyplot as plt\nplt.style.use('ggplot')", "['axes.facecolor', 'axes.grid', 'axes.prop_cycle']"),
        "style_then_override": ("import matplotlib.pyplot as plt\nplt.style.use('bmh')\nmatplotlib.rcParams['axes.titlesize'] = 'x-large'", "['axes.titlesize', 'axes.facecolor']"),
        "backend_agg": ("matplotlib.use('Agg')", None),
    }
    for name, (cell, keys) in mpl.items():
        probe = f"for $k in {keys}:\n    print($k, matplotlib.rcParams[$k])" if keys else "print(matplotlib.get_backend())"
        corpus.add("settings", f"matplotlib.{name}", ["import matplotlib\n" + cell], probe, requires=("matplotlib",), key="matplotlib")  # a style sets many parameters
    decs = {
        "prec": ("decimal.getcontext().prec = 6", "print(decimal.getcontext().prec, decimal.Decimal(1) / decimal.Decimal(7))"),
        "rounding": ("decimal.getcontext().rounding = decimal.ROUND_DOWN", "print(decimal.getcontext().rounding, decimal.Decimal('2.675').quantize(decimal.Decimal('0.01')))"),
        "traps": ("decimal.getcontext().traps[decimal.DivisionByZero] = False", "print(decimal.Decimal(1) / decimal.Decimal(0), decimal.getcontext().traps[decimal.DivisionByZero])"),
        "setcontext": ("decimal.setcontext(decimal.Context(prec=4, Emax=99))", "print(decimal.getcontext().prec, decimal.getcontext().Emax, decimal.Decimal(2).sqrt())"),
    }
    for name, (cell, probe) in decs.items():
        corpus.add("settings", f"decimal.{name}", ["import decimal\n" + cell], probe, key="decimal")
    warn = {
        "ignore_message": ("warnings.filterwarnings('ignore', message='$noisy')", "warnings.warn('$noisy thing', $W)"),
        "error_category": ("warnings.filterwarnings('error', category=$W)", "warnings.warn('boom', $W)"),
        "always_category": ("warnings.simplefilter('always', $W)", "warnings.warn('again', $W); warnings.warn('again', $W)"),
        "ignore_module_regex": ("warnings.filterwarnings('ignore', category=$W, module='__main__')", "warnings.warn('from main', $W)"),
    }
    for name, (cell, trigger) in warn.items():
        setup = ["import warnings\nclass $W(UserWarning):\n    pass", cell]
        probe = (
            "print([(a, m.pattern if m else None, c.__name__[len('$'):]) for a, m, c, mod, l in warnings.filters if c is $W or (m and '$' in m.pattern)])\n"
            "with warnings.catch_warnings(record=True) as $caught:\n"
            "    try:\n"
            + textwrap.indent(trigger.replace("; ", "\n"), "        ")
            + "\n    except $W as $e:\n        print('raised', $e)\n"
            "print(len($caught))"
        )
        corpus.add("settings", f"warnings.{name}", setup, probe)
    logs = {
        "level": ("logging.getLogger('$app').setLevel(logging.DEBUG)", "print(logging.getLogger('$app').level, logging.getLogger('$app').getEffectiveLevel())"),
        "child_inherits": ("logging.getLogger('$app').setLevel(logging.ERROR)", "print(logging.getLogger('$app.db').getEffectiveLevel(), logging.getLogger('$app.db').isEnabledFor(logging.WARNING))"),
        "propagate_disabled": ("$lg = logging.getLogger('$app')\n$lg.propagate = False\n$lg.disabled = True", "print(logging.getLogger('$app').propagate, logging.getLogger('$app').disabled)"),
        "handler_stringio": (
            "import io\n$stream = io.StringIO()\n$h = logging.StreamHandler($stream)\n$h.setFormatter(logging.Formatter('%(levelname)s:%(name)s:%(message)s'))\nlogging.getLogger('$app').addHandler($h)\nlogging.getLogger('$app').setLevel(logging.INFO)\nlogging.getLogger('$app').propagate = False\nlogging.getLogger('$app').info('first')",
            "logging.getLogger('$app').warning('second')\nprint(repr($stream.getvalue().replace('$', '')), len(logging.getLogger('$app').handlers))",
        ),
        "handler_stdout": (
            "import sys\n$h = logging.StreamHandler(sys.stdout)\n$h.setFormatter(logging.Formatter('LOG %(message)s'))\nlogging.getLogger('$app').addHandler($h)\nlogging.getLogger('$app').propagate = False\nlogging.getLogger('$app').setLevel(logging.INFO)",
            "logging.getLogger('$app').info('hello from the logger')\nprint(len(logging.getLogger('$app').handlers))",
        ),
        "filter": (
            "class $OnlyOdd(logging.Filter):\n    def filter(self, record):\n        return record.args[0] % 2 == 1\nimport io\n$stream = io.StringIO()\n$lg = logging.getLogger('$app')\n$lg.addHandler(logging.StreamHandler($stream))\n$lg.addFilter($OnlyOdd())\n$lg.propagate = False\n$lg.setLevel(logging.INFO)",
            "for $i in range(4):\n    logging.getLogger('$app').info('n=%d', $i)\nprint(repr($stream.getvalue()))",
        ),
    }
    for name, (cell, probe) in logs.items():
        corpus.add("settings", f"logging.{name}", ["import logging\n" + cell], probe)
    corpus.add("settings", "logging.disable_global", ["import logging\nlogging.disable(logging.DEBUG)"], "print(logging.root.manager.disable)", key="logging:disable")
    corpus.add("settings", "sys.recursionlimit", ["import sys\nsys.setrecursionlimit(2345)"], "print(sys.getrecursionlimit())", key="sys:recursionlimit")
    corpus.add("settings", "sys.int_max_str_digits", ["import sys\nsys.set_int_max_str_digits(700)"], "print(sys.get_int_max_str_digits())\ntry:\n    str(10 ** 800)\nexcept ValueError:\n    print('limited')", key="sys:int_max_str_digits")
    corpus.add("settings", "sys.path_append", ["import sys, os\nos.makedirs('$lib', exist_ok=True)\nsys.path.append(os.path.abspath('$lib'))"], "print([os.path.basename(p) for p in sys.path if p.endswith('$lib')])")
    corpus.add("settings", "os.environ", ["import os\nos.environ['$VAR'] = 'on'\nos.environ.pop('$GONE', None)"], "print(os.environ.get('$VAR'), '$GONE' in os.environ)")
    corpus.add("settings", "socket.defaulttimeout", ["import socket\nsocket.setdefaulttimeout(7.5)"], "print(socket.getdefaulttimeout())", key="socket")
    corpus.add("settings", "gc.threshold", ["import gc\ngc.set_threshold(900, 11, 12)"], "print(gc.get_threshold())", key="gc")
    corpus.add("settings", "builtins_attribute", ["import builtins\nbuiltins.$helper = lambda: 'from builtins'"], "print($helper())")
    corpus.add("settings", "sys_modules_injected", ["import sys, types\n$mod = types.ModuleType('$virtual')\n$mod.answer = 42\nsys.modules['$virtual'] = $mod"], "import $virtual\nprint($virtual.answer, $virtual is $mod)")
    corpus.add("settings", "copyreg", ["import copyreg, pickle\nclass $P:\n    def __init__(self, v):\n        self.v = v\ncopyreg.pickle($P, lambda p: ($P, (p.v * 2,)))"], "print(pickle.loads(pickle.dumps($P(2))).v)")
    # A library's own object held by a name (or inside a container): after a restore it must be
    # the library's live object, so writing through the name still reaches the library.
    library_globals = {
        "environ": ("from os import environ as $e\n$e['$V'] = 'on'", "import os\n$e['$W'] = 'too'\nprint($e is os.environ, os.environ.get('$V'), os.getenv('$W'))", ()),
        "sys_path": ("from sys import path as $p", "import sys\nprint($p is sys.path)", ()),
        "rcparams": (
            "from matplotlib import rcParams as $rc\n$rc['lines.linewidth'] = 2.5",
            "import matplotlib\nprint($rc is matplotlib.rcParams, matplotlib.rcParams['lines.linewidth'])",
            ("matplotlib",),
        ),
        "root_logger": ("import logging\n$root = logging.root", "import logging\nprint($root is logging.getLogger())", ()),
        "numpy_global_rng": ("import numpy as np\n$rs = np.random.mtrand._rand", "import numpy as np\nprint($rs is np.random.mtrand._rand)", ("numpy",)),
        "in_a_container": ("import os, sys\n$box = {'env': os.environ, 'out': sys.stdout, 'n': 1}", "import os, sys\nprint($box['env'] is os.environ, $box['out'] is sys.stdout, $box['n'])", ()),
        "decimal_default_context": ("import decimal\n$ctx = decimal.DefaultContext", "import decimal\nprint($ctx is decimal.DefaultContext)", ()),
        "warnings_filters_list": ("import warnings\n$filters = warnings.filters", "import warnings\nprint($filters is warnings.filters)", ()),
    }
    for gname, (setup, probe, requires) in library_globals.items():
        corpus.add("settings", f"library_global.{gname}", [setup], probe, requires=requires, key=f"library_global:{gname}")
    corpus.add("settings", "random_seed_global", ["import random\nrandom.seed(2024)"], "print(random.random(), random.randint(1, 1000))", key="random")
    corpus.add("settings", "numpy_seed_global", ["import numpy as np\nnp.random.seed(99)"], "print(np.random.rand(2).tolist(), np.random.randint(0, 100))", requires=("numpy",), key="numpy:random")


# ======================================================================================
# ipython_state: magics and shell state
# ======================================================================================


def _ipython_state(corpus: _Corpus) -> None:
    ip = "get_ipython()"
    add = corpus.add
    add("ipython_state", "alias.simple", ["%alias $hi echo hello-alias"], f"print([a for a in {ip}.alias_manager.aliases if a[0] == '$hi'])\n%$hi")
    add("ipython_state", "alias.params", ["%alias $join echo %s+%s"], f"print({ip}.alias_manager.is_alias('$join'))\n%$join a b")
    add(
        "ipython_state",
        "autoreload.mode2",
        ["%load_ext autoreload\n%autoreload 2", "import importlib\nwith open('$ar.py', 'w') as $f:\n    $f.write('def version():\\n    return 1\\n')\nimportlib.invalidate_caches()", "import $ar\n$first = $ar.version()", "with open('$ar.py', 'w') as $f:\n    $f.write('def version():\\n    return \"two\"\\n')", "$second = $ar.version()"],
        f"print($first, $second, any(m.endswith('autoreload') for m in {ip}.extension_manager.loaded))",
        key="autoreload",
    )
    add(
        "ipython_state",
        "autoreload.state",
        ["%load_ext autoreload\n%autoreload 2"],
        f"$am = {ip}.magics_manager.registry.get('AutoreloadMagics')\nprint(any(m.endswith('autoreload') for m in {ip}.extension_manager.loaded), $am is not None and $am._reloader.enabled, $am is not None and $am._reloader.check_all)",
        key="autoreload",
    )
    add(
        "ipython_state",
        "aimport",
        ["%load_ext autoreload\n%autoreload 1", "import importlib\nwith open('$mod.py', 'w') as $f:\n    $f.write('X = 1\\n')\nimportlib.invalidate_caches()", "%aimport $mod"],
        f"$am = {ip}.magics_manager.registry.get('AutoreloadMagics')\nprint(sorted(m for m in $am._reloader.modules if m.startswith('$')) if $am else None)",
        key="autoreload",
    )
    add("ipython_state", "cd.magic", ["import os\nos.makedirs('$sub/inner', exist_ok=True)", "%cd $sub", "%cd inner"], "import os\nprint(os.path.relpath(os.getcwd(), _dh[0]), [os.path.relpath(d, _dh[0]) for d in _dh])", key="cwd")
    add("ipython_state", "cd.os_chdir", ["import os\nos.makedirs('$sub', exist_ok=True)\n$start = os.getcwd()\nos.chdir('$sub')"], "import os\nprint(os.path.relpath(os.getcwd(), $start))", key="cwd")
    add("ipython_state", "pushd", ["import os\nos.makedirs('$sub', exist_ok=True)\n$start = os.getcwd()", "%pushd $sub"], f"import os\nprint(os.path.relpath(os.getcwd(), $start), [os.path.relpath(d, $start) for d in {ip}.user_ns.get('_dh', [])][-1:], len({ip}.dir_stack))", key="cwd")
    add(
        "ipython_state",
        "numbered_inputs",
        ["$n = len(In) - 1  # this cell's number\n$answer = 6 * 7", "$m = $n + 1\n'second cell'"],
        "print(repr(In[$n]), repr(globals()['_i%d' % $n]) == repr(In[$n]), repr(In[$m]), _ih[$m] == In[$m])",
    )
    add(
        "ipython_state",
        "out_result",
        ["$n = len(In) - 1\n40 + 2"],
        "print(Out.get($n), globals().get('_%d' % $n))",
    )
    add(
        "ipython_state",
        "out_object_identity",
        ["$obj = [1, 2]", "$n = len(In) - 1\n$obj"],
        "print(Out.get($n), Out.get($n) is $obj, globals().get('_%d' % $n) is $obj)",
    )
    add("ipython_state", "precision", ["%precision 3"], f"print({ip}.display_formatter.formatters['text/plain'].float_precision, {ip}.display_formatter.format(3.14159265)[0]['text/plain'])", key="plaintext")
    add("ipython_state", "precision_format_string", ["%precision %.1e"], f"print({ip}.display_formatter.format(31415.9)[0]['text/plain'])", key="plaintext")
    for mode in ("Plain", "Minimal", "Verbose", "Context"):
        add("ipython_state", f"xmode.{mode.lower()}", [f"%xmode {mode}"], f"print({ip}.InteractiveTB.mode)", key="xmode")
    add(
        "ipython_state",
        "formatter.for_type",
        [
            "class $Money:\n    def __init__(self, cents):\n        self.cents = cents",
            f"{ip}.display_formatter.formatters['text/plain'].for_type($Money, lambda obj, p, cycle: p.text(f'EUR {{obj.cents / 100:.2f}}'))",
        ],
        f"print({ip}.display_formatter.format($Money(1234))[0]['text/plain'])",
    )
    add(
        "ipython_state",
        "formatter.for_type_by_name",
        [f"{ip}.display_formatter.formatters['text/plain'].for_type_by_name('collections', 'deque', lambda obj, p, cycle: p.text('deque of %d' % len(obj)))"],
        f"import collections\nprint({ip}.display_formatter.format(collections.deque([1, 2]))[0]['text/plain'])",
        key="formatter:deque",
    )
    add(
        "ipython_state",
        "formatter.html",
        ["class $Badge:\n    pass", f"{ip}.display_formatter.formatters['text/html'].for_type($Badge, lambda obj: '<b>badge</b>')"],
        f"print({ip}.display_formatter.format($Badge())[0].get('text/html'))",
    )
    add("ipython_state", "repr_html_method", ["class $Card:\n    def _repr_html_(self):\n        return '<i>card</i>'\n    def _repr_pretty_(self, p, cycle):\n        p.text('Card!')", "$c = $Card()"], f"print({ip}.display_formatter.format($c)[0])")
    add("ipython_state", "config.pprint", ["%config PlainTextFormatter.max_seq_length = 4"], f"print({ip}.display_formatter.formatters['text/plain'].max_seq_length, {ip}.display_formatter.format(list(range(10)))[0]['text/plain'])", key="plaintext,cwd")  # %config after a %cd does not apply (IPython)
    add("ipython_state", "env_magic", ["%env $VAR=from-magic", "%set_env $VAR2 second"], "import os\nprint(os.environ.get('$VAR'), os.environ.get('$VAR2'))")
    add(
        "ipython_state",
        "line_magic_registered",
        ["from IPython.core.magic import register_line_magic\n@register_line_magic\ndef $shout(line):\n    return line.upper() + '!'"],
        f"print({ip}.find_line_magic('$shout') is not None)\nprint({ip}.run_line_magic('$shout', 'hi') if {ip}.find_line_magic('$shout') else 'missing')",
    )
    add(
        "ipython_state",
        "cell_magic_registered",
        ["from IPython.core.magic import register_cell_magic\n@register_cell_magic\ndef $rev(line, cell):\n    return cell[::-1]"],
        f"print({ip}.find_cell_magic('$rev') is not None)\nprint({ip}.run_cell_magic('$rev', '', 'abc') if {ip}.find_cell_magic('$rev') else 'missing')",
    )
    add(
        "ipython_state",
        "extension_local",
        [
            "import importlib\nwith open('$ext.py', 'w') as $f:\n    $f.write('def load_ipython_extension(ip):\\n    ip.user_ns[\"$loaded\"] = ip.user_ns.get(\"$loaded\", 0) + 1\\n    ip.register_magic_function(lambda line: \"ext:\" + line, \"line\", \"$extmagic\")\\n')\nimportlib.invalidate_caches()",
            "%load_ext $ext",
        ],
        f"print($loaded, '$ext' in {ip}.extension_manager.loaded)\nprint({ip}.run_line_magic('$extmagic', 'x') if {ip}.find_line_magic('$extmagic') else 'missing')",
    )
    add("ipython_state", "capture", ["%%capture $cap\nprint('captured text')\nimport sys\nprint('err text', file=sys.stderr)"], "print(repr($cap.stdout), repr($cap.stderr), type($cap).__name__)")
    add("ipython_state", "shell_capture", ["$lines = !printf 'a\\nb\\n'"], "print($lines, type($lines).__name__, $lines.n)")
    add("ipython_state", "sx", ["$out = %sx echo sx-output"], "print($out)")
    add("ipython_state", "writefile_run", ["%%writefile $script.py\n$from_script = 'ran'\ndef $script_fn():\n    return 'script fn'\n", "%run $script.py"], "print($from_script, $script_fn(), $script_fn.__module__)")
    add(
        "ipython_state",
        "events_pre_run_cell",
        ["$ticks = []\ndef $on_pre(info):\n    $ticks.append(1)", f"{ip}.events.register('pre_run_cell', $on_pre)", "pass", "pass"],
        f"print(len($ticks) >= 3, $on_pre in {ip}.events.callbacks['pre_run_cell'])",
        key="events",
    )
    add("ipython_state", "automagic_off", ["%automagic 0"], f"print({ip}.automagic)", key="automagic")
    add("ipython_state", "autocall", ["%autocall 1"], f"print({ip}.autocall)", key="autocall")
    add("ipython_state", "reset_selective", ["$keep = 1\n$drop_me = 2", "%reset_selective -f $drop"], "print('$keep' in globals(), '$drop_me' in globals())")
    add("ipython_state", "timeit_result", ["$t = %timeit -o -q -n 3 -r 2 sum(range(10))"], "print(type($t).__name__, $t.loops, $t.repeat, len($t.all_runs))")
    add("ipython_state", "macro", ["$x = 1", "$n = len(In) - 2  # the cell before\n%macro -q $m {$n}"], "print(type($m).__name__, $m.value.strip().replace('$', ''))")


# ======================================================================================
# local_modules: a helpers.py written by a cell, imported; rewritten or deleted later
# ======================================================================================

MODULE_V1 = "def f():\n    return 'v1'\nVALUE = 1\nclass Thing:\n    def __init__(self, n):\n        self.n = n\n    def show(self):\n        return f'thing-v1-{self.n}'\n"
MODULE_V2 = "def f():\n    return 'version two'\nVALUE = 22\nclass Thing:\n    def __init__(self, n):\n        self.n = n\n    def show(self):\n        return f'thing version two {self.n}'\n"


def _write(path: str, text: str) -> str:
    return f"import importlib\nwith open('{path}', 'w') as $fh:\n    $fh.write({text!r})\nimportlib.invalidate_caches()"


def _local_modules(corpus: _Corpus) -> None:
    uses = {
        "import_module": ("import $helpers", "print($helpers.f(), $helpers.VALUE, $helpers.Thing(1).show())"),
        "from_import": ("from $helpers import f as $f, VALUE as $VALUE", "print($f(), $VALUE, $f.__module__[len('$'):])"),
        "instance_of_module_class": ("import $helpers\n$thing = $helpers.Thing(7)", "print($thing.show(), isinstance($thing, $helpers.Thing), type($thing).__module__[len('$'):])"),
        "function_in_dict": ("from $helpers import f as $f\n$table = {'fn': $f, 'n': 1}", "print($table['fn'](), $table['fn'] is $f)"),
        "module_alias": ("import $helpers as $h", "print($h.f(), $h.__name__[len('$'):])"),
    }
    changes = {
        "unchanged": ([], None),
        "rewritten_in_cell": ([_write("$helpers.py", MODULE_V2)], None),
        "rewritten_between": ([], f"with open('$helpers.py', 'w') as fh:\n    fh.write({MODULE_V2!r})"),
        "deleted_between": ([], "import os, shutil\nos.remove('$helpers.py')\nshutil.rmtree('__pycache__', ignore_errors=True)"),
    }
    for uname, (use, probe) in uses.items():
        for cname, (cells, between) in changes.items():
            setup = [_write("$helpers.py", MODULE_V1), use, *cells]
            corpus.add("local_modules", f"{uname}.{cname}", setup, probe, between=between)
    corpus.add(
        "local_modules",
        "reload_after_rewrite",
        [_write("$helpers.py", MODULE_V1), "import $helpers", _write("$helpers.py", MODULE_V2), "importlib.reload($helpers)"],
        "print($helpers.f(), $helpers.VALUE)",
    )
    corpus.add(
        "local_modules",
        "module_state_mutated",
        [_write("$helpers.py", "COUNTER = 0\nCACHE = {}\ndef bump():\n    global COUNTER\n    COUNTER += 1\n    return COUNTER\n"), "import $helpers", "$helpers.bump(); $helpers.bump()", "$helpers.CACHE['k'] = 'v'\n$helpers.EXTRA = 'set from notebook'"],
        "print($helpers.COUNTER, $helpers.CACHE, getattr($helpers, 'EXTRA', None), $helpers.bump())",
    )
    corpus.add(
        "local_modules",
        "package",
        ["import os, importlib\nos.makedirs('$pkg', exist_ok=True)\nopen('$pkg/__init__.py', 'w').write('from .core import add\\n')\nopen('$pkg/core.py', 'w').write('def add(a, b):\\n    return a + b\\n')\nimportlib.invalidate_caches()", "import $pkg\nfrom $pkg.core import add as $add"],
        "print($pkg.add(1, 2), $add(3, 4), $add is $pkg.add)",
    )
    corpus.add(
        "local_modules",
        "sys_path_subdir",
        ["import os, sys, importlib\nos.makedirs('$lib', exist_ok=True)\nopen('$lib/$tool.py', 'w').write('NAME = \"tool\"\\n')\nsys.path.insert(0, os.path.abspath('$lib'))\nimportlib.invalidate_caches()", "import $tool"],
        "print($tool.NAME)",
    )
    corpus.add(
        "local_modules",
        "module_enum_identity",
        [_write("$helpers.py", "import enum\nclass Color(enum.Enum):\n    RED = 1\n    BLUE = 2\n"), "import $helpers\n$c = $helpers.Color.RED\n$cs = [$helpers.Color.BLUE, $c]"],
        "print($c is $helpers.Color.RED, $cs[1] is $c, $cs[0] is $helpers.Color.BLUE)",
    )
    corpus.add(
        "local_modules",
        "module_dataclass_instances",
        [_write("$helpers.py", "from dataclasses import dataclass\n@dataclass\nclass Row:\n    a: int\n    b: str = 'x'\n"), "import $helpers\n$rows = [$helpers.Row(1), $helpers.Row(2, 'y')]"],
        "print($rows, all(type(r) is $helpers.Row for r in $rows))",
    )
    corpus.add(
        "local_modules",
        "notebook_subclass_of_module_class",
        [_write("$helpers.py", MODULE_V1), "import $helpers\nclass $Local($helpers.Thing):\n    def show(self):\n        return 'local+' + super().show()", "$obj = $Local(3)"],
        "print($obj.show(), isinstance($obj, $helpers.Thing), $Local.__bases__[0] is $helpers.Thing)",
    )
    corpus.add(
        "local_modules",
        "writefile_magic",
        ["%%writefile $wf.py\ndef hello():\n    return 'written by magic'\n", "import importlib\nimportlib.invalidate_caches()\nimport $wf"],
        "print($wf.hello())",
    )
    corpus.add(
        "local_modules",
        "dynamic_module",
        ["import types\n$dyn = types.ModuleType('$dyn')\nexec('def g():\\n    return \"dynamic\"\\nSTATE = [1]', $dyn.__dict__)\n$g = $dyn.g", "$dyn.STATE.append(2)"],
        "print($dyn.g(), $g(), $dyn.STATE, type($dyn).__name__)",
    )


# ======================================================================================
# locks: synchronisation objects held bare, in an instance, in a dict
# ======================================================================================

LOCKS = {
    # name: (make, state cell using TARGET, probe on $o) — the probe never blocks for long
    "lock.free": ("threading.Lock()", None, "print($o.locked(), $o.acquire(timeout=0.5), $o.locked())\n$o.release()"),
    "lock.held": ("threading.Lock()", "TARGET.acquire()", "print($o.locked(), $o.acquire(timeout=0.5))"),
    "rlock.free": ("threading.RLock()", None, "print($o.acquire(timeout=0.5))\nprint($o.acquire(timeout=0.5))\n$o.release(); $o.release()"),
    "rlock.held_twice": ("threading.RLock()", "TARGET.acquire(); TARGET.acquire()", "print($o.acquire(timeout=0.5), $o._is_owned())\n$o.release(); $o.release(); $o.release()\ntry:\n    $o.release()\nexcept RuntimeError:\n    print('released fully')"),
    "condition.free": ("threading.Condition()", None, "print($o.acquire(timeout=0.5), $o.wait(timeout=0.1))\n$o.notify_all(); $o.release()"),
    "condition.held": ("threading.Condition(threading.Lock())", "TARGET.acquire()", "print($o.acquire(timeout=0.5))"),
    "semaphore.fresh": ("threading.Semaphore(2)", None, "print([$o.acquire(timeout=0.2) for _ in range(3)])"),
    "semaphore.taken_once": ("threading.Semaphore(2)", "TARGET.acquire()", "print([$o.acquire(timeout=0.2) for _ in range(2)])"),
    "bounded_semaphore.taken": ("threading.BoundedSemaphore(1)", "TARGET.acquire()", "print($o.acquire(timeout=0.2))\n$o.release()\ntry:\n    $o.release()\nexcept ValueError:\n    print('over-released')"),
    "bounded_semaphore.free": ("threading.BoundedSemaphore(2)", None, "try:\n    $o.release()\nexcept ValueError:\n    print('over-released')\nprint($o.acquire(timeout=0.2))"),
    "event.unset": ("threading.Event()", None, "print($o.is_set(), $o.wait(timeout=0.1))"),
    "event.set": ("threading.Event()", "TARGET.set()", "print($o.is_set(), $o.wait(timeout=0.1))\n$o.clear()\nprint($o.is_set())"),
    "queue.items": ("queue.Queue()", "TARGET.put('a'); TARGET.put({'b': 2})", "print($o.qsize(), $o.get(timeout=0.5), $o.get(timeout=0.5), $o.empty())"),
    "queue.full": ("queue.Queue(maxsize=1)", "TARGET.put('only')", "try:\n    $o.put('more', timeout=0.2)\nexcept queue.Full:\n    print('full')\nprint($o.get(timeout=0.5), $o.unfinished_tasks)"),
    "queue.empty_get": ("queue.Queue()", None, "try:\n    $o.get(timeout=0.2)\nexcept queue.Empty:\n    print('empty')"),
    "lifo_queue": ("queue.LifoQueue()", "TARGET.put(1); TARGET.put(2)", "print($o.get(timeout=0.5), $o.get(timeout=0.5))"),
    "priority_queue": ("queue.PriorityQueue()", "TARGET.put((2, 'b')); TARGET.put((1, 'a'))", "print($o.get(timeout=0.5), $o.qsize())"),
    "simple_queue": ("queue.SimpleQueue()", "TARGET.put('x')", "print($o.qsize(), $o.get(timeout=0.5))"),
    "barrier": ("threading.Barrier(1)", None, "print($o.parties, $o.wait(timeout=1), $o.broken)"),
}

LOCK_HOLDERS = {
    "bare": Holder("bare", lambda make: [f"import threading, queue\n$o = {make}"], "$o"),
    "instance": Holder(
        "instance",
        lambda make: [f"import threading, queue\nclass $Guarded:\n    def __init__(self):\n        self.sync = {make}\n        self.data = [1, 2]", "$g = $Guarded()"],
        "$g.sync",
        "print('held:', $g.data, isinstance($g, $Guarded))",
    ),
    "dict": Holder("dict", lambda make: [f"import threading, queue\n$state = {{'sync': {make}, 'count': 3}}"], "$state['sync']", "print('held:', $state['count'])"),
}


def _locks(corpus: _Corpus) -> None:
    for name, (make, state, probe) in LOCKS.items():
        for hname, holder in LOCK_HOLDERS.items():
            setup = [*holder.build(make), *_after([state] if state else [], holder)]
            corpus.add("locks", f"{name}.{hname}", setup, _probe(holder, "import threading, queue\n" + probe))


# ======================================================================================
# files: open handles in every mode and state
# ======================================================================================

TEXT = "line1\nline2\nline3\n"


def _files(corpus: _Corpus) -> None:
    show = "print(repr(open('$f.txt', 'rb').read()))"
    create = f"import pathlib\npathlib.Path('$f.txt').write_bytes({TEXT.encode()!r})"
    readable = {
        "r": "open('$f.txt', 'r')",
        "rb": "open('$f.txt', 'rb')",
        "rb_unbuffered": "open('$f.txt', 'rb', buffering=0)",
        "r_plus": "open('$f.txt', 'r+')",
        "rb_plus_unbuffered": "open('$f.txt', 'r+b', buffering=0)",
        "r_latin1": "open('$f.txt', 'r', encoding='latin-1', newline='')",
    }
    for mode, opener in readable.items():
        states = {
            "fresh": [],
            "read_some": ["$head = $fh.read(3)"],
            "readline": ["$first = $fh.readline()"],
            "at_eof": ["$all = $fh.read()"],
            "seeked": ["$fh.seek(6)"],
        }
        if not mode.startswith("rb"):
            states["failed_iteration"] = ["try:\n    for $line in $fh:\n        if $line.startswith('line2'):\n            raise ValueError($line)\nexcept ValueError:\n    pass"]
        for sname, cells in states.items():
            probe = "print($fh.mode, $fh.closed, $fh.readable(), $fh.writable())\n"
            if sname == "failed_iteration":
                probe += "try:\n    print('tell', $fh.tell())\nexcept OSError as $e:\n    print('tell refused:', $e)\n"
            else:
                probe += "print('tell', $fh.tell())\n"
            probe += "print(repr($fh.read()))\n"
            if "plus" in mode:
                probe += "$fh.write(b'END' if 'b' in $fh.mode else 'END')\n$fh.flush()\n"
            probe += show
            corpus.add("files", f"{mode}.{sname}", [create, f"$fh = {opener}", *cells], probe)
    writable = {
        "w": ("open('$f.txt', 'w')", "'abc\\n'"),
        "wb": ("open('$f.txt', 'wb')", "b'abc\\n'"),
        "wb_unbuffered": ("open('$f.txt', 'wb', buffering=0)", "b'abc\\n'"),
        "a": ("open('$f.txt', 'a')", "'abc\\n'"),
        "ab": ("open('$f.txt', 'ab')", "b'abc\\n'"),
        "ab_unbuffered": ("open('$f.txt', 'ab', buffering=0)", "b'abc\\n'"),
        "w_plus": ("open('$f.txt', 'w+')", "'abc\\n'"),
        "a_plus": ("open('$f.txt', 'a+')", "'abc\\n'"),
        "x": ("open('$f.txt', 'x')", "'abc\\n'"),
        "xb": ("open('$f.txt', 'xb')", "b'abc\\n'"),
    }
    for mode, (opener, data) in writable.items():
        pre = [] if mode.startswith("x") else [create]
        states = {
            "fresh": [],
            "written_flushed": [f"$fh.write({data})\n$fh.flush()"],
            "written_unflushed": [f"$fh.write({data})"],
            "written_two_cells": [f"$fh.write({data})\n$fh.flush()", f"$fh.write({data})\n$fh.flush()"],
        }
        for sname, cells in states.items():
            more = "b'more\\n'" if "b" in mode else "'more\\n'"
            probe = f"print($fh.mode, $fh.closed, $fh.writable())\n$fh.write({more})\n$fh.flush()\n"
            if mode in ("w_plus", "a_plus"):
                probe += "$fh.seek(0)\nprint(repr($fh.read()))\n"
            probe += show
            corpus.add("files", f"{mode}.{sname}", [*pre, f"$fh = {opener}", *cells], probe)
    extras = {
        "closed_handle": ([create, "$fh = open('$f.txt')\n$fh.read(2)\n$fh.close()"], "print($fh.closed, $fh.name)\ntry:\n    $fh.read()\nexcept ValueError as $e:\n    print('closed:', $e)\n" + show),
        "with_block_closed": ([create, "with open('$f.txt') as $fh:\n    $got = $fh.readline()"], "print($fh.closed, repr($got))\n" + show),
        "write_only_iteration_fails": ([create, "$fh = open('$f.txt', 'a')\ntry:\n    next(iter($fh))\nexcept Exception as $e:\n    $err = type($e).__name__"], "print($err, $fh.closed)\n$fh.write('z')\n$fh.flush()\n" + show),
        "two_handles_same_file": ([create, "$reader = open('$f.txt')\n$writer = open('$f.txt', 'a')", "$writer.write('line4\\n')\n$writer.flush()\n$reader.readline()"], "print(repr($reader.read()))\n" + show),
        "handle_in_list": ([create, "$handles = [open('$f.txt'), open('$f.txt', 'rb')]\n$handles[0].readline()"], "print([h.tell() for h in $handles], repr($handles[1].read(5)))"),
        "handle_in_instance": ([create, "class $Log:\n    def __init__(self, path):\n        self.fh = open(path, 'a')\n    def log(self, s):\n        self.fh.write(s)\n        self.fh.flush()", "$log = $Log('$f.txt')\n$log.log('first\\n')"], "$log.log('second\\n')\n" + show),
        "stringio": (["import io\n$sio = io.StringIO('abc\\ndef\\n')\n$sio.readline()", "$sio.write('XYZ')"], "print(repr($sio.getvalue()), $sio.tell(), repr($sio.read()))"),
        "bytesio": (["import io\n$bio = io.BytesIO(b'0123456789')\n$bio.seek(4)", "$bio.write(b'ab')"], "print($bio.getvalue(), $bio.tell(), $bio.read(2))"),
        "tempfile_anonymous": (["import tempfile\n$tmp = tempfile.TemporaryFile('w+')\n$tmp.write('temp data')\n$tmp.flush()"], "$tmp.seek(0)\nprint(repr($tmp.read()))"),
        "gzip_handle": (["import gzip\n$gz = gzip.open('$f.gz', 'wt')\n$gz.write('zipped\\n')"], "$gz.write('more\\n')\n$gz.close()\nprint(repr(gzip.open('$f.gz', 'rt').read()))"),
        "csv_reader": ([create, "import csv\n$src = open('$f.txt', newline='')\n$rows = csv.reader($src)\nnext($rows)"], "print(list($rows))"),
        "csv_writer": (["import csv\n$dst = open('$f.csv', 'w', newline='')\n$wr = csv.writer($dst)\n$wr.writerow(['a', 1])"], "$wr.writerow(['b', 2])\n$dst.flush()\nprint(repr(open('$f.csv').read()))"),
        "pathlib_open": ([create, "import pathlib\n$fh = pathlib.Path('$f.txt').open('r+')\n$fh.readline()"], "$fh.write('X')\n$fh.flush()\n" + show),
        "os_fdopen": ([create, "import os\n$fd = os.open('$f.txt', os.O_RDWR)\n$fh = os.fdopen($fd, 'r+')\n$fh.read(4)"], "print(repr($fh.read(4)))"),
        "file_deleted_between": ([create, "$fh = open('$f.txt')\n$fh.readline()"], "print(repr($fh.read()))"),
    }
    for name, (setup, probe) in extras.items():
        between = "import os\nos.remove('$f.txt')" if name == "file_deleted_between" else None
        corpus.add("files", name, setup, probe, between=between)


# ======================================================================================
# data_model: builtins, containers, aliasing, numpy, pandas, random, deletion, rebinding
# ======================================================================================

DATA_IMPORTS = "import math, decimal, fractions, datetime, collections, array, types, uuid, pathlib, re, heapq, struct, ipaddress, functools"

VALUES = [
    C("int_big", (), "2 ** 100 + 7", "print($o, $o % 1000, type($o).__name__, $o.bit_length())"),
    C("floats", (), "[0.1, -0.0, float('inf'), 1e300, 1 / 3]", "print($o, [math.copysign(1, x) for x in $o])"),
    C("complex", (), "complex(1.5, -2)", "print($o, $o.real, $o.imag, abs($o), $o.conjugate())"),
    C("str_unicode", (), "'héllo ✓ 𝄞\\n\\ttab'", "print(repr($o), len($o), $o.encode('utf-8'))"),
    C("bytes", (), "bytes(range(0, 256, 37))", "print($o, $o.hex(), len($o))"),
    C("bytearray", (), "bytearray(b'abc')", "$o.append(0x66); print($o, len($o))", after="TARGET.extend(b'de')"),
    C("tuple_nested", (), "(1, ('a', (2.5, None)), [3, 4])", "print($o, $o[2], len($o))", after="TARGET[2].append(5)"),
    C("list_nested", (), "[[1, 2], [3, [4, 5]], []]", "print($o); $o[2].append('x'); print($o)", after="TARGET[1][1].append(6)"),
    C("dict_nested", (), "{'a': {'b': {'c': [1]}}, 'n': None}", "print($o, $o['a']['b']['c'])", after="TARGET['a']['b']['c'].append(2)"),
    C("dict_tuple_keys", (), "{(0, 0): 'origin', (1, 2): 'p', ('x', (3,)): 'nested'}", "print($o[(1, 2)], $o[('x', (3,))], list($o))"),
    C("dict_order", (), "dict.fromkeys(['z', 'a', 'm'], 0)", "print(list($o), $o)", after="del TARGET['a']; TARGET['a'] = 1"),
    C("set", (), "{3, 1, 2}", "print(sorted($o), 10 in $o, len($o))", after="TARGET.add(10)"),
    C("set_of_tuples", (), "{(1, 'a'), (2, 'b')}", "print(sorted($o), (1, 'a') in $o)"),
    C("frozenset_nested", (), "frozenset({frozenset({1, 2}), frozenset({3})})", "print(sorted(sorted(s) for s in $o), frozenset({1, 2}) in $o, hash($o) == hash(frozenset({frozenset({1, 2}), frozenset({3})})))"),
    C("self_referential_list", (), "[1, 2]", "print($o, $o[2] is $o, len($o))", after="TARGET.append(TARGET)"),
    C("self_referential_dict", (), "{'name': 'root'}", "print($o, $o['self'] is $o)", after="TARGET['self'] = TARGET"),
    C("mutual_reference", (), "[[], []]", "print($o, $o[0][0] is $o[1], $o[1][0] is $o[0])", after="TARGET[0].append(TARGET[1]); TARGET[1].append(TARGET[0])"),
    C("decimal", (), "decimal.Decimal('1.10')", "print($o, repr($o), $o + decimal.Decimal('2.205'), $o.as_tuple())"),
    C("fraction", (), "fractions.Fraction(3, 7)", "print($o, $o * 7, $o.limit_denominator(2), float($o))"),
    C("datetime", (), "datetime.datetime(2024, 2, 29, 13, 45, 10, 123456)", "print(repr($o), $o.isoformat(), ($o + datetime.timedelta(days=1)).date())"),
    C("datetime_fixed_tz", (), "datetime.datetime(2024, 3, 31, 1, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2), 'X'))", "print(repr($o), $o.utcoffset(), $o.tzname(), $o.astimezone(datetime.timezone.utc))"),
    C("datetime_zoneinfo", "import zoneinfo", "datetime.datetime(2024, 3, 31, 1, 30, tzinfo=zoneinfo.ZoneInfo('Europe/Paris'))", "print(repr($o), ($o + datetime.timedelta(hours=1)).utcoffset(), $o.tzinfo is zoneinfo.ZoneInfo('Europe/Paris'))", requires=("tzdata_or_system",)),
    C("date_time_delta", (), "(datetime.date(2020, 1, 31), datetime.time(23, 59, 1), datetime.timedelta(days=-1, seconds=5))", "print($o, [type(x).__name__ for x in $o])"),
    C("deque", (), "collections.deque([1, 2, 3], maxlen=4)", "print($o, $o.maxlen); $o.append(9); print($o)", after="TARGET.append(4); TARGET.appendleft(0)"),
    C("counter", (), "collections.Counter('abracadabra')", "print($o.most_common(3), $o['z'], $o['missing'], sorted($o.items()))", after="TARGET.update('aaz')"),
    C("ordereddict", (), "collections.OrderedDict([('b', 2), ('a', 1), ('c', 3)])", "print($o, list($o)); $o.popitem(last=False); print($o)", after="TARGET.move_to_end('b')"),
    C("defaultdict_lambda", (), "collections.defaultdict(lambda: 'fresh')", "print(dict($o), $o['missing'], sorted($o))", after="TARGET['x'] = 1"),
    C("defaultdict_list", (), "collections.defaultdict(list)", "print(dict($o)); $o['new'].append(2); print(dict($o), $o.default_factory)", after="TARGET['k'].append(1)"),
    C("defaultdict_nested", (), "collections.defaultdict(lambda: collections.defaultdict(int))", "print({k: dict(v) for k, v in $o.items()}); $o['z']['y'] += 1; print(sorted($o), type($o['q']).__name__)", after="TARGET['a']['b'] += 3"),
    C("chainmap", (), "collections.ChainMap({'a': 1}, {'a': 0, 'b': 2})", "print(dict($o), $o['a'], $o.new_child({'c': 3})['c'], len($o.maps))", after="TARGET.maps[1]['z'] = 26"),
    C("array_int", (), "array.array('i', [1, 2, 3])", "print($o, $o.typecode, $o.tolist(), $o.itemsize)", after="TARGET.append(4)"),
    C("array_double", (), "array.array('d', [0.5, 1.5])", "print($o, sum($o))"),
    C("range", (), "range(1, 20, 3)", "print($o, list($o), $o[2], len($o), 7 in $o)"),
    C("slice", (), "slice(1, None, 2)", "print($o, [0, 1, 2, 3, 4, 5][$o], $o.indices(10))"),
    C("ellipsis", (), "...", "print($o, $o is Ellipsis, repr($o))"),
    C("notimplemented", (), "NotImplemented", "print($o is NotImplemented)"),
    C("singletons", (), "[None, True, False, ...]", "print($o, [x is None for x in $o], $o[1] is True, $o[3] is Ellipsis)"),
    C("type_objects", (), "[int, str, dict, type(None), type(...)]", "print($o, $o[0] is int, $o[3] is type(None))"),
    C("builtin_functions", (), "[len, max, print, math.sqrt]", "print([f.__name__ for f in $o], $o[0] is len, $o[0]([1, 2]), $o[3](16.0))"),
    C("simple_namespace", (), "types.SimpleNamespace(a=1, b=[2])", "print($o, $o.b)", after="TARGET.c = 'added'"),
    C("uuid", (), "uuid.UUID('12345678-1234-5678-1234-567812345678')", "print($o, repr($o), $o.int % 1000, $o.version)"),
    C("pure_path", (), "pathlib.PurePosixPath('/data/raw') / 'file.csv'", "print($o, $o.suffix, $o.parent, type($o).__name__)"),
    C("regex", (), "re.compile(r'(\\w+)@(\\w+)\\.com', re.IGNORECASE)", "print($o.pattern, bool($o.flags & re.IGNORECASE), $o.findall('A@B.com x@y.COM'))"),
    C("regex_match", (), "re.match(r'(?P<k>\\w+)=(?P<v>\\d+)', 'key=42')", "print($o.group('k'), $o.groupdict(), $o.span())"),
    C("heap", (), "[1, 3, 8, 5]", "print($o, heapq.heappop($o), $o)", after="heapq.heappush(TARGET, 2)"),
    C("struct", (), "struct.Struct('<iHd')", "print($o.format, $o.size, $o.pack(1, 2, 3.5))"),
    C("ip_network", (), "ipaddress.ip_network('10.0.0.0/30')", "print($o, list($o.hosts()), $o.num_addresses)"),
    C("big_list", (), "list(range(100000))", "print(len($o), sum($o), $o[-3:])"),
    C("big_dict", (), "{i: str(i) for i in range(2000)}", "print(len($o), $o[1999], list($o)[:3])"),
    C("bool_int_float_keys", (), "{1: 'int', True: 'bool', 1.0: 'float'}", "print($o, list($o.keys())[0] is True)"),
    C("exception_instance", (), "ValueError('bad', 42)", "print(repr($o), $o.args, isinstance($o, ValueError))"),
    C("deep_nesting", (), "functools.reduce(lambda acc, _: [acc], range(150), [])", "$depth = 0\n$cur = $o\nwhile $cur:\n    $cur = $cur[0]\n    $depth += 1\nprint($depth)"),
    C("nan_in_list", (), "[float('nan')]", "print($o, $o[0] in $o, $o[0] != $o[0])"),
    C("object_sentinel", (), "[object()] * 3", "print($o[0] is $o[1] is $o[2], type($o[0]).__name__)"),
    C("code_and_function_types", (), "compile('1 + 1', '<expr>', 'eval')", "print(eval($o), type($o).__name__, $o.co_filename)"),
    C("method_descriptor", (), "[str.upper, dict.fromkeys, list.__len__]", "print($o[0]('x'), $o[1]('ab'), $o[2]([1, 2]))"),
    C("memoryview_standalone", (), "memoryview(b'abcdef')[1:4]", "print(bytes($o), $o.nbytes, $o.readonly)"),
    C("property_object", (), "property(lambda self: 1, doc='a property')", "print(type($o).__name__, $o.__doc__)"),
]

NUMPY_VALUES = [
    C("int_1d", (), "np.arange(10)", "print($o, $o.dtype, $o.sum())", after="TARGET[3] = 30"),
    C("float_2d", (), "np.linspace(0, 1, 6).reshape(2, 3)", "print($o, $o.shape, $o.flags['C_CONTIGUOUS'])"),
    C("fortran_order", (), "np.asfortranarray(np.arange(6).reshape(2, 3))", "print($o, $o.flags['F_CONTIGUOUS'], $o.strides)"),
    C("structured", (), "np.array([(1, 2.5, b'ab'), (2, 3.5, b'cd')], dtype=[('id', 'i4'), ('x', 'f8'), ('tag', 'S2')])", "print($o, $o.dtype, $o['x'].sum())"),
    C("bool", (), "np.array([True, False, True])", "print($o, $o.sum(), $o.dtype)"),
    C("datetime64", (), "np.arange('2024-01-01', '2024-01-05', dtype='datetime64[D]')", "print($o, $o.dtype, $o[-1] - $o[0])"),
    C("object_dtype", (), "np.array([[1], 'a', None], dtype=object)", "print($o, $o[0] is $o[0])", after="TARGET[0].append(2)"),
    C("zero_d", (), "np.array(3.5)", "print($o, $o.ndim, $o.shape, float($o))"),
    C("scalars", (), "[np.float64(1.5), np.int32(7), np.bool_(True), np.str_('s')]", "print($o, [type(x).__name__ for x in $o])"),
    C("masked", (), "np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])", "print($o, $o.sum(), $o.mask)"),
    C("recarray", (), "np.rec.array([(1, 'a'), (2, 'b')], names='n,s')", "print($o.n, $o.s, $o[0], type($o).__name__)"),
    C("complex", (), "np.array([1 + 2j, 3 - 1j])", "print($o, $o.conj(), $o.dtype)"),
    C("nan_inf", (), "np.array([np.nan, np.inf, -np.inf, 0.0])", "print($o, np.isnan($o).sum())"),
    C("empty", (), "np.zeros((0, 3))", "print($o.shape, $o.dtype, repr($o))"),
    C("float16", (), "np.array([0.1, 0.2], dtype=np.float16)", "print($o, $o.dtype, $o.nbytes)"),
    C("noncontiguous_slice", (), "np.arange(20).reshape(4, 5)[:, 1::2]", "print($o, $o.flags['C_CONTIGUOUS'], $o.shape)"),
    C("large", (), "np.arange(3_000_000, dtype=np.float64)", "print($o.shape, $o[-1], float($o.sum()))"),
    C("readonly", (), "np.arange(4)", "print($o.flags.writeable)\ntry:\n    $o[0] = 1\nexcept ValueError:\n    print('read-only')", after="TARGET.flags.writeable = False"),
]

PANDAS_VALUES = [
    C("dataframe", (), "pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z'], 'c': [0.5, None, 2.5]})", "print($o)\nprint({k: str(v) for k, v in $o.dtypes.items()})", after="TARGET.loc[1, 'a'] = 20"),
    C("series", (), "pd.Series([10, 20, 30], index=['p', 'q', 'r'], name='vals')", "print($o, $o.name, $o.index.tolist())", after="TARGET['q'] = 25"),
    C("categorical", (), "pd.Categorical(['lo', 'hi', 'lo', 'mid'], categories=['lo', 'mid', 'hi'], ordered=True)", "print($o, $o.codes.tolist(), $o.max(), $o.ordered)"),
    C("multiindex", (), "pd.DataFrame({'v': range(4)}, index=pd.MultiIndex.from_product([['a', 'b'], [1, 2]], names=['k', 'n']))", "print($o)\nprint($o.loc['b'], $o.index.names)"),
    C("datetimeindex", (), "pd.Series([1.0, 2.0, 3.0], index=pd.date_range('2024-01-01', periods=3, freq='D', tz='UTC'))", "print($o, $o.index.freqstr, $o.index.tz)"),
    C("timestamp_tz", (), "pd.Timestamp('2024-06-01 12:00', tz='Europe/Paris')", "print(repr($o), $o.tz_convert('UTC'))"),
    C("period_interval_timedelta", (), "[pd.Period('2024-03', freq='M'), pd.Interval(0, 5, closed='left'), pd.Timedelta('1 days 2 hours')]", "print($o, $o[0] + 1, 5 in $o[1])"),
    C("nullable_int", (), "pd.Series([1, None, 3], dtype='Int64')", "print($o, $o.dtype, $o.isna().tolist(), $o.sum())"),
    C("attrs", (), "pd.DataFrame({'a': [1]})", "print($o.attrs, $o)", after="TARGET.attrs['source'] = 'lab'"),
    C("categorical_column", (), "pd.DataFrame({'c': pd.Categorical(['a', 'b', 'a'])})", "print($o['c'].cat.categories.tolist(), $o['c'].cat.codes.tolist(), $o.dtypes.iloc[0])"),
    C("groupby_result", (), "pd.DataFrame({'k': ['a', 'b', 'a'], 'v': [1, 2, 3]}).groupby('k').sum()", "print($o, $o.index.name)"),
    C("sparse", (), "pd.Series(pd.arrays.SparseArray([0, 0, 1, 0]))", "print($o.sparse.density, $o.tolist(), $o.dtype)"),
    C("string_dtype", (), "pd.Series(['a', None, 'c'], dtype='string')", "print($o, $o.dtype, $o.str.upper().tolist())"),
    C("index_objects", (), "[pd.Index([3, 1, 2], name='i'), pd.RangeIndex(0, 10, 2), pd.CategoricalIndex(['x', 'y'])]", "print($o)"),
]

ALIASING = {
    # name: (setup cells, probe): the probe changes the value through one path after the restore and reads it through the other
    "b_equals_a": (["$a = [1, 2]", "$b = $a", "$b.append(3)"], "$a.append(4)\nprint($a, $b, $a is $b)"),
    "list_in_two_dicts": (["$shared = ['x']\n$d1 = {'k': $shared}\n$d2 = {'k': $shared, 'other': 1}"], "$d1['k'].append('y')\nprint($d2['k'], $shared, $d1['k'] is $d2['k'])"),
    "list_in_two_dicts_cells": (["$shared = ['x']", "$d1 = {'k': $shared}", "$d2 = {'k': $shared}", "del $shared"], "$d1['k'].append('y')\nprint($d2['k'], $d1['k'] is $d2['k'])"),
    "chained_assignment": (["$x = $y = []"], "$x.append(1)\nprint($x, $y, $x is $y)"),
    "triple_chain_dicts": (["$p = $q = $r = {}", "$q['k'] = 1"], "$r['z'] = 2\nprint($p, $p is $q is $r)"),
    "tuple_same_list_twice": (["$l = [0]\n$t = ($l, $l)"], "$t[0].append(1)\nprint($t, $t[0] is $t[1], $l)"),
    "object_in_list_and_dict": (["class $Obj:\n    def __init__(self):\n        self.n = 0", "$obj = $Obj()\n$lst = [$obj]\n$dct = {'o': $obj}"], "$lst[0].n += 5\nprint($dct['o'].n, $obj.n, $lst[0] is $dct['o'])"),
    "nan_identity": (["$nan = float('nan')\n$nans = [$nan, 1.0]"], "print($nan in $nans, $nans.index($nan), $nans[0] is $nan)"),
    "sentinel": (["$MISSING = object()\n$opts = {'a': $MISSING, 'b': 1}"], "print($opts['a'] is $MISSING, [k for k, v in $opts.items() if v is $MISSING])"),
    "nested_across_cells": (["$inner = {'v': 1}", "$outer = {'in': $inner}", "$inner['v'] = 2"], "$inner['w'] = 3\nprint($outer, $outer['in'] is $inner)"),
    "attr_alias": (["class $Box:\n    pass\n$data = [1]", "$box = $Box()\n$box.items = $data"], "$data.append(2)\nprint($box.items, $box.items is $data)"),
    "rebind_original": (["$a = [1]\n$b = $a", "$a = [2]"], "print($a, $b, $a is $b)"),
    "numpy_same_array": (["import numpy as np\n$arr = np.arange(4)\n$same = $arr\n$in_list = [$arr]"], "$arr[0] = 7\nprint($same[0], $in_list[0][0], $in_list[0] is $arr)"),
    "numpy_view_slice": (["import numpy as np\n$base = np.arange(10)", "$view = $base[2:6]"], "$base[3] = 100\nprint($view, $view.base is $base)"),
    "numpy_view_reshape": (["import numpy as np\n$base = np.arange(6)\n$view = $base.reshape(2, 3)"], "$view[1, 1] = -1\nprint($base)"),
    "numpy_view_transpose": (["import numpy as np\n$base = np.arange(6).reshape(2, 3)\n$tr = $base.T"], "$base[0, 2] = 50\nprint($tr)"),
    "numpy_view_strided": (["import numpy as np\n$base = np.arange(8)\n$even = $base[::2]"], "$even[:] = 0\nprint($base)"),
    "numpy_view_of_view": (["import numpy as np\n$base = np.arange(10)\n$v1 = $base[1:9]\n$v2 = $v1[1:3]"], "$base[2] = 77\nprint($v1[1], $v2[0])"),
    "dataframe_and_list": (["import pandas as pd\n$df = pd.DataFrame({'a': [1, 2]})\n$frames = {'main': $df}"], "$df.loc[0, 'a'] = 10\nprint($frames['main'].loc[0, 'a'], $frames['main'] is $df)"),
    "shared_leaf_many_places": (["$leaf = {'hits': 0}\n$tree = {'a': [$leaf, {'b': $leaf}], 'c': ($leaf,)}"], "$tree['c'][0]['hits'] += 1\nprint($tree['a'][0]['hits'], $tree['a'][1]['b'] is $leaf, $leaf)"),
    "dict_values_shared_between_names": (["$rows = [{'id': 1}, {'id': 2}]\n$by_id = {r['id']: r for r in $rows}"], "$by_id[2]['seen'] = True\nprint($rows)"),
    "function_and_data": (["$store = []\ndef $save(x):\n    $store.append(x)", "$alias_store = $store"], "$save(1)\nprint($alias_store, $store is $alias_store)"),
}

RANDOMS = {
    "random_instance": (["import random\n$rng = random.Random(42)\n[$rng.random() for _ in range(3)]"], "print($rng.random(), $rng.randint(1, 100))", None),
    "random_instance_shuffle": (["import random\n$rng = random.Random(7)\n$deck = list(range(10))", "$rng.shuffle($deck)"], "print($deck)\n$rng.shuffle($deck)\nprint($deck)", None),
    "random_global": (["import random\nrandom.seed(1234)\nrandom.random()"], "print(random.random(), random.choice('abcdef'))", "random"),
    "random_global_cells": (["import random\nrandom.seed(5)", "random.random()", "random.shuffle($l := [1, 2, 3, 4])"], "print(random.random(), $l)", "random"),
    "random_getstate_stored": (["import random\nrandom.seed(3)\n$state = random.getstate()\nrandom.random()"], "random.setstate($state)\nprint(random.random())", "random"),
    "numpy_global": (["import numpy as np\nnp.random.seed(7)\nnp.random.rand(2)"], "print(np.random.rand(3), np.random.randint(0, 100, 2))", "numpy:random"),
    "numpy_generator": (["import numpy as np\n$g = np.random.default_rng(11)\n$g.integers(0, 100, 3)"], "print($g.integers(0, 100, 5), $g.random())", None),
    "numpy_randomstate": (["import numpy as np\n$rs = np.random.RandomState(1)\n$rs.rand()"], "print($rs.rand(2), $rs.randint(10))", None),
    "numpy_generator_spawned": (["import numpy as np\n$parent = np.random.default_rng(5)\n$kids = $parent.spawn(2)"], "print([k.integers(0, 1000) for k in $kids], $parent.integers(0, 1000))", None),
}

DELETIONS = {
    "deleted": (["$x = 1", "del $x"], "print('$x' in globals())"),
    "deleted_shared": (["$x = [1]\n$y = $x", "del $x"], "print('$x' in globals(), $y)"),
    "deleted_then_recreated": (["$x = 1", "del $x", "$x = 'back'"], "print($x)"),
    "deleted_function": (["def $f():\n    return 1", "del $f"], "print('$f' in globals())"),
    "deleted_class_instance_kept": (["class $K:\n    pass\n$k = $K()", "del $K"], "print('$K' in globals(), type($k).__name__[len('$'):])"),
    "deleted_in_failing_cell": (["$x = 1\n$y = 2", "del $x\n$y = 3\nraise ValueError('after del')"], "print('$x' in globals(), $y)"),
    "globals_pop": (["$x = 1", "globals().pop('$x')"], "print('$x' in globals())"),
    "exec_delete": (["$x = 1", "exec('del $x')"], "print('$x' in globals())"),
    "dict_key_deleted": (["$d = {'a': 1, 'b': 2}", "del $d['a']"], "print($d)"),
    "rebinding_types": (["$x = 1", "$x = 'two'", "$x = [3]"], "print($x)"),
    "augmented": (["$n = 10", "$n += 5", "$n *= 2"], "print($n)"),
    "loop_variable": (["for $i in range(5):\n    pass"], "print($i)"),
    "walrus": (["[$last := v for v in range(3)]"], "print($last)"),
    "globals_assignment": (["globals()['$dyn'] = 5"], "print($dyn)"),
    "exec_assignment": (["exec('$e = 6')"], "print($e)"),
    "swap": (["$a, $b = 1, 2", "$a, $b = $b, $a"], "print($a, $b)"),
    "redefined_function": (["def $f():\n    return 1", "def $f():\n    return 2"], "print($f())"),
    "redefined_class_old_instance": (["class $K:\n    v = 1\n$old = $K()", "class $K:\n    v = 2\n$new = $K()"], "print($old.v, $new.v, type($old) is $K, type($new) is $K)"),
    "unpacking_star": (["$first, *$rest = [1, 2, 3, 4]"], "print($first, $rest)"),
    "with_target": (["import contextlib\nwith contextlib.nullcontext(5) as $cm:\n    pass"], "print($cm)"),
    "import_as_name": (["import json as $json"], "print($json.dumps({'a': 1}), $json.__name__)"),
    "from_import_function": (["from os.path import join as $join"], "print($join('a', 'b'), $join.__module__)"),
}


def _data_model(corpus: _Corpus) -> None:
    for con in VALUES:
        reqs = tuple(r for r in con.requires if r != "tzdata_or_system")
        con = Construct(con.name, (DATA_IMPORTS, *con.defs), con.make, con.checks, con.after, reqs, con.key)
        _expand(corpus, "data_model", [con], ("alone", "dict", "cells"), group="builtins")
    for con in NUMPY_VALUES:
        con = Construct(con.name, ("import numpy as np", *con.defs), con.make, con.checks, con.after, ("numpy",), con.key)
        _expand(corpus, "data_model", [con], ("alone", "dict"), group="numpy")
    for con in PANDAS_VALUES:
        con = Construct(con.name, ("import pandas as pd", *con.defs), con.make, con.checks, con.after, ("pandas",), con.key)
        _expand(corpus, "data_model", [con], ("alone", "dict"), group="pandas")
    for name, (setup, probe) in ALIASING.items():
        reqs = tuple(m for m, alias in (("numpy", "np."), ("pandas", "pd.")) if alias in "".join(setup))
        corpus.add("data_model", f"aliasing.{name}", setup, probe, requires=reqs)
    for name, (setup, probe, key) in RANDOMS.items():
        reqs = ("numpy",) if "np." in "".join(setup) else ()
        corpus.add("data_model", f"random.{name}", setup, probe, requires=reqs, key=key)
    for name, (setup, probe) in DELETIONS.items():
        corpus.add("data_model", f"names.{name}", setup, probe)


# ======================================================================================


def build() -> list[Scenario]:
    corpus = _Corpus()
    _hierarchy(corpus)
    _metaclass_registry(corpus)
    _expand(corpus, "class_constructs", CLASS_CONSTRUCTS, ("alone", "list", "dict", "cells"))
    _functions(corpus)
    _shared_rebuilt(corpus)
    _threads(corpus)
    _settings(corpus)
    _ipython_state(corpus)
    _local_modules(corpus)
    _locks(corpus)
    _files(corpus)
    _data_model(corpus)
    return corpus.items


SCENARIOS: list[Scenario] = build()


def by_name() -> dict[str, Scenario]:
    return {s.name: s for s in SCENARIOS}


def sizes() -> dict[str, int]:
    counts = Counter(s.cls for s in SCENARIOS)
    return {cls: counts[cls] for cls in CLASSES}


# -- well-formedness --------------------------------------------------------------------

_ALLOWED_UNPREFIXED = {"_"}
_MODULE_ALIASES = {"np", "pd", "plt"}  # the conventional names: every scenario binds them to the same module


def _python(cell: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell)


def _top_level_bindings(tree: ast.Module) -> list[tuple[str, bool]]:
    """Names a cell binds in the user namespace: (name, is_import)."""
    found: list[tuple[str, bool]] = []

    def targets(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            found.append((node.id, False))
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                targets(elt)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    class Visitor(ast.NodeVisitor):
        def visit_FunctionDef(self, node: ast.AST) -> None:
            found.append((node.name, False))  # type: ignore[attr-defined]

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_ClassDef(self, node: ast.ClassDef) -> None:
            found.append((node.name, False))

        def visit_Lambda(self, node: ast.AST) -> None:
            pass

        def visit_Assign(self, node: ast.Assign) -> None:
            for t in node.targets:
                targets(t)
            self.generic_visit(node)

        def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
            targets(node.target)

        def visit_AugAssign(self, node: ast.AugAssign) -> None:
            targets(node.target)

        def visit_For(self, node: ast.For) -> None:
            targets(node.target)
            self.generic_visit(node)

        visit_AsyncFor = visit_For

        def visit_With(self, node: ast.With) -> None:
            for item in node.items:
                if item.optional_vars is not None:
                    targets(item.optional_vars)
            self.generic_visit(node)

        def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
            if node.name:
                found.append((node.name, False))
            self.generic_visit(node)

        def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
            targets(node.target)

        def visit_ListComp(self, node: ast.AST) -> None:
            for sub in ast.walk(node):
                if isinstance(sub, ast.NamedExpr):
                    targets(sub.target)

        visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_ListComp

        def visit_Import(self, node: ast.Import) -> None:
            for alias in node.names:
                found.append(((alias.asname or alias.name).split(".")[0], alias.asname is None or alias.asname in _MODULE_ALIASES))

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            for alias in node.names:
                found.append((alias.asname or alias.name, alias.asname is None or alias.asname in _MODULE_ALIASES))

        def visit_Global(self, node: ast.Global) -> None:
            pass

    Visitor().visit(tree)
    return found


def problems(scenarios: list[Scenario] | None = None) -> list[str]:
    """What is wrong with the corpus: duplicate names, unparsable cells, names without the scenario's prefix."""
    scenarios = SCENARIOS if scenarios is None else scenarios
    out = []
    for name, n in Counter(s.name for s in scenarios).items():
        if n > 1:
            out.append(f"{name}: {n} scenarios with this name")
    for s in scenarios:
        code = [*s.cells, *([s.between] if s.between else [])]
        if any("$" in c for c in code):
            out.append(f"{s.name}: a '$' was left in a cell")
        for cell in s.cells:
            try:
                tree = ast.parse(_python(cell))
            except SyntaxError as e:
                out.append(f"{s.name}: cell does not parse: {e}: {cell!r}")
                continue
            for bound, is_import in _top_level_bindings(tree):
                if bound.startswith(s.prefix) or bound in _ALLOWED_UNPREFIXED:
                    continue
                if is_import:
                    continue  # a module, bound to the same object by every scenario that imports it
                out.append(f"{s.name}: binds {bound!r} without its prefix {s.prefix!r}")
    return out
