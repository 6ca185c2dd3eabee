"""Session identity and the store's location.

A session is what a restarted kernel comes back to. Which one a kernel belongs
to is decided by ``identity`` (the environment, the connection file, the first
execution); this module turns the answer into a ``Session``: its directory name,
what the user sees, and where the answer came from.

Each session has its own LMDB environment under
``PERSISTENT_KERNEL_HOME`` (default ``<jupyter data dir>/persistent_kernel``),
in ``sessions/<id>/``, directories mode 0700 — or, when that location is on a
network or FUSE filesystem, under a local directory instead (``placement``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import xxhash
from jupyter_core.paths import jupyter_data_dir

from .placement import Placement, place

SESSION_ENV = "PERSISTENT_KERNEL_SESSION"
NOTEBOOK_ENV = "JPY_SESSION_NAME"
HOME_ENV = "PERSISTENT_KERNEL_HOME"

# A name used as a session directory as it is.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Session:
    """Who this kernel is, for persistence purposes."""

    id: str  # directory name: filesystem-safe, unique per name
    name: str  # what the user sees: a notebook's file name, the explicit name, or the directory
    source: str  # how the id is derived: "explicit" | "notebook" | "run" | "cwd"
    notebook_path: str | None  # absolute path when a frontend told us
    home: Path  # PERSISTENT_KERNEL_HOME
    origin: str = ""  # where the identity came from, in words (``%persist status``, ``sessions``)

    @property
    def store_path(self) -> Path:
        return self.home / "sessions" / self.id


def configured_home(env: Mapping[str, str] | None = None) -> Path:
    """``PERSISTENT_KERNEL_HOME``, or the default under the Jupyter data directory."""
    env = os.environ if env is None else env
    configured = env.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    return Path(jupyter_data_dir()) / "persistent_kernel"


def store_placement(env: Mapping[str, str] | None = None) -> Placement:
    """Where the stores are opened: the configured home, unless it is on a network or FUSE filesystem."""
    return place(configured_home(env), env)


def placement_note(home: Path) -> str | None:
    """Why the stores under ``home`` are not where they were configured (None when they are)."""
    placement = store_placement()
    return placement.note() if placement.moved and placement.home == home else None


def persistent_home(env: Mapping[str, str] | None = None) -> Path:
    """The directory the sessions' stores are in (see ``placement``)."""
    return store_placement(env).home


def _short_hash(text: str) -> str:
    return xxhash.xxh3_64_hexdigest(text.encode("utf-8", "surrogatepass"))[:12]


def _slug(text: str) -> str:
    slug = _UNSAFE_CHARS.sub("-", text).strip("-.")[:40]
    return slug or "session"


def session_id_for(source: str, key: str) -> str:
    """A directory name for a session key.

    An explicit name that is already a safe directory name is used as is, so a
    user can find it; anything else gets a readable slug plus a hash of the whole
    key, so two different notebooks called ``analysis.ipynb`` never share a store.
    """
    if source in ("explicit", "run") and SAFE_ID.match(key):
        return key
    if source == "notebook":
        readable = os.path.basename(key)
    elif source == "cwd":
        readable = "cwd-" + (os.path.basename(key.rstrip(os.sep)) or "root")
    else:
        readable = key
    return f"{_slug(readable)}-{_short_hash(source + ':' + key)}"


def notebook_session(notebook: str | os.PathLike[str]) -> tuple[str, str]:
    """The session id of a notebook path, and that path made absolute."""
    path = os.path.abspath(os.path.expanduser(os.fspath(notebook)))
    return session_id_for("notebook", path), path


def explicit_session(name: str, home: Path, origin: str = f"explicit: the {SESSION_ENV} variable") -> Session:
    return Session(session_id_for("explicit", name), name, "explicit", None, home, origin)


def session_of_notebook(notebook: str, home: Path, origin: str) -> Session:
    session_id, path = notebook_session(notebook)
    return Session(session_id, os.path.basename(path), "notebook", path, home, origin)


def run_session(name: str, home: Path, origin: str) -> Session:
    return Session(session_id_for("run", name), name, "run", None, home, origin)


def directory_session(cwd: str | None, home: Path) -> Session:
    directory = os.path.abspath(cwd or os.getcwd())
    return Session(session_id_for("cwd", directory), directory, "cwd", None, home, "working directory: no frontend named a notebook (jupyter console, a script)")


def resolve_session(env: Mapping[str, str] | None = None, cwd: str | None = None) -> Session:
    """The session of an explicit name, else of ``JPY_SESSION_NAME``, else of the directory.

    For tools and tests that name a session the way a kernel would. A kernel
    itself asks ``identity``, which also checks that ``JPY_SESSION_NAME`` is its
    own and learns a VS Code notebook from the first execution.
    """
    env = os.environ if env is None else env
    home = persistent_home(env)
    explicit = env.get(SESSION_ENV, "").strip()
    if explicit:
        return explicit_session(explicit, home)
    notebook = env.get(NOTEBOOK_ENV, "").strip()
    if notebook:
        return session_of_notebook(notebook, home, f"jupyter_server: {NOTEBOOK_ENV}")
    return directory_session(cwd, home)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700; tighten it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
