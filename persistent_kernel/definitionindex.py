"""Which cell statements define what, and the live kernel's index of notebook definitions.

The checkpoint side of storing notebook functions and classes *by reference* (see
``definitions``): a cell's top-level ``def``/``class`` statements (and class factories
such as ``namedtuple``) are read from its source, and ``DefinitionIndex`` remembers which
cell bound each name, so that ``key_of`` can name the reference to store. The replayer
(``definitionreplay``) reads cells with the same rules. Statements are read with ``ast``: nothing runs.
"""

from __future__ import annotations

import ast
import functools
import re
import types
from collections.abc import Callable, Mapping
from typing import Any

MAIN = "__main__"
MISSING = object()
LRU_WRAPPER = type(functools.lru_cache(lambda: None))
_DEFINING = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORTS = (ast.Import, ast.ImportFrom)


# -- which statements define what ---------------------------------------------------------


def _is_literal(node: ast.AST) -> bool:
    """A display of constants only (``{}``, ``[1, 'a']``, ``-2``): evaluating it runs nothing."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_literal(k) for k in node.keys) and all(_is_literal(v) for v in node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _is_literal(node.operand)
    return False


# Calls that make a class and do nothing else: `P = namedtuple('P', 'x y')` is a definition too.
CLASS_FACTORIES = frozenset(
    {"namedtuple", "NamedTuple", "TypedDict", "NewType", "TypeVar", "ParamSpec", "TypeVarTuple", "make_dataclass",
     "Enum", "IntEnum", "StrEnum", "Flag", "IntFlag"}
)


_MAY_DEFINE = re.compile("|".join(("def", "class", *sorted(CLASS_FACTORIES))))  # words a defining cell must hold


def _is_simple_argument(node: ast.AST) -> bool:
    """A literal, a name or a dotted name (``int``, ``typing.Any``), or a display of those."""
    if _is_literal(node) or isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.Attribute):
        return _is_simple_argument(node.value)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(_is_simple_argument(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_simple_argument(k) for k in node.keys) and all(_is_simple_argument(v) for v in node.values)
    return False


def _is_class_factory_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name not in CLASS_FACTORIES or (isinstance(func, ast.Attribute) and not _is_simple_argument(func.value)):
        return False
    return all(_is_simple_argument(a) for a in node.args) and all(_is_simple_argument(k.value) for k in node.keywords)


def _is_class_factory_assignment(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and _is_class_factory_call(stmt.value)
    )


def bound_by(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, _DEFINING):
        return [stmt.name]
    if isinstance(stmt, ast.Import):
        return [(alias.asname or alias.name).split(".")[0] for alias in stmt.names]
    if isinstance(stmt, ast.ImportFrom):
        return [alias.asname or alias.name for alias in stmt.names if alias.name != "*"]
    if isinstance(stmt, ast.Assign):
        return [t.id for t in stmt.targets if isinstance(t, ast.Name)]
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    return []


def is_definition_statement(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (*_DEFINING, *_IMPORTS)):
        return not (isinstance(stmt, ast.ImportFrom) and any(alias.name == "*" for alias in stmt.names))
    if isinstance(stmt, ast.Assign):
        return all(isinstance(t, ast.Name) for t in stmt.targets) and (_is_literal(stmt.value) or _is_class_factory_assignment(stmt))
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name) and stmt.value is not None and _is_literal(stmt.value)
    return False


def _bound_anywhere(tree: ast.Module) -> dict[str, int]:
    """How many top-level statements of the cell bind each name (any statement kind, nested targets too)."""
    counts: dict[str, int] = {}
    for stmt in tree.body:
        names: set[str] = set(bound_by(stmt))
        if not isinstance(stmt, (*_DEFINING, *_IMPORTS)):
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                    names.add(node.id)
                elif isinstance(node, (ast.Global, ast.Nonlocal)):
                    names.update(node.names)
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return counts


def defined_names(source: str) -> frozenset[str]:
    """Names the cell binds by definitions only (see ``_defined_names``); none if it is not Python."""
    return _defined_names(source) or frozenset()


@functools.lru_cache(maxsize=256)
def _defined_names(source: str) -> frozenset[str] | None:
    """Names the cell binds by ``def``/``class`` statements (or a class factory: ``namedtuple``) only.

    ``source`` is the cell as IPython runs it (magics transformed). A name also bound by
    another statement (``f = decorate(f)``) is not a definition: its value is not what
    replaying the ``def`` alone makes.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    counts = _bound_anywhere(tree)
    by_definitions: dict[str, int] = {}
    for stmt in tree.body:
        if isinstance(stmt, _DEFINING) or _is_class_factory_assignment(stmt):
            for name in bound_by(stmt):
                by_definitions[name] = by_definitions.get(name, 0) + 1
    return frozenset(name for name, count in by_definitions.items() if counts.get(name, 0) == count)


