"""The replay engine: re-running journaled cells to rebuild what could not be stored.

Shared by the restore and time travel (which cells to replay is ``restoreplan``'s):
what a replayed cell read bound as it stood before it ran (``bind_reads_as_of``, with
objects rewound and forwarded again), the random state it drew from
(``random_state_at``), one cell run with its guards (``replay_cell``: no input, no
file changes, threads it starts waited for) and every output suppressed
(``quiet_output``; ``%persist`` does nothing inside it, ``is_replaying``).
"""

from __future__ import annotations

import builtins
import contextlib
import getpass
import io
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .checkpoint import NameState
from .context import apply_random_state
from .definitionreplay import DefinitionReplayer
from .definitions import old_versions
from .loading import load_version, loadable
from .records import LIVE, CellRecord, Version
from .tracking import instance_dict


def definition_replayer(shell: Any, store: Any, by_seq: dict[int, CellRecord], plan: ReplayPlan | None = None, cache: dict | None = None) -> DefinitionReplayer:
    """Re-creates notebook definitions stored by reference, from their cells' definition statements.

    What a definition's cell read is bound as it stood before that cell, unless the
    name is loaded already (``plan``) from a version older than the cell.
    """
    plan = plan or ReplayPlan()
    cache = {} if cache is None else cache

    def value_before(name: str, seq: int) -> tuple[bool, Any]:
        if name in shell.user_ns and name in plan.stored_at and plan.stored_at[name] < seq:
            return False, None  # bound already, and unchanged since before that cell
        value = stored_value_before(shell.user_module, store, name, seq, cache)
        return value is not MISSING, value

    def guard() -> Any:
        return contextlib.nullcontext() if is_replaying() else quiet_output(shell)

    return DefinitionReplayer(shell, by_seq.get, value_before, guard)


MISSING = object()


@dataclass
class ReplayPlan:
    stored: dict[str, Any] = field(default_factory=dict)  # name -> the loaded object (or module)
    stored_at: dict[str, int] = field(default_factory=dict)  # name -> the cell its stored value is from
    deleted: set[str] = field(default_factory=set)  # names the session deleted
    live: set[str] = field(default_factory=set)  # names the session has
    versions: dict[str, Version] = field(default_factory=dict)  # loaded version key -> version
    rebuild: dict[str, str] = field(default_factory=dict)  # name -> why it must be recomputed
    cells: dict[str, set[int]] = field(default_factory=dict)  # name -> cells that rebuild it
    states: dict[str, NameState] = field(default_factory=dict)
    recompute_states: dict[str, NameState] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)  # rebuilt names the store meant to hold (see restoreplan.NamesPlan)
    based: set[str] = field(default_factory=set)  # rebuilt from an earlier version: replay only the cells since
    helpers: set[str] = field(default_factory=set)  # other names bound only so those cells can run
    # name -> (the earlier version bound for a rebuild, its cell): a cell replayed from before that
    # cell (for another name) must neither see nor change it
    bases: dict[str, tuple[Any, int, Version]] = field(default_factory=dict)
    excluded: set[str] = field(default_factory=set)  # never stored (%persist exclude): rebuilt if cheap
    # name -> the restored objects given their contents from before a replayed cell, with their latest contents
    rewound: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)


def bind_reads_as_of(main: Any, ns: dict[str, Any], store: Any, plan: ReplayPlan, record: CellRecord, cache: dict) -> None:
    """Before replaying a cell: what it reads and deletes, as it stood before it ran.

    The namespace holds the latest stored values; ``big += n; n += 1`` replayed
    with the latest ``n`` would add the wrong amount. Stored names the cell read
    and a later cell changed are bound to their version from before the cell;
    after the replay ``_keep_newest`` binds the latest ones again. A name the
    session no longer has (``a = 1``, then ``del a; g = …``) is bound too, from
    its version before the cell, or as a placeholder when the cell only deletes
    it; the restore removes such names again after the replay.
    """
    deletes = set(record.deletes or ())
    for name in (*(record.reads or ()), *deletes):
        absent = name not in ns
        before_base = name in plan.bases and plan.bases[name][1] >= record.seq
        if not absent and not before_base and (name in plan.based or name not in plan.stored or plan.stored_at.get(name, 0) < record.seq):
            continue
        value = stored_value_before(main, store, name, record.seq, cache)
        if value is not MISSING:
            current = ns.get(name, MISSING)
            if current is not MISSING and name in plan.stored and current is plan.stored[name] and _rewind(plan, name, current, value):
                continue  # the restored object itself, as it was before the cell: what the cell builds shares it
            ns[name] = value
        elif absent and name in deletes:
            ns[name] = None  # the cell deletes it; what it was does not matter


