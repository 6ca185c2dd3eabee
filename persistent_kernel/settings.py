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

The providers are in settingslibraries.py (pandas, numpy, matplotlib, ``decimal``),
settingspython.py (warnings, logging, interpreter knobs), settingsipython.py (IPython's
own state) and codesettings.py (settings that hold code); the JSON helpers they share
in settingsvalues.py.

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
from collections.abc import Iterable
from typing import Any

from .codesettings import DisplayFormatters, EventCallbacks, LoggerHandlers, ProcessRegistries
from .provider import Provider
from .settingsipython import AutoreloadMode, DirectoryHistory, IPythonAliases, IPythonConfig, IPythonDisplaySettings
from .settingslibraries import DecimalContext, MatplotlibRcParams, NumpyOptions, PandasOptions
from .settingspython import InterpreterSettings, LoggingLevels, WarningsFilters

FAILED = "failed"  # in place of a state whose capture raised


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
