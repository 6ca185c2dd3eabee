"""The identity scan of the namespace (user name -> ``id`` of its value), kept up to date
from the namespace dict's entry table: a cell pays for the entries it changed, not for the
size of the namespace or of its history.

The full scan (``tracking.user_names``) looks at every key of the namespace, IPython's
``_iN`` history names included (one more per cell): a few tens of microseconds in C,
but each of those keys is a separate object in memory, and after the kernel has waited for
the next message most of them are out of the processor's caches (measured in a kernel:
~120 µs a cell beside 100 variables and 600 history names, where the same call repeated
takes ~30 µs).

CPython keeps a dict's items in an entry table, in insertion order: a new key is appended,
a deleted key leaves its slot empty, a rebinding replaces the value's address in place.
So a copy of the table's bytes from the last scan, compared with the table now (``memcmp``,
in blocks), says which slots changed, and only those slots' names are looked at again. A
resize makes a new table (and a new copy: a full scan, about once per doubling).

Why a slot whose bytes are unchanged holds the same name bound to the same object: the key
objects of the slots are held here, so no other object can take a key's address; the value
address is the value's ``id``, which is exactly what the full scan compares (an object freed
and another made at its address under the same name looks the same to both: the checkpointer
catches that by the cell's stored names, see ``tracking.names_loaded``). The hidden names
(IPython's own objects, a dict that also grows by a name a cell) are followed the same
way: a name whose slot changed in either dict is looked at again.

The table is found through a pointer, so it is read only while no thread but the kernel's
own runs (another thread resizing the dict meanwhile would free the table being copied) and
with the collector paused (no finalizer runs in between); otherwise the scan is made whole.
It is read from the dict's memory, so this is used only after :func:`available` has
proved, on this interpreter, that reading gives exactly the dict's items in order through
insertions, deletions, rebinding, resizes and a change of table kind (CPython 3.10 to 3.13
with the GIL); elsewhere, and for a namespace with a key that is not a ``str`` or a split
table, every scan is the full one.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import struct
import sys
from collections.abc import Mapping
from typing import Any

from . import addresses, dictversions
from .tracking import is_user_key, rebound, user_names

_WORD = struct.calcsize("P")
_MA_KEYS = 4 * _WORD  # after ob_refcnt, ob_type, ma_used, ma_version_tag
_MA_VALUES = 5 * _WORD
_BLOCKS = (512, 32, 4, 1)  # slots compared at once, level by level
_available: bool | None = None


def _table(d: dict) -> tuple[int, int, int, int] | None:
    """(entries address, slots in use, slot size, key offset in a slot) of a dict with a combined table."""
    keys = ctypes.c_void_p.from_address(id(d) + _MA_KEYS).value
    if keys is None or ctypes.c_void_p.from_address(id(d) + _MA_VALUES).value:
        return None  # a split table (an instance's dict): its values live elsewhere
    if sys.version_info >= (3, 11):
        # dk_refcnt, dk_log2_size, dk_log2_index_bytes, dk_kind, dk_version, dk_usable, dk_nentries, dk_indices
        log2_index_bytes, kind = ctypes.c_uint8.from_address(keys + _WORD + 1).value, ctypes.c_uint8.from_address(keys + _WORD + 2).value
        count = ctypes.c_ssize_t.from_address(keys + 3 * _WORD).value
        start = keys + 4 * _WORD + (1 << log2_index_bytes)
        if kind == 0:  # general keys: (hash, key, value)
            return start, count, 3 * _WORD, _WORD
        return start, count, 2 * _WORD, 0  # str keys only: (key, value)
    # 3.10: dk_refcnt, dk_size, dk_lookup, dk_usable, dk_nentries, dk_indices; entries (hash, key, value)
    size = ctypes.c_ssize_t.from_address(keys + _WORD).value
    count = ctypes.c_ssize_t.from_address(keys + 4 * _WORD).value
    width = 1 if size <= 0xFF else 2 if size <= 0xFFFF else 4 if size <= 0xFFFFFFFF else 8
    return keys + 5 * _WORD + size * width, count, 3 * _WORD, _WORD


def _slots(d: dict) -> list[tuple[int, int]] | None:
    """(key address, value address) of every slot of ``d``'s table, empty ones as (0, 0) (the self-test's: no other thread has ``d``)."""
    table = _table(d)
    if table is None:
        return None
    start, count, size, key_at = table
    raw = ctypes.string_at(start, count * size)
    return [_unpack(raw, slot, size, key_at) for slot in range(count)]


def _read(d: dict) -> tuple[bytes, int, int, int, int] | None:
    """(a copy of the table's slots, entries address, slots in use, slot size, key offset), or None
    when the table cannot be read safely now.

    The table is found through a pointer and copied in a few steps; another thread resizing
    the dict between them would free the table being copied (a crash, not a wrong answer). So
    it is read only while no thread but the kernel's own runs (``addresses.no_other_threads``,
    as for sets' tables), with the collector paused, so that no finalizer of the notebook's
    runs in between either (nothing else here runs user code). Otherwise the caller makes the
    scan whole, which is always safe.
    """
    if not _safe_to_read():
        return None
    collecting = gc.isenabled()
    gc.disable()
    try:
        table = _table(d)
        if table is None:
            return None
        start, count, size, key_at = table
        return ctypes.string_at(start, count * size), start, count, size, key_at
    finally:
        if collecting:
            gc.enable()


def _safe_to_read() -> bool:
    return addresses.no_other_threads()


def _unpack(raw: bytes, slot: int, size: int, key_at: int) -> tuple[int, int]:
    key, value = struct.unpack_from("PP", raw, slot * size + key_at)
    return key, value


def _reads_right(d: dict) -> bool:
    slots = _slots(d)
    return slots is not None and [pair for pair in slots if pair[0]] == [(id(k), id(v)) for k, v in d.items()]


def _self_test() -> bool:
    if sys.implementation.name != "cpython" or not (3, 10) <= sys.version_info[:2] <= (3, 13):
        return False
    if getattr(sys, "_is_gil_enabled", lambda: True)() is False:
        return False  # a free-threaded build has another object header
    probe: dict[Any, Any] = {f"name{i}": object() for i in range(40)}
    if not _reads_right(probe):
        return False
    before = _slots(probe)
    assert before is not None
    probe["name7"] = object()  # a rebinding: that slot's value, nothing else
    after = _slots(probe)
    if after is None or len(after) != len(before) or [i for i, (a, b) in enumerate(zip(before, after)) if a != b] != [7]:
        return False
    del probe["name3"]  # a deletion: that slot emptied, in place
    after = _slots(probe)
    if after is None or after[3] != (0, 0) or len(after) != len(before):
        return False
    key, value = "name" + str(3), object()
    probe[key] = value  # back again: appended
    after = _slots(probe)
    if after is None or len(after) != len(before) + 1 or after[-1] != (id(key), id(value)) or not _reads_right(probe):
        return False
    changes = (
        lambda d: d.update({f"more{i}": i for i in range(500)}),  # resizes
        lambda d: d.popitem(),
        lambda d: [d.pop(f"more{i}") for i in range(0, 400, 3)],
        lambda d: d.update({f"again{i}": i for i in range(300)}),
        lambda d: d.__setitem__(12345, "a key that is not a str"),  # the general table kind
        lambda d: d.update({f"late{i}": i for i in range(100)}),
    )
    for change in changes:
        change(probe)
        if not _reads_right(probe):
            return False
    return True


def available() -> bool:
    """Whether dicts' entry tables can be read on this interpreter (the self-test, run once)."""
    global _available
    if _available is None:
        try:
            _available = _self_test()
        except Exception:  # noqa: BLE001 - an unexpected layout: the full scan every time
            _available = False
    return _available


def _changed_slots(old: bytes, new: bytes, size: int) -> list[int]:
    """The slots of ``old`` (an earlier copy of the table's first slots) whose bytes differ in ``new``.

    Compared in blocks of ``_BLOCKS`` slots, each block that differs in smaller ones, down to
    single slots: a cell changes a few slots (IPython's ``_i``, ``_ii``, ``_iii``, the names it
    binds), so a few dozen ``memcmp`` calls find them in a table of thousands.
    """
    if new.startswith(old):
        return []
    changed: list[int] = []
    pending = [(0, len(old), 0)]
    while pending:
        start, end, level = pending.pop()
        step = _BLOCKS[level] * size
        for at in range(start, end, step):
            stop = min(at + step, end)
            if old[at:stop] == new[at:stop]:
                continue
            if level + 1 < len(_BLOCKS):
                pending.append((at, stop, level + 1))
            else:
                changed.append(at // size)
    changed.sort()
    return changed


class _TableCopy:
    """A copy of one dict's entry table and the key of each slot; says which keys' slots changed since."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        self._dict: dict | None = None
        self._where: tuple[int, int] | None = None  # (entries address, slot size) of the table copied
        self._raw = b""
        self._keys: list[str | None] = []  # each slot's key object (held: see the module's docstring)

    def take(self, d: dict) -> bool:
        """Copy ``d``'s table whole; False when it cannot be followed (a key that is not a str, a split table)."""
        self.forget()
        read = _read(d)
        if read is None:
            return False
        raw, start, count, size, key_at = read
        keys = _keys_at([_unpack(raw, slot, size, key_at)[0] for slot in range(count)], list(d))
        if keys is None:
            return False
        self._dict, self._where, self._raw, self._keys = d, (start, size), raw, keys
        return True

    def changed_keys(self, d: dict) -> set[str] | None:
        """The keys whose slots changed since the last copy (bound elsewhere, deleted, added), and
        the copy brought up to date; None when the table must be copied whole (``take``)."""
        read = _read(d) if d is self._dict else None
        if read is None:
            return None
        raw, start, count, size, key_at = read
        if (start, size) != self._where or count < len(self._keys):
            return None  # a new table (a resize), or slots given back (``popitem``)
        known = len(self._keys)
        touched: set[str] = set()
        for slot in _changed_slots(self._raw, raw, size):
            key_address, _value = _unpack(raw, slot, size, key_at)
            old = self._keys[slot]
            if old is None or key_address not in (0, id(old)):
                return None  # a slot used again (``popitem``, then a new key): not worth reading by itself
            touched.add(old)  # the same key bound to another object, or its slot emptied (deleted)
            if not key_address:
                self._keys[slot] = None
        if count > known:
            added = _added_keys(d, raw, range(known, count), size, key_at)
            if added is None:
                return None
            self._keys.extend(added)
            touched.update(key for key in added if key is not None)
        self._raw = raw
        return touched


def _added_keys(d: dict, raw: bytes, slots: range, size: int, key_at: int) -> list[str | None] | None:
    """The keys of the slots appended since the last copy, taken from the dict itself (its last
    keys, newest first), never from an address: another thread may have deleted one since the
    copy was made. None when they do not match the copy."""
    addresses = [_unpack(raw, slot, size, key_at)[0] for slot in slots]
    # One C call (no other thread runs during it): the dict's newest keys as they are now.
    newest = list(itertools.islice(reversed(d), sum(map(bool, addresses))))
    keys = _keys_at(addresses[::-1], newest)
    return None if keys is None else keys[::-1]


def _keys_at(addresses: list[int], live: list[Any]) -> list[str | None] | None:
    """Each slot's key: None for an empty slot (address 0), else the next of ``live`` (the dict's
    keys in the slots' order), which must be the ``str`` at that address; None when one is not."""
    following = iter(live)
    keys: list[str | None] = []
    for address in addresses:
        if not address:
            keys.append(None)
            continue
        key = next(following, None)
        if key is None or id(key) != address or type(key) is not str:
            return None
        keys.append(key)
    return keys


class NamespaceScan:
    """``user_names`` of one namespace, made again only for the names whose slots changed since the last call."""

    def __init__(self) -> None:
        self._namespace = _TableCopy()
        self._hidden = _TableCopy()
        self._forget()

    def _forget(self) -> None:
        self._namespace.forget()
        self._hidden.forget()
        self._scan: dict[str, int] = {}
        self._handed: dict[str, int] | None = None  # the scan handed out last, and the one before it
        self._previous: dict[str, int] | None = None
        self._since: tuple[set[str], set[str]] = (set(), set())  # (written, deleted) between those two

    def scan(self, namespace: dict[str, Any], hidden: Mapping[str, Any]) -> dict[str, int]:
        """``name -> id(value)`` for every user variable, as ``tracking.user_names`` gives it (a new dict)."""
        if type(namespace) is not dict or type(hidden) is not dict or not available():
            self._forget()
            return user_names(namespace, hidden)
        in_namespace = self._namespace.changed_keys(namespace)
        in_hidden = self._hidden.changed_keys(hidden) if in_namespace is not None else None
        if in_namespace is None or in_hidden is None:
            return self._read_whole(namespace, hidden)
        before: dict[str, int | None] = {}
        for name in in_namespace | in_hidden:
            if not is_user_key(name):
                continue
            before[name] = self._scan.get(name)
            value = namespace.get(name, _MISSING)
            if value is _MISSING or (name in hidden and hidden[name] is value):
                self._scan.pop(name, None)
            else:
                self._scan[name] = id(value)
        written = {name for name, ident in before.items() if name in self._scan and ident != self._scan[name]}
        deleted = {name for name, ident in before.items() if ident is not None and name not in self._scan}
        return self._hand_out(written, deleted)

    def rebound(self, before: Mapping[str, int], after: Mapping[str, int]) -> tuple[set[str], set[str]]:
        """(written, deleted) between two scans: from the slots when they are this scanner's last two."""
        if after is self._handed and before is self._previous:
            written, deleted = self._since
            return set(written), set(deleted)
        return rebound(before, after)

    def _read_whole(self, namespace: dict, hidden: dict) -> dict[str, int]:
        self._forget()
        tags = (dictversions.tag(namespace), dictversions.tag(hidden))
        followed = self._namespace.take(namespace) and self._hidden.take(hidden)
        scan = user_names(namespace, hidden)
        # The copies and the scan must show the same namespace: nothing (a finalizer the
        # collector ran in between) may have changed either dict from the first look to the last.
        if not followed or None in tags or tags != (dictversions.tag(namespace), dictversions.tag(hidden)):
            self._forget()  # not followed: the full scan again next time
            return scan
        self._scan = scan
        return self._hand_out(None, None)

    def _hand_out(self, written: set[str] | None, deleted: set[str] | None) -> dict[str, int]:
        scan = dict(self._scan)
        if written is None or deleted is None:
            self._previous, self._handed = None, scan  # a rebound() against an older scan compares the two
        else:
            self._previous, self._handed = self._handed, scan
        self._since = (written or set(), deleted or set())
        return scan


_MISSING = object()
