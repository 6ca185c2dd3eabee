"""Process-wide settings a restore puts back: one *provider* per library or facility.

A provider knows one kind of setting (pandas options, numpy print options,
``%xmode`` …). ``capture(shell)`` returns a JSON-safe dict of what differs from
the defaults (or from the kernel's state at start-up), or ``None`` when nothing
does or the library was never imported: a provider never imports a library to
look at it. ``apply(shell, state)`` makes the settings exactly ``state`` again
(``None``: the defaults) and returns what it could not restore.

Capture runs after every cell, so a provider first makes a cheap comparison with
what it saw last time and hands back the very same state object when nothing
changed (the caller's ``==`` then stops at identity).

``SettingsRegistry.capture`` gives ``{provider name: state}``; ``ProcessContextTracker``
(context.py) stores it as the ``settings`` entry of the process context, which the
checkpoint commits in the cell's transaction when it changed, and
``apply_process_context`` calls ``SettingsRegistry.apply`` before the first load
and again after a replay. A provider that fails never raises into the kernel: its
failure is kept in place of its state (``{"failed": reason}``) and named by the
restore, like what a provider could not store (``"unstored": {what: why}``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import numbers
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from .codesettings import (
    DisplayFormatters,
    EventCallbacks,
    LoggerHandlers,
    ProcessRegistries,
    dump_or_note,
    dump_with_names,
    load_with_names,
)
from .provider import UNSTORED, Provider, namespace_of, unstored_problems

FAILED = "failed"  # in place of a state whose capture raised


class Unstorable(Exception):
    """A value with no JSON form (a function, an object of a notebook class …)."""


def to_json(value: Any) -> Any:
    """A setting's value as JSON: scalars, lists (tuples too), str-keyed dicts; ``'{:.2f}'.format``; cyclers."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)  # numpy integers
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: to_json(item) for key, item in value.items()}
    owner = getattr(value, "__self__", None)
    if isinstance(owner, str) and getattr(value, "__name__", None) == "format":
        return {"$format": owner}  # pd.set_option("display.float_format", "{:.2f}".format)
    if type(value).__name__ == "Cycler" and type(value).__module__.startswith("cycler"):
        return {"$repr": repr(value)}  # matplotlib's validator reads cycler('color', [...]) back
    if callable(value):
        raise Unstorable("a function")
    raise Unstorable(f"a {type(value).__name__}")


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$format"}:
            return value["$format"].format
        if set(value) == {"$repr"}:
            return value["$repr"]
        return {key: from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json(item) for item in value]
    return value


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an array-like comparison: not the same
        return False


# -- class 7: libraries and the standard library -------------------------------------------


