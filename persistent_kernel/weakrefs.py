"""Weak references stored as weak references to the objects stored with them.

``weakref.ref``, ``WeakMethod``, ``WeakValueDictionary``, ``WeakKeyDictionary``,
``WeakSet`` and ``finalize`` point at objects the notebook holds elsewhere. Two
things make them come back right:

- the sharing walk (``tracking``) follows them to their referents
  (``weak_referents``), so a weak mapping is stored in one group with the
  variables that hold its objects, and after a restore it points at those very
  objects — not at copies that die at once, leaving it silently empty;
- pickle stores the referent inside the group and the container or reference is
  made again around it (``reduce_weak``): a dead reference comes back dead, a
  reference keeps its callback, a finalizer its function, arguments and
  ``atexit`` flag.

A referent nothing else in the namespace holds is alive in the session only
through something the kernel does not store (a library's cache, a cycle not
collected yet): after a restore it is collected, as it would be there eventually.
A proxy (``weakref.proxy``) does not say what it points at: its referent is read
from the reference's C struct (CPython) and checked with ``weakref.getweakrefs``.
"""

from __future__ import annotations

import ctypes
import sys
import weakref
from typing import Any


class _Gone:
    """A referent that dies as soon as it is made: what a dead reference comes back pointing at."""

    def method(self) -> None:
        """For a dead ``WeakMethod``."""


_PROXY_TYPES = (weakref.ProxyType, weakref.CallableProxyType)
_REF_TYPES = (weakref.ref, weakref.WeakMethod, weakref.WeakValueDictionary, weakref.WeakKeyDictionary, weakref.WeakSet, weakref.finalize, *_PROXY_TYPES)
# PyWeakReference: the object header, then wr_object (the referent; None once it is dead)
_REFERENT_OFFSET = object.__basicsize__


def proxy_referent(proxy: Any) -> Any:
    """What a live proxy points at, or None (dead, or not CPython). Touches no attribute of the proxy."""
    if sys.implementation.name != "cpython":
        return None
    target = ctypes.py_object.from_address(id(proxy) + _REFERENT_OFFSET).value
    if target is None or not any(ref is proxy for ref in weakref.getweakrefs(target)):
        return None
    return target


def is_weak(obj: Any) -> bool:
    return type(obj) in _REF_TYPES


def weak_referents(obj: Any) -> list[Any]:
    """What a weak reference or container points at (for the sharing walk), or [] for anything else."""
    kind = type(obj)
    if kind is weakref.ref or kind is weakref.WeakMethod:
        target = obj()
        return [] if target is None else [target]
    if kind is weakref.WeakValueDictionary:
        return [*obj.keys(), *obj.values()]
    if kind is weakref.WeakKeyDictionary:
        return [*obj.keys(), *obj.values()]
    if kind is weakref.WeakSet:
        return list(obj)
    if kind is weakref.finalize:
        info = obj.peek()
        return [] if info is None else [info[0], info[1], *info[2], *info[3].values()]
    if kind in _PROXY_TYPES:
        target = proxy_referent(obj)
        return [] if target is None else [target]
    return []


def reduce_weak(obj: Any) -> Any:
    """A reduce tuple that makes the reference again around its (stored) referent, or NotImplemented."""
    kind = type(obj)
    if kind is weakref.ref:
        return (make_ref, (obj(), obj.__callback__))
    if kind is weakref.WeakMethod:
        return (make_weak_method, (obj(),))
    if kind is weakref.WeakValueDictionary or kind is weakref.WeakKeyDictionary:
        return (make_weak_mapping, (kind, list(obj.items())))
    if kind is weakref.WeakSet:
        return (make_weak_set, (list(obj),))
    if kind is weakref.finalize:
        info = obj.peek()
        return (make_finalize, (info, obj.atexit))
    if kind in _PROXY_TYPES:
        return (make_proxy, (proxy_referent(obj),))
    return NotImplemented


def make_ref(referent: Any, callback: Any) -> Any:
    if referent is None:
        return weakref.ref(_Gone())
    return weakref.ref(referent) if callback is None else weakref.ref(referent, callback)


def make_proxy(referent: Any) -> Any:
    return weakref.proxy(referent if referent is not None else _Gone())


def make_weak_method(method: Any) -> Any:
    return weakref.WeakMethod(method if method is not None else _Gone().method)


def make_weak_mapping(kind: type, items: list[tuple[Any, Any]]) -> Any:
    return kind(items)


def make_weak_set(items: list[Any]) -> Any:
    return weakref.WeakSet(items)


def make_finalize(info: tuple | None, atexit: bool) -> Any:
    if info is None:
        dead = weakref.finalize(_Gone(), len, ())  # its referent is gone before it could matter
        dead.detach()
        return dead
    referent, func, args, kwargs = info
    made = weakref.finalize(referent, func, *args, **kwargs)
    made.atexit = atexit
    return made
