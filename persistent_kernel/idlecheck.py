"""The idle check: a while after the last cell, store what no cell showed.

A background thread, or a library's callback, can change a variable no cell
named; the checkpoint after a cell never sees it. When the kernel has been idle
for ``delay`` seconds and the stored namespace is small enough to hash whole, the
recorder verifies every name against the store and journals what differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class IdleCheck:
    """One timer on the kernel's event loop, set after each cell; the check itself is the recorder's."""

    def __init__(
        self, recorder: Any, journal: Any, checkpointer: Any, log: Any, *, delay: float, max_bytes: int, loop: Callable[[], Any]
    ) -> None:
        self.recorder = recorder
        self.journal = journal
        self.checkpointer = checkpointer
        self.log = log
        self.delay = delay  # 0: off
        self.max_bytes = max_bytes  # above this many stored bytes, hashing all of it costs too much
        self._loop = loop  # the kernel's event loop, once it has one
        self._timer: Any = None
        self._last_activity = time.monotonic()

    def after_cell(self) -> None:
        # One timer at a time; when it fires early (cells ran since) it sets itself again for
        # the rest of the delay. Re-arming a tornado timeout after every cell costs more.
        self._last_activity = time.monotonic()
        loop = self._loop()
        if loop is None or self.delay <= 0 or self._timer is not None:
            return
        self._timer = loop.call_later(self.delay, self._fire)

    def _fire(self) -> None:
        """When the kernel has been idle a while and the namespace is small, store what cells did not show."""
        self._timer = None
        idle_for = time.monotonic() - self._last_activity
        if idle_for < self.delay:  # cells ran since the timer was set
            self._timer = self._loop().call_later(max(self.delay - idle_for, 0.05), self._fire)
            return
        if not self.journal.active or self.checkpointer.stored_bytes() > self.max_bytes:
            return
        if not self.recorder.take_turn():  # a cell is running or awaiting (its own checkpoint comes first): check after it
            self._timer = self._loop().call_later(self.delay, self._fire)
            return
        try:
            self.recorder.verify_when_idle()
        except Exception:  # noqa: BLE001 - a background check must never disturb the session
            self.log.exception("persistent_kernel: idle check failed")
        finally:
            self.recorder.release_turn()
