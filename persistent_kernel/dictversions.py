"""CPython's per-dict mutation counter, read without running Python code: the cheap proof
that a dict has not changed since it was last looked at.

CPython 3.10 to 3.13 keep a 64-bit ``ma_version_tag`` in every dict (PEP 509): each
insertion, replacement, deletion, ``clear``, ``pop``, ``update`` … stores a new value
drawn from a process-wide counter, so a dict whose tag is unchanged has the same keys
bound to the same objects. It sits right after the object header and ``ma_used``.
Nothing public exposes it, so it is read from the object's memory — and only after
:func:`available` has proved, on this interpreter, that the layout is what we expect
and that every kind of mutation moves it (a build where it is not, such as a
free-threaded one or 3.14, which dropped the field, gets ``None``: callers then compare
contents instead).

The dicts are always alive when their tags are read (the caller holds them), so the
reads are of live objects' memory.
"""

from __future__ import annotations

import ctypes
import operator
import struct
import sys
from collections.abc import Sequence
from itertools import repeat
from typing import Any

_TAG_OFFSET = 3 * struct.calcsize("P")  # ob_refcnt, ob_type, ma_used
_available: bool | None = None


def _read(obj: dict) -> int:
    return ctypes.c_uint64.from_address(id(obj) + _TAG_OFFSET).value


def _moves_on_every_mutation() -> bool:
    """The self-test: every way of changing a dict gives it a new tag, and ``ma_used`` is where we think."""
    if sys.implementation.name != "cpython" or not (3, 10) <= sys.version_info[:2] <= (3, 13):
        return False
    if getattr(sys, "_is_gil_enabled", lambda: True)() is False:
        return False  # a free-threaded build has another object header
    probe: dict[Any, Any] = {"a": 1}
    used = ctypes.c_ssize_t.from_address(id(probe) + 2 * struct.calcsize("P"))
    if used.value != 1:
        return False
    mutations = (
        lambda d: d.__setitem__("b", 2),
        lambda d: d.__setitem__("b", 3),  # replacing a value
        lambda d: d.__setitem__("b", 3.0),  # an equal value of another type
        lambda d: d.__delitem__("b"),
        lambda d: d.update(c=4),
        lambda d: d.setdefault("e", 5),
        lambda d: d.pop("e"),
        lambda d: d.popitem(),
        lambda d: d.__init__(f=6),
        lambda d: d.__ior__({"g": 7}),
        lambda d: d.clear(),
        lambda d: d.update({i: i for i in range(100)}),  # a resize
    )
    for mutate in mutations:
        before = _read(probe)
        mutate(probe)
        if _read(probe) == before:
            return False
    return used.value == len(probe)


def available() -> bool:
    """Whether tags can be read on this interpreter (the self-test, run once)."""
    global _available
    if _available is None:
        try:
            _available = _moves_on_every_mutation()
        except Exception:  # noqa: BLE001 - an unexpected layout: compare contents instead
            _available = False
    return _available


def tag(obj: dict) -> int | None:
    """The dict's mutation counter now; None when tags cannot be read here. ``obj`` must be an exact dict."""
    if type(obj) is not dict or not available():
        return None
    return _read(obj)


class TagReader:
    """Reads the tags of a fixed list of exact dicts, many at once (the caller keeps them alive).

    One ``operator.itemgetter`` over a view of the memory spanning their addresses: a
    gather in C, about 25 ns a dict, no Python code per dict. Made once per list.
    """

    def __init__(self, dicts: Sequence[dict]) -> None:
        addresses = list(map(id, dicts))
        self._count = len(addresses)
        if not addresses:
            return
        low = min(addresses)
        span = (max(addresses) - low) // 8 + 1
        # a view of the address range, made without touching it: only the gathered words are read
        self._memory = memoryview((ctypes.c_uint64 * span).from_address(low + _TAG_OFFSET)).cast("B").cast("Q")
        offsets = list(map(operator.rshift, map(operator.sub, addresses, repeat(low)), repeat(3)))  # in C: a restore reads 100,000s
        self._gather = operator.itemgetter(*offsets) if len(offsets) > 1 else (lambda memory: (memory[offsets[0]],))

    def __call__(self) -> tuple[int, ...]:
        return self._gather(self._memory) if self._count else ()


def tag_reader(dicts: Sequence[dict]) -> TagReader | None:
    """A reader of these dicts' tags, or None where tags cannot be read here."""
    return TagReader(dicts) if available() else None


class UnchangedSince:
    """The proof that none of a few exact dicts changed since it was made (``holds()``).

    Holds the dicts, so none of them can be freed and its address reused meanwhile. Made
    over anything else (a dict subclass, a build without readable tags) it never holds:
    the caller then looks at the contents, as it would without it.
    """

    def __init__(self, dicts: Sequence[Any]) -> None:
        self._dicts = list(dicts)
        exact = all(type(d) is dict for d in self._dicts) and available()
        self._reader = TagReader(self._dicts) if exact else None
        self._tags = self._reader() if self._reader is not None else None

    def holds(self) -> bool:
        return self._reader is not None and self._reader() == self._tags
