"""Large plain lists, dicts and sets kept as chunks: what changed since the last look, proven
cheaply, and only that pickled again.

A notebook's plain Python data — the JSON it loaded, the records a loop appends to, a
cache dict, a set of ids seen — is often one exact ``list``, ``dict`` or ``set`` of many small items. Pickling and
walking all of it after every cell that names it costs what it holds, not what the cell
did. So a container of at least ``MIN_ITEMS`` items is cut into chunks of
at most ``CHUNK_ITEMS`` consecutive items (a dict: keys and values in insertion order; a
set: its items in iteration order), each pickled on its own; the group's pickle names the container by its chunks (out-of-band
buffers, content-addressed like any other), so a changed key or an appended record
stores one chunk.

**The proof that a chunk is unchanged** (no pickling, no hashing), for exact built-in
types only:

- a chunk remembers its items themselves (the *identity snapshot*: holding them, so no
  other object can take their addresses); the container's items at those positions
  are still those very objects (``is``, compared in C);
- every item is *flat*: an atomic value (``int``, ``float``, ``complex``, ``bool``,
  ``None``, ``str``, ``bytes``: immutable, nothing inside), a tuple of atomic values
  (immutable too), or a *record* — an exact dict whose keys and values are atomic
  (a dict's keys may be atomic values or such tuples);
- a record is unchanged when its CPython mutation counter (``dictversions``) is: any
  insertion, replacement or deletion moves it. Where counters cannot be read, chunks
  holding records are not used (the container is pickled whole, as before);
- a dict container whose own counter has not moved has the same keys and values, so
  only its records are looked at;
- a set has no counter and no records (its items are hashable: atomic values and tuples
  of them). A digest of its hash table (``addresses``: the items' addresses and hashes,
  slot by slot) that has not changed proves every chunk unchanged without listing an item;
  when it has, its items, listed in iteration order in C, are compared with the snapshot.

Compared means by address (``addresses.same_objects``): the item pointers of two lists we
own, as bytes, never each item read (a user's list is copied first).

**Object arrays**: a numpy array of dtype ``object`` (pandas keeps object and, without
pyarrow, string columns in them) is chunked like a list of its items in memory order, the
same flat items only; the pickle names its shape and order. It has no counter either, but
its buffer is its items' addresses: compared with a copy of them from the last look
(``addresses``), it says which positions hold other objects, and only the chunks holding
those positions (or a record whose counter moved) are made again. An array whose items are
not one block of memory has its items listed in C and compared with the snapshot. Aliases of it stay one object; a view
of it comes back as a copy, as numpy's own pickle makes it.

**Where the chunks are**: an old chunk is kept where it still holds, looked for at its old
place and at its old place moved by the container's change in length. So one item
inserted, deleted or appended anywhere stores one chunk: a list's ``insert(0, …)``, a
dict's deleted key, a set's added item (it goes into a free slot of the hash table: the
items before it keep their places, those after it move by one). Changes at many places
store the chunks between them too. A set's resize reorders its table: every chunk is
stored again, once per doubling.

Anything else inside (a list in a record, an instance, a nested dict of dicts) makes the
container ineligible: it is pickled and walked whole, as before. One record held twice
in the container is ineligible too (chunks are separate pickles, and it would come back
as two). Inside a chunked container, atomic values keep their values but not their
identity with variables outside it, and so do tuples — as numbers already do
everywhere (``pickle`` writes them by value): ``t = rows[0]`` for a tuple gives an
equal tuple after a restore, ``t is rows[0]`` no longer holds. Records keep it: a
record another value holds (``last = rows[-1]``, ``Out[7]``) puts its chunk back into
the group's own pickle, whose memo keeps the identity.

The sharing analysis (``tracking``) reads a chunked container's reach from here: its
records, which other variables may share, without walking their contents.
"""

from __future__ import annotations

import operator
import pickle
import sys
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from typing import Any, Literal

from . import addresses, dictversions, looks

_OWN_REFERENCES = 4

CHUNK_ITEMS = 8192
MIN_ITEMS = 2 * CHUNK_ITEMS  # smaller containers are pickled whole: cheap enough
PROTOCOL = 5
ATOMIC = frozenset({int, float, complex, bool, type(None), str, bytes})
_RECORD_KINDS = ATOMIC | {dict, tuple}


