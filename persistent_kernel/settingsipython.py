"""Settings providers for IPython's own state (issue #13, class 9), through the shell's public objects:
``%precision``, ``%xmode``, ``%pdb``, ``%automagic``, ``%autocall``, ``%config``, aliases,
``%autoreload`` mode and ``%aimport`` lists, ``_dh`` and the ``%pushd`` stack.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .provider import Provider, unstored_problems
from .settingsvalues import Unstorable, from_json, same, state_of, to_json


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
            self._state = state_of(**{name: value for name, value in now.items() if self._baseline.get(name) != value}) or None
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
                if same(self._baseline.get(name, {}).get(trait, _MISSING), value):
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
        self._state = state_of(sections=changed, unstored=unstored)
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
                if trait not in wanted.get(name, {}) and not same(self._baseline.get(name, {}).get(trait, _MISSING), section[trait]):
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
        self._state = state_of(defined=defined, removed=removed)
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
        self._state = state_of(
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
            self._state = state_of(dh=dh if dh != self._baseline else None, dir_stack=[str(path) for path in stack])
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