class PandasOptions(Provider):
    """Every pandas option whose value differs from its registered default.

    The option registry is walked once into (key, the dict holding the value, leaf,
    default) slots; a capture reads the values straight from those dicts (~75 lookups).
    """

    name = "pandas"

    def __init__(self) -> None:
        self._registry: Any = None
        self._count = -1
        self._slots: list[tuple[str, dict[str, Any], str, Any]] = []
        self._values: list[Any] | None = None
        self._state: dict[str, Any] | None = None

    def _slots_of(self, config: Any) -> list[tuple[str, dict[str, Any], str, Any]]:
        registered = config._registered_options
        if registered is not self._registry or len(registered) != self._count:
            slots = []
            for key, option in registered.items():
                parent = config._global_config
                *path, leaf = key.split(".")
                try:
                    for part in path:
                        parent = parent[part]
                except (KeyError, TypeError):
                    continue
                slots.append((key, parent, leaf, option.defval))
            self._registry, self._count, self._slots, self._values = registered, len(registered), slots, None
        return self._slots

    def capture(self, shell: Any) -> dict[str, Any] | None:
        config = sys.modules.get("pandas._config.config")
        if config is None:
            return None
        slots = self._slots_of(config)
        missing = object()
        values = [parent.get(leaf, missing) for _key, parent, leaf, _default in slots]
        if values == self._values:
            return self._state
        options: dict[str, Any] = {}
        unstored: dict[str, str] = {}
        for (key, _parent, _leaf, default), value in zip(slots, values):
            if value is missing or _same(value, default):
                continue
            try:
                options[key] = to_json(value)
            except Unstorable as exc:
                unstored[key] = str(exc)
        self._values = values
        self._state = _state_of(options=options, unstored=unstored)
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if state is None and "pandas._config.config" not in sys.modules:
            return []
        pandas = importlib.import_module("pandas")
        config = sys.modules["pandas._config.config"]
        wanted = {key: from_json(value) for key, value in ((state or {}).get("options") or {}).items()}
        problems = unstored_problems(state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a deprecated option warns when set
            for key, parent, leaf, default in self._slots_of(config):
                target = wanted.pop(key, default)
                if key in ((state or {}).get(UNSTORED) or {}) or _same(parent.get(leaf), target):
                    continue
                try:
                    pandas.set_option(key, target)
                except Exception as exc:  # noqa: BLE001 - one option costs only itself
                    problems.append(f"{key} ({type(exc).__name__}: {exc})")
        problems += [f"{key} (no such option)" for key in wanted]
        self._values = None
        return problems


def _state_of(**parts: Any) -> dict[str, Any] | None:
    """The non-empty parts, or None when everything is at its default."""
    state = {key: value for key, value in parts.items() if value not in (None, {}, [])}
    return state or None


_NUMPY_PRINT_DEFAULTS: dict[str, Any] = {
    "edgeitems": 3,
    "threshold": 1000,
    "floatmode": "maxprec",
    "precision": 8,
    "suppress": False,
    "linewidth": 75,
    "nanstr": "nan",
    "infstr": "inf",
    "sign": "-",
    "formatter": None,
    "legacy": False,
    "override_repr": None,
}
_NUMPY_ERR_DEFAULTS = {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}


class NumpyOptions(Provider):
    """``np.set_printoptions`` and ``np.seterr``."""

    name = "numpy"

    def __init__(self) -> None:
        self._seen: tuple[Any, Any] | None = None
        self._state: dict[str, Any] | None = None

    def capture(self, shell: Any) -> dict[str, Any] | None:
        numpy = sys.modules.get("numpy")
        if numpy is None or not hasattr(numpy, "get_printoptions"):
            return None
        printing, errors, errcall = numpy.get_printoptions(), numpy.geterr(), numpy.geterrcall()
        if self._seen is not None and (printing, errors) == self._seen[:2] and errcall is self._seen[2]:
            return self._state
        namespace = namespace_of(shell)
        options: dict[str, Any] = {}
        code: dict[str, Any] = {}  # settings that are functions (a formatter's lambdas, errcall)
        unstored: dict[str, str] = {}
        for key, value in printing.items():
            if key in _NUMPY_PRINT_DEFAULTS and _same(value, _NUMPY_PRINT_DEFAULTS[key]):
                continue
            try:
                options[key] = to_json(value)
            except Unstorable:
                code[f"printoptions {key}"] = dump_or_note(value, namespace, f"printoptions {key}", unstored)
        if errcall is not None:
            code["seterrcall"] = dump_or_note(errcall, namespace, "seterrcall", unstored)
        code = {what: dumped for what, dumped in code.items() if dumped is not None}
        err = {key: value for key, value in errors.items() if _NUMPY_ERR_DEFAULTS.get(key) != value}
        self._seen = (printing, errors, errcall)
        self._state = _state_of(printoptions=options, seterr=err, code=code, unstored=unstored)
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if state is None and "numpy" not in sys.modules:
            return []
        numpy = importlib.import_module("numpy")
        state = state or {}
        problems = unstored_problems(state)
        current = numpy.get_printoptions()
        printing = {key: value for key, value in _NUMPY_PRINT_DEFAULTS.items() if key in current}
        printing.update({key: from_json(value) for key, value in (state.get("printoptions") or {}).items()})
        namespace = namespace_of(shell)
        errcall = None
        for what, pickled in (state.get("code") or {}).items():
            try:
                value = load_with_names(pickled, namespace)
            except Exception as exc:  # noqa: BLE001 - a name not bound yet (the first apply), or gone
                problems.append(f"numpy {what} ({type(exc).__name__}: {exc})")
                continue
            if what == "seterrcall":
                errcall = value
            else:
                printing[what.removeprefix("printoptions ")] = value
        try:
            numpy.set_printoptions(**printing)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"printoptions ({type(exc).__name__}: {exc})")
        try:
            numpy.seterr(**{**_NUMPY_ERR_DEFAULTS, **(state.get("seterr") or {})})
            numpy.seterrcall(errcall)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"seterr ({type(exc).__name__}: {exc})")
        self._seen = None
        return problems


