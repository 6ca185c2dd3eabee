"""How the journal is doing, and what the user has been told about it.

Persistence never raises into the kernel: a write that fails, a large value that
does not land, a disk that reports an error while syncing each become a notice,
told once (and its end told once too), kept here until the kernel shows them in
the next user cell. The same facts are what ``%persist status`` calls DEGRADED.
No IPython, no LMDB.
"""

from __future__ import annotations


class JournalHealth:
    """The journal's problems now, and the notices about them not yet shown."""

    def __init__(self) -> None:
        self.write_problem: str | None = None  # the current run of failed writes, if any
        self.unjournaled = 0  # executions that ran while writes failed
        self.background_problem: str | None = None  # a large value's background write failed (told once)
        self._told_durability = False
        self._notices: list[str] = []

    def notify(self, message: str) -> None:
        self._notices.append(message)

    def take(self, durability_problem: str | None, writer_working: bool) -> list[str]:
        """The notices to show now, each returned once; ``durability_problem``: the store's,
        ``writer_working``: a background writer runs and its last write did not fail."""
        if durability_problem and not self._told_durability:
            self._told_durability = True
            self.notify(
                f"The disk reported an error while making the session journal durable: {durability_problem}. "
                "Your cells run and are journaled as usual; check the disk (dmesg) before relying on it."
            )
        if self.background_problem is not None and writer_working:
            self.background_problem = None  # a large value landed since
            self.notify("Large values are written to disk again.")
        notices, self._notices = self._notices, []
        return notices

    def write_failed(self, exc: Exception) -> None:
        self.unjournaled += 1
        if self.write_problem is None:
            self.notify(
                f"Could not write to the session journal: {exc}. This cell runs, but cells run "
                "while this lasts will not come back after a crash. The journal is tried again with every cell."
            )
        self.write_problem = str(exc)

    def write_worked(self) -> None:
        if self.write_problem is not None:
            self.notify(
                f"The session journal works again. {self.unjournaled} execution(s) ran while it did not "
                "and will be missing after a restore."
            )
            self.write_problem = None

    def background_failed(self, names: str, reason: str) -> None:
        """A large value's bytes did not reach the disk (from the writer thread); told once until one lands."""
        if self.background_problem is None:
            # Not a journal failure: the cell and its outcome are committed; only this value's
            # bytes are not on disk, and a restore rebuilds it from its previous version.
            self.background_problem = f"{names}: {reason}"
            self.notify(
                f"Could not write a large value to disk ({self.background_problem}). It stays in memory; "
                "after a crash it is rebuilt from its previous version by replaying the cells since. "
                "It is written again when it next changes."
            )
