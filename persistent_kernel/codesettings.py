"""Settings that hold code: display formatters and IPython event callbacks.

``formatters['text/html'].for_type(Card, card_html)``, ``for_type_by_name``,
``get_ipython().events.register('pre_run_cell', fn)``: the setting is a function
(often a lambda) tied to a notebook class. Such a state has no JSON form, so it is
pickled (``dill``, functions by value with ``__globals__`` the notebook's
namespace), and every object that is a notebook variable — the class, a named
function, an object whose bound method is the callback — is stored as its name
(``persistent_id``) and found again in the restored namespace. That is why the
restore applies settings a second time, after the namespace is back: the first
time (before any load) such names are not there yet, and only the second
attempt's problems are reported.
"""

from __future__ import annotations

import base64
import io
import operator
import sys
import threading
from typing import Any

from . import dictversions
from .errors import interruptions_as_errors
from .provider import Provider, namespace_of, unstored_problems
from .quiet import warnings_kept_out

_ATOMIC = (int, float, complex, str, bytes, bool, type(None))


class _NotBoundYet(LookupError):
    """A stored name is not in the namespace (yet: the first apply runs before the loads)."""


def _notebook_names(namespace: dict[str, Any]) -> dict[int, str]:
    return {id(value): name for name, value in namespace.items() if not name.startswith("_") and not isinstance(value, _ATOMIC)}