def contents_of(obj: Any) -> Any:
    """A shallow copy of what a mutable container (or a plain instance) holds, or MISSING."""
    kind = type(obj)
    if kind is list:
        return obj[:]
    if kind is dict:
        return dict(obj)
    if kind is set:
        return set(obj)
    if kind is bytearray:
        return bytes(obj)
    if kind.__module__ == "__main__" and not any("__slots__" in vars(klass) for klass in kind.__mro__):
        state = instance_dict(obj)
        if state is not None:
            return dict(state)
    return MISSING


def fill_with(obj: Any, contents: Any) -> None:
    """Make ``obj`` hold ``contents`` (from ``contents_of``), in place: its identity is kept."""
    kind = type(obj)
    if kind is list or kind is bytearray:
        obj[:] = contents
    elif kind is dict or kind is set:
        obj.clear()
        obj.update(contents)
    else:
        state = instance_dict(obj)
        if state is None:
            raise TypeError(f"a {kind.__name__} keeps no contents of its own to restore")
        state.clear()
        state.update(contents)


REWIND_DEPTH = 4  # levels of containers and instances a rewind walks into


def _rewind(plan: ReplayPlan, name: str, obj: Any, before: Any) -> bool:
    """Give the restored ``obj`` the contents it had before a replayed cell, to be put forward after it.

    ``g = (x for x in data)`` replayed after ``data.append(4)`` must iterate the
    restored ``data`` itself, as it did before the crash, not an older copy. The
    rewind is structural: an element that is itself a container or a plain instance
    (matched by key, position or attribute) is the restored object rewound too, so a
    ``WeakValueDictionary(items)`` replayed holds the restored items.
    """
    if type(before) is not type(obj) or name in plan.rewound or contents_of(obj) is MISSING:
        return False
    saved: list[tuple[Any, Any]] = []
    try:
        _rewind_object(obj, before, saved, set(), REWIND_DEPTH)
    except Exception:  # noqa: BLE001 - a bytearray with an exported buffer cannot change size
        for changed, latest in reversed(saved):
            with contextlib.suppress(Exception):
                fill_with(changed, latest)
        return False
    plan.rewound[name] = saved
    return True


def _rewind_object(current: Any, before: Any, saved: list[tuple[Any, Any]], seen: set[int], depth: int) -> Any:
    """``current`` holding what ``before`` held, its elements matched to the current ones; returns the object to hold."""
    if depth <= 0 or type(before) is not type(current) or id(current) in seen:
        return current if id(current) in seen else before
    latest = contents_of(current)
    earlier = contents_of(before)
    if latest is MISSING or earlier is MISSING:
        return before
    seen.add(id(current))

    def match(now: Any, then: Any) -> Any:
        if now is MISSING or type(now) is not type(then) or contents_of(now) is MISSING:
            return then
        return _rewind_object(now, then, saved, seen, depth - 1)

    if type(earlier) is dict:
        earlier = {key: match(latest.get(key, MISSING), value) for key, value in earlier.items()}
    elif type(earlier) is list:
        earlier = [match(latest[i] if i < len(latest) else MISSING, value) for i, value in enumerate(earlier)]
    fill_with(current, earlier)
    saved.append((current, latest))
    return current


def forward_rewound(ns: dict[str, Any], plan: ReplayPlan, inexact: dict[str, str]) -> None:
    """After a replayed cell: the rewound objects hold their latest contents again."""
    for name, saved in plan.rewound.items():
        for obj, latest in reversed(saved):
            try:
                fill_with(obj, latest)
            except Exception as exc:  # noqa: BLE001 - e.g. a memoryview the cell made pins the bytearray's size
                if obj is plan.stored.get(name, MISSING):
                    # The value is right, under a new object: what the cell made shares the old one.
                    ns[name] = plan.stored[name] = type(obj)(latest) if type(obj) in (list, dict, set, bytearray) else obj
                inexact[name] = f"restored as a new object: what a replayed cell built on it cannot share it ({type(exc).__name__})"
    plan.rewound.clear()