_NOT_RC_SETTINGS = frozenset({"backend", "backend_fallback"})  # the backend is the process context's


class MatplotlibRcParams(Provider):
    """rcParams that differ from the values at import (``rcParamsOrig``); ``style.use`` shows up here.

    The backend is left to the process context (it is set before these are applied).
    """

    name = "matplotlib"

    def __init__(self) -> None:
        self._rc: Any = None
        self._seen: dict[str, Any] | None = None
        self._state: dict[str, Any] | None = None

    def capture(self, shell: Any) -> dict[str, Any] | None:
        matplotlib = sys.modules.get("matplotlib")
        rc = getattr(matplotlib, "rcParams", None)
        original = getattr(matplotlib, "rcParamsOrig", None) or getattr(matplotlib, "rcParamsDefault", None)
        if rc is None or original is None:
            return None
        # RcParams is a dict underneath: a C-level comparison with last time's copy (identity per value).
        if rc is self._rc and self._seen is not None and dict.__eq__(rc, self._seen):
            return self._state
        params: dict[str, Any] = {}
        unstored: dict[str, str] = {}
        for key, value in dict.items(rc):
            if key in _NOT_RC_SETTINGS or _same(value, dict.get(original, key)):
                continue
            try:
                encoded = to_json(value)
            except Unstorable as exc:
                unstored[key] = str(exc)
                continue
            if not _same(encoded, to_json_or_none(dict.get(original, key))):
                params[key] = encoded  # a tuple and the same list are the same setting
        self._rc, self._seen = rc, dict.copy(rc)
        self._state = _state_of(rcparams=params, unstored=unstored)
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if state is None and "matplotlib" not in sys.modules:
            return []
        matplotlib = importlib.import_module("matplotlib")
        rc, original = matplotlib.rcParams, matplotlib.rcParamsOrig
        wanted = {key: from_json(value) for key, value in ((state or {}).get("rcparams") or {}).items()}
        problems = unstored_problems(state)
        unstored = (state or {}).get(UNSTORED) or {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated keys warn when set
            for key, value in list(dict.items(rc)):
                if key in _NOT_RC_SETTINGS or key in unstored:
                    continue
                target = wanted.pop(key) if key in wanted else dict.get(original, key)
                if _same(value, target):
                    continue
                try:
                    rc[key] = target
                except Exception as exc:  # noqa: BLE001 - one parameter costs only itself
                    problems.append(f"{key} ({type(exc).__name__}: {exc})")
        problems += [f"{key} (no such rcParam)" for key in wanted]
        self._seen = None
        return problems


def to_json_or_none(value: Any) -> Any:
    try:
        return to_json(value)
    except Unstorable:
        return None


_DECIMAL_FIELDS = ("prec", "rounding", "Emin", "Emax", "capitals", "clamp")


class DecimalContext(Provider):
    """The current thread's ``decimal.getcontext()``: precision, rounding, exponent limits, traps and flags."""

    name = "decimal"

    def __init__(self) -> None:
        self._seen: str | None = None
        self._state: dict[str, Any] | None = None

    @staticmethod
    def _signals(decimal: Any) -> list[type]:
        return [
            decimal.Clamped, decimal.DivisionByZero, decimal.Inexact, decimal.InvalidOperation, decimal.Overflow,
            decimal.Rounded, decimal.Subnormal, decimal.Underflow, decimal.FloatOperation,
        ]  # fmt: skip

    def capture(self, shell: Any) -> dict[str, Any] | None:
        decimal = sys.modules.get("decimal")
        if decimal is None:
            return None
        context = decimal.getcontext()
        seen = repr(context)  # one C call that shows every field (~1 µs)
        if seen == self._seen:
            return self._state
        default = decimal.DefaultContext
        state: dict[str, Any] = {field: getattr(context, field) for field in _DECIMAL_FIELDS if getattr(context, field) != getattr(default, field)}
        signals = self._signals(decimal)
        traps = [signal.__name__ for signal in signals if context.traps[signal]]
        if traps != [signal.__name__ for signal in signals if default.traps[signal]]:
            state["traps"] = traps
        flags = [signal.__name__ for signal in signals if context.flags[signal]]
        if flags:
            state["flags"] = flags
        self._seen, self._state = seen, state or None
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if state is None and "decimal" not in sys.modules:
            return []
        decimal = importlib.import_module("decimal")
        state = state or {}
        context, default = decimal.getcontext(), decimal.DefaultContext
        for field in ("Emin", "Emax", "prec", "rounding", "capitals", "clamp"):
            setattr(context, field, state.get(field, getattr(default, field)))
        signals = self._signals(decimal)
        traps = state.get("traps")
        flags = set(state.get("flags") or ())
        for signal in signals:
            context.traps[signal] = signal.__name__ in traps if traps is not None else bool(default.traps[signal])
            context.flags[signal] = signal.__name__ in flags
        self._seen = None
        return []


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
        self._state = _state_of(front=front, back=back, removed=removed, unstored=unstored)
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
        self._state = _state_of(levels=levels, root=root, disable=disable)
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
            self._state = _state_of(**{name: value for name, value in now.items() if value != self._baseline.get(name)})
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


# -- class 9: IPython's own state, through the shell's public objects ---------------------


class IPythonDisplaySettings(Provider):
    """``%precision``, ``%xmode`` (and ``--show``/``--hide``), ``%pdb``, ``%automagic``, ``%autocall``."""

    name = "IPython"

    def __init__(self) -> None:
        self._baseline: dict[str, Any] = {}
        self._seen: tuple[Any, ...] | None = None
        self._state: dict[str, Any] | None = None

    @staticmethod
    def _now(shell: Any) -> dict[str, Any]:
        now: dict[str, Any] = {}
        display = shell.display_formatter
        # IPython makes its formatters at the first display, from the config of that moment
        # (a `%config PlainTextFormatter...` before it applies, after it not): never make them early.
        if display.trait_has_value("formatters"):
            formatter = display.formatters.get("text/plain")
            if formatter is not None:
                now["precision"] = formatter.float_precision
        else:
            from IPython.core.formatters import PlainTextFormatter

            now["precision"] = PlainTextFormatter.float_precision.default_value
        tb = getattr(shell, "InteractiveTB", None)
        if tb is not None:
            now["xmode"] = tb.mode
            now["xmode_skip_hidden"] = bool(getattr(tb, "skip_hidden", True))
        now["pdb"] = bool(shell.call_pdb)
        now["automagic"] = bool(shell.magics_manager.auto_magic)
        now["autocall"] = int(shell.autocall)
        return now

    def rebase(self, shell: Any) -> None:
        if shell is not None:
            self._baseline = self._now(shell)
            self._seen = None

    def capture(self, shell: Any) -> dict[str, Any] | None:
        if shell is None:
            return None
        now = self._now(shell)
        key = tuple(now.values())
        if key != self._seen:
            self._seen = key
            self._state = _state_of(**{name: value for name, value in now.items() if self._baseline.get(name) != value}) or None
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if shell is None:
            return []
        wanted = {**self._baseline, **(state or {})}
        now = self._now(shell)
        problems = []
        setters: dict[str, Callable[[Any], None]] = {
            "precision": lambda value: setattr(shell.display_formatter.formatters["text/plain"], "float_precision", value),
            "xmode": lambda value: shell.InteractiveTB.set_mode(mode=value),
            "xmode_skip_hidden": lambda value: setattr(shell.InteractiveTB, "skip_hidden", bool(value)),
            "pdb": lambda value: setattr(shell, "call_pdb", bool(value)),
            "automagic": lambda value: setattr(shell.magics_manager, "auto_magic", bool(value)),
            "autocall": lambda value: setattr(shell, "autocall", int(value)),
        }
        for name, value in wanted.items():
            if name in setters and now.get(name) != value:
                try:
                    setters[name](value)
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"{name} {value!r} ({type(exc).__name__}: {exc})")
        self._seen = None
        return problems


