"""Open file handles stored as where they point, and reopened there (never truncating or creating a file).

``reduce_file`` gives pickle (path, mode, position, encoding, errors, closed,
options); ``reopen_file`` opens the same kind of handle at the same place. See
``reduce_file`` for what is exact.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from .errors import Unserializable

FILE_TYPES = (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.FileIO)


def _raw_of(handle: Any) -> Any:
    raw = handle
    while hasattr(raw, "buffer") or hasattr(raw, "raw"):
        raw = getattr(raw, "buffer", None) or raw.raw
    return raw


def reduce_file(handle: Any) -> tuple:
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
        name = getattr(raw, "name", None)
        if handle.closed:
            path = os.path.abspath(os.fsdecode(name)) if isinstance(name, (str, bytes)) else str(name)
            options = {"buffering": 0} if issubclass(type(handle), io.FileIO) else {}
            return (reopen_file, (path, mode, 0, encoding, errors, True, _with_name(options, name, path)))
        options = _file_options(handle)
        path = _file_path(handle, raw)
        options = _with_name(options, name, path)
        position, after_next = _file_position(handle, path, mode)  # first: a text file's flush() would re-enable a wrong tell()
        if handle.writable():
            handle.flush()
        if after_next and position is not None:
            options["after_next"] = as_next_left_it(handle, position)
    except (OSError, ValueError) as exc:  # a detached wrapper, a failing flush, ...
        raise Unserializable(f"{handle!r} cannot be stored: {type(exc).__name__}: {exc}") from None
    return (reopen_file, (path, mode, position, encoding, errors, False, options))


def _with_name(options: dict[str, Any], name: Any, path: str) -> dict[str, Any]:
    """``.name`` stays what the user opened (``'data.txt'``, not the absolute path the handle is reopened by)."""
    if isinstance(name, (str, bytes)) and name != path:
        return {**options, "name": name}
    return options


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


def _file_position(handle: Any, path: str, mode: str) -> tuple[Any, bool]:
    """The position to reopen at, and whether ``next()`` had disabled ``tell()`` (see ``as_next_left_it``)."""
    appending = "a" in mode
    if appending and not handle.readable():
        return None, False  # writes go to the end (O_APPEND) wherever the handle is
    try:
        return handle.tell(), False
    except OSError as exc:
        if not issubclass(type(handle), io.TextIOWrapper) or "disabled by next()" not in str(exc):
            if appending:
                return None, False
            raise Unserializable(f"the position of {path} cannot be read: {exc}") from None
    return _untellable_text_position(handle, path, appending), True


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


def as_next_left_it(handle: Any, position: int) -> bool:
    """Put a text handle at ``position`` as ``next()`` leaves it: ``tell()`` refused, as before it was stored.

    ``seek`` (how the position was found) makes ``tell()`` work again; a program
    that relies on the refusal would see the checkpoint. The line that ends at
    ``position`` is read again with ``next()``, which leaves the handle right there
    with ``tell()`` disabled. False (the handle left at ``position``, ``tell()``
    working) when the position is not at the end of a line that reads back the same.
    """
    if position <= 0 or not handle.readable():
        return False
    low = max(0, position - 65536)
    data = os.pread(handle.fileno(), position - low, low)
    if not data.endswith((b"\n", b"\r")):
        return False
    body = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    cut = max(body.rfind(b"\n"), body.rfind(b"\r"))
    if cut < 0 and low > 0:
        return False  # a line longer than the window: not worth a guess
    try:
        expected = data[cut + 1 :].decode(handle.encoding, handle.errors or "strict")
    except UnicodeDecodeError:
        return False
    if _text_newline(handle) is None:  # universal newlines, translated
        expected = expected.replace("\r\n", "\n").replace("\r", "\n")
    handle.seek(low + cut + 1)
    if next(handle, None) == expected:
        return True
    handle.seek(position)
    return False


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
    _raw_of(handle).name = options.get("name", path)
    if closed:
        handle.close()
    elif position is not None and (not appending or "+" in mode):
        handle.seek(position)
        if options.get("after_next"):
            as_next_left_it(handle, position)
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
