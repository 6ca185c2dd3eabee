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


class IdleTimer:
    """One timer on the kernel's event loop that calls ``on_idle`` once ``touch`` was not called for ``delay`` seconds.

    When it fires early (touched since it was set) it sets itself again for the rest of the
    delay: re-arming a tornado timeout at every touch costs more. ``delay <= 0``: never fires.
    """

    def __init__(self, delay: float, loop: Callable[[], Any], on_idle: Callable[[], None]) -> None:
        self.delay = delay
        self._loop = loop  # the kernel's event loop, once it has one
        self._on_idle = on_idle
        self._timer: Any = None
        self._last_activity = time.monotonic()

    def touch(self) -> None:
        self._last_activity = time.monotonic()
        if self._timer is None:
            self.again(self.delay)

    def again(self, after: float) -> None:
        """Fire ``after`` seconds from now (``on_idle`` that cannot do its work now tries later)."""
        loop = self._loop()
        if loop is not None and self.delay > 0:
            self._timer = loop.call_later(after, self._fire)

    def _fire(self) -> None:
        self._timer = None
        idle_for = time.monotonic() - self._last_activity
        if idle_for < self.delay:  # touched since the timer was set
            self.again(max(self.delay - idle_for, 0.05))
            return
        self._on_idle()


class IdleCheck:
    """An ``IdleTimer`` set after each cell; the check itself is the recorder's."""

    def __init__(
        self, recorder: Any, journal: Any, checkpointer: Any, log: Any, *, delay: float, max_bytes: int, loop: Callable[[], Any]
    ) -> None:
        self.recorder = recorder
        self.journal = journal
        self.checkpointer = checkpointer
        self.log = log
        self.max_bytes = max_bytes  # above this many stored bytes, hashing all of it costs too much
        self.timer = IdleTimer(delay, loop, self._check)  # delay 0: off

    def after_cell(self) -> None:
        self.timer.touch()

    def _check(self) -> None:
        """When the kernel has been idle a while and the namespace is small, store what cells did not show."""
        if not self.journal.active or self.checkpointer.stored_bytes() > self.max_bytes:
            return
        if not self.recorder.take_turn():  # a cell is running or awaiting (its own checkpoint comes first): check after it
            self.timer.again(self.timer.delay)
            return
        try:
            self.recorder.verify_when_idle()
        except Exception:  # noqa: BLE001 - a background check must never disturb the session
            self.log.exception("persistent_kernel: idle check failed")
        finally:
            self.recorder.release_turn()
