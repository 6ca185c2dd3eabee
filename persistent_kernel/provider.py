"""The one interface every settings provider implements (settingslibraries.py, settingspython.py, settingsipython.py,
codesettings.py); settings.py keeps them in a registry."""

from __future__ import annotations

from typing import Any

UNSTORED = "unstored"  # a state's {what: why} for settings that cannot be kept



class Provider:
    """One library's or facility's settings. Subclasses set ``name`` and override ``capture``/``apply``."""

    name = ""

    def rebase(self, shell: Any) -> None:
        """Take the settings as they are now as the kernel's own (start-up is done, nothing restored yet)."""

    def capture(self, shell: Any) -> dict[str, Any] | None:
        raise NotImplementedError

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        raise NotImplementedError


def unstored_problems(state: dict[str, Any] | None) -> list[str]:
    """What a state says it could not keep, as the restore names it."""
    return [f"{what} ({why}, not stored)" for what, why in ((state or {}).get(UNSTORED) or {}).items()]


def namespace_of(shell: Any) -> dict[str, Any]:
    """The notebook's namespace (settings that hold code store its variables as names)."""
    return getattr(shell, "user_ns", None) or {}