class IPythonConfig(Provider):
    """``%config Class.trait = value``: the shell's config sections that differ from start-up.

    Applied as the magic applies it: ``update_config`` on each of the shell's configurables
    (a formatter not made yet reads it from the shell's config when it is made).
    """

    name = "config"

    def __init__(self) -> None:
        self._baseline: dict[str, dict[str, Any]] = {}
        self._seen: Any = None
        self._state: dict[str, Any] | None = None

    @staticmethod
    def _sections(shell: Any) -> dict[str, dict[str, Any]]:
        config = getattr(shell, "config", None) or {}
        return {name: dict(section) for name, section in config.items() if isinstance(section, dict)}

    def rebase(self, shell: Any) -> None:
        if shell is not None:
            self._baseline = self._sections(shell)
            self._seen = None

    def capture(self, shell: Any) -> dict[str, Any] | None:
        if shell is None:
            return None
        sections = self._sections(shell)
        key = repr(sections)
        if key == self._seen:
            return self._state
        changed: dict[str, dict[str, Any]] = {}
        unstored: dict[str, str] = {}
        for name, section in sections.items():
            for trait, value in section.items():
                if _same(self._baseline.get(name, {}).get(trait, _MISSING), value):
                    continue
                live = _live_value(shell, name, trait)
                if live is not _MISSING:
                    # What the program sees: a %config after the object was made does not reach it
                    # (IPython's formatters are made at the first display, from the config then).
                    value = live
                try:
                    changed.setdefault(name, {})[trait] = to_json(value)
                except Unstorable as exc:
                    unstored[f"{name}.{trait}"] = str(exc)
        self._seen = key
        self._state = _state_of(sections=changed, unstored=unstored)
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if shell is None:
            return []
        from traitlets.config import Config, Configurable

        self._seen = None
        problems = unstored_problems(state)
        wanted = (state or {}).get("sections") or {}
        now = self._sections(shell)
        update = Config()
        for name, section in now.items():  # what the session set and does not want: back to start-up or the default
            for trait in section:
                if trait not in wanted.get(name, {}) and not _same(self._baseline.get(name, {}).get(trait, _MISSING), section[trait]):
                    if trait in self._baseline.get(name, {}):
                        update[name][trait] = self._baseline[name][trait]
                    else:
                        default = _trait_default(shell, name, trait)
                        del shell.config[name][trait]
                        if default is not _MISSING:
                            update[name][trait] = default
        for name, section in wanted.items():
            for trait, value in section.items():
                update[name][trait] = from_json(value)
        if not update:
            return problems
        for configurable in shell.configurables:
            if not isinstance(configurable, Configurable):
                continue
            try:
                configurable.update_config(update)
            except Exception as exc:  # noqa: BLE001 - one class's trait costs only itself
                problems.append(f"{type(configurable).__name__} ({type(exc).__name__}: {exc})")
        for name, section in now.items():  # defaults were applied, not configured
            for trait in list(section):
                if trait not in wanted.get(name, {}) and trait not in self._baseline.get(name, {}):
                    shell.config[name].pop(trait, None)
        return problems


