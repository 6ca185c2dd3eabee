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
import sys
from typing import Any

from .provider import Provider

_ATOMIC = (int, float, complex, str, bytes, bool, type(None))


class _NotBoundYet(LookupError):
    """A stored name is not in the namespace (yet: the first apply runs before the loads)."""


def _notebook_names(namespace: dict[str, Any]) -> dict[int, str]:
    return {id(value): name for name, value in namespace.items() if not name.startswith("_") and not isinstance(value, _ATOMIC)}


def dump_with_names(value: Any, namespace: dict[str, Any]) -> dict[str, str]:
    """``value`` pickled, notebook variables in it stored as their names (JSON-safe)."""
    import dill

    names = _notebook_names(namespace)

    class NamingPickler(dill.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            name = names.get(id(obj))
            return None if name is None else ("ns", name)

    stream = io.BytesIO()
    pickler = NamingPickler(stream, protocol=5, recurse=False, byref=False)
    pickler._main = sys.modules["__main__"]
    pickler.dump(value)
    return {"payload": base64.b64encode(stream.getvalue()).decode("ascii")}


def load_with_names(state: dict[str, str], namespace: dict[str, Any]) -> Any:
    import dill

    class NamingUnpickler(dill.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            kind, name = pid
            if kind != "ns" or name not in namespace:
                raise _NotBoundYet(name)
            return namespace[name]

    unpickler = NamingUnpickler(io.BytesIO(base64.b64decode(state["payload"])))
    unpickler._main = sys.modules["__main__"]
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


def _described(exc: Exception) -> str:
    if isinstance(exc, _NotBoundYet):
        return f"{exc.args[0]} is not in the namespace"
    return f"{type(exc).__name__}: {exc}"


class DisplayFormatters(Provider):
    """Formatters added with ``for_type`` / ``for_type_by_name`` on the shell's display formatters.

    IPython makes its formatters at the first display; until then there is nothing
    to capture, and they are never made early here (see ``settings.IPythonDisplaySettings``).
    """

    name = "formatters"

    def __init__(self) -> None:
        self._seen: Any = None
        self._state: dict[str, Any] | None = None

    @staticmethod
    def _formatters(shell: Any) -> dict[str, Any]:
        display = getattr(shell, "display_formatter", None)
        if display is None or not display.trait_has_value("formatters"):
            return {}
        return dict(display.formatters)

    def rebase(self, shell: Any) -> None:
        # No baseline to take: what IPython and libraries register is never notebook code
        # (and IPython's own float printer is a new closure in every formatter, so it could
        # not be told apart by identity anyway).
        self._seen = None

    def _added(self, shell: Any) -> list[tuple[str, str, Any, Any]]:
        added = []
        for mime, formatter in self._formatters(shell).items():
            added += [(mime, "type", cls, func) for cls, func in formatter.type_printers.items()]
            added += [(mime, "name", key, func) for key, func in formatter.deferred_printers.items()]
        return [entry for entry in added if _is_notebook_code(entry[3])]

    def capture(self, shell: Any) -> dict[str, Any] | None:
        if shell is None:
            return None
        added = self._added(shell)
        key = tuple((mime, how, id(what), id(func)) for mime, how, what, func in added)
        if key != self._seen:
            self._state = dump_with_names(added, shell.user_ns) if added else None
            self._seen = key  # after the dump: one that raised is tried again next time
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if shell is None:
            return []
        self._seen = None
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
