"""Synchronization objects are stored usable: released, without waiters, counters kept.

A lock is state of the threads of one process. After a restore those threads
are gone, so a lock stored as it was (dill stores a ``Lock`` acquired if it was
held, and an ``RLock`` with its owner's thread id and count) comes back held by
nobody who will ever release it: the next cell that takes it, or the library
object around it (the zipfile behind pandas' Excel reader, a logging handler, a
``queue.Queue``), hangs forever. So ``reduce_sync`` (called for every object
both picklers meet) stores every synchronization object as a *fresh* one of the
same class, wherever it sits in the graph:

- ``threading.Lock`` / ``_thread.allocate_lock()``, ``threading.RLock`` (C and
  Python): released, whoever held them and however often. **A lock held at
  checkpoint time, by the main thread or by a thread that will not exist after
  the restore, comes back released**: a held lock cannot be given to a thread
  of the new process, and a lock nobody can release is a hang;
- ``threading.Condition``: its lock as above (the same object if the lock is
  also stored elsewhere in the group), no waiters;
- ``threading.Semaphore`` / ``BoundedSemaphore``: the counter as it was (and the
  bound); a semaphore at 0 stays at 0, as it was;
- ``threading.Event``: its flag; ``threading.Barrier``: parties, action and
  timeout, broken if it was, no thread waiting in it;
- ``queue.Queue`` / ``LifoQueue`` / ``PriorityQueue``: maxsize, the items (a
  copy of the container: another variable holding ``q.queue`` itself no longer
  shares it) and ``unfinished_tasks`` as they were, fresh internal locks.
  ``queue.SimpleQueue`` keeps its items: they are read by taking them all out
  and putting them back (another thread using the queue at that moment may see
  them in between);
- ``asyncio.Lock`` (released), ``Event`` (flag), ``Semaphore`` /
  ``BoundedSemaphore`` (counter), ``Condition``, ``Queue`` / ``LifoQueue`` /
  ``PriorityQueue`` (items, maxsize, unfinished tasks): no waiters, bound to
  no event loop.

Subclasses keep their class and their own attributes. Threads themselves are
not reduced: they are refused by the caller (they become "recompute"), and so
is a ``concurrent.futures.Future`` not done yet (the worker that would complete
it is gone: its ``result()`` would wait forever); a done one is stored.

The stored form names only ``new_lock``, ``new_object`` and ``set_state`` in
this module, with a kind tag, so stores stay readable as the classes change.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import queue
import threading
from collections.abc import Iterator
from typing import Any

_LockType = type(threading.Lock())
_CRLock = type(threading.RLock())
_PyRLock = threading._PyRLock  # type: ignore[attr-defined]
_SimpleQueue = queue.SimpleQueue

# Classes whose instances are rebuilt by kind; the first match along the MRO wins.
_KINDS: dict[type, str] = {
    threading.Condition: "condition",
    threading.BoundedSemaphore: "semaphore",
    threading.Semaphore: "semaphore",
    threading.Event: "event",
    threading.Barrier: "barrier",
    queue.Queue: "queue",  # LifoQueue and PriorityQueue are subclasses
    asyncio.Lock: "asyncio-lock",
    asyncio.Event: "asyncio-event",
    asyncio.BoundedSemaphore: "asyncio-semaphore",
    asyncio.Semaphore: "asyncio-semaphore",
    asyncio.Condition: "asyncio-condition",
    asyncio.Queue: "asyncio-queue",
}

SYNC_TYPES: tuple[type, ...] = (_LockType, _CRLock, _PyRLock, _SimpleQueue, *_KINDS)
THREAD_TYPES: tuple[type, ...] = (threading.Thread,)  # refused: a thread does not survive its process
FUTURE_TYPES: tuple[type, ...] = (concurrent.futures.Future,)  # refused while pending: nobody would complete it

_internal_names: dict[type, frozenset[str]] = {}


def _internal(base: type) -> frozenset[str]:
    """The attributes the base class's ``__init__`` sets: everything else is the subclass's own."""
    names = _internal_names.get(base)
    if names is None:
        sample = base(1) if base is threading.Barrier else base()
        names = _internal_names[base] = frozenset(vars(sample)) | {"_loop"}
    return names


def _own_attributes(obj: Any, base: type | None) -> dict[str, Any] | None:
    attributes = getattr(obj, "__dict__", None)
    if not attributes:
        return None
    internal = _internal(base) if base is not None else frozenset()
    own = {name: value for name, value in attributes.items() if name not in internal}
    return own or None


def _base_of(kind: type) -> type:
    for cls in kind.__mro__:
        if cls in _KINDS:
            return cls
    raise TypeError(f"{kind!r} is not a synchronization class")


def _copy_items(items: Any) -> Any:
    try:
        return copy.copy(items)  # one C call for a deque or a list: no thread changes it meanwhile
    except Exception:  # noqa: BLE001 - a user container that cannot be copied is stored itself
        return items


def reduce_sync(obj: Any) -> tuple:
    """The reduction of a synchronization object (its type is in ``SYNC_TYPES``) to a fresh, usable one."""
    kind = type(obj)
    if kind is _LockType:
        return (new_lock, (True,)) if obj.locked() else (new_lock, ())
    if issubclass(kind, (_CRLock, _PyRLock)):
        held = repr(obj).startswith("<locked")  # C and Python RLocks both say so, whoever holds them
        own = _own_attributes(obj, _PyRLock if issubclass(kind, _PyRLock) else None)  # never its owner and count
        if own is None and not held:
            return (new_object, (kind,))
        return (new_object, (kind,), ("rlock", held or None, own), None, None, set_state)
    if issubclass(kind, _SimpleQueue):
        items = []
        while True:
            try:
                items.append(obj.get_nowait())
            except queue.Empty:
                break
        for item in items:
            obj.put(item)
        return (new_object, (kind,), ("simplequeue", items, _own_attributes(obj, None)), None, None, set_state)
    base = _base_of(kind)
    tag = _KINDS[base]
    if tag == "condition":
        data: Any = obj._lock
    elif tag == "semaphore":
        data = (obj._value, getattr(obj, "_initial_value", None))
    elif tag in ("event", "asyncio-event"):
        data = obj.is_set()
    elif tag == "barrier":
        data = (obj.parties, obj._action, obj._timeout, obj.broken)
    elif tag == "queue":
        data = (obj.maxsize, _copy_items(obj.queue), obj.unfinished_tasks)
    elif tag == "asyncio-lock":
        data = None
    elif tag == "asyncio-semaphore":
        data = (obj._value, getattr(obj, "_bound_value", None))
    elif tag == "asyncio-condition":
        data = obj._lock
    else:  # asyncio-queue
        data = (obj.maxsize, _copy_items(obj._queue), obj._unfinished_tasks)
    return (new_object, (kind,), (tag, data, _own_attributes(obj, base)), None, None, set_state)


_released = threading.local()  # .found: the locks made released by the loads of ``released_locks()``


@contextlib.contextmanager
def released_locks() -> Iterator[list[Any]]:
    """Collect the locks (and RLocks) that were held when stored and are made released by the loads inside."""
    found: list[Any] = []
    _released.found = found
    try:
        yield found
    finally:
        _released.found = None


def _note_released(lock: Any) -> None:
    found = getattr(_released, "found", None)
    if found is not None:
        found.append(lock)


def new_lock(was_held: bool = False) -> Any:
    """A released ``threading.Lock`` (``was_held``: it was held when stored; the restore names it)."""
    lock = threading.Lock()
    if was_held:
        _note_released(lock)
    return lock


def new_object(cls: type) -> Any:
    """An instance not initialized yet: ``set_state`` does that, once everything it refers to exists."""
    if issubclass(cls, (_CRLock, _PyRLock)):
        return cls()
    return cls.__new__(cls)


def _init_semaphore(obj: Any, data: tuple, plain: type, bounded: type) -> None:
    """A semaphore (threading or asyncio) with its counter, and its bound when it has one."""
    value, bound = data
    if bound is None:
        plain.__init__(obj, value)
    else:
        bounded.__init__(obj, bound)
        obj._value = value


def _init_event(obj: Any, flag: bool, event: type) -> None:
    event.__init__(obj)
    if flag:
        obj.set()


def set_state(obj: Any, state: tuple) -> None:
    """Initialize a synchronization object from its stored ``(kind, data, own attributes)``."""
    tag, data, own = state
    if tag == "rlock":
        if data:
            _note_released(obj)
    elif tag == "simplequeue":
        for item in data:
            obj.put(item)
    elif tag == "condition":
        threading.Condition.__init__(obj, data)
    elif tag == "semaphore":
        _init_semaphore(obj, data, threading.Semaphore, threading.BoundedSemaphore)
    elif tag == "event":
        _init_event(obj, data, threading.Event)
    elif tag == "barrier":
        parties, action, timeout, broken = data
        threading.Barrier.__init__(obj, parties, action, timeout)
        if broken:
            obj.abort()
    elif tag == "queue":
        maxsize, items, unfinished = data
        queue.Queue.__init__(obj, maxsize)
        obj.queue = items
        obj.unfinished_tasks = unfinished
    elif tag == "asyncio-lock":
        asyncio.Lock.__init__(obj)
    elif tag == "asyncio-event":
        _init_event(obj, data, asyncio.Event)
    elif tag == "asyncio-semaphore":
        _init_semaphore(obj, data, asyncio.Semaphore, asyncio.BoundedSemaphore)
    elif tag == "asyncio-condition":
        asyncio.Condition.__init__(obj, data)
    elif tag == "asyncio-queue":
        maxsize, items, unfinished = data
        asyncio.Queue.__init__(obj, maxsize)
        obj._queue = items
        obj._unfinished_tasks = unfinished
        if unfinished:
            obj._finished.clear()
    else:
        raise ValueError(f"unknown synchronization object kind {tag!r}")
    if own:
        obj.__dict__.update(own)