_MISSING = object()


def _live_objects(shell: Any) -> list[Any]:
    found = list(getattr(shell, "configurables", []))
    display = getattr(shell, "display_formatter", None)
    if display is not None and display.trait_has_value("formatters"):  # never made early
        found += list(display.formatters.values())
    return found


def _live_value(shell: Any, section: str, trait: str) -> Any:
    """The trait's value on the live object of class ``section``, if one exists."""
    for obj in _live_objects(shell):
        if any(cls.__name__ == section for cls in type(obj).__mro__) and obj.has_trait(trait):
            return getattr(obj, trait)
    return _MISSING


def _trait_default(shell: Any, section: str, trait: str) -> Any:
    for configurable in shell.configurables:
        for cls in type(configurable).__mro__:
            if cls.__name__ == section and hasattr(cls, "class_traits"):
                found = cls.class_traits().get(trait)
                if found is not None:
                    return found.default()
    return _MISSING


class IPythonAliases(Provider):
    """``%alias`` / ``%unalias``: aliases that differ from the kernel's start-up ones."""

    name = "aliases"

    def __init__(self) -> None:
        self._baseline: dict[str, str] = {}
        self._seen: list[Any] | None = None
        self._state: dict[str, Any] | None = None

    def rebase(self, shell: Any) -> None:
        if shell is not None:
            self._baseline = dict(shell.alias_manager.aliases)
            self._seen = None

    def capture(self, shell: Any) -> dict[str, Any] | None:
        if shell is None:
            return None
        # An alias is a line magic: the line magics' functions tell whether any was (re)defined.
        seen = list(shell.magics_manager.magics["line"].values())
        if seen == self._seen:
            return self._state
        current = dict(shell.alias_manager.aliases)
        defined = {name: cmd for name, cmd in current.items() if self._baseline.get(name) != cmd}
        removed = sorted(name for name in self._baseline if name not in current)
        self._seen = seen
        self._state = _state_of(defined=defined, removed=removed)
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if shell is None:
            return []
        manager = shell.alias_manager
        state = state or {}
        wanted = {**self._baseline, **(state.get("defined") or {})}
        for name in state.get("removed") or ():
            wanted.pop(name, None)
        current = dict(manager.aliases)
        problems = []
        for name in current:
            if name not in wanted:
                manager.undefine_alias(name)
        for name, cmd in wanted.items():
            if current.get(name) != cmd:
                try:
                    manager.define_alias(name, cmd)
                except Exception as exc:  # noqa: BLE001 - AliasError: a name taken by a magic …
                    problems.append(f"alias {name} ({type(exc).__name__}: {exc})")
        self._seen = None
        return problems


