"""Settings providers for libraries (issue #13, class 7): pandas options, numpy print options
(formatter functions included), ``seterr`` and ``seterrcall``, matplotlib rcParams, the ``decimal`` context.

A provider looks only at a library already imported and imports it only to apply a state.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

from .codesettings import dump_or_note, load_with_names
from .provider import UNSTORED, Provider, namespace_of, unstored_problems
from .settingsvalues import Unstorable, from_json, same, state_of, to_json, to_json_or_none


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
            if value is missing or same(value, default):
                continue
            try:
                options[key] = to_json(value)
            except Unstorable as exc:
                unstored[key] = str(exc)
        self._values = values
        self._state = state_of(options=options, unstored=unstored)
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
                if key in ((state or {}).get(UNSTORED) or {}) or same(parent.get(leaf), target):
                    continue
                try:
                    pandas.set_option(key, target)
                except Exception as exc:  # noqa: BLE001 - one option costs only itself
                    problems.append(f"{key} ({type(exc).__name__}: {exc})")
        problems += [f"{key} (no such option)" for key in wanted]
        self._values = None
        return problems


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
            if key in _NUMPY_PRINT_DEFAULTS and same(value, _NUMPY_PRINT_DEFAULTS[key]):
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
        self._state = state_of(printoptions=options, seterr=err, code=code, unstored=unstored)
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
            if key in _NOT_RC_SETTINGS or same(value, dict.get(original, key)):
                continue
            try:
                encoded = to_json(value)
            except Unstorable as exc:
                unstored[key] = str(exc)
                continue
            if not same(encoded, to_json_or_none(dict.get(original, key))):
                params[key] = encoded  # a tuple and the same list are the same setting
        self._rc, self._seen = rc, dict.copy(rc)
        self._state = state_of(rcparams=params, unstored=unstored)
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
                if same(value, target):
                    continue
                try:
                    rc[key] = target
                except Exception as exc:  # noqa: BLE001 - one parameter costs only itself
                    problems.append(f"{key} ({type(exc).__name__}: {exc})")
        problems += [f"{key} (no such rcParam)" for key in wanted]
        self._seen = None
        return problems


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