def is_definition_object(obj: Any) -> bool:
    """A notebook function or class, or an ``lru_cache`` around a notebook function (type checks only)."""
    kind = type(obj)
    if not (issubclass(kind, (types.FunctionType, type)) or kind is LRU_WRAPPER):
        return False
    try:
        return obj.__module__ == MAIN
    except Exception:  # noqa: BLE001 - a metaclass property may raise
        return False


# -- the live kernel's index ---------------------------------------------------------------


class DefinitionIndex:
    """Name -> (cell, object) for the notebook functions and classes a ``def``/``class`` bound.

    Updated by every checkpoint before it serializes anything, so a group stored by
    the cell that defines its class already refers to that class by reference.
    """

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.names: dict[str, tuple[int, Any]] = {}

    def note_cell(
        self, seq: int, source: str, written: set[str], deleted: set[str], transform: Callable[[str], str] | None = None
    ) -> None:
        """After cell ``seq``: forget rebound names, remember new definitions.

        ``transform`` turns IPython syntax into Python, called only when ``source`` is not
        plain Python (as ``tracking.ReadTracker`` does).
        """
        for name in written | deleted:
            self.names.pop(name, None)
        if not written or not source or not _MAY_DEFINE.search(source):
            return  # no statement of the cell can define anything (the common cell: no parse)
        names = _defined_names(source)
        if names is None and transform is not None:
            try:
                names = _defined_names(transform(source))
            except Exception:  # noqa: BLE001 - a cell IPython cannot transform defines nothing we can replay
                names = None
        ns = self.namespace
        for name in (names or frozenset()) & written:
            value = ns.get(name, MISSING)
            if value is not MISSING and is_definition_object(value):
                self.names[name] = (seq, value)

    def adopt(self, resolved: Mapping[str, Any]) -> None:
        """After a restore or a checkout: the definitions it resolved that are bound under their own name."""
        ns = self.namespace
        for key, obj in resolved.items():
            seq, qualname = split_key(key)
            if "." not in qualname and ns.get(qualname, MISSING) is obj:
                self.names[qualname] = (seq, obj)

    def forget(self) -> None:
        self.names.clear()

    def key_of(self, obj: Any) -> str | None:
        """The reference to store for ``obj``, or None to store it by value."""
        if not is_definition_object(obj):
            return None
        try:
            qualname = obj.__qualname__
        except Exception:  # noqa: BLE001
            return None
        if not isinstance(qualname, str) or "<" in qualname:
            return None  # made inside a function (or a lambda): no statement of a cell makes it
        root, *rest = qualname.split(".")
        entry = self.names.get(root)
        if entry is None or self.namespace.get(root, MISSING) is not entry[1]:
            return None
        if walk_nested(entry[1], rest) is not obj:
            return None
        return f"{entry[0]}:{qualname}"


def split_key(key: str) -> tuple[int, str]:
    seq, _, qualname = key.partition(":")
    return int(seq), qualname


def walk_nested(obj: Any, parts: list[str]) -> Any:
    """The class or function nested in class ``obj`` under ``parts`` (``Outer.Inner``), or ``MISSING``."""
    for part in parts:
        if not issubclass(type(obj), type):
            return MISSING
        obj = vars(obj).get(part, MISSING)
    return obj