@dataclass(eq=False)
class Chunk:
    """Consecutive items of a container, their pickle, and what proves them unchanged."""

    items: list[Any]  # the identity snapshot (a list's items; a dict's keys)
    values: list[Any] | None  # a dict's values at the same positions
    payload: bytes  # pickle of ``items`` (list) or ``(items, values)`` (dict)
    records: list[dict] = field(default_factory=list)  # its exact dicts: mutable, what other variables may share
    tag_reader: dictversions.TagReader | None = None
    record_tags: tuple[int, ...] = ()
    reach: frozenset[int] = frozenset()  # the ids of ``records``

    def same_items(self, items: list[Any], values: list[Any] | None, at: int = 0) -> bool:
        """Whether ``items`` (and a dict's ``values``) hold this chunk's very objects from ``at`` on (compared by address, see ``addresses``)."""
        if not addresses.same_objects(items, at, self.items):
            return False
        return values is None or self.values is not None and addresses.same_objects(values, at, self.values)

    def records_unchanged(self) -> bool:
        return self.tag_reader is None or self.tag_reader() == self.record_tags

    def held_elsewhere(self) -> bool:
        """Whether something besides the container holds one of its records (``last = rows[-1]``, ``Out[7]``).

        Then this chunk is pickled inside the group's stream, where the pickler's memo keeps
        that identity, instead of on its own. References counted: the container, this
        chunk's snapshot and ``records`` lists, and ``getrefcount``'s argument.
        """
        return bool(self.records) and max(map(sys.getrefcount, self.records)) > _OWN_REFERENCES

    def part(self) -> tuple[str, Any]:
        """What a pickle of the container holds for this chunk: its own pickle, or its items inline."""
        if self.held_elsewhere():
            return ("items", self.items if self.values is None else (self.items, self.values))
        return ("pickle", pickle.PickleBuffer(self.payload))


@dataclass(eq=False)
class Chunked:
    """A large exact list, dict, set or object array as chunks (see the module's docstring), brought up to date in place."""

    obj: Any  # held: its id is the cache key, and no other object may take it meanwhile
    chunks: list[Chunk] = field(default_factory=list)
    tag: int | None = None  # a dict's own counter when last looked at
    reach: set[int] = field(default_factory=set)  # the ids of every chunk's records, kept up to date chunk by chunk
    looked: int = -1  # the look (see ``looks``) it was last brought up to date in
    order: str = "C"  # an object array's: the order its items are listed in
    # a set's table digest or a copy of an object array's item addresses when last looked at (``addresses``)
    fingerprint: Any = None

    def persistent_id(self, serial: int) -> tuple[Any, ...]:
        """The container in a group's pickle (see ``serialize``): its kind, its number in the stream, its chunks."""
        parts = [chunk.part() for chunk in self.chunks]
        if type(self.obj) in _KIND_NAMES:
            return (_KIND_NAMES[type(self.obj)], serial, parts)
        return ("array", serial, parts, list(self.obj.shape), self.order)

    def replace_chunks(self, chunks: list[Chunk]) -> None:
        """Take ``chunks`` as the container's, changing ``reach`` by the chunks that changed only."""
        kept = set(map(id, chunks))
        for chunk in self.chunks:
            if id(chunk) not in kept:
                self.reach -= chunk.reach
        before = set(map(id, self.chunks))
        for chunk in chunks:
            if id(chunk) in before:
                continue
            if not self.reach.isdisjoint(chunk.reach):
                raise _Ineligible  # one record in two chunks would come back as two
            self.reach |= chunk.reach
        self.chunks = chunks

    def adopt_loaded(self, chunks: list[Chunk]) -> None:
        """Take the chunks a load just made as the container's. Each was unpickled from a pickle
        of its own, so no record can be in two of them: ``replace_chunks``' check is not made."""
        self.reach = set().union(*(chunk.reach for chunk in chunks))
        self.chunks = chunks


_KIND_NAMES: dict[type, str] = {list: "list", dict: "dict", set: "set"}
_cache: dict[int, Chunked] = {}


def eligible_size(obj: Any) -> bool:
    """An exact list, dict or set, or a numpy object array, large enough to be chunked
    (whether its items allow it is asked of ``chunks_of``). Asked of every object a
    chunking pickler meets: the common answers come first."""
    kind = type(obj)
    if kind is list or kind is dict or kind is set:
        return len(obj) >= MIN_ITEMS
    return is_object_array(obj) and obj.size >= MIN_ITEMS


