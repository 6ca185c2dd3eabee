"""Notebook functions and classes stored *by reference*, re-created by replaying their definitions.

dill rebuilds a notebook class or function *by value*, and that is lossy: a base
class comes back as a copy (``isinstance`` breaks), a ``typing.NamedTuple`` loses
its methods, an ``Enum`` may not load, and loading one back runs its metaclass. A
kernel that replays every cell gets all of these right, and gets data, randomness
and side effects wrong. This module takes the best of both:

- **At a checkpoint** (no user code runs): a function or class bound under its own
  name by a top-level ``def`` or ``class`` statement of a cell is pickled as a
  reference ``"<cell seq>:<qualname>"`` plus its *data state* — a function's
  defaults, attributes and closure values; a class's plain data attributes
  (``Base.count = 3`` set later). Nested classes (``Outer.Inner``) follow their
  outer class. Everything else notebook-made (lambdas, closures made by a call,
  classes defined inside functions, a definition since rebound) stays by value.
- **At a restore**: a reference is resolved by executing that cell's *definition
  statements* — its top-level ``import``, ``def``, ``class`` statements and
  assignments of literals (``REGISTRY = {}``), in order, never its other
  statements — in the user namespace, with what the cell read bound as it stood
  before the cell ran, output suppressed and file changes refused. Each cell's
  statements run once per restore, so two references to one class resolve to one
  object. Then the stored data state is set on the object. The namespace's
  bindings are put back afterwards: the names are bound by loading their versions.

What replay cannot give back is said, never guessed: a ``functools.lru_cache``
comes back with an empty cache (its contents cannot be read without calling user
code), and that is named in the restore summary.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import re
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .tracking import instance_dict

MAIN = "__main__"
_MISSING = object()
_LRU_WRAPPER = type(functools.lru_cache(lambda: None))
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


def _bound_by(stmt: ast.stmt) -> list[str]:
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


def _is_definition_statement(stmt: ast.stmt) -> bool:
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
        names: set[str] = set(_bound_by(stmt))
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
            for name in _bound_by(stmt):
                by_definitions[name] = by_definitions.get(name, 0) + 1
    return frozenset(name for name, count in by_definitions.items() if counts.get(name, 0) == count)


def is_definition_object(obj: Any) -> bool:
    """A notebook function or class, or an ``lru_cache`` around a notebook function (type checks only)."""
    kind = type(obj)
    if not (issubclass(kind, (types.FunctionType, type)) or kind is _LRU_WRAPPER):
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
            value = ns.get(name, _MISSING)
            if value is not _MISSING and is_definition_object(value):
                self.names[name] = (seq, value)

    def adopt(self, resolved: Mapping[str, Any]) -> None:
        """After a restore or a checkout: the definitions it resolved that are bound under their own name."""
        ns = self.namespace
        for key, obj in resolved.items():
            seq, qualname = split_key(key)
            if "." not in qualname and ns.get(qualname, _MISSING) is obj:
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
        if entry is None or self.namespace.get(root, _MISSING) is not entry[1]:
            return None
        if _walk(entry[1], rest) is not obj:
            return None
        return f"{entry[0]}:{qualname}"


def split_key(key: str) -> tuple[int, str]:
    seq, _, qualname = key.partition(":")
    return int(seq), qualname


def _walk(obj: Any, parts: list[str]) -> Any:
    for part in parts:
        if not issubclass(type(obj), type):
            return _MISSING
        obj = vars(obj).get(part, _MISSING)
    return obj


# -- by reference, with data state ---------------------------------------------------------


def _is_data(value: Any) -> bool:
    """A value replaying a definition does not make: not code, not a descriptor, not a module."""
    kind = type(value)
    if issubclass(kind, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, types.ModuleType)):
        return False
    if kind is types.MappingProxyType or kind is _LRU_WRAPPER:
        return False
    return not hasattr(kind, "__get__")  # property, classmethod, staticmethod, slots, tuplegetter …


def _member_data(member: Any) -> dict[str, Any]:
    """An Enum member's own attributes, without the ``_sunder_``/``__dunder__`` ones Enum keeps there."""
    own = instance_dict(member) or {}
    return {k: v for k, v in own.items() if not (k.startswith("_") and k.endswith("_")) and _is_data(v)}


def _is_enum_class(cls: type) -> bool:
    enum = sys.modules.get("enum")
    return enum is not None and issubclass(type(cls), enum.EnumMeta)


