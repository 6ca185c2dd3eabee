"""Open file handles in every mode and state survive dumps/loads: never truncated or created, positions continued.

Each case opens the same file twice (two identical copies), does the same things with both handles,
stores one, "crashes" it (its descriptor is closed under it: unflushed bytes are lost, as with
SIGKILL) and loads it. The other handle, never interrupted, is the oracle: the restored handle must
read and write exactly what it does, and both files must end up identical.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from persistent_kernel.serialize import Unserializable, dumps, loads

TEXT = "".join(f"line {i:05d} ünïcode\n" for i in range(3000))  # several 8 KiB chunks


def crash(handle) -> None:
    """Close the descriptor under the handle, then the handle: buffered bytes are lost, as in a SIGKILL."""
    os.close(handle.fileno())
    try:
        handle.close()
    except OSError:
        pass
    assert handle.closed


def store_crash_load(handle):
    """Store the handle, crash it, load it: loading changes nothing in the file (storing flushed it)."""
    s = dumps({"h": handle})
    path = Path(handle.name)
    stored = path.read_bytes()
    crash(handle)
    back = loads(s.method, s.payload, [bytearray(b) for b in s.buffers])["h"]
    assert path.read_bytes() == stored
    return back


def _next_fails(h) -> None:
    with pytest.raises(io.UnsupportedOperation):
        next(h)


def _skip_lines(n: int):
    def act(h) -> None:
        for _ in range(n):
            next(h)

    return act


def _break_out(h) -> None:
    for i, _ in enumerate(h):
        if i == 700:
            break


STATES = {
    "fresh": lambda h: None,
    "read some": lambda h: h.read(100),
    "readline": lambda h: h.readline(),
    "next once": _skip_lines(1),
    "next many": _skip_lines(450),  # into the second chunk
    "for-break": _break_out,
    "next then read": lambda h: (next(h), h.read(7)),
    "seek 0 and next": lambda h: (h.seek(0), next(h), next(h)),
    "failed next": _next_fails,
    "unflushed write": lambda h: h.write("pending ünï" if isinstance(h, io.TextIOBase) else b"pending bytes"),
    "write then failed next": lambda h: (h.write("written "), _next_fails(h)),
    "read to eof": lambda h: h.read(),
}

# (mode, buffering): the handle kinds
KINDS = [
    ("r", -1), ("r", 1), ("rb", -1), ("rb", 0),
    ("w", -1), ("w", 1), ("wb", -1), ("wb", 0),
    ("a", -1), ("a", 1), ("ab", -1), ("ab", 0),
    ("r+", -1), ("r+", 1), ("rb+", -1), ("rb+", 0),
    ("w+", -1), ("wb+", 0), ("a+", -1), ("a+", 1), ("ab+", -1), ("ab+", 0),
    ("x", -1), ("xb", 0), ("x+", -1),
]


def _applies(mode: str, state: str) -> bool:
    binary, readable, writable = "b" in mode, "r" in mode or "+" in mode, mode[0] != "r" or "+" in mode
    if readable and mode[0] in "wx" and state not in ("fresh", "unflushed write", "read to eof"):
        return False  # starts empty: nothing to read
    if readable and mode[0] == "a" and state not in ("fresh", "unflushed write", "read to eof", "seek 0 and next"):
        return False  # starts at the end: nothing to read without a seek
    if state in ("next once", "next many", "for-break", "next then read", "seek 0 and next", "read to eof"):
        return readable and not (binary and state == "next then read")
    if state in ("read some", "readline"):
        return readable
    if state in ("failed next", "write then failed next"):
        return not binary and not readable
    if state == "unflushed write":
        return writable
    return True


CASES = [(mode, buffering, state) for mode, buffering in KINDS for state in STATES if _applies(mode, state)]


def _content(mode: str) -> str | bytes:
    return TEXT.encode() if "b" in mode else TEXT


def _open_pair(tmp_path: Path, mode: str, buffering: int):
    paths = [tmp_path / "restored.txt", tmp_path / "oracle.txt"]
    if "x" not in mode:
        for path in paths:
            path.write_bytes(TEXT.encode())
    return [open(path, mode, buffering=buffering, encoding=None if "b" in mode else "utf-8") for path in paths]


def _follow_up(h) -> list:
    """What a later cell does with the handle: read on, write, read what is after. A text file that reads
    and writes is flushed first and goes to the end to write (Python's text layer writes behind its
    read-ahead otherwise), as code that mixes the two on one text file must."""
    seen = []
    text = isinstance(h, io.TextIOBase)
    if text and h.readable() and h.writable():
        h.flush()  # Python's text layer leaves a pending write behind its read-ahead otherwise
    if h.readable():
        seen += [h.read(50), h.readline()]
    if h.writable():
        if text and h.readable():
            h.seek(0, os.SEEK_END)
        h.write("<tail ü>" if text else b"<tail>")
    if h.readable():
        seen.append(h.read(20))
    return seen


@pytest.mark.parametrize(("mode", "buffering", "state"), CASES)
def test_a_handle_continues_exactly(tmp_path: Path, mode: str, buffering: int, state: str) -> None:
    mine, oracle = _open_pair(tmp_path, mode, buffering)
    for h in (mine, oracle):
        STATES[state](h)
    back = store_crash_load(mine)
    assert type(back) is type(oracle) and back.mode == oracle.mode and back.name == str(tmp_path / "restored.txt")
    if isinstance(back, io.TextIOWrapper):
        assert back.line_buffering == oracle.line_buffering and back.encoding == oracle.encoding
    assert _follow_up(back) == _follow_up(oracle)
    back.close()
    oracle.close()
    assert (tmp_path / "restored.txt").read_bytes() == (tmp_path / "oracle.txt").read_bytes()


def test_the_live_handle_goes_on_exactly_after_being_stored(tmp_path: Path) -> None:
    """Storing a handle whose tell() is disabled reads its buffered text out: it is put back where it was."""
    path = tmp_path / "f.txt"
    path.write_text(TEXT, encoding="utf-8")
    h = path.open(encoding="utf-8")
    lines = TEXT.splitlines(keepends=True)
    for _ in range(450):
        next(h)
    dumps({"h": h})
    dumps({"h": h})  # again: tell() works now
    assert next(h) == lines[450] and h.read() == "".join(lines[451:])


@pytest.mark.parametrize("newline", [None, "", "\n", "\r", "\r\n"])
@pytest.mark.parametrize("state", ["fresh", "next once", "read to eof"])
def test_newline_settings_are_kept(tmp_path: Path, newline: str | None, state: str) -> None:
    data = b"one\r\ntwo\rthree\nfour\r\n" * 700
    paths = [tmp_path / "restored.txt", tmp_path / "oracle.txt"]
    for p in paths:
        p.write_bytes(data)
    mine, oracle = (p.open("r+", newline=newline, encoding="utf-8") for p in paths)
    for h in (mine, oracle):
        STATES[state](h)
    back = store_crash_load(mine)
    assert _follow_up(back) == _follow_up(oracle)
    back.close()
    oracle.close()
    assert paths[0].read_bytes() == paths[1].read_bytes()


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp1252", "utf-8-sig"])
def test_encodings_after_next(tmp_path: Path, encoding: str) -> None:
    text = "".join(f"zeile {i} äöü é\r\n" for i in range(2000))
    path = tmp_path / "f.txt"
    path.write_text(text, encoding=encoding, newline="")
    h = path.open(encoding=encoding)
    expected = path.open(encoding=encoding)
    for _ in range(777):
        next(h)
        next(expected)
    back = store_crash_load(h)
    assert back.read() == expected.read()
    back.close()
    expected.close()


def test_utf16_after_next_is_refused_for_reading_and_kept_for_appending(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("a\nb\nc\n" * 2000, encoding="utf-16")
    reader = path.open(encoding="utf-16")
    next(reader)
    with pytest.raises(Unserializable, match="next"):
        dumps({"h": reader})
    reader.close()
    appender = path.open("a+", encoding="utf-16")
    appender.seek(0)
    next(appender)
    back = store_crash_load(appender)
    back.write("d\n")
    back.close()
    assert path.read_text(encoding="utf-16").endswith("c\nd\n")


def test_closed_handles_need_no_file(tmp_path: Path) -> None:
    for mode, buffering in KINDS:
        path = tmp_path / f"gone-{mode}-{buffering}"
        h = open(path, "x" if "x" in mode else "w")  # noqa: SIM115
        h.close()
        h = open(path, mode.replace("x", "w"), buffering=buffering)  # noqa: SIM115
        h.close()
        path.unlink()
        back = store_crash_load_closed(h)
        assert back.closed and type(back) is type(h) and back.name == str(path)
        assert not path.exists()


def store_crash_load_closed(handle):
    s = dumps({"h": handle})
    return loads(s.method, s.payload, s.buffers)["h"]


def test_a_relative_name_after_chdir_and_a_descriptor_opened_handle(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("hello world")
    monkeypatch.chdir(tmp_path / "a")
    h = open("f.txt")  # noqa: SIM115
    h.read(6)
    monkeypatch.chdir(tmp_path)
    by_fd = open(os.open(tmp_path / "a" / "f.txt", os.O_RDONLY))  # noqa: SIM115
    by_fd.read(3)
    back = loads(*_parts(dumps({"h": h, "fd": by_fd})))
    assert back["h"].read() == "world" and back["fd"].read() == "lo world"
    for handle in (h, by_fd, back["h"], back["fd"]):
        handle.close()


def _parts(s):
    return s.method, s.payload, s.buffers


def test_a_file_deleted_under_an_open_handle_is_refused_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    h = path.open("a")
    path.unlink()
    with pytest.raises(Unserializable, match="deleted or moved"):
        dumps({"h": h})
    h.close()
    assert not path.exists()


def test_old_stored_handles_still_load(tmp_path: Path) -> None:
    """A handle stored before options existed: reopen_file with six arguments."""
    from persistent_kernel.serialize import reopen_file

    path = tmp_path / "f.txt"
    path.write_text("abcdef")
    h = reopen_file(str(path), "r", 2, "utf-8", "strict", False)
    assert h.read() == "cdef"
    h.close()
    assert reopen_file(str(path), "a", 6, "utf-8", "strict", True).closed


@pytest.mark.parametrize("newline", [None, "", "\n"])
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("stop_after", [1, 2, 5])
def test_a_text_handle_left_by_next_is_left_so_by_storing_and_comes_back_so(
    tmp_path: Path, newline: str | None, encoding: str, ending: str, stop_after: int
) -> None:
    # Stock Python refuses tell() after next() until a seek; storing the handle must not
    # change that (a checkpoint has no observable effect), and the restored one refuses too.
    path = tmp_path / "lines.txt"
    path.write_bytes(ending.join(f"line{i} é" for i in range(8)).encode(encoding) + ending.encode())
    reference = path.open(encoding=encoding, newline=newline)
    live = path.open(encoding=encoding, newline=newline)
    for handle in (reference, live):
        for count, _line in enumerate(handle, start=1):
            if count == stop_after:
                break
    stored = dumps({"fh": live})
    back = loads(stored.method, stored.payload, stored.buffers)["fh"]
    expected = reference.read()
    for handle in (live, back):
        with pytest.raises(OSError, match="disabled by next"):
            handle.tell()
        assert handle.read() == expected
    for handle in (reference, live, back):
        handle.close()


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("mode", ["r", "rb", "a", "r+b"])
def test_name_stays_what_the_user_opened(tmp_path, monkeypatch, mode: str, closed: bool) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("line\n")
    handle = open("data.txt", mode)  # noqa: SIM115 - the handle is the subject
    if closed:
        handle.close()
    s = dumps({"f": handle})
    back = loads(s.method, s.payload, [])["f"]
    try:
        assert back.name == "data.txt" and back.closed is closed
        if not closed and "r" in mode:
            assert back.read(4) in ("line", b"line"), "reopened by its absolute path all the same"
    finally:
        back.close()
        handle.close()
