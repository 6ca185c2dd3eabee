"""Which names a cell touched, and which variables must be stored together.

Tracking costs user code nothing at run time; it is done around the cell:

- **reads**: the names the cell's code loads, found statically in its AST
  (top level, nested functions, lambdas, comprehensions), widened through every
  notebook-defined function, class and instance it reads to the global names
  their code uses (so ``append_row()`` counts as touching ``rows``);
- **writes and deletes**: an identity scan of the namespace after the cell,
  against the previous one (``id`` of every value: ~50 ns a name). It sees
  rebinding by any route: top level, ``global`` in a function, ``globals()[…]``,
  ``exec``, magics.

What this does not see: an in-place mutation of an object reached through no
name the cell reads (a background thread, a reference kept in an imported module,
``eval`` of a string). ``%persist verify`` hashes everything and catches those.

**Co-variables**: two variables that reach a common object (``b = a``,
``d['x'] = c``, two instances of one notebook class) form a group and are always
serialized together, so identity between them survives.
"""

from __future__ import annotations

import ast
import functools
import gc
import itertools
import re
import sys
import types
import weakref
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from .chunked import MIN_ITEMS as CHUNKED_MIN_ITEMS
from .chunked import Chunked, chunks_of
from .libraryrefs import library_global, library_objects
from .shellrefs import shell_objects
from .weakrefs import is_weak, weak_referents

# IPython's own bookkeeping in the user namespace: never persisted as user state.
_IPYTHON_NAME = re.compile(r"^(_|__|___|_i|_ii|_iii|_i\d+|_\d+|_ih|_oh|_dh|In|Out|get_ipython|exit|quit)$")
# re.Pattern: immutable, and pickled as re.compile(...), which hands back re's cached object
_ATOMIC = (int, float, complex, str, bytes, bool, type(None), range, type(Ellipsis), re.Pattern)
MAX_OBJECTS_PER_VARIABLE = 100_000  # reference walk budget; deeper sharing is not detected
_LARGE_ATOMIC = 4096  # str/bytes at least this long take part in grouping

MAIN = "__main__"


def _is_ipython_name(name: str) -> bool:
    return (name.startswith("__") and name.endswith("__")) or bool(_IPYTHON_NAME.match(name))


_classified: set[Any] = set()  # every namespace key seen so far
_internal: set[Any] = set()  # those that are IPython's (or not strings)


def _classify(keys: Iterable[Any]) -> None:
    for name in keys:
        _classified.add(name)
        if type(name) is not str or _is_ipython_name(name):
            _internal.add(name)


def is_user_key(key: Any) -> bool:
    """Whether a namespace key can name a user variable (a str that is not IPython's bookkeeping)."""
    if key not in _classified:
        _classify((key,))
    return key not in _internal


def user_names(namespace: Mapping[str, Any], hidden: Mapping[str, Any]) -> dict[str, int]:
    """``name -> id(value)`` for every user variable: the identity scan, whole.

    Built and filtered with C-level set operations (no Python loop over the namespace),
    but it still looks at every key, IPython's ``_iN`` history names included: the
    checkpointer keeps it up to date from what changed instead (``namespacescan``).
    Another thread may delete a name while it runs: a name gone by the time its value
    is read is left out, as if the scan had come a moment later.
    """
    keys = namespace.keys() - _internal
    fresh = keys - _classified
    if fresh:
        _classify(fresh)
        keys -= _internal
    scan = dict(zip(keys, map(id, map(namespace.get, keys, itertools.repeat(_GONE)))))  # a set iterates in the same order twice
    gone = id(_GONE)
    if gone in scan.values():
        scan = {name: ident for name, ident in scan.items() if ident != gone}
    for name in hidden.keys() & scan.keys():
        if scan[name] == id(hidden.get(name, _GONE)):
            del scan[name]  # IPython's own object (In, exit, get_ipython …), not rebound by the user
    return scan


_GONE = object()  # what a name another thread deleted meanwhile reads as


def rebound(before: Mapping[str, int], after: Mapping[str, int]) -> tuple[set[str], set[str]]:
    """(written, deleted) between two identity scans."""
    written = {name for name, _ident in after.items() - before.items()}
    deleted = before.keys() - after.keys()
    return written, deleted


