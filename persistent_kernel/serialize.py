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

import io
import os
import pickle
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import xxhash

from .definitions import is_definition_object, reduce_definition
from .syncobjects import FUTURE_TYPES, SYNC_TYPES, THREAD_TYPES, reduce_sync
from .tracking import is_notebook_defined

PROTOCOL = 5


class Unserializable(Exception):
    """The group cannot be stored; ``reason`` says which object and why."""


class _NeedsDill(Exception):
    """Raised inside the stdlib pickler to switch to dill."""


def digest(data: Any) -> bytes:
    """16-byte xxh3-128 of a bytes-like object (~28 GB/s)."""
    return xxhash.xxh3_128_digest(data)


@dataclass
class Serialized:
    method: str  # "pickle" or "dill"
    payload: bytes
    buffers: list[memoryview] = field(default_factory=list)
    payload_digest: bytes = b""
    buffer_digests: list[bytes] = field(default_factory=list)

    @property
    def group_digest(self) -> str:
        """Hash of the whole group: equal means unchanged."""
        return xxhash.xxh3_128_hexdigest(self.payload_digest + b"".join(self.buffer_digests))

    @property
    def nbytes(self) -> int:
        return len(self.payload) + sum(b.nbytes for b in self.buffers)


# -- open files ------------------------------------------------------------------------

_FILE_TYPES = (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.FileIO)


def _raw_of(handle: Any) -> Any:
    raw = handle
    while hasattr(raw, "buffer") or hasattr(raw, "raw"):
        raw = getattr(raw, "buffer", None) or raw.raw
    return raw


def _reduce_file(handle: Any) -> tuple:
    """(path, mode, position, encoding, errors, closed, options) of an open file handle; see ``reopen_file``.

    What comes back exactly: the path, the mode, the kind of object (``FileIO``
    for ``buffering=0``, a buffered reader/writer/random, a text wrapper with its
    encoding, errors, newline, line buffering and write-through), and the
    position: ``tell()``, or for a text file whose ``tell()`` is disabled by
    ``next()`` the position found by ``_untellable_text_position``. Writes not
    flushed yet are flushed now (the bytes are the user's, and a handle restored
    past the end of what reached the file would leave a hole). An append handle
    needs no position to write (``O_APPEND``); its reading position (``a+``) is
    kept when it can be read. A closed handle needs no file at all.
    """
    try:
        raw = _raw_of(handle)
        mode = getattr(handle, "mode", None) or raw.mode
        encoding = getattr(handle, "encoding", None)
        errors = getattr(handle, "errors", None)
        if handle.closed:
            name = getattr(raw, "name", None)
            path = os.path.abspath(os.fsdecode(name)) if isinstance(name, (str, bytes)) else str(name)
            options = {"buffering": 0} if issubclass(type(handle), io.FileIO) else {}
            return (reopen_file, (path, mode, 0, encoding, errors, True, options))
        options = _file_options(handle)
        path = _file_path(handle, raw)
        position = _file_position(handle, path, mode)  # first: a text file's flush() would re-enable a wrong tell()
        if handle.writable():
            handle.flush()
    except (OSError, ValueError) as exc:  # a detached wrapper, a failing flush, ...
        raise Unserializable(f"{handle!r} cannot be stored: {type(exc).__name__}: {exc}") from None
    return (reopen_file, (path, mode, position, encoding, errors, False, options))


def _file_path(handle: Any, raw: Any) -> str:
    """The absolute path the handle's descriptor refers to; refused if it is no longer there (never recreated)."""
    import stat

    descriptor = raw.fileno()
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        raise Unserializable(f"{handle!r} is not a regular file")
    name = getattr(raw, "name", None)
    named = os.path.abspath(os.fsdecode(name)) if isinstance(name, (str, bytes)) else None
    candidates = [named] if named else []
    try:  # the name is relative to a directory the kernel may have left, or the handle was opened from a descriptor
        candidates.append(os.readlink(f"/proc/self/fd/{descriptor}"))
    except OSError:
        pass
    for candidate in candidates:
        try:
            found = os.stat(candidate)
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (status.st_dev, status.st_ino):
            return candidate
    if named and os.path.isfile(named):
        return named  # replaced by another file of that name: reopened by name
    raise Unserializable(f"{handle!r} is not a regular file any more: {name} was deleted or moved")


