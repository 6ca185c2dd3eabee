"""Session identity and the store's location.

A session is what a restarted kernel comes back to. Its name is chosen, in
order, from:

1. ``PERSISTENT_KERNEL_SESSION`` — an explicit name (tests, scripts, a user who
   wants two notebooks to share nothing or a fresh start under a new name);
2. ``JPY_SESSION_NAME`` — the notebook path jupyter_server sets, so each
   notebook has its own session;
3. the working directory — ``jupyter console`` and nbclient set neither.

Each session has its own LMDB environment under
``PERSISTENT_KERNEL_HOME`` (default ``<jupyter data dir>/persistent_kernel``),
in ``sessions/<id>/``, directories mode 0700.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import xxhash
from jupyter_core.paths import jupyter_data_dir

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
    source: str  # "explicit" | "notebook" | "cwd"
    notebook_path: str | None  # absolute path when jupyter_server told us
    home: Path  # PERSISTENT_KERNEL_HOME

    @property
    def store_path(self) -> Path:
        return self.home / "sessions" / self.id


def persistent_home(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    return Path(jupyter_data_dir()) / "persistent_kernel"


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
    if source == "explicit" and SAFE_ID.match(key):
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


def resolve_session(env: dict[str, str] | None = None, cwd: str | None = None) -> Session:
    """The session this kernel belongs to, from its environment."""
    env = os.environ if env is None else env
    home = persistent_home(env)
    explicit = env.get(SESSION_ENV, "").strip()
    if explicit:
        return Session(session_id_for("explicit", explicit), explicit, "explicit", None, home)
    notebook = env.get(NOTEBOOK_ENV, "").strip()
    if notebook:
        session_id, path = notebook_session(notebook)
        return Session(session_id, os.path.basename(path), "notebook", path, home)
    directory = os.path.abspath(cwd or os.getcwd())
    return Session(session_id_for("cwd", directory), directory, "cwd", None, home)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700; tighten it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