def is_object_array(obj: Any) -> bool:
    """An exact numpy array of dtype ``object`` (numpy is never imported here)."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and type(obj) is numpy.ndarray and obj.dtype.kind == "O"


def chunks_of(obj: Any) -> Chunked | None:
    """The container's chunks, brought up to date (only changed chunks pickled again); None when not eligible."""
    if not eligible_size(obj):
        return None
    known = _cache.get(id(obj))
    if known is None or known.obj is not obj:
        known = Chunked(obj)
    elif known.looked == looks.current():
        return known
    try:
        if type(obj) is dict:
            _refresh_dict(obj, known)
        elif type(obj) is set:
            _refresh_set(obj, known)
        elif type(obj) is list:
            _refresh_list(obj, known)
        else:
            _refresh_array(obj, known)
    except (_Ineligible, RecursionError):
        _cache.pop(id(obj), None)
        return None
    look = looks.current()
    known.looked = -1 if look is None else look
    _cache[id(obj)] = known
    return known


def sweep() -> None:
    """Forget containers nothing but this cache holds any more (their memory can go)."""
    for key, entry in list(_cache.items()):
        if sys.getrefcount(entry.obj) <= 2:  # the entry and getrefcount's argument: nothing else
            del _cache[key]


def forget() -> None:
    _cache.clear()


class _Ineligible(Exception):
    pass


def _refresh_list(obj: list, known: Chunked) -> None:
    # A copy: its item pointers are read as memory (``addresses.same_objects``), which another thread must not move meanwhile.
    known.replace_chunks(_rechunk(known.chunks, obj[:], None))


def _refresh_set(obj: set, known: Chunked) -> None:
    state = addresses.set_state(obj)
    if known.chunks and state is not None and state == known.fingerprint:
        return  # the same (held) objects in the same slots: every chunk holds as it is
    known.fingerprint = None  # until the chunks are of this state
    known.replace_chunks(_rechunk(known.chunks, list(obj), None))
    # Taken before the items were listed and checked after: another thread's change in between is not mistaken for this state.
    if state is not None and state == addresses.set_state(obj):
        known.fingerprint = state


def _refresh_array(obj: Any, known: Chunked) -> None:
    order = memory_order(obj)
    if order != known.order:
        known.chunks, known.reach, known.fingerprint = [], set(), None
    known.order = order
    now = addresses.array_addresses(obj)  # a view: it follows the array
    taken = None if now is None else now.copy()
    before, known.fingerprint = known.fingerprint, None  # until the chunks are of these addresses
    flat = obj.ravel(order=order)
    if taken is not None and before is not None and known.chunks and len(before) == len(taken):
        known.replace_chunks(_rechunk_changed(known.chunks, flat, before != taken))
    else:
        known.replace_chunks(_rechunk(known.chunks, flat.tolist(), None))
    if taken is not None and bool((now == taken).all()):  # no other thread changed it meanwhile
        known.fingerprint = taken


def memory_order(obj: Any) -> Literal["C", "F"]:
    """The order a numpy array's items lie in memory ("F" for one made in Fortran order, as a
    pandas block often is): listed or reopened in that order, without a copy."""
    return "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"


def _rechunk_changed(old: list[Chunk], flat: Any, changed: Any) -> list[Chunk]:
    """An object array's chunks when its length is the same: a chunk is made again where one of
    its positions holds another object (``changed``: a boolean per position) or one of its records changed."""
    chunks: list[Chunk] = []
    start = 0
    for chunk in old:
        end = start + len(chunk.items)
        if changed[start:end].any() or not chunk.records_unchanged():
            chunk = _make_chunk(flat[start:end].tolist(), None)
        chunks.append(chunk)
        start = end
    return chunks


def _refresh_dict(obj: dict, known: Chunked) -> None:
    tag = dictversions.tag(obj)
    if known.chunks and tag is not None and tag == known.tag:
        # Same keys bound to the same objects: only records may have changed inside.
        known.replace_chunks([chunk if chunk.records_unchanged() else _make_chunk(chunk.items, chunk.values) for chunk in known.chunks])
        return
    known.replace_chunks(_rechunk(known.chunks, list(obj), list(obj.values())))
    known.tag = tag