# -- reads -----------------------------------------------------------------------


@functools.lru_cache(maxsize=512)  # cells are run again and again; parsing is most of a small cell's cost
def names_loaded(source: str) -> frozenset[str] | None:
    """Names a piece of Python source loads (including inside its functions and lambdas).

    None when it is not plain Python (IPython syntax: transform it first).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    loaded: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            # Stored names too: `del x; x = [3]` can reuse the old object's address,
            # which the identity scan alone would take for "unchanged".
            loaded.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            loaded.update(node.names)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            loaded.add(node.target.id)
    return frozenset(loaded)


def _code_names(code: types.CodeType, cache: dict[types.CodeType, frozenset[str]]) -> frozenset[str]:
    """Global names a code object (and the code nested in it) may use."""
    found = cache.get(code)
    if found is None:
        names = set(code.co_names)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                names |= _code_names(const, cache)
        found = cache[code] = frozenset(names)
    return found


def is_notebook_defined(obj: Any) -> bool:
    """A function or class whose code lives in the notebook (``__main__``)."""
    return issubclass(type(obj), (types.FunctionType, type)) and getattr(obj, "__module__", None) == MAIN


_CONTAINER_SCAN = 1000  # items of a container looked at for notebook functions (``ops = {'add': add}``)


def _notebook_code(value: Any, seen: set[int] | None = None) -> Iterator[types.CodeType]:
    """Code objects that may run when a value is used: notebook functions (also behind
    decorators, ``functools`` wrappers and containers), and notebook classes' methods.

    Type-based checks only: a user ``__class__`` property may lie or raise.
    """
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    kind = type(value)
    if issubclass(kind, types.FunctionType):
        if value.__module__ == MAIN:
            yield value.__code__
            for cell in value.__closure__ or ():  # a decorator's wrapper closes over the function
                if _cell_has_contents(cell) and callable(cell.cell_contents):
                    yield from _notebook_code(cell.cell_contents, seen)
        return
    if issubclass(kind, types.MethodType):
        yield from _notebook_code(value.__func__, seen)
        return
    if issubclass(kind, (dict, list, tuple, set, frozenset)):
        items = dict.values(value) if issubclass(kind, dict) else contents(value, kind)
        # filter/islice run in C: a list of 1,000 numbers costs no Python loop
        for item in filter(callable, itertools.islice(items, _CONTAINER_SCAN)):
            yield from _notebook_code(item, seen)
        return
    wrapped = _own_attribute(value, "__wrapped__") if not issubclass(kind, type) else None
    if wrapped is not None:  # functools.wraps, lru_cache, partial-like wrappers
        yield from _notebook_code(wrapped, seen)
    cls = value if issubclass(kind, type) else kind
    if issubclass(kind, type) and kind.__module__ == MAIN:
        # A notebook metaclass runs when a class is made from this one (`class Csv(Plugin)`):
        # its __new__/__init__ filling a registry is code the cell calls.
        yield from _notebook_code(kind, seen)
    if getattr(cls, "__module__", None) != MAIN:
        return
    for klass in cls.__mro__:
        if klass.__module__ != MAIN:
            continue
        for attr in vars(klass).values():
            func = attr.__func__ if issubclass(type(attr), (staticmethod, classmethod)) else attr
            if issubclass(type(func), property):
                for accessor in (func.fget, func.fset, func.fdel):
                    if issubclass(type(accessor), types.FunctionType):
                        yield accessor.__code__
            elif issubclass(type(func), types.FunctionType):
                yield func.__code__


def instance_dict(obj: Any) -> dict[str, Any] | None:
    """The object's own ``__dict__``, without running a user ``__getattr__`` or property (no user code)."""
    try:
        state = object.__getattribute__(obj, "__dict__")
    except Exception:  # noqa: BLE001 - no __dict__ (slots, builtins)
        return None
    return state if type(state) is dict else None


def _own_attribute(obj: Any, name: str) -> Any:
    """``obj.name`` from the object's own ``__dict__`` (where ``functools.wraps`` and ``lru_cache`` put
    ``__wrapped__``): a checkpoint runs no user code."""
    state = instance_dict(obj)
    return None if state is None else state.get(name)


