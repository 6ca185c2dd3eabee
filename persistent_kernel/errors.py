"""The project's exception types.

Each carries a message a user can act on: what failed, where, and what to do.
The kernel never lets one of these escape into the user's session; it turns
them into a one-time notice and a line in ``%persist status``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


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


class LoadInterrupted(Exception):
    """Loading a stored value (or importing its module) raised SystemExit, KeyboardInterrupt or the like.

    Unpickling runs code (a ``__reduce__`` can name ``sys.exit``; a module may exit as it is
    imported). Turned into an ordinary exception, it costs the restore that value only,
    where it would otherwise end the kernel on every start.
    """


@contextlib.contextmanager
def interruptions_as_errors(what: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, GeneratorExit
        raise LoadInterrupted(f"{what} raised {type(exc).__name__}{f': {exc}' if str(exc) else ''}") from exc