def _file_options(handle: Any) -> dict[str, Any]:
    """How to rebuild the same kind of object around the descriptor."""
    if type(handle) is io.FileIO or issubclass(type(handle), io.FileIO):
        return {"buffering": 0}
    if not issubclass(type(handle), io.TextIOWrapper):
        return {}
    return {
        "newline": _text_newline(handle),
        "line_buffering": handle.line_buffering,
        "write_through": handle.write_through,
    }


def _text_newline(handle: Any) -> str | None:
    """The ``newline`` a text file was opened with (not an attribute: read from what the wrapper holds).

    The C wrapper holds ``readnl`` (``None`` for the default) right after its
    encoder and decoder; its decoded text follows. Readable with ``newline=None``
    or ``""``, the decoder is an ``IncrementalNewlineDecoder`` and a lone ``""``
    can be either: the decoder is asked whether it translates ``\\r\\n``.
    """
    import gc

    referents = gc.get_referents(handle)
    strings = [r for r in referents if type(r) is str and r is not handle.encoding and r is not handle.errors]
    decoder = next((r for r in referents if type(r) is io.IncrementalNewlineDecoder), None)
    if not handle.readable():
        return strings[0] if strings and strings[0] in ("", "\n", "\r", "\r\n") else None
    if decoder is None:  # newline is "\n", "\r" or "\r\n"
        return strings[0] if strings and strings[0] in ("\n", "\r", "\r\n") else None
    if len(strings) >= 2 and strings[0] == "":
        return ""
    if len(strings) == 1 and strings[0] == "":
        return None if _translates(decoder, handle.encoding) else ""
    return None


def _translates(decoder: Any, encoding: str) -> bool:
    """Whether a universal-newline decoder turns ``\\r\\n`` into ``\\n``; its state, and the newlines it saw, are put back."""
    state = decoder.getstate()
    seen = decoder.newlines
    try:
        decoder.reset()
        translates = decoder.decode("\r\n".encode(encoding), final=True) == "\n"
        decoder.reset()
        for kind in (seen,) if isinstance(seen, str) else seen or ():
            decoder.decode(kind.encode(encoding), final=True)
        return translates
    except Exception:  # noqa: BLE001 - an encoding that cannot say: the default
        return True
    finally:
        decoder.setstate(state)


def _file_position(handle: Any, path: str, mode: str) -> Any:
    appending = "a" in mode
    if appending and not handle.readable():
        return None  # writes go to the end (O_APPEND) wherever the handle is
    try:
        return handle.tell()
    except OSError as exc:
        if not issubclass(type(handle), io.TextIOWrapper) or "disabled by next()" not in str(exc):
            if appending:
                return None
            raise Unserializable(f"the position of {path} cannot be read: {exc}") from None
    return _untellable_text_position(handle, path, appending)


def _stateless_encoding(encoding: str) -> bool:
    """Decoding may start at any character boundary: UTF-8 and the one-byte charmaps."""
    import codecs

    try:
        info = codecs.lookup(encoding)
    except LookupError:
        return False
    if info.name in ("utf-8", "utf-8-sig", "ascii", "iso8859-1"):
        return True
    module = sys.modules.get(getattr(info.incrementaldecoder, "__module__", ""))
    return hasattr(module, "decoding_table")


def _untellable_text_position(handle: Any, path: str, appending: bool) -> Any:
    """The position of a text file whose ``tell()`` is disabled by ``next()``.

    Not readable (``next()`` failed on a writer): the wrapper holds no text, so
    the position is the buffer's, exact. Readable: the wrapper holds the rest of
    a decoded chunk that the buffer's position is past. That rest is read out
    (character by character, until the buffer moves), the bytes before the
    buffer's position are decoded again to find where that text starts, and the
    live handle is put back there by ``seek`` (checked by reading the text again),
    so it goes on exactly as it would have; ``tell()`` then works on it again.
    Exact for UTF-8 and one-byte encodings while the file's bytes before the
    position are unchanged. Other encodings: a reading-and-appending handle is
    stored without a reading position (reopened at the end, as ``a+`` opens),
    any other is refused. Bytes changed on disk under the handle: the position
    is estimated as the buffer's minus the encoded rest.
    """
    buffer = handle.buffer
    if not handle.readable():
        return None if appending else buffer.tell()
    if not _stateless_encoding(handle.encoding):
        if appending:
            return None
        raise Unserializable(
            f"the reading position of {path} is unknown after next() in encoding {handle.encoding}; call seek() or tell() on it"
        )
    end = buffer.tell()
    rest: list[str] = []
    at_eof = False
    while True:
        char = handle.read(1)
        if not char:
            at_eof = True
            break
        if buffer.tell() != end:
            break
        rest.append(char)
    text = "".join(rest)
    position = _find_text_start(handle, end, text, at_eof)
    if position is None:
        position = max(0, end - len(text.encode(handle.encoding, handle.errors or "strict")))
    handle.seek(position)
    return position