def _rechunk(old: list[Chunk], items: list[Any], values: list[Any] | None) -> list[Chunk]:
    """The chunks of ``items`` (and a dict's ``values``): each old chunk kept where it is proven unchanged.

    An old chunk is looked for where it was, counted from the front, and where it is if
    everything before it moved by the container's change in length, counted from the back.
    So one item inserted, deleted or appended anywhere (a set's added item, a dict's deleted
    key, a list's ``insert(0, …)``) leaves every other chunk as it was: the chunks before it
    are where they were, those after it moved by one. What lies between kept chunks is cut
    anew (``_fill``).
    """
    total = len(items)
    shift = total - sum(len(chunk.items) for chunk in old)
    kept: list[tuple[int, Chunk]] = []  # (where it starts now, the chunk), in order
    floor = start = 0
    for chunk in old:
        size = len(chunk.items)
        for at in (start, start + shift) if shift else (start,):
            if floor <= at and at + size <= total and _holds(chunk, items, values, at):
                kept.append((at, chunk))
                floor = at + size
                break
        start += size
    return _fill(kept, items, values)


def _holds(chunk: Chunk, items: list[Any], values: list[Any] | None, at: int) -> bool:
    """Whether ``chunk`` is, unchanged, what the container holds from ``at`` on."""
    return chunk.same_items(items, values, at) and chunk.records_unchanged()


def _fill(kept: list[tuple[int, Chunk]], items: list[Any], values: list[Any] | None) -> list[Chunk]:
    """The kept chunks in their places and the gaps between them cut into new chunks.

    A kept chunk of fewer than ``CHUNK_ITEMS // 2`` items beside a gap is cut anew with it:
    otherwise each append would leave a chunk of one item behind.
    """
    spans: list[tuple[int, int, Chunk | None]] = []  # (start, end, the kept chunk or None for a gap), covering every item
    position = 0
    for at, kept_chunk in kept:
        if at > position:
            spans.append((position, at, None))
        position = at + len(kept_chunk.items)
        spans.append((at, position, kept_chunk))
    if position < len(items):
        spans.append((position, len(items), None))
    for index, (start, end, span_chunk) in enumerate(spans):
        beside_gap = (index > 0 and spans[index - 1][2] is None) or (index + 1 < len(spans) and spans[index + 1][2] is None)
        if span_chunk is not None and end - start < CHUNK_ITEMS // 2 and beside_gap:
            spans[index] = (start, end, None)
    chunks: list[Chunk] = []
    gap: tuple[int, int] | None = None
    for start, end, span_chunk in spans:
        if span_chunk is None:
            gap = (gap[0] if gap is not None else start, end)
            continue
        if gap is not None:
            chunks.extend(_cut(items, values, *gap))
            gap = None
        chunks.append(span_chunk)
    if gap is not None:
        chunks.extend(_cut(items, values, *gap))
    return chunks


