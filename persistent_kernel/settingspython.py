"""Settings providers for the interpreter and the standard library (issue #13, class 7): ``warnings``
filters (notebook categories included), logging levels, and the interpreter's process-wide knobs
(recursion limit, int digits, switch interval, socket timeout, ``gc`` threshold and ``gc.disable()``).
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from .codesettings import dump_with_names, load_with_names
from .provider import Provider, namespace_of, unstored_problems
from .settingsvalues import state_of


def _class_name(cls: type) -> str | None:
    """``module.qualname`` if importing the module and following the name gives ``cls`` back."""
    module, qualname = getattr(cls, "__module__", None), getattr(cls, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return f"{module}:{qualname}" if found is cls else None


def _resolve_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


class WarningsFilters(Provider):
    """The ``warnings`` filters cells added beyond the start-up ones (and start-up ones they removed).

    A filter is kept as [action, message regex, category as ``module:qualname``,
    module regex, lineno]; one whose category cannot be named (a class defined in
    a cell) is not kept and the restore names it.
    """

    name = "warnings"

    def __init__(self) -> None:
        self._baseline: list[tuple] = list(warnings.filters)
        self._seen: list[tuple] | None = None
        self._state: dict[str, Any] | None = None

    def rebase(self, shell: Any) -> None:
        self._baseline = list(warnings.filters)
        self._seen = None

    @staticmethod
    def _encode(entry: tuple, namespace: dict[str, Any]) -> list[Any] | None:
        action, message, category, module, lineno = entry
        category_name: Any = _class_name(category)
        if category_name is None:  # a class defined in a cell: pickled, the class stored as its name
            try:
                category_name = dump_with_names(category, namespace)
            except Exception:  # noqa: BLE001 - named in the summary by the caller
                return None
        return [action, getattr(message, "pattern", message), category_name, getattr(module, "pattern", module), lineno]

    @staticmethod
    def _decode(encoded: list[Any], namespace: dict[str, Any]) -> tuple:
        action, message, category, module, lineno = encoded
        return (
            action,
            re.compile(message, re.IGNORECASE) if message else None,  # as warnings.filterwarnings compiles them
            load_with_names(category, namespace) if isinstance(category, dict) else _resolve_class(category),
            re.compile(module) if module else None,
            int(lineno),
        )

    def capture(self, shell: Any) -> dict[str, Any] | None:
        filters = warnings.filters
        if self._seen is not None and filters == self._seen:
            return self._state
        namespace = namespace_of(shell)
        baseline = self._baseline
        kept = [entry for entry in baseline if entry in filters]
        first_kept = filters.index(kept[0]) if kept else len(filters)
        front: list[Any] = []
        back: list[Any] = []
        unstored: dict[str, str] = {}
        for index, entry in enumerate(filters):
            if entry in baseline:
                continue
            encoded = self._encode(entry, namespace)
            if encoded is None:
                category = getattr(entry[2], "__qualname__", repr(entry[2]))
                unstored[f"filter {entry[0]} {category}"] = "its category cannot be stored"
            else:
                (front if index < first_kept else back).append(encoded)
        removed = [encoded for entry in baseline if entry not in filters and (encoded := self._encode(entry, namespace)) is not None]
        self._seen = list(filters)
        self._state = state_of(front=front, back=back, removed=removed, unstored=unstored)
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        state = state or {}
        problems = unstored_problems(state)
        namespace = namespace_of(shell)

        def decoded(entries: Iterable[list[Any]]) -> list[tuple]:
            out = []
            for encoded in entries:
                try:
                    out.append(self._decode(encoded, namespace))
                except Exception as exc:  # noqa: BLE001 - a category whose module is gone, or not bound yet
                    category = encoded[2] if isinstance(encoded[2], str) else "of a notebook class"
                    problems.append(f"filter {encoded[0]} {category} ({type(exc).__name__}: {exc})")
            return out

        front, back, removed = decoded(state.get("front") or ()), decoded(state.get("back") or ()), decoded(state.get("removed") or ())
        # Exactly the session's filters: the start-up ones it did not remove between the ones it
        # added. Filters no state can hold (a category defined in a cell) stay where they are.
        unnamed = [
            entry for entry in warnings.filters if entry not in self._baseline and entry not in front + back and self._encode(entry, namespace) is None
        ]
        kept = [entry for entry in self._baseline if entry not in removed]
        warnings.filters[:] = front + unnamed + kept + back
        mutated = getattr(warnings, "_filters_mutated", None)
        if mutated is not None:
            mutated()
        self._seen = None
        return problems


class LoggingLevels(Provider):
    """Levels set on the root logger and named loggers, and ``logging.disable`` (never handlers).

    Every ``setLevel`` and ``logging.disable`` clears the loggers' level caches; a
    marker left in the root logger's cache tells a capture that none happened since
    the last one, so it need not walk every logger.
    """

    name = "logging"
    _MARK = "persistent_kernel.settings"  # never a level: isEnabledFor never looks it up

    def __init__(self) -> None:
        self._baseline: dict[str, int] = {}
        self._root = logging.WARNING
        self._disable = 0
        self._state: dict[str, Any] | None = None
        self._count = -1
        self.rebase(None)

    def _levels(self) -> dict[str, int]:
        return {
            name: logger.level
            for name, logger in list(logging.Logger.manager.loggerDict.items())
            if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
        }

    def rebase(self, shell: Any) -> None:
        self._baseline = self._levels()
        self._root = logging.root.level
        self._disable = logging.root.manager.disable
        self._count = -1

    def capture(self, shell: Any) -> dict[str, Any] | None:
        cache = getattr(logging.root, "_cache", None)
        count = len(logging.Logger.manager.loggerDict)
        if cache is not None and cache.get(self._MARK) and count == self._count:
            return self._state
        levels = {name: level for name, level in self._levels().items() if self._baseline.get(name) != level}
        levels.update({name: logging.NOTSET for name in self._baseline if self._is_notset(name)})
        root = logging.root.level if logging.root.level != self._root else None
        disable = logging.root.manager.disable if logging.root.manager.disable != self._disable else None
        self._state = state_of(levels=levels, root=root, disable=disable)
        self._count = count
        if cache is not None:
            cache[self._MARK] = True
        return self._state

    @staticmethod
    def _is_notset(name: str) -> bool:
        logger = logging.Logger.manager.loggerDict.get(name)
        return isinstance(logger, logging.Logger) and logger.level == logging.NOTSET

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        state = state or {}
        wanted = {name: int(level) for name, level in (state.get("levels") or {}).items()}
        for name, level in self._levels().items():
            if name not in wanted and self._baseline.get(name, logging.NOTSET) != level:
                wanted[name] = self._baseline.get(name, logging.NOTSET)  # a replayed cell set it; the session did not keep it
        for name, level in self._baseline.items():
            wanted.setdefault(name, level)
        for name, level in wanted.items():
            logger = logging.getLogger(name)
            if logger.level != level:
                logger.setLevel(level)
        root = state.get("root")
        logging.root.setLevel(self._root if root is None else int(root))
        disable = state.get("disable")
        logging.disable(self._disable if disable is None else int(disable))
        self._count = -1
        return []


def _int_max_str_digits() -> Any:
    digits = getattr(sys, "get_int_max_str_digits", None)
    return digits() if digits else None


def _set_int_max_str_digits(value: Any) -> None:
    if not hasattr(sys, "set_int_max_str_digits"):
        raise ValueError("this Python has no such limit")
    sys.set_int_max_str_digits(int(value))


def _socket_timeout() -> Any:
    import socket

    return socket.getdefaulttimeout()


def _set_socket_timeout(value: Any) -> None:
    import socket

    socket.setdefaulttimeout(value)


def _gc_threshold() -> list[int]:
    import gc

    return list(gc.get_threshold())


def _set_gc_threshold(value: Any) -> None:
    import gc

    gc.set_threshold(*(int(v) for v in value))


def _gc_enabled() -> bool:
    import gc

    return gc.isenabled()


def _set_gc_enabled(value: Any) -> None:
    import gc

    (gc.enable if value else gc.disable)()


# name -> (read, write): process-wide interpreter settings a cell can change.
_INTERPRETER_SETTINGS: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "recursionlimit": (sys.getrecursionlimit, lambda value: sys.setrecursionlimit(int(value))),
    "int_max_str_digits": (_int_max_str_digits, _set_int_max_str_digits),
    "switchinterval": (sys.getswitchinterval, lambda value: sys.setswitchinterval(float(value))),
    "socket_default_timeout": (_socket_timeout, _set_socket_timeout),
    "gc_threshold": (_gc_threshold, _set_gc_threshold),
    "gc_enabled": (_gc_enabled, _set_gc_enabled),
}


class InterpreterSettings(Provider):
    """``sys.setrecursionlimit``, ``sys.set_int_max_str_digits``, ``sys.setswitchinterval``,
    ``socket.setdefaulttimeout``, ``gc.set_threshold`` and ``gc.disable()``: one table, read and written alike."""

    name = "sys"

    def __init__(self) -> None:
        self.rebase(None)
        self._seen: tuple[Any, ...] | None = None
        self._state: dict[str, Any] | None = None

    @staticmethod
    def _now() -> dict[str, Any]:
        return {name: read() for name, (read, _) in _INTERPRETER_SETTINGS.items()}

    def rebase(self, shell: Any) -> None:
        self._baseline = self._now()

    def capture(self, shell: Any) -> dict[str, Any] | None:
        now = self._now()
        key = tuple(repr(v) for v in now.values())
        if key != self._seen:
            self._seen = key
            self._state = state_of(**{name: value for name, value in now.items() if value != self._baseline.get(name)})
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        wanted = {**self._baseline, **(state or {})}
        now = self._now()
        problems = []
        for name, value in wanted.items():
            if name not in _INTERPRETER_SETTINGS or now.get(name) == value:
                continue
            try:
                _INTERPRETER_SETTINGS[name][1](value)
            except (RecursionError, ValueError, TypeError) as exc:
                problems.append(f"{name} {value!r} ({exc})")
        self._seen = None
        return problems