class ReadTracker:
    """Widens a cell's loaded names through the notebook code it calls."""

    def __init__(self) -> None:
        self._code_cache: dict[types.CodeType, frozenset[str]] = {}

    def reads(self, source: str, namespace: Mapping[str, Any], transform: Any = None) -> set[str]:
        """Names the cell reads; ``transform`` turns IPython syntax into Python when needed."""
        loaded = names_loaded(source)
        if loaded is None and transform is not None:
            try:
                loaded = names_loaded(transform(source))
            except Exception:  # noqa: BLE001 - what IPython cannot transform reads nothing we can see
                loaded = None
            if source.lstrip().startswith("%%"):
                # A cell magic's body is usually Python run in the namespace (%%time, %%capture).
                body = source.lstrip().partition("\n")[2]
                loaded = (loaded or set()) | (names_loaded(body) or set())
        return self._widen(loaded or (), namespace)

    def code_reads(self, codes: Iterable[types.CodeType], namespace: Mapping[str, Any]) -> set[str]:
        """Names that notebook code objects which ran (a widget callback) may read."""
        loaded: set[str] = set()
        for code in codes:
            loaded |= _code_names(code, self._code_cache)
        return self._widen(loaded, namespace)

    def _widen(self, loaded: Iterable[str], namespace: Mapping[str, Any]) -> set[str]:
        """``loaded`` and the names the notebook code they hold uses, transitively."""
        pending = [name for name in loaded if name in namespace]
        seen: set[str] = set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            for code in _notebook_code(namespace[name]):
                pending.extend(n for n in _code_names(code, self._code_cache) if n in namespace and n not in seen)
        return seen


# -- co-variables -------------------------------------------------------------------


# Builtin types whose instances hold references only C code can see (iterators,
# itertools and functools objects): their referents are asked of the garbage collector.
_OPAQUE_MODULES = frozenset({"builtins", "itertools", "functools", "collections", "operator"})


_SEQUENCES = (list, tuple, set, frozenset, deque)


def contents(obj: Any, kind: type) -> Iterator[Any]:
    """The items of a list, tuple, set, frozenset or deque (or a subclass's), through the built-in
    type's own ``__iter__``: a subclass's ``__iter__`` is user code, and a checkpoint runs none."""
    base = next(base for base in _SEQUENCES if issubclass(kind, base))
    return base.__iter__(obj)


def _children(obj: Any, namespace: Mapping[str, Any], held_ids: AbstractSet[int] = frozenset()) -> Iterable[Any]:
    """The objects an object holds that matter for identity between variables."""
    kind = type(obj)
    if is_weak(obj):  # its referents: stored with it, so it points at them after a restore
        return weak_referents(obj)
    if issubclass(kind, dict):
        if obj is namespace:
            return ()
        # dict's own methods, never a subclass's keys() or __iter__ (user code)
        held: list[Any] = [*dict.keys(obj), *dict.values(obj)]
        factory = defaultdict.default_factory.__get__(obj) if issubclass(kind, defaultdict) else None
        if factory is not None:
            held.append(factory)
        return held + _instance_state(obj, kind) if kind is not dict else held
    if issubclass(kind, _SEQUENCES):
        if kind in (list, tuple, set, frozenset):
            return obj
        return list(contents(obj, kind)) + _instance_state(obj, kind)
    if issubclass(kind, types.FunctionType):
        if obj.__module__ != MAIN:
            return ()
        # The cells themselves: two closures sharing a `nonlocal` share the cell, whatever it holds.
        held = list(obj.__closure__ or ())
        held.extend(cell.cell_contents for cell in (obj.__closure__ or ()) if _cell_has_contents(cell))
        held.extend(obj.__defaults__ or ())
        held.extend((obj.__kwdefaults__ or {}).values())
        held.extend(vars(obj).values())
        return held
    if issubclass(kind, types.MethodType):
        return (obj.__self__, obj.__func__)
    if issubclass(kind, types.BuiltinMethodType):  # lst.append: bound to lst
        owner = obj.__self__
        return () if issubclass(type(owner), types.ModuleType) else (owner,)
    if issubclass(kind, type):
        return list(vars(obj).values()) if obj.__module__ == MAIN else ()
    if issubclass(kind, types.ModuleType):
        return ()
    numpy = sys.modules.get("numpy")
    if numpy is not None and issubclass(kind, numpy.ndarray):
        # A view shares memory with its base (an array, or for a restored array the mapped
        # file or loaded bytes it sits on); an object array holds objects.
        held = [obj.base] if obj.base is not None else []
        if obj.dtype.hasobject:
            items = obj.ravel().tolist()
            if not (obj.dtype.kind == "O" and _flat(items, list, held_ids)):
                held.extend(items)  # a column of strings and numbers has nothing to share: checked in C, not walked
        return held
    if issubclass(kind, functools.partial):  # C fields and a __dict__: the generic walk would miss .func
        return [obj.func, *obj.args, *obj.keywords.values(), *(instance_dict(obj) or {}).values()]
    if kind.__module__ in _OPAQUE_MODULES and not hasattr(obj, "__dict__"):
        return [r for r in gc.get_referents(obj) if not issubclass(type(r), (type, types.ModuleType))]
    # Instances of one notebook class share that class; so do instances of a class a library made
    # at run time (no module names it: pickled by value, it must be stored once for all of them).
    held = [kind] if kind.__module__ == MAIN or not _named_class(kind) else []
    return held + _instance_state(obj, kind)


