"""One look at the namespace: a checkpoint's sharing walk and its pickling, with no user code
running in between.

What only user code can change (a large container's chunks, the shell's parts) is worked out
once per look, not once per variable; outside a look every question is asked afresh.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_look = 0
_looking = False


@contextmanager
def one_look() -> Iterator[None]:
    global _look, _looking
    _look += 1
    _looking = True
    try:
        yield
    finally:
        _looking = False


def current() -> int | None:
    """The number of the look under way, or None outside one."""
    return _look if _looking else None