_AUTORELOAD_DEFAULTS = {"enabled": False, "check_all": False, "autoload_obj": False, "hide_errors": False, "deduper": True}


class AutoreloadMode(Provider):
    """``%autoreload`` mode and options, and ``%aimport`` lists (the extension itself is the process context's)."""

    name = "autoreload"

    def __init__(self) -> None:
        self._seen: tuple[Any, ...] | None = None
        self._state: dict[str, Any] | None = None

    @staticmethod
    def _reloader(shell: Any) -> Any:
        if shell is None:
            return None
        magics = shell.magics_manager.registry.get("AutoreloadMagics")
        return getattr(magics, "_reloader", None)

    @staticmethod
    def _report_mode(reloader: Any) -> str | None:
        report = getattr(reloader, "_report", None)
        if report is print:
            return "print"
        if getattr(report, "__self__", None) is logging.getLogger("autoreload"):
            return "log"
        if getattr(report, "__name__", "") == "pl":
            return "print+log"
        return None

    def capture(self, shell: Any) -> dict[str, Any] | None:
        reloader = self._reloader(shell)
        if reloader is None:
            return None
        deduper = getattr(reloader, "deduper_reloader", None)
        seen = (
            reloader, reloader.enabled, reloader.check_all, getattr(reloader, "autoload_obj", False),
            getattr(reloader, "hide_errors", False), getattr(deduper, "_enabled", getattr(deduper, "enabled", True)),
            tuple(reloader.modules), tuple(reloader.skip_modules), getattr(reloader, "_report", None),
        )  # fmt: skip
        if seen == self._seen:
            return self._state
        now = dict(zip(("enabled", "check_all", "autoload_obj", "hide_errors", "deduper"), map(bool, seen[1:6])))
        state = {name: value for name, value in now.items() if _AUTORELOAD_DEFAULTS[name] != value}
        self._seen = seen
        self._state = _state_of(
            **state,
            aimport=sorted(reloader.modules),
            aimport_skip=sorted(reloader.skip_modules),
            report=self._report_mode(reloader),
        )
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        reloader = self._reloader(shell)
        if reloader is None:
            return ["autoreload mode (the autoreload extension is not loaded)"] if state else []
        state = {**_AUTORELOAD_DEFAULTS, **(state or {})}
        reloader.enabled, reloader.check_all = state["enabled"], state["check_all"]
        reloader.autoload_obj, reloader.hide_errors = state["autoload_obj"], state["hide_errors"]
        deduper = getattr(reloader, "deduper_reloader", None)
        if deduper is not None:
            deduper.enabled = state["deduper"]
        reloader.modules.clear()
        reloader.skip_modules.clear()
        for name in state.get("aimport") or ():
            reloader.mark_module_reloadable(name)
        for name in state.get("aimport_skip") or ():
            reloader.mark_module_skipped(name)
        logger = logging.getLogger("autoreload")
        reloader._report = {"print": print, "log": logger.info, "print+log": lambda msg: (print(msg), logger.info(msg))}.get(
            state.get("report"), lambda msg: None
        )
        self._seen = None
        return []


