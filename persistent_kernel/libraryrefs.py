"""Objects that *are* a library's module-level globals, stored as references to them.

``from matplotlib import rcParams``, ``from os import environ``, ``from pylab import *``:
the variable is the library's own object, which the library keeps reading. Pickled by
value it would come back as a detached copy (``rcParams['lines.linewidth'] = 3`` would no
longer change a plot, ``environ['X'] = '1'`` no longer the process's environment), and a
star import would drag hundreds of library objects into one group pickled after every
cell. So such an object is stored as ``(module, attribute)`` and is, after a restore, the
library's live object again. What the session changed in it comes back where a settings
provider or the process context covers it (rcParams, the environment, ``sys.path``);
other in-place changes to a library's globals are the library's state, not the session's.

A library module is one outside the notebook (not ``__main__``, not the user's own
modules, which ``localmodules`` keeps by value) and outside this package. The index maps
``id(object)`` to the shortest module name that holds it; it is rebuilt when modules are
imported, and every use checks that the module still holds that very object.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from .localmodules import local_file

_NOT_INDEXED = (
    type(None), bool, int, float, complex, str, bytes, range, type(Ellipsis), type(NotImplemented),
    type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
)  # by value costs nothing, or pickle names them already

_LOCATIONS = 3  # kept per object: a restored process may lack one (a name some import put there)
_index: dict[int, tuple[tuple[str, str], ...]] = {}
_indexed: set[str] = set()  # module names already read into the index
_indexed_count = -1


def library_objects() -> dict[int, tuple[tuple[str, str], ...]]:
    """``id(object) -> ((module, attribute), ...)`` for the library globals of every imported module.

    Modules are read once, when first seen (a cell that imports reads only what is new).
    An object held by several modules keeps its three best places: the module that defines
    its type first, then the shortest names.
    """
    global _indexed_count
    modules = sys.modules
    if len(modules) == _indexed_count:
        return _index
    for name in [name for name in list(modules) if name not in _indexed]:
        _indexed.add(name)
        module = modules.get(name)
        if not isinstance(module, types.ModuleType) or not _is_library(name, module):
            continue
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        for attr, value in items:
            if not isinstance(attr, str) or attr.startswith("__") or isinstance(value, _NOT_INDEXED):
                continue
            try:
                known = _index.get(id(value), ())
                if len(known) < _LOCATIONS or _rank(name, value) < _rank(known[-1][0], value):
                    located = sorted([*known, (name, attr)], key=lambda where: _rank(where[0], value))
                    _index[id(value)] = tuple(located[:_LOCATIONS])
            except Exception:  # noqa: BLE001 - an exotic object is simply not indexed (stored by value)
                continue
    _indexed_count = len(modules)
    return _index


def _rank(module: str, value: Any) -> tuple[int, int, int, str]:
    """The module that defines the object's type first (``matplotlib.rcParams``, not ``pylab.rcParams``), then the shortest."""
    home = getattr(type(value), "__module__", "")
    if not isinstance(home, str):  # a type whose __module__ is a slot of its own (seen on 3.10)
        home = ""
    return (0 if home == module or home.startswith(module + ".") else 1, module.count("."), len(module), module)


def _is_library(name: str, module: types.ModuleType) -> bool:
    top = name.split(".")[0]
    if name == "__main__" or top in ("persistent_kernel", "builtins") or name.startswith("_") and top != "_io":
        return False
    try:
        return local_file(name, module) is None
    except Exception:  # noqa: BLE001 - an exotic module object: not indexed
        return False


def library_global(obj: Any, index: dict[int, tuple[tuple[str, str], ...]]) -> tuple[str, ...] | None:
    """Where ``obj`` is a library's global now, as ``(module, attribute, module, attribute …)``."""
    found = index.get(id(obj))
    if not found:
        return None
    places = [(module, attr) for module, attr in found if getattr(sys.modules.get(module), attr, None) is obj]
    return tuple(part for place in places for part in place) or None


def library_object(*places: str) -> Any:
    """The library's object, as it is in the restored process (its module imported if need be).

    ``places`` are ``module, attribute`` pairs, best first; the first the process has wins.
    """
    failures = []
    for module, attribute in zip(places[::2], places[1::2]):
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            failures.append(f"{module}.{attribute}: {type(exc).__name__}")
    raise LookupError(f"a library's object is not where the session had it ({'; '.join(failures)})")
