"""The addresses a set's hash table or an object array's buffer holds, read without running
Python code per item: the cheap proof that a set or an object array still holds the very
objects it held when last looked at (neither has a mutation counter, unlike a dict: see
``dictversions``).

- A set (CPython's ``PySetObject``): its ``fill``, ``used`` and ``mask`` words and its table
  of (item address, hash) entries, digested with xxh3-128 (about 3 ms for the 32 MiB table
  of a million items, where listing the items takes 50 ms: listing touches every item's
  memory, the digest only the table). Every ``add``, ``discard``, ``update``, ``clear`` or
  resize changes a word or an entry. When it changed, the table's live entries, in slot
  order, are the items' addresses in iteration order (``set_addresses``), compared with
  numpy where comparing the items one by one would touch each.
- An object array: its buffer is the items' addresses, one word each; a copy of them,
  compared with numpy, says which positions changed (about 1 ms for a million).

Equal addresses mean the same objects only while those objects are alive: the caller holds
them (``chunked``'s identity snapshot), so no other object can take an address meanwhile.

The set layout is read from the object's memory, so it is used only after ``available()``
has proved on this interpreter that the words are where we expect and that each kind of
change moves the digest (CPython 3.10 to 3.13 with the GIL; elsewhere the callers list and
compare the items, as without it).
"""

from __future__ import annotations

import ctypes
import struct
import sys
from typing import Any

import xxhash

_WORD = struct.calcsize("P")
_FILL = 2 * _WORD  # after ob_refcnt and ob_type: fill, used, mask, table
_TABLE = 5 * _WORD
_ENTRY = 2 * _WORD  # (key, hash)
_available: bool | None = None
_dummy: int | None = None  # the marker of a discarded item's slot (``_find_dummy``)


def _words(obj: set) -> tuple[int, int, int, int]:
    fill, used, mask, table = (ctypes.c_ssize_t * 4).from_address(id(obj) + _FILL)
    return fill, used, mask, table


def _digest(obj: set) -> bytes:
    fill, used, mask, table = _words(obj)
    hasher = xxhash.xxh3_128(struct.pack("3q", fill, used, mask))
    hasher.update(memoryview((ctypes.c_char * ((mask + 1) * _ENTRY)).from_address(table)))
    return hasher.digest()


def _table_keys(obj: set) -> list[int]:
    _fill, _used, mask, table = _words(obj)
    entries = (ctypes.c_size_t * (2 * (mask + 1))).from_address(table)
    return list(entries[0::2])


def _find_dummy() -> int | None:
    """The address of the marker a discarded item leaves in its slot (one object for every set)."""
    found = set()
    for size in (10, 1000):
        items = [f"dummy-probe-{i}" for i in range(size)]
        probe = set(items)
        probe.discard(items[0])
        found |= set(_table_keys(probe)) - set(map(id, probe)) - {0}
    return found.pop() if len(found) == 1 else None


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
    global _dummy
    _dummy = _find_dummy()
    if _dummy is None:
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
    probe.discard(items[5])
    live = [key for key in _table_keys(probe) if key not in (0, _dummy)]  # slot order: iteration order
    return _words(probe)[1] == len(probe) and live == list(map(id, probe))


def available() -> bool:
    """Whether a set's table can be read on this interpreter (the self-test, run once)."""
    global _available
    if _available is None:
        try:
            _available = _self_test()
        except Exception:  # noqa: BLE001 - an unexpected layout: compare the items instead
            _available = False
    return _available


def set_state(obj: Any) -> bytes | None:
    """A digest of an exact set's table: equal digests, while the items are held, mean the same
    objects in the same slots (so in the same order). None where tables cannot be read here."""
    if type(obj) is not set or not available():
        return None
    return _digest(obj)


def _live(obj: set, numpy: Any) -> Any:
    _fill, _used, mask, table = _words(obj)
    keys = numpy.frombuffer(memoryview((ctypes.c_uint64 * (2 * (mask + 1))).from_address(table)), dtype=numpy.uint64)[0::2]
    return keys[(keys != 0) & (keys != _dummy)]


def set_addresses(obj: Any) -> Any:
    """An exact set's items' addresses in its iteration order (a new numpy ``uint64`` array), read
    from its table without touching an item; None where tables cannot be read here, or where
    numpy is not imported (a kernel does not import it for this: it is the user's to import)."""
    numpy = sys.modules.get("numpy")
    if type(obj) is not set or numpy is None or not available():
        return None
    return _live(obj, numpy)


def array_addresses(obj: Any) -> Any:
    """A view of a contiguous numpy object array's buffer as the items' addresses, in memory
    order (numpy's ``uint64`` array), or None for an array whose items are not one block."""
    import numpy

    if obj.dtype.itemsize != 8 or not (obj.flags.c_contiguous or obj.flags.f_contiguous):
        return None
    if obj.size == 0:
        return numpy.empty(0, dtype=numpy.uint64)
    return numpy.frombuffer(memoryview((ctypes.c_uint64 * obj.size).from_address(obj.ctypes.data)), dtype=numpy.uint64)