def definition_state(obj: Any) -> dict[str, Any] | None:
    """What a replay of the definition does not give back: read from the object's own dicts (no user code)."""
    kind = type(obj)
    state: dict[str, Any] = {}
    if issubclass(kind, type):
        # An Enum's members and its _sunder_ bookkeeping are made by the definition (and
        # may not be set again); other attributes set on it later are data like any class's.
        made = set(obj._member_map_) if _is_enum_class(obj) else set()
        attrs = {
            k: v
            for k, v in vars(obj).items()
            if not (k.startswith("_") and k.endswith("_")) and k != "_abc_impl" and k not in made and _is_data(v)
        }
        if attrs:
            state["attrs"] = attrs
        members = {name: _member_data(member) for name, member in obj.__dict__.get("_member_map_", {}).items()} if made else {}
        members = {name: data for name, data in members.items() if data}
        if members:
            state["members"] = members  # `Color.RED.note = ...`: a member is the definition's, its attributes data
        registered = _abc_registry(obj)
        if registered:
            state["abc_registered"] = registered  # `Base.register(list)`: virtual subclasses
        return state or None
    if kind is _LRU_WRAPPER:
        info = obj.cache_info()  # C code: the wrapper's counters
        if info.currsize:
            entries = _unbounded_cache(obj) if info.maxsize is None else None
            if entries is None:
                state["cache_entries"] = info.currsize
            else:
                state["cache"] = [(_swap_mark(key, entries[1], _KWD_MARK), value) for key, value in entries[0].items()]
                state["cache_stats"] = [info.hits, info.misses]  # C counters: not settable, so named at a restore
        inner = getattr(obj, "__wrapped__", None)
        if issubclass(type(inner), types.FunctionType):
            state.update(_function_state(inner) or {})
        return state or None
    return _function_state(obj)


class _KwdMark:
    """Stands for the private marker ``functools`` puts between positional and keyword arguments in a cache key."""

    def __reduce__(self) -> str:
        return "_KWD_MARK"


_KWD_MARK = _KwdMark()


def _unbounded_cache(wrapper: Any) -> tuple[dict, object] | None:
    """An unbounded ``functools.cache``'s dict and key marker, from the C wrapper's referents (no user code).

    A bounded ``lru_cache`` keeps its entries in C link objects that cannot be made
    from Python: its contents are not restored (and the summary says so).
    """
    import gc

    own = vars(wrapper)
    dicts = [r for r in gc.get_referents(wrapper) if type(r) is dict and r is not own]
    marks = [r for r in gc.get_referents(wrapper) if type(r) is object]
    if len(dicts) != 1 or len(marks) != 1:
        return None
    return dicts[0], marks[0]


def _swap_mark(key: Any, old: object, new: object) -> Any:
    if type(key) is tuple and any(part is old for part in key):
        return tuple(new if part is old else part for part in key)
    return key


