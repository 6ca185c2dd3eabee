"""The addresses a set's hash table, a list or an object array's buffer holds, read without
running Python code per item: the cheap proof that a container still holds the very objects
it held when last looked at (a set and an array have no mutation counter, unlike a dict: see
``dictversions``).

- A set (CPython's ``PySetObject``): its ``fill``, ``used`` and ``mask`` words and its table
  of (item address, hash) entries, digested with xxh3-128 (about 3 ms for the 32 MiB table
  of a million items, where listing the items takes 50 ms: listing touches every item's
  memory, the digest only the table). Every ``add``, ``discard``, ``update``, ``clear`` or
  resize changes a word or an entry.
- A list the caller owns (a chunk's snapshot, a listing of a set just made): its item
  pointers, compared as bytes (``same_objects``: a chunk of 8,192 items in ~15 µs, where
  ``is`` item by item reads each item's memory: ~0.8 ms, most of it cache misses).
- An object array: its buffer is the items' addresses, one word each; a copy of them,
  compared with numpy, says which positions changed (about 1 ms for a million).

Equal addresses mean the same objects only while those objects are alive: the caller holds
them (``chunked``'s identity snapshot), so no other object can take an address meanwhile.

The set and list layouts are read from the objects' memory, so they are used only after
``available()`` has proved on this interpreter that the words are where we expect and that
each kind of change moves the digest (CPython 3.10 to 3.13 with the GIL; elsewhere the callers list and
compare the items, as without it).
"""

from __future__ import annotations

import ctypes
import operator
import struct
import sys
import threading
from typing import Any

import xxhash

from . import dictversions

_WORD = struct.calcsize("P")
_FILL = 2 * _WORD  # after ob_refcnt and ob_type: fill, used, mask, table
_ENTRY = 2 * _WORD  # (key, hash)
_OB_ITEM = 3 * _WORD  # a list: ob_refcnt, ob_type, ob_size, then ob_item
_available: bool | None = None


def _words(obj: set) -> tuple[int, int, int, int]:
    fill, used, mask, table = (ctypes.c_ssize_t * 4).from_address(id(obj) + _FILL)
    return fill, used, mask, table


def _digest(obj: set) -> bytes:
    fill, used, mask, table = _words(obj)
    hasher = xxhash.xxh3_128(struct.pack("3q", fill, used, mask))
    hasher.update(memoryview((ctypes.c_char * ((mask + 1) * _ENTRY)).from_address(table)))
    return hasher.digest()


def _table_keys(obj: set) -> list[int]:  # the self-test's
    _fill, _used, mask, table = _words(obj)
    entries = (ctypes.c_size_t * (2 * (mask + 1))).from_address(table)
    return list(entries[0::2])


def _self_test() -> bool:
    if sys.implementation.name != "cpython" or not (3, 10) <= sys.version_info[:2] <= (3, 13):
        return False
    if getattr(sys, "_is_gil_enabled", lambda: True)() is False:
        return False  # a free-threaded build has another object header
    items = [f"probe-{i}" for i in range(100)]
    probe = set(items)
    fill, used, mask, _table = _words(probe)
    if used != len(probe) or fill < used or mask + 1 < len(probe) or mask & (mask + 1):
        return False
    if not set(map(id, items)) <= set(_table_keys(probe)):
        return False
    extra = "probe-extra"
    changes = (
        lambda s: s.add(extra),
        lambda s: s.discard(extra),
        lambda s: s.add(extra),  # back where it was: a dummy slot stays behind
        lambda s: s.update(f"more-{i}" for i in range(200)),  # a resize
        lambda s: s.pop(),
        lambda s: s.clear(),
        lambda s: s.update(items),
    )
    for change in changes:
        before = _digest(probe)
        change(probe)
        if _digest(probe) == before:
            return False
    if _words(probe)[1] != len(probe):
        return False
    return _lists_read_right(items)


def _lists_read_right(items: list) -> bool:
    """A list's ``ob_size`` and ``ob_item`` are where we read them, through growth and shrinking."""
    probe: list = []
    for _ in range(3):
        probe.extend(items)
        size = ctypes.c_ssize_t.from_address(id(probe) + 2 * _WORD).value
        pointers = (ctypes.c_size_t * len(probe)).from_address(_ob_item(probe))
        if size != len(probe) or list(pointers) != list(map(id, probe)):
            return False
    del probe[5:]
    pointers = (ctypes.c_size_t * len(probe)).from_address(_ob_item(probe))
    return list(pointers) == list(map(id, probe))


