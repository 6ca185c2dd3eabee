"""The user's own modules: the code the session ran from them, kept for a restore.

A notebook imports ``helpers.py`` from its folder, the kernel dies, the user edits
``helpers.py``, the kernel comes back. Values that refer to the module's functions
and classes are stored by reference (``helpers.f``), so they would resolve to the
*new* file while the module's globals and the objects made by its old classes
come from the store: two versions in one namespace. Instead the restore rebuilds
such a module from the source the session had loaded and says so once; the user
takes the new code with ``importlib.reload(helpers)``, as in any session.

"Local" means a module whose file lies outside the Python installation (not under
``sys.prefix``, ``sys.base_prefix`` or a site-packages directory). Its source is
read when the module is first seen and again only when the module is reloaded
(its functions and classes are new objects), never merely because its file
changed: a file edited during the session without a reload is not the code the
session runs.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import site
import sys
from dataclasses import dataclass
from typing import Any

import xxhash

MAX_SOURCE_BYTES = 1024 * 1024  # larger modules are remembered by digest only
_OWN_PACKAGES = ("persistent_kernel", "IPython", "ipykernel", "jupyter_client", "traitlets", "zmq", "tornado")


def _installation_roots() -> tuple[str, ...]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    try:
        roots.update(site.getsitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    user_site = getattr(site, "USER_SITE", None)
    if user_site:
        roots.add(user_site)
    return tuple(os.path.join(os.path.realpath(root), "") for root in roots if root)


def local_file(name: str, module: Any) -> str | None:
    """The module's source file if it is the user's own code, else None."""
    if name.split(".")[0] in _OWN_PACKAGES or name == "__main__":
        return None
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return None
    if path not in _LOCAL_PATHS:
        real = os.path.realpath(path)
        local = not (real.startswith(_ROOTS) or "site-packages" in real or "dist-packages" in real)
        _LOCAL_PATHS[path] = real if local else None
    return _LOCAL_PATHS[path]


_LOCAL_PATHS: dict[str, str | None] = {}  # a module's __file__ -> its real path if it is the user's


_ROOTS = _installation_roots()


def _fingerprint(module: Any) -> tuple[int, ...]:
    """Identities of the module's functions and classes: new objects after a reload."""
    values = getattr(module, "__dict__", {})
    return tuple(id(v) for v in itertools.islice(values.values(), 50) if callable(v))  # runs every cell: no copy


@dataclass
class _Seen:
    module: Any
    path: str
    fingerprint: tuple[int, ...]
    entry: dict[str, Any]


class LocalModuleTracker:
    """What the process context records of the user's modules: ``{name: {path, digest, source}}``."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._not_local: dict[str, Any] = {}  # name -> module object known not to be local
        self._count = -1

    def capture(self) -> dict[str, dict[str, Any]]:
        modules = sys.modules
        if len(modules) != self._count:  # something was imported (or removed): look again
            self._count = len(modules)
            for name, module in list(modules.items()):
                if self._not_local.get(name) is module or (name in self._seen and self._seen[name].module is module):
                    continue
                path = local_file(name, module)
                if path is None:
                    self._not_local[name] = module
                else:
                    self._seen[name] = _Seen(module, path, _fingerprint(module), _read(path))
            for name in [n for n in self._seen if modules.get(n) is not self._seen[n].module]:
                del self._seen[name]
        for seen in self._seen.values():
            fingerprint = _fingerprint(seen.module)
            if fingerprint != seen.fingerprint:  # reloaded (autoreload, importlib.reload): new code
                seen.fingerprint = fingerprint
                seen.entry = _read(seen.path)
        return {name: seen.entry for name, seen in sorted(self._seen.items())}


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return {"path": path, "digest": None}
    entry: dict[str, Any] = {"path": path, "digest": xxhash.xxh3_128_hexdigest(data)}
    if len(data) <= MAX_SOURCE_BYTES:
        try:
            entry["source"] = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return entry


def restore_local_modules(recorded: dict[str, dict[str, Any]] | None) -> dict[str, str]:
    """Before values are loaded: modules whose file changed since come back with the session's code.

    Returns a note per module that was not taken from its file as it is now.
    """
    notes: dict[str, str] = {}
    loaded: list[str] = []
    for name, entry in sorted((recorded or {}).items()):
        path = entry.get("path")
        if not path or entry.get("digest") is None:
            continue
        current = _read(path)
        if current["digest"] == entry["digest"]:
            continue  # unchanged: imported from its file as usual
        shown = os.path.basename(path)
        source = entry.get("source")
        if source is None:
            notes[shown] = f"changed since the session imported it; its new code is used (the session's was too large to keep: {name})"
            continue
        try:
            _load_from_source(name, path, source)
        except Exception as exc:  # noqa: BLE001 - the old code no longer runs here: the new file it is
            notes[shown] = f"changed since; the session's code could not be run again ({type(exc).__name__}: {exc}), so its new code is used"
            continue
        loaded.append(name)
        missing = "" if current["digest"] is not None else " (the file is gone)"
        notes[shown] = f"changed since{missing}; the session's code is kept: importlib.reload({name}) takes the new code"
    for name in loaded:
        # A submodule is an attribute of its package: import the package (it finds the
        # submodule in sys.modules, as the session's) and attach it.
        parent, _, child = name.rpartition(".")
        if parent:
            try:
                setattr(importlib.import_module(parent), child, sys.modules[name])
            except Exception:  # noqa: BLE001, S110 - the package itself no longer imports: its names are lost and said so
                pass
    return notes


def _load_from_source(name: str, path: str, source: str) -> None:
    """Make ``name`` the module the session had: its old source run under a spec on its real file."""
    package = os.path.basename(path) == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[os.path.dirname(path)] if package else None
    )
    if spec is None:
        raise ImportError(f"no import spec for {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - the session's own module, from its authenticated store
    except BaseException:
        sys.modules.pop(name, None)
        raise