def _abc_registry(cls: type) -> list[type]:
    """The classes ``cls.register`` was called with (read from the C registry: no user code)."""
    if "_abc_impl" not in vars(cls):
        return []
    try:
        import _abc

        registry = _abc._get_dump(cls)[0]
    except Exception:  # noqa: BLE001 - the pure-Python abc, or another implementation
        return []
    return sorted((c for c in (ref() for ref in registry) if c is not None), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _function_state(func: types.FunctionType) -> dict[str, Any] | None:
    state: dict[str, Any] = {}
    if func.__defaults__:
        state["defaults"] = func.__defaults__
    if func.__kwdefaults__:
        state["kwdefaults"] = func.__kwdefaults__
    attrs = {k: v for k, v in vars(func).items() if not (k.startswith("__") and k.endswith("__")) and _is_data(v)}
    if attrs:
        state["attrs"] = attrs
    closure = {}
    for index, cell in enumerate(func.__closure__ or ()):
        try:
            contents = cell.cell_contents
        except ValueError:
            continue
        if _is_data(contents):
            closure[index] = contents  # a decorator's counter, a captured setting
    if closure:
        state["closure"] = closure
    return state or None


def reduce_definition(obj: Any, key: str) -> tuple:
    """The pickle reduction of a definition: resolve the reference, then set its data state."""
    return (resolve_definition, (key,), definition_state(obj), None, None, apply_definition_state)


def apply_definition_state(obj: Any, state: dict[str, Any]) -> None:
    """Pickle's state setter for a definition: now, or (while resolving) once every definition is made.

    While references are being resolved, a later definition statement can still change
    an earlier class (``__init_subclass__`` appending to ``Base.kinds``), so states
    wait for ``settle``. A state from an older version, loaded only so that a replayed
    cell can read it, is never set: the definition object is shared with the latest.
    """
    if _active.old:
        return
    if _active.replayer is not None or _active.live is not None:
        _active.pending.append((obj, state))
        return
    _set_state(obj, state)


def settle() -> None:
    """Set the states of the definitions resolved so far, in the order they were loaded."""
    pending, _active.pending = _active.pending, []
    for obj, state in pending:
        _set_state(obj, state)


@contextlib.contextmanager
def old_versions() -> Iterator[None]:
    """Within: values loaded are older versions; definitions' data states from them are not set."""
    _active.old += 1
    try:
        yield
    finally:
        _active.old -= 1


def _set_state(obj: Any, state: dict[str, Any]) -> None:
    kind = type(obj)
    replayer = _active.replayer
    if kind is _LRU_WRAPPER:
        if "cache" in state:
            found = _unbounded_cache(obj)
            if found is not None:
                cache, mark = found
                cache.update((_swap_mark(key, _KWD_MARK, mark), value) for key, value in state["cache"])
                hits, misses = state.get("cache_stats") or (0, 0)
                if (hits or misses) and replayer is not None:
                    replayer.notes[obj.__qualname__] = f"its cache is back, but cache_info() counts from zero (it had {hits} hits, {misses} misses)"
            elif replayer is not None:
                replayer.notes[obj.__qualname__] = "its cache starts empty"
        if state.get("cache_entries") and replayer is not None:
            replayer.notes[obj.__qualname__] = (
                f"its lru_cache(maxsize={obj.cache_info().maxsize}) starts empty: {state['cache_entries']} cached results "
                "are kept where Python cannot read them back"
            )
        inner = getattr(obj, "__wrapped__", None)
        if issubclass(type(inner), types.FunctionType):
            _apply_function_state(inner, state)
        return
    if issubclass(kind, type):
        for name, value in state.get("attrs", {}).items():
            setattr(obj, name, value)
        for name, data in state.get("members", {}).items():
            member = obj.__dict__.get("_member_map_", {}).get(name)
            if member is not None:
                object.__getattribute__(member, "__dict__").update(data)
        for subclass in state.get("abc_registered", ()):
            obj.register(subclass)
        return
    _apply_function_state(obj, state)


def _apply_function_state(func: types.FunctionType, state: dict[str, Any]) -> None:
    if "defaults" in state:
        func.__defaults__ = state["defaults"]
    if "kwdefaults" in state:
        func.__kwdefaults__ = state["kwdefaults"]
    vars(func).update(state.get("attrs", {}))
    closure = func.__closure__ or ()
    for index, value in state.get("closure", {}).items():
        if int(index) < len(closure):
            closure[int(index)].cell_contents = value


# -- resolving references: replay of definition statements ---------------------------------


@dataclass
class _Active:
    """What resolves references now (inside ``resolving``), and the states waiting for ``settle``."""

    replayer: DefinitionReplayer | None = None
    live: DefinitionIndex | None = None
    pending: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    old: int = 0  # depth of old_versions()


_active = _Active()


def resolve_definition(key: str) -> Any:
    """Called by unpickling: the object a reference names (replaying its definition if needed)."""
    seq, qualname = split_key(key)
    root, *rest = qualname.split(".")
    live = _active.live
    if live is not None:
        entry = live.names.get(root)
        if entry is not None and entry[0] == seq:
            found = _walk(entry[1], rest)
            if found is not _MISSING:
                return found
    if _active.replayer is None:
        raise LookupError(f"the definition of {qualname} from cell {seq} is not available here")
    return _active.replayer.resolve(seq, qualname)


def key_in_scope(obj: Any) -> str | None:
    """Within ``resolving``: the reference ``obj`` would be stored as (to compare digests with stored ones)."""
    if _active.live is not None:
        key = _active.live.key_of(obj)
        if key is not None:
            return key
    replayer = _active.replayer
    if replayer is None or not is_definition_object(obj):
        return None
    for key, resolved in replayer.resolved.items():
        if resolved is obj:
            return key
    return None


@contextlib.contextmanager
def resolving(replayer: DefinitionReplayer | None = None, live: DefinitionIndex | None = None) -> Iterator[None]:
    """Within: references are resolved from ``live`` (the kernel's own definitions) or by ``replayer``."""
    saved = (_active.replayer, _active.live)
    _active.replayer, _active.live = replayer, live
    try:
        yield
    finally:
        try:
            settle()
        finally:
            _active.replayer, _active.live = saved


@dataclass
class _CellDefinitions:
    statements: list[tuple[ast.stmt, list[str]]]
    filename: str
    reads: list[str]
    done: int = 0  # statements run so far
    captured: dict[str, Any] = field(default_factory=dict)  # what they bound


class DefinitionReplayer:
    """Re-creates definitions by running their cells' definition statements, once each.

    ``record_of(seq)`` gives a journaled cell (its code and the names it read);
    ``value_before(name, seq)`` the stored value of a name as it stood before that
    cell, as ``(found, value)``;
    ``guard()`` is entered while statements run (output suppressed, no file changes).
    """

    def __init__(
        self,
        shell: Any,
        record_of: Callable[[int], Any],
        value_before: Callable[[str, int], tuple[bool, Any]],
        guard: Callable[[], Any] = contextlib.nullcontext,
    ) -> None:
        self.shell = shell
        self.record_of = record_of
        self.value_before = value_before
        self.guard = guard
        self.cells: dict[int, _CellDefinitions | None] = {}
        self.resolved: dict[str, Any] = {}
        self.notes: dict[str, str] = {}  # qualname -> what is not exact about it
        self._running: set[int] = set()

    def resolve(self, seq: int, qualname: str) -> Any:
        key = f"{seq}:{qualname}"
        if key in self.resolved:
            return self.resolved[key]
        root, *rest = qualname.split(".")
        cell = self._cell(seq)
        if cell is None:
            raise LookupError(f"cell {seq}, which defines {qualname}, is not in the journal")
        if cell.done < len(cell.statements):
            # All of the cell's definitions, not just this one: a later statement may change an
            # earlier class (`__init_subclass__`), and that must happen before states are set.
            self._run(seq, cell, root)
        obj = _walk(cell.captured.get(root, _MISSING), rest)
        if obj is _MISSING:
            raise LookupError(f"replaying the definitions of cell {seq} did not make {qualname}")
        self.resolved[key] = obj
        return obj

    def _cell(self, seq: int) -> _CellDefinitions | None:
        if seq in self.cells:
            return self.cells[seq]
        record = self.record_of(seq)
        cell = None
        if record is not None and record.code:
            source, tree = record.code, None
            try:
                tree = ast.parse(source)  # as DefinitionIndex.note_cell read it: IPython's transform only if needed
            except (SyntaxError, ValueError):
                try:
                    source = self.shell.transform_cell(record.code)
                    tree = ast.parse(source)
                except Exception:  # noqa: BLE001 - a cell that no longer parses defines nothing
                    tree = None
            if tree is not None:
                statements = [(stmt, _bound_by(stmt)) for stmt in tree.body if _is_definition_statement(stmt)]
                filename = self._filename(source, record)
                cell = _CellDefinitions(statements, filename, list(record.reads or ()))
        self.cells[seq] = cell
        return cell

    def _filename(self, source: str, record: Any) -> str:
        """The cell's name in tracebacks and ``inspect.getsource`` (registered in linecache, as IPython does)."""
        try:
            return self.shell.compile.cache(source, record.execution_count or 0)
        except Exception:  # noqa: BLE001
            return f"<cell {record.seq}>"

    def _run(self, seq: int, cell: _CellDefinitions, name: str) -> None:
        if seq in self._running:
            raise LookupError(f"the definitions of cell {seq} refer to themselves before they exist")
        needed = max((i for i, (_stmt, names) in enumerate(cell.statements) if name in names), default=-1)
        last = len(cell.statements) - 1
        ns = self.shell.user_ns
        saved: dict[str, Any] = {}

        def bind(n: str, value: Any) -> None:
            if n not in saved:
                saved[n] = ns.get(n, _MISSING)
            ns[n] = value

        self._running.add(seq)
        try:
            # What the cell read, as it stood before the cell: a metaclass filling a registry,
            # a base class from an earlier cell (itself resolved by reference, recursively).
            with old_versions():
                for read in cell.reads:
                    found, value = self.value_before(read, seq)
                    if found:
                        bind(read, value)
            for n, value in cell.captured.items():
                bind(n, value)
            for _stmt, names in cell.statements[cell.done : last + 1]:
                for n in names:
                    if n not in saved:
                        saved[n] = ns.get(n, _MISSING)
            flags = getattr(getattr(self.shell, "compile", None), "flags", 0)
            with self.guard():
                while cell.done <= last:
                    stmt, names = cell.statements[cell.done]
                    code = compile(ast.Module(body=[stmt], type_ignores=[]), cell.filename, "exec", flags=flags, dont_inherit=True)
                    try:
                        exec(code, ns)  # noqa: S102 - the user's own journaled definition, authenticated
                    except Exception:
                        if cell.done <= needed:
                            raise  # what was asked for is not made (a later attempt resumes here)
                        break  # a later statement failed: what was asked for is made
                    for n in names:
                        if n in ns:
                            cell.captured[n] = ns[n]
                    cell.done += 1
        finally:
            self._running.discard(seq)
            for n, value in saved.items():
                if value is _MISSING:
                    ns.pop(n, None)
                else:
                    ns[n] = value