def stored_value_before(main: Any, store: Any, name: str, seq: int, cache: dict) -> Any:
    """``name``'s stored value as it stood before cell ``seq`` ran, or ``MISSING``."""
    earlier = [p for p in store.name_history(name) if p.seq < seq]
    if not earlier or earlier[-1].state != LIVE:
        return MISSING
    key = earlier[-1].version
    if key not in cache:
        version = store.version(bytes.fromhex(key))
        with old_versions():  # definitions in it are the live ones: their latest state stays
            cache[key] = load_version(main, store, version) if loadable(store, version) else LookupError(key)
    values = cache[key]
    return values[name] if isinstance(values, dict) and name in values else MISSING


def random_state_at(records: list[CellRecord], seq: int) -> dict[str, Any] | None:
    """The generators' state when cell ``seq`` started (states are recorded only when they change)."""
    for record in reversed(records):
        if record.seq > seq:
            continue
        if record.seq == seq:
            if record.random_state_before:
                return record.random_state_before
            continue
        state = record.random_state_after or record.random_state_before
        if state:
            return state
    return None


def replay_cell(
    shell: Any, record: CellRecord, random_state: dict[str, Any] | None, *, in_history: bool = True
) -> tuple[str, str] | None:
    """Run one journaled cell as it ran; returns (ename, evalue) if it raised.

    ``in_history=False`` (time travel, inside the user's ``%persist`` cell): the cell
    leaves the history and the execution count alone.
    """
    if random_state:
        # The generators as the cell found them: the same deck is dealt again.
        apply_random_state(random_state)
    store_history = record.store_history and in_history
    if store_history:
        # So In[n], Out[n] and _n line up with what the user saw.
        shell.execution_count = record.execution_count
    try:
        result = shell.run_cell(record.code, store_history=store_history, silent=record.silent or not in_history)
    except BaseException as exc:  # noqa: BLE001 - a replay must never take the kernel down
        return type(exc).__name__, str(exc)
    finally:
        # Payloads (exit, help pages, set_next_input) belong to the original reply.
        shell.payload_manager.clear_payload()
    if record.random_state_after:
        # As the cell left them, even if it drew from a generator it created
        # (``import numpy`` seeds numpy's from the OS): later draws match.
        apply_random_state(record.random_state_after)
    error = result.error_before_exec or result.error_in_exec
    if error is None:
        return None
    return type(error).__name__, str(error)


REPLAYED_THREADS_WAIT = 2.0  # seconds a restore waits for threads replayed cells started


@contextlib.contextmanager
def threads_started() -> Iterator[list[threading.Thread]]:
    """Within: the threads this thread starts (a replayed ``Thread(...).start()``) are listed."""
    started: list[threading.Thread] = []
    original = threading.Thread.start
    restoring = threading.get_ident()

    def start(thread: threading.Thread) -> None:
        if threading.get_ident() == restoring:
            started.append(thread)
        original(thread)

    setattr(threading.Thread, "start", start)  # noqa: B010 - a method replaced on the class, for the replay only
    try:
        yield started
    finally:
        setattr(threading.Thread, "start", original)  # noqa: B010


def still_running(threads: list[threading.Thread], wait: float) -> list[threading.Thread]:
    deadline = time.monotonic() + wait
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [thread for thread in threads if thread.is_alive()]


def _no_input(*_args: Any, **_kwargs: Any) -> str:
    from IPython.core.error import StdinNotImplementedError

    raise StdinNotImplementedError("input() is not available while a session is being restored")


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


