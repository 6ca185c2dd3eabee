"""The project's exception types.

Each carries a message a user can act on: what failed, where, and what to do.
The kernel never lets one of these escape into the user's session; it turns
them into a one-time notice and a line in ``%persist status``.
"""

from __future__ import annotations


class PersistenceError(Exception):
    """Base class: something kept persistence from working; the kernel runs on."""


class StoreUnavailable(PersistenceError):
    """The session's store cannot be opened (bad path, corrupt file, permissions)."""


class StoreFormatError(StoreUnavailable):
    """The store was written in a format this version cannot read."""


class StoreFromNewerVersion(StoreFormatError):
    """The store is a newer persistent_kernel's: left as it is, for that version to read."""


class SessionLocked(StoreUnavailable):
    """Another live kernel holds this session's journal."""


class StoreWriteError(PersistenceError):
    """A journal write failed (disk full, store size limit, I/O error)."""


class StoreNotAuthenticated(StoreFormatError):
    """A store from before stores were authenticated: left as it is until the user trusts it."""


class StoreOfAnotherSession(StoreUnavailable):
    """The store in this session's place says it is another session's (copied or moved there by hand)."""


class KeyUnusable(StoreUnavailable):
    """The user's key cannot be created or read, or others can read it: no store is trusted."""


class Unauthentic(PersistenceError):
    """A record or blob whose tag does not match: it was not written by this user's kernel."""


class NotPrivate(StoreUnavailable):
    """A file of a store that someone else could change: a symlink, not a regular file, another user's, or writable by others."""


class Unserializable(Exception):
    """A value cannot be stored; the message says which object and why. The caller recomputes it (replay)."""