def dump_with_names(value: Any, namespace: dict[str, Any]) -> dict[str, str]:
    """``value`` pickled, notebook variables in it stored as their names (JSON-safe)."""
    import dill

    names = _notebook_names(namespace)

    streams = {id(sys.stdout): "stdout", id(sys.stderr): "stderr"}
    lock_types = {type(threading.Lock()): "Lock", type(threading.RLock()): "RLock"}

    class NamingPickler(dill.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            name = names.get(id(obj))
            if name is not None:
                return ("ns", name)
            stream = streams.get(id(obj))
            if stream is not None:
                return ("sys", stream)  # the running kernel's streams, whatever they are then
            lock = lock_types.get(type(obj))
            # A handler's lock comes back new and free (dill's RLock comes back held by no one, for ever).
            return None if lock is None else ("new", lock)

    stream = io.BytesIO()
    pickler = NamingPickler(stream, protocol=5, recurse=False, byref=False)
    pickler._main = sys.modules["__main__"]
    with warnings_kept_out():
        pickler.dump(value)
    return {"payload": base64.b64encode(stream.getvalue()).decode("ascii")}


def dump_or_note(value: Any, namespace: dict[str, Any], what: str, unstored: dict[str, str]) -> dict[str, str] | None:
    """``dump_with_names(value)``; if it cannot be pickled, None and the reason in ``unstored[what]`` (the restore names it)."""
    try:
        return dump_with_names(value, namespace)
    except Exception as exc:  # noqa: BLE001 - a user object fails to pickle in any way
        unstored[what] = f"{type(exc).__name__}: {exc}"
        return None


def load_with_names(state: dict[str, str], namespace: dict[str, Any]) -> Any:
    import dill

    class NamingUnpickler(dill.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            kind, name = pid
            if kind == "sys" and name in ("stdout", "stderr"):
                return getattr(sys, name)
            if kind == "new" and name in ("Lock", "RLock"):
                return getattr(threading, name)()
            if kind != "ns" or name not in namespace:
                raise _NotBoundYet(name)
            return namespace[name]

    unpickler = NamingUnpickler(io.BytesIO(base64.b64decode(state["payload"])))
    unpickler._main = sys.modules["__main__"]
    with interruptions_as_errors("loading the setting"):
        return unpickler.load()


def _is_notebook_code(func: Any) -> bool:
    """A notebook function, lambda or bound method of a notebook object: what the session added.

    Libraries' own registrations (matplotlib's inline figure formats, IPython's defaults)
    are made again by the library when the restore sets it up; only the notebook's are kept.
    """
    func = getattr(func, "__func__", func)
    try:
        return getattr(func, "__module__", None) == "__main__"
    except Exception:  # noqa: BLE001 - an exotic callable
        return False


def _is_the_notebooks(value: Any) -> bool:
    """Notebook code, an object of a notebook class, or plain data (what a library adds is neither)."""
    return _is_notebook_code(value) or _is_notebook_code(type(value)) or type(value).__module__ == "builtins" and not callable(value)


def _described(exc: Exception) -> str:
    if isinstance(exc, _NotBoundYet):
        return f"{exc.args[0]} is not in the namespace"
    return f"{type(exc).__name__}: {exc}"


class DisplayFormatters(Provider):
    """Formatters added with ``for_type`` / ``for_type_by_name`` on the shell's display formatters.

    IPython makes its formatters at the first display; until then there is nothing
    to capture, and they are never made early here (see ``settingsipython.IPythonDisplaySettings``).
    """

    name = "formatters"

    def __init__(self) -> None:
        self._seen: Any = None
        self._state: dict[str, Any] | None = None
        # What the last capture read: the display formatter, and the proof that neither its
        # formatters nor their printer tables changed since (no printer looked at again).
        self._read: tuple[Any, dictversions.UnchangedSince] | None = None

    @staticmethod
    def _formatters(shell: Any) -> dict[str, Any]:
        display = getattr(shell, "display_formatter", None)
        if display is None or not display.trait_has_value("formatters"):
            return {}
        return dict(display.formatters)

    @staticmethod
    def _tables(display: Any) -> list[Any]:
        """Every dict a registration changes: the formatters (and their traits: a printer table
        assigned anew), each formatter's printers by type and by name."""
        tables = [display._trait_values, display.formatters]
        for formatter in display.formatters.values():
            tables += [formatter._trait_values, formatter.type_printers, formatter.deferred_printers]
        return tables

    def rebase(self, shell: Any) -> None:
        # No baseline to take: what IPython and libraries register is never notebook code
        # (and IPython's own float printer is a new closure in every formatter, so it could
        # not be told apart by identity anyway).
        self._seen = None
        self._read = None

    def _added(self, shell: Any) -> list[tuple[str, str, Any, Any]]:
        added = []
        for mime, formatter in self._formatters(shell).items():
            added += [(mime, "type", cls, func) for cls, func in formatter.type_printers.items()]
            added += [(mime, "name", key, func) for key, func in formatter.deferred_printers.items()]
        return [entry for entry in added if _is_notebook_code(entry[3])]

    def capture(self, shell: Any) -> dict[str, Any] | None:
        if shell is None:
            return None
        display = getattr(shell, "display_formatter", None)
        if self._read is not None and self._read[0] is display and self._read[1].holds():
            return self._state  # the same registrations as last time (each printer table proven unchanged)
        added = self._added(shell)
        key = tuple((mime, how, id(what), id(func)) for mime, how, what, func in added)
        if key != self._seen:
            self._state = dump_with_names(added, shell.user_ns) if added else None
            self._seen = key  # after the dump: one that raised is tried again next time
        self._read = None
        if key == self._seen and display is not None and display.trait_has_value("formatters"):
            try:
                self._read = (display, dictversions.UnchangedSince(self._tables(display)))
            except AttributeError:  # a formatter of another make: looked at every time
                pass
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if shell is None:
            return []
        self._seen = None
        self._read = None
        wanted: list[tuple[str, str, Any, Any]] = []
        if state:
            try:
                wanted = load_with_names(state, shell.user_ns)
            except Exception as exc:  # noqa: BLE001 - named in the summary
                return [f"display formatters ({_described(exc)})"]
        if not wanted and not self._formatters(shell):
            return []  # nothing to set, and the formatters are not made yet: leave them to IPython
        formatters = shell.display_formatter.formatters
        for mime, how, what, _func in self._added(shell):  # a replay's registrations, or the previous apply's
            if how == "type":
                formatters[mime].type_printers.pop(what, None)
            else:
                formatters[mime].deferred_printers.pop(what, None)
        problems = []
        for mime, how, what, func in wanted:
            formatter = formatters.get(mime)
            if formatter is None:
                problems.append(f"a {mime} formatter (no such formatter)")
            elif how == "type":
                formatter.for_type(what, func)
            else:
                formatter.for_type_by_name(what[0], what[1], func)
        return problems


class EventCallbacks(Provider):
    """Callbacks registered with ``get_ipython().events.register`` (``pre_run_cell``, ``post_execute`` …)."""

    name = "events"

    def __init__(self) -> None:
        self._baseline: dict[str, list[Any]] = {}
        self._seen: Any = None
        self._state: dict[str, Any] | None = None

    def rebase(self, shell: Any) -> None:
        events = getattr(shell, "events", None)
        self._baseline = {} if events is None else {event: list(callbacks) for event, callbacks in events.callbacks.items()}
        self._seen = None

    def _added(self, shell: Any) -> list[tuple[str, Any]]:
        added = []
        for event, callbacks in shell.events.callbacks.items():
            baseline = self._baseline.get(event, [])
            added += [(event, callback) for callback in callbacks if not any(callback is b or callback == b for b in baseline)]
        return [entry for entry in added if _is_notebook_code(entry[1])]

    def capture(self, shell: Any) -> dict[str, Any] | None:
        if shell is None or getattr(shell, "events", None) is None:
            return None
        added = self._added(shell)
        key = tuple((event, id(callback)) for event, callback in added)
        if key != self._seen:
            self._state = dump_with_names(added, shell.user_ns) if added else None
            self._seen = key
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if shell is None or getattr(shell, "events", None) is None:
            return []
        self._seen = None
        for event, callback in self._added(shell):  # a replay's registrations, or the previous apply's
            shell.events.unregister(event, callback)
        if not state:
            return []
        try:
            wanted = load_with_names(state, shell.user_ns)
        except Exception as exc:  # noqa: BLE001
            return [f"event callbacks ({_described(exc)})"]
        for event, callback in wanted:
            shell.events.register(event, callback)
        return []


_LOGGER_DEFAULTS: tuple[list[Any], list[Any], bool, bool] = ([], [], True, False)


class LoggerHandlers(Provider):
    """Handlers and filters the notebook put on its loggers, and their ``propagate`` and ``disabled``.

    Levels are ``settingspython.LoggingLevels``'. Only the root logger and loggers that are no
    module's (``getLogger('app')``, not ``getLogger('urllib3')``) are kept: what a library
    does to its own loggers at import it does again when the restore imports it. Each
    logger's handlers and filters are pickled on their own, the namespace's objects (the
    handler ``h``, the ``StringIO`` it writes to) as names, ``sys.stdout``/``sys.stderr``
    as the running kernel's; one that cannot be is named by the restore, the rest kept.
    """

    name = "loggers"

    def __init__(self) -> None:
        self._baseline: dict[str, tuple[list[Any], list[Any], bool, bool]] = {}
        self._seen: Any = None
        self._state: dict[str, Any] | None = None
        self._listed: tuple[Any, Any] | None = None
        self._found: dict[str, Any] = {}

    def _loggers(self) -> dict[str, Any]:
        """The loggers that are not a library's own, by name.

        Every cell and event asks, and a process that imported a cloud SDK has hundreds of
        library loggers: the list is kept while the logger table (an exact dict: its mutation
        counter) and the set of imported modules (which decides what is a library's) are unchanged.
        """
        import logging

        table = logging.Logger.manager.loggerDict
        tag = dictversions.tag(table)
        listed = (tag, dictversions.tag(sys.modules))
        if None not in listed and listed == self._listed:
            return self._found
        found = {"": logging.getLogger()}
        for name, logger in list(table.items()):
            if isinstance(logger, logging.Logger) and not _is_a_module_logger(name):
                found[name] = logger
        self._listed, self._found = listed, found
        return found

    def rebase(self, shell: Any) -> None:
        self._baseline = {
            name: (list(logger.handlers), list(logger.filters), logger.propagate, logger.disabled) for name, logger in self._loggers().items()
        }
        self._seen = None

    def _changed(self) -> dict[str, tuple[list[Any], list[Any], bool, bool]]:
        changed = {}
        for name, logger in self._loggers().items():
            handlers, filters, propagate, disabled = self._baseline.get(name, _LOGGER_DEFAULTS)
            now = (list(logger.handlers), list(logger.filters), logger.propagate, logger.disabled)
            if not (_same_items(now[0], handlers) and _same_items(now[1], filters) and now[2] == propagate and now[3] == disabled):
                changed[name] = now
        return changed

    def capture(self, shell: Any) -> dict[str, Any] | None:
        changed = self._changed()
        key = tuple(
            (name, tuple((id(h), id(getattr(h, "formatter", None)), getattr(h, "level", 0)) for h in now[0]), tuple(map(id, now[1])), now[2], now[3])
            for name, now in changed.items()
        )
        if key == self._seen:
            return self._state
        namespace = namespace_of(shell)
        loggers: dict[str, Any] = {}
        unstored: dict[str, str] = {}
        for name, (handlers, filters, propagate, disabled) in changed.items():
            entry: dict[str, Any] = {"propagate": propagate, "disabled": disabled}
            attached = dump_or_note((handlers, filters), namespace, f"handlers of logger {name or 'root'}", unstored)
            if attached is not None:
                entry["attached"] = attached
            loggers[name] = entry
        self._seen = key
        self._state = {key_: value for key_, value in (("loggers", loggers), ("unstored", unstored)) if value} or None
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        import logging

        self._seen = None
        state = state or {}
        namespace = namespace_of(shell)
        problems = unstored_problems(state)
        wanted = state.get("loggers") or {}
        for name, logger in self._loggers().items():  # what the session did not do is undone (a replay's too)
            if name not in wanted:
                handlers, filters, propagate, disabled = self._baseline.get(name, _LOGGER_DEFAULTS)
                logger.handlers[:], logger.filters[:] = handlers, filters
                logger.propagate, logger.disabled = propagate, disabled
        for name, entry in wanted.items():
            logger = logging.getLogger(name or None)
            logger.propagate, logger.disabled = entry["propagate"], entry["disabled"]
            if "attached" not in entry:
                continue
            try:
                handlers, filters = load_with_names(entry["attached"], namespace)
            except Exception as exc:  # noqa: BLE001 - a name not bound yet (the first apply), or gone
                problems.append(f"handlers of logger {name or 'root'} ({_described(exc)})")
                continue
            logger.handlers[:], logger.filters[:] = handlers, filters
        return problems


def _same_items(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _is_a_module_logger(name: str) -> bool:
    """``getLogger(__name__)`` of an imported library (a notebook's own ``__name__`` is ``__main__``)."""
    top = name.split(".")[0]
    return top != "__main__" and top in sys.modules


class ProcessRegistries(Provider):
    """Names a cell put in ``builtins`` and reducers it registered with ``copyreg.pickle``.

    Both are process-wide tables a later cell reads without naming where they came from
    (``helper()`` found in builtins, ``pickle.dumps`` using the reducer). What the kernel and
    IPython put there (``get_ipython``, ``exit``, ``display`` …) is the start-up baseline's.
    """

    name = "registries"
    _SHELL_BUILTINS = frozenset({"exit", "quit", "get_ipython", "display", "__IPYTHON__"})

    def __init__(self) -> None:
        self._seen: Any = None
        self._state: dict[str, Any] | None = None
        self.rebase(None)  # a provider never rebased still knows what is not the session's

    def rebase(self, shell: Any) -> None:
        import builtins
        import copyreg

        self._builtins = dict(vars(builtins))
        self._reducers = dict(copyreg.dispatch_table)
        self._seen = None
        self._looked: tuple[Any, Any] | None = None
        self._found: tuple[dict[str, Any], dict[Any, Any]] = ({}, {})
        self._builtin_keys: list[str] = []
        self._builtin_values: list[Any] = []  # the objects themselves: their ids cannot be reused while held

    def _added(self) -> tuple[dict[str, Any], dict[Any, Any]]:
        import builtins
        import copyreg

        # Both tables are exact dicts: unchanged mutation counters mean the same entries, and
        # what was found among them last time still holds (every cell and event asks).
        tags = (dictversions.tag(vars(builtins)), dictversions.tag(copyreg.dispatch_table))
        if None not in tags and tags == self._looked:
            return self._found
        # IPython's builtin trap takes names out of builtins and puts them back around every
        # execution, so its counter moves each cell with nothing changed: then the same keys in
        # the same order, bound to the very objects (held here, so no id is reused), prove it, in C.
        table = vars(builtins)
        keys, values = list(table), list(table.values())
        if (
            self._looked is not None
            and tags[1] == self._looked[1]
            and None not in tags
            and keys == self._builtin_keys
            and all(map(operator.is_, values, self._builtin_values))
        ):
            self._looked = tags
            return self._found
        self._builtin_keys, self._builtin_values = keys, values
        names = {
            name: value
            for name, value in table.items()
            if name not in self._SHELL_BUILTINS
            and not name.startswith("_")
            and (name not in self._builtins or self._builtins[name] is not value)
            and _is_the_notebooks(value)
        }
        reducers = {
            cls: reducer
            for cls, reducer in copyreg.dispatch_table.items()
            if self._reducers.get(cls) is not reducer and (_is_notebook_code(reducer) or _is_notebook_code(cls))
        }
        self._looked, self._found = tags, (names, reducers)
        return names, reducers

    def capture(self, shell: Any) -> dict[str, Any] | None:
        names, reducers = self._added()
        key = (tuple((name, id(value)) for name, value in names.items()), tuple((id(c), id(r)) for c, r in reducers.items()))
        if key == self._seen:
            return self._state
        namespace = namespace_of(shell)
        state: dict[str, Any] = {}
        unstored: dict[str, str] = {}
        for part, added in (("builtins", names), ("copyreg", list(reducers.items()))):
            dumped = dump_or_note(added, namespace, part, unstored) if added else None
            if dumped is not None:
                state[part] = dumped
        if unstored:
            state["unstored"] = unstored
        self._seen = key
        self._state = state or None
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        import builtins
        import copyreg

        self._seen = None
        state = state or {}
        namespace = namespace_of(shell)
        problems = unstored_problems(state)
        names, reducers = self._added()  # a replay's, or the previous apply's: undone first
        for name in names:
            if name in self._builtins:
                setattr(builtins, name, self._builtins[name])
            else:
                delattr(builtins, name)
        for cls in reducers:
            if cls in self._reducers:
                copyreg.dispatch_table[cls] = self._reducers[cls]
            else:
                del copyreg.dispatch_table[cls]
        for part in ("builtins", "copyreg"):
            if part not in state:
                continue
            try:
                wanted = load_with_names(state[part], namespace)
            except Exception as exc:  # noqa: BLE001 - a name not bound yet (the first apply), or gone
                problems.append(f"{part} ({_described(exc)})")
                continue
            if part == "builtins":
                vars(builtins).update(wanted)
            else:
                copyreg.dispatch_table.update(dict(wanted))
        return problems
