"""The one interface every settings provider implements (settings.py, codesettings.py)."""

from __future__ import annotations

from typing import Any


class Provider:
    """One library's or facility's settings. Subclasses set ``name`` and override ``capture``/``apply``."""

    name = ""

    def rebase(self, shell: Any) -> None:
        """Take the settings as they are now as the kernel's own (start-up is done, nothing restored yet)."""

    def capture(self, shell: Any) -> dict[str, Any] | None:
        raise NotImplementedError

    def apply(self, shell: Any, state: dict[str, Any] | None) -> list[str]:
        raise NotImplementedError
