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

Three modules, imports one way: ``definitionindex`` (which statements define what, and
the live kernel's ``DefinitionIndex``), this one (the reduction, the data state, and the
scope references are resolved in), ``definitionreplay`` (``DefinitionReplayer``). The
names stored pickles hold (``resolve_definition``, ``apply_definition_state``,
``_KWD_MARK``) are this module's: moved, a store written before would no longer load,
and every group holding a definition would hash differently.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .definitionindex import LRU_WRAPPER, MISSING, DefinitionIndex, is_definition_object, split_key, walk_nested
from .tracking import instance_dict

# -- by reference, with data state ---------------------------------------------------------


def _is_data(value: Any) -> bool:
    """A value replaying a definition does not make: not code, not a descriptor, not a module."""
    kind = type(value)
    if issubclass(kind, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, types.ModuleType)):
        return False
    if kind is types.MappingProxyType or kind is LRU_WRAPPER:
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
    if kind is LRU_WRAPPER:
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
    if kind is LRU_WRAPPER:
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


# -- resolving references: the scope a load runs in -----------------------------------------


class Replayer(Protocol):
    """What resolving asks of a replayer (``definitionreplay.DefinitionReplayer``)."""

    resolved: dict[str, Any]  # key -> the object it resolved to
    notes: dict[str, str]  # qualname -> what is not exact about it

    def resolve(self, seq: int, qualname: str) -> Any: ...


@dataclass
class _Active:
    """What resolves references now (inside ``resolving``), and the states waiting for ``settle``."""

    replayer: Replayer | None = None
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
            found = walk_nested(entry[1], rest)
            if found is not MISSING:
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
def resolving(replayer: Replayer | None = None, live: DefinitionIndex | None = None) -> Iterator[None]:
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