_CHANGING_EVENTS = frozenset({"os.rename", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree", "shutil.move", "os.chmod", "os.chown"})


_guarded_thread: int | None = None


_hook_installed = False


_created_in_replay: set[Any] = set()  # files a replay made exclusively: it may remove them again


def _file_guard(event: str, args: tuple) -> None:
    if _guarded_thread is None or _guarded_thread != threading.get_ident():
        return
    if event == "open":
        path, _mode, flags = args
        flags = flags or 0
        if flags & os.O_CREAT and flags & os.O_EXCL:
            _created_in_replay.add(path)
        elif flags & _WRITE_FLAGS:
            raise PermissionError(f"a restore does not write files ({path!r} was opened for writing in a replayed cell)")
    elif event == "os.remove" and args[0] in _created_in_replay:
        return
    elif event in _CHANGING_EVENTS:
        raise PermissionError(f"a restore does not change files ({event} {args[0]!r} in a replayed cell)")


@contextlib.contextmanager
def no_file_changes() -> Iterator[None]:
    """While replaying: a replayed cell cannot write, truncate, move or delete existing files, nor recreate them."""
    global _guarded_thread, _hook_installed
    if not _hook_installed:
        sys.addaudithook(_file_guard)
        _hook_installed = True
    tempfile.gettempdir()  # its one-time probe writes and removes a file: done before the guard
    _guarded_thread = threading.get_ident()
    try:
        yield
    finally:
        _guarded_thread = None
        _created_in_replay.clear()


_replaying = threading.local()


def is_replaying() -> bool:
    """Whether this thread is replaying journaled cells (``%persist`` then does nothing)."""
    return getattr(_replaying, "active", False)


@contextlib.contextmanager
def quiet_output(shell: Any) -> Iterator[list[Any]]:
    """Suppress everything replayed code would show: streams, displays, results, tracebacks.

    Yields a list that collects the tracebacks IPython would have sent.
    """
    tracebacks: list[Any] = []

    def drop(_msg: Any) -> None:
        return None  # a None from a hook suppresses the send

    hooks = [obj for obj in (shell.displayhook, shell.display_pub) if hasattr(obj, "register_hook")]
    for obj in hooks:
        obj.register_hook(drop)
    # ipykernel sends tracebacks on IOPub from this method; capture them instead.
    shell._showtraceback = lambda etype, evalue, stb: tracebacks.append((etype, evalue))
    saved_input, saved_getpass = builtins.input, getpass.getpass
    builtins.input = getpass.getpass = _no_input
    sink = io.StringIO()
    _replaying.active = True
    try:
        with _quiet_fds(), _muted_streams(sink), no_file_changes():
            yield tracebacks
    finally:
        _replaying.active = False
        builtins.input, getpass.getpass = saved_input, saved_getpass
        del shell._showtraceback
        for obj in hooks:
            obj.unregister_hook(drop)


@contextlib.contextmanager
def history_database_untouched(shell: Any) -> Iterator[None]:
    """Replayed cells are not written to IPython's history database again.

    They are there already, from when they ran. Writing them again would list every
    replayed cell twice in ``%history -g`` and cost a database commit per replayed
    cell: IPython's saving thread commits each input and holds the cache's lock while
    it does, so the next replayed cell waits for it (measured: ~2 ms a cell, a fifth
    of a 100-widget restore). ``In`` and the ``_i`` variables are set as usual
    (``_restore_input_history`` puts them back as the user left them).
    """
    history = getattr(shell, "history_manager", None)
    if history is None or not hasattr(history, "db_input_cache_lock"):
        yield
        return
    with history.db_input_cache_lock:
        saved_size = history.db_cache_size
        kept_inputs, kept_outputs = len(history.db_input_cache), len(history.db_output_cache)
        history.db_cache_size = sys.maxsize  # the cache never asks the saving thread to write
    try:
        yield
    finally:
        with history.db_input_cache_lock:
            del history.db_input_cache[kept_inputs:]
            history.db_cache_size = saved_size
        with history.db_output_cache_lock:
            del history.db_output_cache[kept_outputs:]


@contextlib.contextmanager
def _muted_streams(sink: io.StringIO) -> Iterator[None]:
    """Replayed code writes into ``sink``, yet ``sys.stdout`` and ``sys.stderr`` stay the kernel's own objects.

    What a replayed cell keeps of a stream (``logging.StreamHandler(sys.stdout)``, a default
    argument ``file=sys.stdout``, a progress bar) must be the stream it kept in the original
    run, so the streams are muted in place (their ``write`` shadowed on the instance) rather
    than swapped; a stream that refuses that (a C-level file) is swapped for the sink as before.
    """
    with contextlib.ExitStack() as stack:
        for name, redirect in (("stdout", contextlib.redirect_stdout), ("stderr", contextlib.redirect_stderr)):
            stream = getattr(sys, name)
            with contextlib.suppress(Exception):  # what the kernel wrote before goes out now, not muted
                stream.flush()
            try:
                stream.write = sink.write
                # Nothing reaches the stream while muted, so there is nothing to flush: ipykernel's
                # flush waits for its IOPub thread, and every replayed display() flushes both
                # streams first (measured: ~2 ms a display, a fifth of a 100-widget restore).
                stream.flush = sink.flush
            except (AttributeError, TypeError):
                _unmute(stream)
                stack.enter_context(redirect(sink))
            else:
                stack.callback(_unmute, stream)
        yield


def _unmute(stream: Any) -> None:
    for shadowed in ("write", "flush"):
        with contextlib.suppress(AttributeError):
            delattr(stream, shadowed)


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Point file descriptors 1 and 2 at /dev/null (subprocesses, C extensions).

    ipykernel forwards what reaches these descriptors to the frontend; during a
    replay nothing must. The saved duplicates keep ipykernel's pipes open.
    """
    saved: list[tuple[int, int]] = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