class DirectoryHistory(Provider):
    """``_dh`` (what ``%cd -``, ``%cd -N`` and ``%dhist`` read) and the ``%pushd`` stack."""

    name = "directories"

    def __init__(self) -> None:
        self._baseline: list[str] = []
        self._seen: tuple[Any, ...] | None = None
        self._state: dict[str, Any] | None = None

    def rebase(self, shell: Any) -> None:
        if shell is not None:
            self._baseline = [str(path) for path in shell.user_ns.get("_dh") or ()]
            self._seen = None

    def capture(self, shell: Any) -> dict[str, Any] | None:
        if shell is None:
            return None
        history = shell.user_ns.get("_dh")
        stack = getattr(shell, "dir_stack", None) or []
        if not isinstance(history, list):
            return None
        # %cd appends: the list, its length and last entry, and the stack tell whether it moved.
        seen = (id(history), len(history), history[-1] if history else None, len(stack), stack[0] if stack else None)
        if seen != self._seen:
            dh = [str(path) for path in history]
            self._seen = seen
            self._state = _state_of(dh=dh if dh != self._baseline else None, dir_stack=[str(path) for path in stack])
        return self._state

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        if shell is None:
            return []
        state = state or {}
        history = shell.user_ns.get("_dh")
        wanted = state.get("dh")
        if isinstance(history, list):
            if wanted is not None:
                history[:] = wanted
            elif [str(path) for path in history] != self._baseline:
                history[:] = self._baseline
        if hasattr(shell, "dir_stack"):
            shell.dir_stack[:] = state.get("dir_stack") or []
        self._seen = None
        return []


# -- the registry -------------------------------------------------------------------------


class SettingsRegistry:
    """The providers, in the order they are applied."""

    def __init__(self, providers: Iterable[Provider] | None = None) -> None:
        self.providers: list[Provider] = list(providers if providers is not None else default_providers())

    def register(self, provider: Provider) -> Provider:
        """Add a provider (one replaces another of the same name)."""
        self.providers = [p for p in self.providers if p.name != provider.name] + [provider]
        return provider

    def rebase(self, shell: Any) -> None:
        for provider in self.providers:
            with contextlib.suppress(Exception):  # a provider that cannot look costs only itself
                provider.rebase(shell)

    def capture(self, shell: Any) -> dict[str, Any]:
        """``{provider: state}`` for the providers whose settings differ from the defaults."""
        settings: dict[str, Any] = {}
        for provider in self.providers:
            try:
                state = provider.capture(shell)
            except Exception as exc:  # noqa: BLE001 - never raises into the kernel; the restore names it
                state = {FAILED: f"{type(exc).__name__}: {exc}"}
            if state:
                settings[provider.name] = state
        return settings

    def apply(self, shell: Any, settings: dict[str, Any] | None) -> list[str]:
        """Set every provider's settings as captured (a provider absent from ``settings``: the defaults).

        Returns one line per provider that could not restore everything:
        ``settings of X (what: why; …)``.
        """
        if settings is None:
            return []  # a context stored before settings were kept
        problems: list[str] = []
        for provider in self.providers:
            state = settings.get(provider.name)
            if state and FAILED in state:
                problems.append(f"settings of {provider.name} (could not be captured: {state[FAILED]})")
                continue
            try:
                missed = provider.apply(shell, state)
            except Exception as exc:  # noqa: BLE001 - skipped and named
                missed = [f"{type(exc).__name__}: {exc}"]
            if missed:
                problems.append(f"settings of {provider.name} ({'; '.join(missed)})")
        return problems


def default_providers() -> list[Provider]:
    # IPython's %precision also sets numpy's print precision: it goes first, numpy's own settings after.
    return [
        IPythonDisplaySettings(),
        InterpreterSettings(),
        WarningsFilters(),
        LoggingLevels(),
        LoggerHandlers(),
        DecimalContext(),
        NumpyOptions(),
        PandasOptions(),
        MatplotlibRcParams(),
        IPythonConfig(),
        IPythonAliases(),
        AutoreloadMode(),
        DirectoryHistory(),
        DisplayFormatters(),
        EventCallbacks(),
        ProcessRegistries(),
    ]


registry = SettingsRegistry()  # the kernel's: baselines taken by ProcessContextTracker.rebase
register = registry.register
