"""Objects ⇄ bytes plus out-of-band buffers, and their hashes. No LMDB here.

A co-variable group (``{name: value}``) is serialized in one pickle stream, so
identity between its members survives:

1. stdlib pickle, protocol 5, with ``buffer_callback``: numpy and pandas data
   leave the stream as zero-copy buffers, stored and hashed apart;
2. dill, when stdlib pickle refuses or the group holds notebook-defined
   functions or classes (stdlib pickle would save those *by name*, and an
   instance of a class redefined later would come back with the new class).
   dill saves them by value, with ``__globals__`` as a reference to ``__main__``,
   which at load time is the kernel's user namespace.

Open files are saved as (path, mode, position, and the kind of handle) and
reopened *without ever truncating or creating* the file (see ``_reduce_file``
for what is exact: every mode, buffered or not, text or binary; unflushed
writes are flushed when the handle is stored; a text file whose ``tell()`` is
disabled by ``next()`` gets its position found again; a closed handle needs no
file). Synchronization objects (locks, conditions, semaphores, events,
barriers, queues, their asyncio kinds) are stored as fresh, usable ones, in a
graph or bare: **a lock held when it is stored comes back released**, since
the thread that held it does not exist after a restore and a lock nobody can
release hangs the next cell that takes it; a semaphore keeps its counter, an
event its flag, a queue its items (see ``syncobjects``). Generators, sockets,
database connections and threads raise ``Unserializable``: the caller
recomputes them.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import sys
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import xxhash

from .chunked import MIN_ITEMS as CHUNKED_MIN_ITEMS
from .chunked import chunks_of, eligible_size, load_persistent, memory_order
from .definitionindex import is_definition_object
from .definitions import reduce_definition
from .errors import Unserializable, interruptions_as_errors
from .filehandles import FILE_TYPES, reduce_file, reopen_file  # noqa: F401 - reopen_file: stores name serialize.reopen_file
from .instances import reduce_instance
from .libraryrefs import library_global, library_object, library_objects
from .quiet import warnings_kept_out
from .shellrefs import shell_object, shell_objects
from .syncobjects import FUTURE_TYPES, SYNC_TYPES, THREAD_TYPES, reduce_sync
from .tracking import is_notebook_defined
from .weakrefs import is_weak, reduce_weak

PROTOCOL = 5
# A buffer larger than PIECES_ABOVE_BYTES (where values leave LMDB for files) is stored as
# pieces of PIECE_BYTES, each content-addressed: a small in-place change to a large array stores
# the pieces it touched, not the array again. Half the file threshold: `a[i] = x` on 1 GiB stores
# 8 MiB a cell, and a gigabyte is 128 files, mapped back in place at a restore.
PIECES_ABOVE_BYTES = 16 * 1024**2
PIECE_BYTES = 8 * 1024**2


class _NeedsDill(Exception):
    """Raised inside the stdlib pickler to switch to dill."""


def digest(data: Any) -> bytes:
    """16-byte xxh3-128 of a bytes-like object (~28 GB/s)."""
    return xxhash.xxh3_128_digest(data)


def pieces_digest(piece_digests: list[bytes]) -> bytes:
    """The digest of a buffer stored as pieces: a hash of its pieces' digests, seeded apart
    so that it never names the same key as a buffer whose bytes are those digests."""
    return xxhash.xxh3_128_digest(b"".join(piece_digests), seed=1)


def _in_pieces(raw: memoryview) -> tuple[bytes, list[tuple[bytes, memoryview]]] | None:
    """A large buffer's digest and its pieces (views into it, no copies); None for a small one."""
    if raw.nbytes <= PIECES_ABOVE_BYTES:
        return None
    pieces = [raw[start : start + PIECE_BYTES] for start in range(0, raw.nbytes, PIECE_BYTES)]
    workers = min(len(pieces) // 2, os.cpu_count() or 1)
    if workers > 1:
        # xxhash lets go of the GIL: a gigabyte is hashed on every core (~20 ms on two, ~40 ms on one)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="persistent-kernel-hash") as pool:
            digests = list(pool.map(digest, pieces))
    else:
        digests = [digest(piece) for piece in pieces]
    return pieces_digest(digests), list(zip(digests, pieces))


@dataclass
class Serialized:
    method: str  # "pickle" or "dill"
    payload: bytes
    buffers: list[memoryview] = field(default_factory=list)
    payload_digest: bytes = b""
    buffer_digests: list[bytes] = field(default_factory=list)
    # a large buffer's digest -> its pieces (digest, view), in order: stored and loaded by these
    pieces: dict[bytes, list[tuple[bytes, memoryview]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # name -> what of it will not come back exactly

    @property
    def group_digest(self) -> str:
        """Hash of the whole group: equal means unchanged."""
        return xxhash.xxh3_128_hexdigest(self.payload_digest + b"".join(self.buffer_digests))

    @property
    def nbytes(self) -> int:
        return len(self.payload) + sum(b.nbytes for b in self.buffers)


def view_of(base: Any, offset: int, shape: tuple, strides: tuple, dtype: Any) -> Any:
    """Rebuild a numpy view on its (restored) base: they share memory again."""
    import numpy

    return numpy.ndarray(shape, dtype, buffer=base, offset=offset, strides=strides)


def _reduce_view(obj: Any, bases: dict[int, Any]) -> Any:
    """A numpy view of an array in the same group is saved as a view, not a copy.

    ``bases`` maps the owner of each base array's memory (the array itself, or
    what a restored array sits on: numpy gives views of it that same ``base``)
    to the array.
    """
    numpy = sys.modules.get("numpy")
    if numpy is None or type(obj) is not numpy.ndarray or obj.base is None or obj.dtype.hasobject:
        return NotImplemented
    base = bases.get(id(obj.base))
    if base is None or base is obj:
        return NotImplemented
    offset = obj.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    low = offset + sum(min(0, stride * (n - 1)) for stride, n in zip(obj.strides, obj.shape))
    high = offset + sum(max(0, stride * (n - 1)) for stride, n in zip(obj.strides, obj.shape)) + obj.itemsize
    if obj.size == 0 or low < 0 or high > base.nbytes:
        return NotImplemented  # not inside the base's memory (another part of a shared buffer)
    return (view_of, (base, offset, obj.shape, obj.strides, obj.dtype))


def _refuse_or_reduce(obj: Any, bases: dict[int, Any]) -> Any:
    kind = type(obj)  # not isinstance(): a user __class__ property may raise
    if issubclass(kind, FILE_TYPES):
        return reduce_file(obj)
    if issubclass(kind, types.GeneratorType):
        raise Unserializable(f"{obj!r} is a generator")
    if issubclass(kind, SYNC_TYPES):  # stored released and usable: see syncobjects
        return reduce_sync(obj)
    if issubclass(kind, THREAD_TYPES):
        raise Unserializable(f"{obj!r} is a thread")
    if _is_comm(kind):
        # A widget's live channel to the frontend: a copy would be registered nowhere, so the
        # widget would load with its values and never hear from its frontend again. Rebuilt by
        # running the cells that made it, like any open connection.
        raise Unserializable("it holds a live comm to the frontend (a widget): rebuilt by running its cells again")
    if is_weak(obj):  # made again around the referents stored with it: see weakrefs
        return reduce_weak(obj)
    if issubclass(kind, FUTURE_TYPES) and not obj.done():
        raise Unserializable(f"{obj!r} is not done: nothing would complete it after a restore")
    if issubclass(kind, types.MethodType):
        return _reduce_method(obj)
    mapped = _reduce_memmap(obj)
    if mapped is not NotImplemented:
        return mapped
    if bases:
        return _reduce_view(obj, bases)
    return NotImplemented


ByReference = Callable[[Any], "str | None"]


def _is_comm(kind: type) -> bool:
    """A Jupyter comm (the ``comm`` package's, which ipykernel's and ipywidgets' build on)."""
    module = sys.modules.get("comm.base_comm")
    base = getattr(module, "BaseComm", None) if module is not None else None
    return base is not None and issubclass(kind, base)


def _reduce_method(method: types.MethodType) -> Any:
    """A bound method by the name its class holds its function under.

    pickle saves ``obj.f`` as ``getattr(obj, f.__name__)``; a method made by a decorator
    without ``functools.wraps`` has another ``__name__`` (ipywidgets' ``_handle_msg`` is a
    function named ``m``), and loading it raised AttributeError, losing the whole value.
    Read from the classes' namespaces (no ``__getattr__`` runs); a function no class
    holds is bound again as it was.
    """
    func, owner = method.__func__, method.__self__
    name = getattr(func, "__name__", None)
    mro = owner.__mro__ if issubclass(type(owner), type) else type(owner).__mro__
    if isinstance(name, str) and any(_unwrapped(vars(klass).get(name)) is func for klass in mro):
        return NotImplemented  # pickle's own reduction finds it
    for klass in mro:
        for attribute, value in list(vars(klass).items()):
            if _unwrapped(value) is func and isinstance(attribute, str):
                return (getattr, (owner, attribute))
    return (types.MethodType, (func, owner))


def _unwrapped(value: Any) -> Any:
    """The function a class attribute binds as a method (a classmethod's, or the function itself)."""
    return value.__func__ if isinstance(value, classmethod) else value


def reopen_memmap(path: str, dtype: Any, mode: str, offset: int, shape: tuple, order: str) -> Any:
    """A ``numpy.memmap`` mapped again onto its file: never created or truncated (``w+`` reopens as ``r+``)."""
    import numpy

    if not os.path.isfile(path):
        raise FileNotFoundError(f"the file behind a numpy.memmap is gone: {path}")
    return numpy.memmap(path, dtype=dtype, mode="r+" if mode == "w+" else mode, offset=offset, shape=shape, order=order)


def _reduce_memmap(obj: Any) -> Any:
    """A memmap over a whole mapping, shared with its file: saved as the mapping (path, mode, offset, shape).

    Its contents are the file's, so they are not stored (a copy-on-write ``c`` map
    keeps changes in memory only: it is stored as an array, like any other).
    """
    numpy = sys.modules.get("numpy")
    if numpy is None or type(obj) is not numpy.memmap or obj.mode not in ("r", "r+", "w+") or not obj.filename:
        return NotImplemented
    import mmap

    if not isinstance(obj.base, mmap.mmap):
        return NotImplemented  # a view of a memmap: stored as an array
    return (reopen_memmap, (os.path.abspath(obj.filename), obj.dtype, obj.mode, obj.offset, obj.shape, memory_order(obj)))


def _by_reference(obj: Any, by_reference: ByReference | None) -> Any:
    """A notebook definition the kernel can re-create from its cell: a reference (see ``definitions``)."""
    if by_reference is None or not is_definition_object(obj):
        return NotImplemented
    key = by_reference(obj)
    return NotImplemented if key is None else reduce_definition(obj, key)


@dataclass
class _Reducers:
    """What both picklers do before their own rules (``honour_hooks``: see ``instances``)."""

    bases: dict[int, Any]
    by_reference: ByReference | None
    honour_hooks: bool = False
    read_from_memory: bool = False  # an instance was stored without its class's own hooks
    shell_parts: dict[int, str] = field(default_factory=shell_objects)
    library_parts: dict[int, tuple[tuple[str, str], ...]] = field(default_factory=library_objects)

    def reduce(self, obj: Any, dill: bool) -> Any:
        path = self.shell_parts.get(id(obj))
        if path is not None:
            return (shell_object, (path,))
        found = library_global(obj, self.library_parts)
        if found is not None:
            return (library_object, found)  # the library's own object again (see libraryrefs)
        reduced = _by_reference(obj, self.by_reference)
        if reduced is not NotImplemented:
            return reduced
        if not dill and is_notebook_defined(obj):
            raise _NeedsDill
        if not self.honour_hooks:
            reduced = reduce_instance(obj)
            if reduced is not NotImplemented:
                self.read_from_memory = True
                return reduced
        return _refuse_or_reduce(obj, self.bases)


class _ContainerIds:
    """``persistent_id`` for a group holding a large plain list, dict or set: such containers go by their chunks.

    The chunks (see ``chunked``) leave the stream as out-of-band buffers, so a chunk
    already stored is not stored again. A container met twice is named by its number
    the second time, so aliases of it stay one object.
    """

    def __init__(self) -> None:
        self.serials: dict[int, int] = {}

    def __call__(self, obj: Any) -> Any:
        if not eligible_size(obj):
            return None
        serial = self.serials.get(id(obj))
        if serial is not None:
            return ("same", serial)
        found = chunks_of(obj)
        if found is None:
            return None  # not chunked: pickled as usual (the memo keeps its aliases)
        serial = self.serials[id(obj)] = len(self.serials)
        return found.persistent_id(serial)


class _StdPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, reducers: _Reducers, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.reducers = reducers

    def reducer_override(self, obj: Any) -> Any:
        return self.reducers.reduce(obj, dill=False)


class _ChunkingStdPickler(_StdPickler):
    """The same, with large plain containers by their chunks (a class apart: ``persistent_id``
    is called for every object, which only groups holding such a container pay for)."""

    def __init__(self, file: io.BytesIO, reducers: _Reducers, **kwargs: Any) -> None:
        super().__init__(file, reducers, **kwargs)
        self._containers = _ContainerIds()

    def persistent_id(self, obj: Any) -> Any:
        return self._containers(obj)


def _dill_pickler(file: io.BytesIO, buffers: list[pickle.PickleBuffer], main: types.ModuleType, reducers: _Reducers, chunking: bool) -> Any:
    import dill

    class DillPickler(dill.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            return reducers.reduce(obj, dill=True)

        if chunking:
            persistent_id = _ContainerIds()

    pickler = DillPickler(file, protocol=PROTOCOL, buffer_callback=buffers.append, recurse=False, byref=False)
    pickler._main = main  # the namespace functions' __globals__ refer to
    return pickler


def holds_large_container(values: dict[str, Any]) -> bool:
    """Whether a group's values are, or directly hold, a plain list, dict or set large enough to go by
    chunks, an object array, or a pandas object that may hold one (its object and string columns).

    A function of the values alone, so every serialization of a group (checkpoint,
    verify, a restore's checks) picks the same form and the same digest. A large
    container deeper than one level is pickled whole.
    """
    for value in values.values():
        if eligible_size(value) or _pandas_large(value):
            return True
        kind = type(value)
        if kind is dict:
            if _any_eligible(dict.values(value)):
                return True
        elif kind is list or kind is tuple:
            if _any_eligible(value):
                return True
    return False


def _any_eligible(items: Any) -> bool:
    kinds = set(map(type, items))  # in C: most containers hold no list, dict or set at all
    if list in kinds or dict in kinds or set in kinds or any(map(_array_kind, kinds)):
        return any(eligible_size(item) or _pandas_large(item) for item in items)
    return False


def _array_kind(kind: type) -> bool:
    numpy, pandas = sys.modules.get("numpy"), sys.modules.get("pandas")
    return (numpy is not None and kind is numpy.ndarray) or (pandas is not None and issubclass(kind, (pandas.DataFrame, pandas.Series, pandas.Index)))


def _pandas_large(value: Any) -> bool:
    """A pandas frame, series or index of enough cells to hold an object array that goes by chunks
    (whether one does is the pickler's question: an answer too wide costs a little time, never the digest's stability)."""
    pandas = sys.modules.get("pandas")
    return (
        pandas is not None
        and issubclass(type(value), (pandas.DataFrame, pandas.Series, pandas.Index))  # type(): a user __class__ may lie
        and value.size >= CHUNKED_MIN_ITEMS
    )


def _array_bases(values: dict[str, Any]) -> dict[int, Any]:
    """Arrays of the group whose views are saved as views, by the owner of their memory.

    An array that owns its memory is its own owner; a restored array sits on a
    buffer that is not an array (its mapped file, or the bytes loaded from LMDB).
    """
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return {}
    bases: dict[int, Any] = {}
    for value in values.values():
        if type(value) is not numpy.ndarray or not value.flags.c_contiguous or value.dtype.hasobject:
            continue
        owner = value.base
        if owner is None:
            bases[id(value)] = value
        elif not _is_array(owner):
            bases.setdefault(id(owner), value)
            bases[id(value)] = value
        elif not _is_array(owner.base) and _same_memory(value, owner):
            # numpy wraps a buffer it unpickles in an array of its own: a restored array's
            # base is that wrapper, and so is the base of every view made of it since.
            bases.setdefault(id(owner), value)
            bases[id(value)] = value
    return bases


def _same_memory(a: Any, b: Any) -> bool:
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.nbytes == b.nbytes


def _is_array(obj: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def _main_module() -> types.ModuleType:
    return sys.modules["__main__"]


def dumps(values: dict[str, Any], by_reference: ByReference | None = None) -> Serialized:
    """Serialize a group; raises Unserializable.

    ``by_reference(obj)`` names the notebook functions and classes to store as
    references to their definitions (``definitionindex.DefinitionIndex.key_of``); the
    others are stored by value.
    """
    reducers = _Reducers(_array_bases(values), by_reference)
    # pickle never asks about an exact dict, list or set: a variable that is one of a
    # library's (``from sys import path``) is named here.
    values = {
        name: _LibraryGlobal(*found) if type(value) in (dict, list, set) and (found := library_global(value, reducers.library_parts)) else value
        for name, value in values.items()
    }
    try:
        serialized = _dumps(values, reducers)
    except Unserializable:
        if not reducers.read_from_memory:
            raise
        # A notebook class's own hooks may leave out what cannot be stored (a
        # connection its __setstate__ opens again): they get a turn, and run.
        serialized = _dumps(values, _Reducers(reducers.bases, by_reference, honour_hooks=True))
    serialized.notes = _copied_views(values, reducers.bases)
    return serialized


class _LibraryGlobal:
    """Stands for a library's exact dict, list or set in a group: it unpickles as that object."""

    def __init__(self, *places: str) -> None:
        self.where = places

    def __reduce__(self) -> tuple:
        return (library_object, self.where)


def _copied_views(values: dict[str, Any], bases: dict[int, Any]) -> dict[str, str]:
    """Variables that are numpy views of an array stored elsewhere (or nowhere): they come back as copies."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return {}
    import mmap

    notes = {
        name: "a view of another array; it comes back as its own copy"
        for name, value in values.items()
        if type(value) is numpy.ndarray
        and _is_array(value.base)
        and id(value) not in bases
        and (not bases or _reduce_view(value, bases) is NotImplemented)
    }
    notes.update(
        (name, "a view of a memmap; it comes back as an array of its own (writes no longer reach the file)")
        for name, value in values.items()
        if type(value) is numpy.memmap and not isinstance(value.base, mmap.mmap)
    )
    return notes


def _dumps(values: dict[str, Any], reducers: _Reducers) -> Serialized:
    with warnings_kept_out():
        return _dumps_quietly(values, reducers)


def _dumps_quietly(values: dict[str, Any], reducers: _Reducers) -> Serialized:
    buffers: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    method = "pickle"
    chunking = holds_large_container(values)
    pickler = _ChunkingStdPickler if chunking else _StdPickler
    try:
        pickler(stream, reducers, protocol=PROTOCOL, buffer_callback=buffers.append).dump(values)
    except Unserializable:
        raise
    except RecursionError as exc:
        raise Unserializable(f"too deeply nested to store ({exc})") from None
    except Exception:  # noqa: BLE001 - user objects' reducers raise anything; dill gets its turn
        method = "dill"
        buffers.clear()
        stream = io.BytesIO()
        try:
            _dill_pickler(stream, buffers, _main_module(), reducers, chunking).dump(values)
        except Unserializable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise Unserializable(f"{type(exc).__name__}: {exc}") from None
    try:
        raws = [buffer.raw() for buffer in buffers]
    except BufferError as exc:
        raise Unserializable(f"a buffer is not contiguous: {exc}") from None
    payload = stream.getvalue()
    if method == "dill" and _has_unusual_notebook_class(values, reducers.by_reference):
        # dill saves a class with a custom metaclass (an Enum, a registry) in a form that
        # may not load back, and loading it runs the metaclass. Finding out by loading it
        # here would run user code in the live kernel (invariant: a checkpoint has no
        # observable effect), so such a class stored by value is rebuilt by replay instead.
        raise Unserializable("a notebook class with a custom metaclass that is not defined at the top of a cell")
    buffer_digests = []
    pieces = {}
    for raw in raws:
        split = _in_pieces(raw)
        if split is None:
            buffer_digests.append(digest(raw))
        else:
            buffer_digests.append(split[0])
            pieces[split[0]] = split[1]
    return Serialized(method, payload, raws, digest(payload), buffer_digests, pieces)


def _has_unusual_notebook_class(values: dict[str, Any], by_reference: ByReference | None) -> bool:
    """A notebook class with a metaclass other than ``type`` stored by value, among the values or one level inside."""

    def unusual(obj: Any) -> bool:
        cls = obj if issubclass(type(obj), type) else type(obj)
        if getattr(cls, "__module__", None) != "__main__" or type(cls) is type:
            return False
        return by_reference is None or by_reference(cls) is None

    for value in values.values():
        if unusual(value):
            return True
        kind = type(value)
        # the built-in types' own methods: a subclass's __iter__ or keys() is user code
        if issubclass(kind, dict):
            items: Any = list(dict.keys(value))[:100] + list(dict.values(value))[:100]
        elif issubclass(kind, (list, tuple)):
            items = list.__getitem__(value, slice(100)) if issubclass(kind, list) else tuple.__getitem__(value, slice(100))
        elif issubclass(kind, (set, frozenset)):
            items = list(set(value))[:100]
        else:
            continue
        if any(unusual(item) for item in items):
            return True
    return False


def loads(method: str, payload: bytes, buffers: list[Any], main: types.ModuleType | None = None) -> dict[str, Any]:
    """Inverse of ``dumps``; ``main`` is the module notebook code lives in (default ``__main__``).

    Raises only ``Exception``s (``LoadInterrupted`` for a SystemExit or an interrupt while loading).
    """
    with interruptions_as_errors("loading the value"):
        if method == "pickle":
            return _Unpickler(io.BytesIO(payload), buffers=buffers).load()
        if method == "dill":
            import dill

            class DillUnpickler(dill.Unpickler):
                persistent_load = _Unpickler.persistent_load

            unpickler = DillUnpickler(io.BytesIO(payload), buffers=buffers)
            unpickler._main = main or _main_module()
            return unpickler.load()
    raise ValueError(f"unknown serialization method {method!r}")


class _Unpickler(pickle.Unpickler):
    """Reads the large containers a group's pickle holds by their chunks (``_ContainerIds``)."""

    def persistent_load(self, pid: Any) -> Any:
        containers = self.__dict__.setdefault("_containers", {})
        return load_persistent(pid, containers)


def import_stored_module(name: str) -> types.ModuleType:
    """``importlib.import_module`` for a module a session refers to; raises only ``Exception``s."""
    with interruptions_as_errors(f"importing {name}"):
        return importlib.import_module(name)