def available() -> bool:
    """Whether sets' tables and lists' item arrays can be read on this interpreter (the self-test, run once)."""
    global _available
    if _available is None:
        try:
            _available = _self_test()
        except Exception:  # noqa: BLE001 - an unexpected layout: compare the items instead
            _available = False
    return _available


def set_state(obj: Any) -> bytes | None:
    """A digest of an exact set's table: equal digests, while the items are held, mean the same
    objects in the same slots (so in the same order). None where tables cannot be read here, or
    not safely now (``_alone``), or when the set changed while it was read."""
    if type(obj) is not set or not available() or not _alone():
        return None
    words = _words(obj)
    digest = _digest(obj)
    return digest if _words(obj) == words else None


# The threads of the kernel itself (ipykernel's IOPub, heartbeat, control and shell-channel
# threads, IPython's history saver, the store's and the writer's): none of them changes a
# user's set.
_KERNEL_PACKAGES = frozenset({"ipykernel", "IPython", "jupyter_client", "zmq", "tornado", "persistent_kernel"})


def _alone() -> bool:
    """Whether no thread but the kernel's own is running besides this one.

    A set's table is read where it is, and hashing it lets other threads run: a thread of the
    notebook's (or of a library's) adding to the set could grow it meanwhile, freeing the
    table being read. So the digest is taken only while no such thread exists; otherwise the
    items are listed, which is always safe.
    """
    me = threading.current_thread()
    frames = None
    for thread in threading.enumerate():
        if thread is me:
            continue
        target = getattr(thread, "_target", None) or getattr(thread, "function", None)  # a Timer's is its function
        module = getattr(target, "__module__", None) if target is not None else None
        if module is None and type(thread).__module__ != "threading":
            module = type(thread).__module__
        if module is None:  # a plain Thread running its own run(): where its outermost frame is
            frames = sys._current_frames() if frames is None else frames
            module = _outermost_module(frames.get(thread.ident or -1))
        if (module or "").partition(".")[0] not in _KERNEL_PACKAGES:
            return False
    return True


_threads_seen: tuple[int | None, int | None, bool] | None = None  # threading's two tables' tags, and _alone() then


def no_other_threads() -> bool:
    """``_alone()``, looked at again only when a thread was started or ended since (the
    mutation counters of ``threading``'s tables of threads moved): every cell asks."""
    global _threads_seen
    tags = (dictversions.tag(threading._active), dictversions.tag(threading._limbo))  # type: ignore[attr-defined]
    seen = _threads_seen
    if seen is not None and None not in tags and seen[:2] == tags:
        return seen[2]
    alone = _alone()
    _threads_seen = (tags[0], tags[1], alone)
    return alone


def _outermost_module(frame: Any) -> str | None:
    module = None
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name != "threading":
            module = name
        frame = frame.f_back
    return module


def _list_items(obj: list) -> memoryview | None:
    """A view of an exact list's item pointers, as bytes (its ``ob_item`` array, one word an
    item), or None where lists cannot be read here. Valid while the list is not changed: only
    for lists the caller owns (a snapshot, a listing just made), never a user's list, which
    another thread may grow (and so move) between two of our bytecodes."""
    if type(obj) is not list or not available():
        return None
    if not obj:
        return memoryview(b"")
    return memoryview((ctypes.c_char * (len(obj) * _WORD)).from_address(_ob_item(obj))).cast("B")


def _ob_item(obj: list) -> int:
    return ctypes.c_size_t.from_address(id(obj) + _OB_ITEM).value


def same_objects(items: list, at: int, snapshot: list) -> bool:
    """Whether ``items[at:at + len(snapshot)]`` are the very objects of ``snapshot``: their
    pointers compared as bytes, in C, without touching an item (``is`` one by one reads every
    item's memory). Both are lists the caller owns (see ``_list_items``); ``snapshot`` holds its
    objects, so no other object has their addresses."""
    end = at + len(snapshot)
    if end > len(items):
        return False
    whole, part = _list_items(items), _list_items(snapshot)
    if whole is None or part is None:
        return all(map(operator.is_, items[at:end], snapshot))
    return whole[at * _WORD : end * _WORD].tobytes() == part.tobytes()


def array_addresses(obj: Any) -> Any:
    """A view of a contiguous numpy object array's buffer as the items' addresses, in memory
    order (numpy's ``uint64`` array), or None for an array whose items are not one block."""
    import numpy

    if obj.dtype.itemsize != 8 or not (obj.flags.c_contiguous or obj.flags.f_contiguous):
        return None
    if obj.size == 0:
        return numpy.empty(0, dtype=numpy.uint64)
    return numpy.frombuffer(memoryview((ctypes.c_uint64 * obj.size).from_address(obj.ctypes.data)), dtype=numpy.uint64)
