"""IPython's own objects held by notebook variables, stored as references to the running shell's.

``ip = get_ipython()``, ``fmt = ip.display_formatter.formatters['text/plain']``,
``ns = ip.user_ns``: a notebook holds the shell and its parts, which are the
kernel's, not the session's data. They cannot be pickled (sockets, threads), and
a copy would be a second shell nobody uses. So they are stored as a path from
``get_ipython()`` and, after a restore, are the new kernel's same parts; the
sharing walk treats them as leaves (the shell reaches everything).
"""

from __future__ import annotations

import sys
from typing import Any

from . import looks

# Attributes of the shell a notebook reaches (``get_ipython().<name>``).
_PARTS = (
    "kernel",
    "display_formatter",
    "display_pub",
    "displayhook",
    "events",
    "history_manager",
    "magics_manager",
    "extension_manager",
    "payload_manager",
    "prefilter_manager",
    "alias_manager",
    "Completer",
    "InteractiveTB",
    "user_ns",
    "user_module",
    "config",
)


def _shell() -> Any:
    ipython = sys.modules.get("IPython")
    return None if ipython is None else ipython.get_ipython()


_found: tuple[int | None, dict[int, str]] = (None, {})


def shell_objects() -> dict[int, str]:
    """id -> path of the running shell and its parts (empty outside IPython); found once per look (``looks``)."""
    global _found
    look = looks.current()
    if look is not None and _found[0] == look:
        return _found[1]
    found = _shell_objects()
    _found = (look, found)
    return found


def _shell_objects() -> dict[int, str]:
    shell = _shell()
    if shell is None:
        return {}
    found = {id(shell): ""}
    for name in _PARTS:
        part = getattr(shell, name, None)
        if part is not None:
            found.setdefault(id(part), name)
    display = getattr(shell, "display_formatter", None)
    if display is not None and display.trait_has_value("formatters"):  # never made early (see settings)
        for mime, formatter in display.formatters.items():
            found.setdefault(id(formatter), f"display_formatter.formatters[{mime}]")
    return found


def shell_object(path: str) -> Any:
    """Unpickling: the running shell's object at ``path``."""
    obj = _shell()
    if obj is None:
        raise LookupError(f"get_ipython().{path} was stored, and there is no IPython shell here")
    for part in filter(None, path.split(".")):
        name, _, key = part.partition("[")
        obj = getattr(obj, name)
        if key:
            obj = obj[key.rstrip("]")]
    return obj