def _find_text_start(handle: Any, end: int, text: str, at_eof: bool) -> int | None:
    """The position (a ``tell()`` cookie) from which ``handle`` reads ``text`` and then reaches byte ``end``."""
    import codecs

    low = max(0, end - 4 * len(text) - 16)  # at least four characters before the text
    data = os.pread(handle.fileno(), end - low, low)
    if low and codecs.lookup(handle.encoding).name in ("utf-8", "utf-8-sig"):
        skip = 0
        while skip < len(data) and 0x80 <= data[skip] < 0xC0:  # not inside a character
            skip += 1
        low, data = low + skip, data[skip:]
    tried: set[int] = set()
    for newlines in ("translate", "universal", None):
        decoder: Any = codecs.getincrementaldecoder(handle.encoding)(handle.errors or "strict")
        if newlines:
            decoder = io.IncrementalNewlineDecoder(decoder, translate=newlines == "translate")
        try:
            decoded = decoder.decode(data, final=at_eof)
        except UnicodeDecodeError:
            continue
        if not decoded.endswith(text) or len(decoded) - len(text) in tried:
            continue
        skipped = len(decoded) - len(text)
        tried.add(skipped)
        handle.seek(low)
        if skipped:
            handle.read(skipped)
        candidate = handle.tell()
        if handle.read(len(text)) == text:
            return candidate
    return None


