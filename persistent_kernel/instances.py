"""Instances of notebook classes stored from their memory, without running their code.

Pickle asks an object how to store it: ``__reduce_ex__``, ``__reduce__``,
``__getstate__``, ``__getnewargs_ex__`` (looked up on the instance, so a user
``__getattr__`` answers when they are missing), and ``__iter__``/``items()`` for a
list or dict subclass. In a notebook those are user code: they print into the
cell that is being checkpointed, append to logs, open files. Invariant 7 of the
design: a checkpoint has no observable effect on the program. So an instance of
a class defined in the notebook is stored from what it *is* — its ``__dict__``,
its slots, its list/dict/set items, read through the built-in types' own
methods — and rebuilt the same way: ``base.__new__(cls)`` and the state written
back without ``__init__``, ``__setstate__`` or a user ``__setattr__``.

This is what stock pickle does for a class with no hooks of its own. For a class
whose hooks *drop* something (``__getstate__`` that leaves out a connection), the
dropped value is stored too when it can be; when it cannot,
``serialize.dumps`` tries again through the class's own hooks
(``honour_hooks``), which then do run, once, for that group only.
"""

from __future__ import annotations

import abc
import enum
import typing
from typing import Any

from .tracking import MAIN, instance_dict, slot_values

# Built-in bases whose instances are rebuilt here: their contents are read and
# written through the base type's own methods (never the subclass's overrides).
_BASES = (object, list, dict, set)
_STATELESS_MARKERS = (abc.ABC, typing.Generic, typing.Protocol)


def _is_notebook_class(cls: type) -> bool:
    return cls.__dict__.get("__module__") == MAIN


def _built_in_base(cls: type) -> type | None:
    """The one base of ``_BASES`` under the notebook classes of ``cls``'s MRO, or None.

    None when any other class is in the way: a library class knows how to store
    itself (a DataFrame subclass, an exception, a NamedTuple's tuple).
    """
    for klass in cls.__mro__:
        if _is_notebook_class(klass):
            continue
        if klass in _BASES:
            return klass
        if klass in _STATELESS_MARKERS:
            continue  # class Foo(ABC), class Box(Generic[T]), class Shape(Protocol)
        return None
    return None


def reduce_instance(obj: Any) -> Any:
    """A reduce tuple for an instance of a notebook class, or NotImplemented (stored as pickle would)."""
    cls = type(obj)
    if not _is_notebook_class(cls) or issubclass(type(cls), enum.EnumMeta):
        return NotImplemented  # an Enum member is stored by name, as its class says
    base = _built_in_base(cls)
    if base is None:
        return NotImplemented
    items: Any = None
    if base is list:
        items = list.copy(obj)
    elif base is dict:
        items = list(dict.items(obj))
    elif base is set:
        items = list(set.__iter__(obj))
    state = (instance_dict(obj), slot_values(obj, cls) or None, items)
    return (new_instance, (cls, base), state, None, None, set_instance_state)


def new_instance(cls: type, base: type) -> Any:
    """An empty instance, without the class's ``__new__`` or ``__init__``."""
    return base.__new__(cls)


def set_instance_state(obj: Any, state: tuple) -> None:
    """Write back what ``reduce_instance`` read, through the built-in types (no user hooks)."""
    attributes, slots, items = state
    if attributes:
        object.__getattribute__(obj, "__dict__").update(attributes)
    for name, value in (slots or {}).items():
        object.__setattr__(obj, name, value)
    if items is None:
        return
    kind = type(obj)  # not isinstance(): a user __class__ property would answer
    if issubclass(kind, dict):
        dict.update(obj, items)
    elif issubclass(kind, list):
        list.extend(obj, items)
    else:
        set.update(obj, items)