def _instance_state(obj: Any, kind: type) -> list[Any]:
    """Attribute values: ``__dict__`` and the ``__slots__`` of every class in the MRO (no user code)."""
    held = list((instance_dict(obj) or {}).values())
    held.extend(slot_values(obj, kind).values())
    return held


def slot_values(obj: Any, kind: type) -> dict[str, Any]:
    """The object's set ``__slots__`` by name, read through their descriptors (no user ``__getattribute__``)."""
    values: dict[str, Any] = {}
    for klass in kind.__mro__:
        slots = vars(klass).get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if not isinstance(slot, str) or slot in ("__dict__", "__weakref__"):
                continue
            # a private name is mangled with the class that declares it (__x -> _Klass__x)
            name = f"_{klass.__name__.lstrip('_')}{slot}" if slot.startswith("__") and not slot.endswith("__") else slot
            descriptor = vars(klass).get(name)
            if descriptor is None or name in values:
                continue
            try:
                values[name] = descriptor.__get__(obj, kind)
            except AttributeError:
                continue  # an unset slot
    return values


def _cell_has_contents(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - probing an empty closure cell
    except ValueError:
        return False
    return True


def has_identity(value: Any) -> bool:
    """An immutable value whose identity a program can see: ``a = b = 'a long text'``, then ``a is b``.

    Not None, bools, empty or identifier-like strings (CPython interns those: after a
    restore they are the same objects by nature), and not ints and floats: pickle writes
    them by value wherever they occur, so two names holding one ``2**100`` come back
    holding two equal ints whatever the grouping (a documented limit).
    """
    kind = type(value)
    if kind is str:
        return len(value) > 1 and not value.isidentifier()
    if kind is bytes:
        return len(value) > 1
    return kind is complex or kind is range


def reachable_ids(value: Any, namespace: Mapping[str, Any], held: AbstractSet[int] = frozenset()) -> frozenset[int]:
    """Identities of the non-atomic objects a variable reaches (itself included); see ``reachable``."""
    ids, bulk = reachable(value, namespace, held)
    return ids.union(*(container.reach for container in bulk)) if bulk else ids


def reachable(value: Any, namespace: Mapping[str, Any], held: AbstractSet[int] = frozenset()) -> tuple[frozenset[int], tuple[Chunked, ...]]:
    """Identities of the non-atomic objects a variable reaches (itself included), and the large
    plain containers it reaches whose items are kept by ``chunked`` (their ``reach``: the
    records and tuples in them, not copied here).

    An immutable value counts where its identity can be seen: when it is the variable's
    own value (``has_identity``), or when it is an object in ``held`` (another variable's
    own value), so ``x = 2**100; holder = {'x': x}`` keeps ``holder['x'] is x``.
    """
    seen: set[int] = set()
    bulk: list[Chunked] = []
    if has_identity(value):
        seen.add(id(value))
    stack = [value]
    # the shell (it reaches everything, see shellrefs) and the libraries' objects (stored as references)
    libraries = _LibraryOwned(shell_objects(), library_objects())
    while stack and len(seen) < MAX_OBJECTS_PER_VARIABLE:
        obj = stack.pop()
        kind = type(obj)  # type(), not isinstance(): a user __class__ property may lie or raise
        if issubclass(kind, _ATOMIC):
            if issubclass(kind, (str, bytes)) and len(obj) >= _LARGE_ATOMIC or id(obj) in held:
                seen.add(id(obj))  # a big string shared by two variables is stored once
            continue
        if issubclass(kind, types.ModuleType):
            continue
        ident = id(obj)
        if ident in seen:
            continue
        owned = libraries.owns(obj, ident, kind)
        if owned and obj is not value:
            continue  # the library's: the same object after a restore whatever the grouping
        seen.add(ident)
        if owned:
            continue  # a variable's own value that is the library's: it groups the names holding it, nothing inside it does
        libraries.met(kind)
        if (kind is list or kind is dict or kind is set) and len(obj) >= CHUNKED_MIN_ITEMS:  # inline: every walked object passes here
            found = chunks_of(obj)
            if found is not None:
                # A large plain list, dict or set of flat items: its records and tuples are all
                # another variable could share, and ``chunked`` keeps their ids up to date.
                bulk.append(found)
                continue
        if kind.__module__ == MAIN:
            # Record the notebook class at once: even if the walk budget runs out
            # before its turn, its instances stay grouped with it (isinstance holds).
            seen.add(id(kind))
        if issubclass(kind, type) and getattr(obj, "__module__", None) != MAIN:
            continue
        if kind in _PLAIN_CONTAINERS and _flat(obj, kind, held):
            continue  # only values with no identity to keep: nothing in it to walk
        try:
            stack.extend(_children(obj, namespace, held))
        except Exception:  # noqa: BLE001 - an exotic object's attributes may raise; it stays a leaf
            pass
    return frozenset(seen), tuple(bulk)


_PLAIN_CONTAINERS = frozenset({list, tuple, set, frozenset, dict})
_NO_IDENTITY = frozenset({int, float, bool, type(None)})  # pickled by value wherever they are (see has_identity)
_SHORT_TEXT = frozenset({str, bytes})


def _flat(obj: Any, kind: type, held: AbstractSet[int]) -> bool:
    """Whether an exact list, tuple, set or dict holds only numbers, None and short strings
    (or only short bytes) that no variable holds as its own value: checked in C, so a list
    of 100,000 floats costs the walk one step, not 100,000."""
    if kind is dict:
        return _flat(dict.keys(obj), list, held) and _flat(dict.values(obj), list, held)
    kinds = set(map(type, obj))
    if not kinds <= _NO_IDENTITY:
        if not kinds <= _NO_IDENTITY | _SHORT_TEXT:
            return False
        texts = kinds & _SHORT_TEXT
        if len(kinds) > 1 or len(texts) != 1 or max(map(len, obj), default=0) >= _LARGE_ATOMIC:
            return False  # strings mixed with numbers (len() would fail), or a long one: walked
    return not held or held.isdisjoint(map(id, obj))


class _LibraryOwned:
    """What a walk meets that belongs to a library, not to the session: nothing to group on.

    Two variables reaching the same such object need not be stored together, because each
    pickle stores it as a reference that comes back as the library's very object (every
    widget reaches the kernel, its class's functions, the ``observe`` handlers its class
    holds: counting those made every widget one group, stored whole whenever one changed):

    - the running shell and its parts, and a library's module globals (``shellrefs``,
      ``libraryrefs``);
    - a class or function of a library that its module names by its qualified name
      (pickled by name); one a library made at run time is not named, and still groups;
    - what a library class holds in its own namespace (its methods, the handler objects
      traitlets keeps there), for each library class met in this walk.

    A variable's own value is never skipped: ``a = b = lib.SOME_DICT`` still groups a and b.
    """

    def __init__(self, shell_parts: Mapping[int, Any], library_parts: dict[int, Any]) -> None:
        self._shell_parts = shell_parts
        self._library_parts = library_parts
        self._owned: set[int] = set()
        self._classes: set[type] = set()

    def owns(self, obj: Any, ident: int, kind: type) -> bool:
        if ident in self._owned or ident in self._shell_parts:
            return True
        if ident in self._library_parts and library_global(obj, self._library_parts) is not None:
            return True
        if issubclass(kind, type):
            named = obj.__module__ != MAIN and _named_class(obj)
        elif issubclass(kind, (types.FunctionType, types.BuiltinFunctionType)):
            named = getattr(obj, "__module__", MAIN) != MAIN and _named_in_its_module(obj)
        else:
            return False
        if named:
            self._owned.add(ident)  # asked once per walk
        return named

    def met(self, kind: type) -> None:
        """An object of ``kind`` was met: what a library class holds is the library's from now on."""
        if kind not in self._classes and kind.__module__ != MAIN:
            self._classes.add(kind)
            self._owned |= _class_held(kind)


def _named_in_its_module(obj: Any) -> bool:
    """Whether ``obj``'s module holds it under its qualified name (read from the namespaces: no ``__getattr__`` runs)."""
    home = getattr(obj, "__module__", None)
    module = sys.modules.get(home) if isinstance(home, str) else None
    qualname = getattr(obj, "__qualname__", None)
    if module is None or not isinstance(qualname, str) or "<locals>" in qualname:
        return False
    found: Any = module
    for part in qualname.split("."):
        try:
            found = vars(found).get(part)
        except TypeError:
            return False
    return found is obj


_NAMED_CLASSES: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _named_class(kind: type) -> bool:
    """``_named_in_its_module`` for a class, remembered (asked for every object walked)."""
    try:
        return _NAMED_CLASSES[kind]
    except KeyError:
        named = _NAMED_CLASSES[kind] = _named_in_its_module(kind) or _held_by_its_module(kind)
        return named
    except TypeError:
        return _named_in_its_module(kind)


def _held_by_its_module(kind: type) -> bool:
    """A class its module holds under another name (``_json.make_scanner`` is ``_json.Scanner``)."""
    module = sys.modules.get(kind.__module__) if isinstance(kind.__module__, str) else None
    try:
        return module is not None and any(value is kind for value in vars(module).values())
    except TypeError:
        return False


_CLASS_HELD: weakref.WeakKeyDictionary[type, tuple[frozenset[int], tuple[Any, ...]]] = weakref.WeakKeyDictionary()


def _class_held(kind: type) -> frozenset[int]:
    """The ids of what the library classes of ``kind``'s MRO hold in their namespaces.

    Kept with the objects themselves: an id here can never be another object's while cached
    (a class attribute rebound later keeps its old object here, which then just stays skipped).
    """
    try:
        return _CLASS_HELD[kind][0]
    except KeyError:
        pass
    except TypeError:
        return frozenset()  # a type that cannot be weakly referenced: nothing cached, nothing skipped
    held = [
        value
        for klass in kind.__mro__
        if klass is not object and klass.__module__ != MAIN
        for value in vars(klass).values()
        if not isinstance(value, _ATOMIC)
    ]
    ids = frozenset(map(id, held))
    _CLASS_HELD[kind] = (ids, tuple(held))
    return ids


def _connected(
    name: str, reach: Mapping[str, AbstractSet[int]], owners: Mapping[int, Iterable[str]], shared: AbstractSet[int] | None = None
) -> frozenset[str]:
    """Every name linked to ``name`` through identities two names both reach (``shared``: those identities, when known)."""
    group, pending = {name}, [name]
    while pending:
        ids = reach.get(pending.pop(), frozenset())
        for ident in ids if shared is None else ids & shared:
            for other in owners.get(ident, ()):
                if other not in group:
                    group.add(other)
                    pending.append(other)
    return frozenset(group)


def components(names: Iterable[str], reach: Mapping[str, frozenset[int]]) -> list[frozenset[str]]:
    """Connected components of ``names`` through shared identities in ``reach``."""
    owners: dict[int, list[str]] = {}
    for name in names:
        for ident in reach.get(name, ()):
            owners.setdefault(ident, []).append(name)
    result: list[frozenset[str]] = []
    covered: set[str] = set()
    for name in sorted(names):
        if name not in covered:
            group = _connected(name, reach, owners)
            covered |= group
            result.append(group)
    return result


class Groups:
    """Co-variable groups: variables that reach a common object belong together."""

    def __init__(self) -> None:
        self._reach: dict[str, frozenset[int]] = {}
        self._owners: dict[int, set[str]] = {}
        self._held: dict[int, int] = {}  # id of an immutable that is a variable's own value -> how many
        self._own: dict[str, int] = {}  # name -> the id it put in _held
        self._shared: set[int] = set()  # ids two or more names reach: what links names, besides ``_bulk``
        self._bulk: dict[str, tuple[Chunked, ...]] = {}  # name -> the large plain containers it reaches (see ``reachable``)

    def update(self, name: str, value: Any, namespace: Mapping[str, Any]) -> None:
        """Recompute what ``name`` reaches (after it was touched).

        The owners index changes by the difference only (set operations in C): a name
        reaching 300,000 records that gained one costs one entry, not 300,000.
        """
        own = self._own.pop(name, None)
        if own is not None:
            self._release(own)
        if has_identity(value):
            self._own[name] = id(value)
            self._held[id(value)] = self._held.get(id(value), 0) + 1
        before = self._reach.get(name, frozenset())
        reach, bulk = reachable(value, namespace, self._held.keys())
        self._reach[name] = reach
        if bulk:
            self._bulk[name] = bulk
        else:
            self._bulk.pop(name, None)
        for ident in before - reach:
            self._disown(ident, name)
        for ident in reach - before:
            owners = self._owners.setdefault(ident, set())
            owners.add(name)
            if len(owners) == 2:
                self._shared.add(ident)

    def _release(self, own: int) -> None:
        self._held[own] -= 1
        if not self._held[own]:
            del self._held[own]

    def _disown(self, ident: int, name: str) -> None:
        owners = self._owners.get(ident)
        if owners is not None:
            owners.discard(name)
            if len(owners) < 2:
                self._shared.discard(ident)
                if not owners:
                    del self._owners[ident]

    def reach(self, name: str) -> frozenset[int]:
        """Every identity ``name`` reaches, the records in its large containers too."""
        reach = self._reach.get(name, frozenset())
        bulk = self._bulk.get(name, ())
        return reach.union(*(container.reach for container in bulk)) if bulk else reach

    def remove(self, name: str) -> None:
        self._bulk.pop(name, None)
        own = self._own.pop(name, None)
        if own is not None:
            self._release(own)
        for ident in self._reach.pop(name, ()):
            self._disown(ident, name)

    def group_of(self, name: str) -> frozenset[str]:
        """All names connected to ``name`` through shared objects."""
        if not self._bulk:
            return _connected(name, self._reach, self._owners, self._shared)
        group, pending = {name}, [name]
        while pending:
            for other in self._neighbours(pending.pop()):
                if other not in group:
                    group.add(other)
                    pending.append(other)
        return frozenset(group)

    def _neighbours(self, name: str) -> set[str]:
        """The names sharing an object with ``name``: through the owners index, and through the
        records of large containers (set intersections in C, never a walk of the records)."""
        small = self._reach.get(name, frozenset())
        found: set[str] = set()
        for ident in small & self._shared:
            found.update(self._owners[ident])
        mine = self._bulk.get(name, ())
        for other, theirs in self._bulk.items():
            if other == name:
                continue
            if any(not container.reach.isdisjoint(small) for container in theirs):
                found.add(other)
            elif any(mine_c is not their_c and not mine_c.reach.isdisjoint(their_c.reach) for mine_c in mine for their_c in theirs):
                found.add(other)
        if mine:
            for other, their_small in self._reach.items():
                if other != name and any(not container.reach.isdisjoint(their_small) for container in mine):
                    found.add(other)
        found.discard(name)
        return found

    def groups_of(self, names: Iterable[str]) -> list[frozenset[str]]:
        """The distinct groups containing ``names``."""
        result: list[frozenset[str]] = []
        covered: set[str] = set()
        for name in sorted(names):
            if name in covered:
                continue
            group = self.group_of(name)
            covered |= group
            result.append(group)
        return result