def reopen_file(
    path: str,
    mode: str,
    position: Any,
    encoding: str | None,
    errors: str | None,
    closed: bool,
    options: dict[str, Any] | None = None,
) -> Any:
    """Reopen a saved file handle: same path, mode, kind and position; never truncates or creates.

    ``w`` and ``x`` handles are reopened with ``O_WRONLY`` (no ``O_TRUNC``, no
    ``O_CREAT``): the file keeps every byte, the handle continues where it was.
    An append handle writes at the end (``O_APPEND``) whatever its position; an
    ``a+`` one reads from its stored position. A closed handle is a closed
    handle of the same kind and name, made without touching the file.
    """
    options = options or {}
    appending = "a" in mode
    if closed:
        fd = os.open(os.devnull, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    else:
        flags = os.O_RDWR if "+" in mode else (os.O_RDONLY if "r" in mode else os.O_WRONLY)
        if appending:
            flags |= os.O_APPEND
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        handle = _open_descriptor(fd, mode, encoding, errors, options)
    except BaseException:
        os.close(fd)
        raise
    _raw_of(handle).name = path
    if closed:
        handle.close()
    elif position is not None and (not appending or "+" in mode):
        handle.seek(position)
    return handle


def _open_descriptor(fd: int, mode: str, encoding: str | None, errors: str | None, options: dict[str, Any]) -> Any:
    # On a descriptor, "w" and "x" neither create nor truncate: they only say what the handle may do.
    if "b" in mode:
        return open(fd, mode, buffering=options.get("buffering", -1))
    handle = open(  # noqa: SIM115
        fd,
        mode,
        buffering=1 if options.get("line_buffering") else -1,
        encoding=encoding,
        errors=errors,
        newline=options.get("newline"),
    )
    if options.get("write_through"):
        handle.reconfigure(write_through=True)
    return handle


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
    if issubclass(kind, _FILE_TYPES):
        return _reduce_file(obj)
    if issubclass(kind, types.GeneratorType):
        raise Unserializable(f"{obj!r} is a generator")
    if issubclass(kind, SYNC_TYPES):  # stored released and usable: see syncobjects
        return reduce_sync(obj)
    if issubclass(kind, THREAD_TYPES):
        raise Unserializable(f"{obj!r} is a thread")
    if issubclass(kind, FUTURE_TYPES) and not obj.done():
        raise Unserializable(f"{obj!r} is not done: nothing would complete it after a restore")
    mapped = _reduce_memmap(obj)
    if mapped is not NotImplemented:
        return mapped
    if bases:
        return _reduce_view(obj, bases)
    return NotImplemented


ByReference = Callable[[Any], "str | None"]


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
    order = "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"
    return (reopen_memmap, (os.path.abspath(obj.filename), obj.dtype, obj.mode, obj.offset, obj.shape, order))


def _by_reference(obj: Any, by_reference: ByReference | None) -> Any:
    """A notebook definition the kernel can re-create from its cell: a reference (see ``definitions``)."""
    if by_reference is None or not is_definition_object(obj):
        return NotImplemented
    key = by_reference(obj)
    return NotImplemented if key is None else reduce_definition(obj, key)


class _StdPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, bases: dict[int, Any], by_reference: ByReference | None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.bases = bases
        self.by_reference = by_reference

    def reducer_override(self, obj: Any) -> Any:
        reduced = _by_reference(obj, self.by_reference)
        if reduced is not NotImplemented:
            return reduced
        if is_notebook_defined(obj):
            raise _NeedsDill
        return _refuse_or_reduce(obj, self.bases)


def _dill_pickler(
    file: io.BytesIO, buffers: list[pickle.PickleBuffer], main: types.ModuleType, bases: dict[int, Any], by_reference: ByReference | None
) -> Any:
    import dill

    class DillPickler(dill.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            reduced = _by_reference(obj, by_reference)
            if reduced is not NotImplemented:
                return reduced
            return _refuse_or_reduce(obj, bases)

    pickler = DillPickler(file, protocol=PROTOCOL, buffer_callback=buffers.append, recurse=False, byref=False)
    pickler._main = main  # the namespace functions' __globals__ refer to
    return pickler


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
    references to their definitions (``definitions.DefinitionIndex.key_of``); the
    others are stored by value.
    """
    buffers: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    method = "pickle"
    bases = _array_bases(values)
    try:
        _StdPickler(stream, bases, by_reference, protocol=PROTOCOL, buffer_callback=buffers.append).dump(values)
    except Unserializable:
        raise
    except RecursionError as exc:
        raise Unserializable(f"too deeply nested to store ({exc})") from None
    except Exception:  # noqa: BLE001 - user objects' reducers raise anything; dill gets its turn
        method = "dill"
        buffers.clear()
        stream = io.BytesIO()
        try:
            _dill_pickler(stream, buffers, _main_module(), bases, by_reference).dump(values)
        except Unserializable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise Unserializable(f"{type(exc).__name__}: {exc}") from None
    try:
        raws = [buffer.raw() for buffer in buffers]
    except BufferError as exc:
        raise Unserializable(f"a buffer is not contiguous: {exc}") from None
    payload = stream.getvalue()
    if method == "dill" and _has_unusual_notebook_class(values, by_reference):
        # dill saves a class with a custom metaclass (an Enum, a registry) in a form that
        # may not load back, and loading it runs the metaclass. Finding out by loading it
        # here would run user code in the live kernel (invariant: a checkpoint has no
        # observable effect), so such a class stored by value is rebuilt by replay instead.
        raise Unserializable("a notebook class with a custom metaclass that is not defined at the top of a cell")
    return Serialized(method, payload, raws, digest(payload), [digest(raw) for raw in raws])


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
        if issubclass(kind, dict):
            items: Any = list(value.keys())[:100] + list(value.values())[:100]
        elif issubclass(kind, (list, tuple, set, frozenset)):
            items = list(value)[:100]
        else:
            continue
        if any(unusual(item) for item in items):
            return True
    return False


def loads(method: str, payload: bytes, buffers: list[Any], main: types.ModuleType | None = None) -> dict[str, Any]:
    """Inverse of ``dumps``; ``main`` is the module notebook code lives in (default ``__main__``)."""
    if method == "pickle":
        return pickle.loads(payload, buffers=buffers)
    if method == "dill":
        import dill

        unpickler = dill.Unpickler(io.BytesIO(payload), buffers=buffers)
        unpickler._main = main or _main_module()
        return unpickler.load()
    raise ValueError(f"unknown serialization method {method!r}")