def _cut(items: list[Any], values: list[Any] | None, start: int, end: int) -> list[Chunk]:
    """``items[start:end]`` as new chunks of equal size, at most ``CHUNK_ITEMS`` each."""
    count = -(-(end - start) // CHUNK_ITEMS)
    bounds = [start + (end - start) * index // count for index in range(count + 1)]
    return [_make_chunk(items[a:b], None if values is None else values[a:b]) for a, b in zip(bounds, bounds[1:])]


def _make_chunk(items: list[Any], values: list[Any] | None) -> Chunk:
    """A chunk of these items, checked flat, and their pickle."""
    records: list[dict] = []
    for part in (items, values) if values is not None else (items,):
        kinds = set(map(type, part))
        if kinds <= ATOMIC:
            continue
        if not kinds <= _RECORD_KINDS:
            raise _Ineligible
        dicts = [item for item in part if type(item) is dict]
        tuples = [item for item in part if type(item) is tuple]
        inner = set(map(type, chain.from_iterable(tuples)))
        if dicts:
            inner |= set(map(type, chain.from_iterable(map(dict.keys, dicts))))
            inner |= set(map(type, chain.from_iterable(map(dict.values, dicts))))
        if not inner <= ATOMIC:
            raise _Ineligible
        records.extend(dicts)
    if len(set(map(id, records))) != len(records):
        raise _Ineligible  # one record twice
    return _chunk(items, values, pickle.dumps(items if values is None else (items, values), protocol=PROTOCOL), records)


def _loaded_chunk(items: list[Any], values: list[Any] | None, payload: bytes | None) -> Chunk:
    """A chunk just loaded from what a checkpoint stored: flat by construction (only a flat chunk
    is ever stored as one, and its pickle was authenticated before it was loaded), so the
    check of every item's type ``_make_chunk`` makes is not made again; only the records are found."""
    if payload is None:
        return _make_chunk(items, values)  # it was stored inline: no pickle of its own to keep
    # A dict's keys are never records (a dict is unhashable): only a list's items and a dict's values are looked at.
    part = items if values is None else values
    # In C: the kinds first (a dict's values are seldom records), then the records picked out, no Python loop per item.
    records = list(compress(part, map(operator.is_, map(type, part), repeat(dict)))) if dict in set(map(type, part)) else []
    return _chunk(items, values, payload, records)


def _chunk(items: list[Any], values: list[Any] | None, payload: bytes, records: list[dict]) -> Chunk:
    """The chunk, with its records' counters read now (what later looks compare with)."""
    if records and not dictversions.available():
        raise _Ineligible  # no cheap proof that a record is unchanged
    reader = dictversions.tag_reader(records) if records else None
    return Chunk(items, values, payload, records, reader, reader() if reader is not None else (), frozenset(map(id, records)))


# -- loading ---------------------------------------------------------------------------
# The persistent ids' kinds ("list", "dict", "set", "array", "same") and parts ("pickle", "items") are in
# stored pickles: they must not change meaning.


def load_persistent(pid: Any, loaded: dict[int, Any]) -> Any:
    """The object a persistent id in a group's pickle stands for; ``loaded``: this stream's containers so far.

    The chunks it was loaded from become its chunks here (their stored pickles kept), so the
    first checkpoint after a restore neither pickles it again nor stores a new version of it.
    """
    kind, serial = pid[0], pid[1]
    if kind == "same":
        return loaded[serial]
    if kind not in ("list", "dict", "set", "array"):
        raise pickle.UnpicklingError(f"unknown persistent id {kind!r} (a newer persistent_kernel wrote this value?)")
    # a loaded blob is a private copy already (see ``StoreBlobs.read_blob``): kept, not copied again
    payloads = [(part if type(part) in (bytes, bytearray) else bytes(part)) if how == "pickle" else None for how, part in pid[2]]
    parts = [part if payload is None else pickle.loads(payload) for (_, part), payload in zip(pid[2], payloads)]
    if kind == "list":
        obj: Any = list(chain.from_iterable(parts))
    elif kind == "set":
        obj = set(chain.from_iterable(parts))
    elif kind == "array":
        obj = _object_array(parts, tuple(pid[3]), pid[4])
    else:
        obj = dict(zip(chain.from_iterable(keys for keys, _ in parts), chain.from_iterable(values for _, values in parts)))
    loaded[serial] = obj
    _adopt_loaded(obj, parts, payloads)
    return obj


def _object_array(parts: list[Any], shape: tuple[int, ...], order: str) -> Any:
    """An object array of this shape holding the parts' items in this memory order."""
    import numpy

    count = sum(map(len, parts))
    flat = numpy.fromiter(chain.from_iterable(parts), dtype=object, count=count)  # each item as it is: a tuple stays one item
    if len(shape) == 1:
        return flat
    layout: Literal["C", "F"] = "F" if order == "F" else "C"
    array = numpy.empty(shape, dtype=object, order=layout)
    array.ravel(order=layout)[...] = flat  # a view of the new array's memory, in that order
    return array


def _same_order(obj: set, parts: list[Any]) -> bool:
    """Whether a rebuilt set iterates over its items in the order its chunks list them."""
    return len(obj) == sum(map(len, parts)) and all(map(operator.is_, obj, chain.from_iterable(parts)))


def _as_list(items: Any) -> list[Any]:
    return items if type(items) is list else list(items)


def _adopt_loaded(obj: Any, parts: list[Any], payloads: list[bytes | None]) -> None:
    """Keep a just-loaded container's chunks (see ``load_persistent``); one that is not flat is simply not kept."""
    known = Chunked(obj)
    if type(obj) is set and not _same_order(obj, parts):
        return  # rebuilt in another order (another table size, another string hash seed): chunked anew when next looked at
    if type(obj) not in _KIND_NAMES:
        known.order = memory_order(obj)
        now = addresses.array_addresses(obj)
        known.fingerprint = None if now is None else now.copy()
    elif type(obj) is set:
        known.fingerprint = addresses.set_state(obj)
    try:
        if type(obj) is not dict:
            chunks = [_loaded_chunk(part, None, payload) for part, payload in zip(parts, payloads)]
        else:
            # the unpickled parts are this function's own lists: kept as the chunks' snapshots, not copied
            chunks = [_loaded_chunk(_as_list(keys), _as_list(values), payload) for (keys, values), payload in zip(parts, payloads)]
        known.adopt_loaded(chunks)
    except (_Ineligible, RecursionError):
        return
    known.tag = dictversions.tag(obj) if type(obj) is dict else None
    _cache[id(obj)] = known
