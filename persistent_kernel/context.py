"""Process state beyond the namespace: what a restore must put back besides variables.

The global random number generators (``random`` and, once the user imported it,
numpy's legacy global ``RandomState``), the working directory, ``sys.path``, the
environment variables cells changed, loaded IPython extensions, the matplotlib
backend, and process-wide settings (settings.py: one provider per library or
facility, applied last). Each cell's journal
record carries the generator state it started from whenever that state differs
from the last one recorded, and a replay sets it back before running the cell,
so ``random.shuffle(deck)`` deals the same deck again.

States are kept as JSON-safe dicts (base64 of the raw words): the journal never
holds pickles.
"""

from __future__ import annotations

import base64
import ctypes
import os
import random
import sys
from array import array
from typing import Any

from .localmodules import LocalModuleTracker
from .settings import SettingsRegistry
from .settings import registry as default_settings


def _decode_words(text: str, typecode: str) -> array:
    words = array(typecode)
    words.frombytes(base64.b64decode(text))
    return words


def _raw_states() -> tuple[tuple, tuple | None]:
    """The generators' states as the libraries give them (cheap: no encoding)."""
    numpy_state = None
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        try:
            numpy_state = numpy.random.get_state(legacy=True)
        except (AttributeError, TypeError, ValueError):
            pass  # a numpy without the legacy global generator: nothing to keep
    return random.getstate(), numpy_state


def _same_states(a: tuple[tuple, tuple | None], b: tuple[tuple, tuple | None]) -> bool:
    if a[0] != b[0]:
        return False
    if a[1] is None or b[1] is None:
        return a[1] is b[1]
    (name, keys, pos, has_gauss, cached), (name2, keys2, pos2, has_gauss2, cached2) = a[1], b[1]
    return (name, pos, has_gauss, cached) == (name2, pos2, has_gauss2, cached2) and bool((keys == keys2).all())


def _encode(random_state: tuple, numpy_state: tuple | None) -> dict[str, Any]:
    version, words, gauss_next = random_state
    state: dict[str, Any] = {
        "random": {"version": version, "words": base64.b64encode(array("Q", words).tobytes()).decode("ascii"), "gauss_next": gauss_next}
    }
    if numpy_state is not None:
        name, keys, pos, has_gauss, cached = numpy_state
        state["numpy"] = {
            "name": name,
            "keys": base64.b64encode(keys.astype("uint32").tobytes()).decode("ascii"),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    return state


def capture_random_state() -> dict[str, Any]:
    """The global generators' states, JSON-safe."""
    return _encode(*_raw_states())


def apply_random_state(state: dict[str, Any]) -> None:
    """Set the global generators to a state from ``capture_random_state``."""
    saved = state.get("random")
    if saved:
        words = tuple(_decode_words(saved["words"], "Q"))
        random.setstate((saved["version"], words, saved["gauss_next"]))
    saved_numpy = state.get("numpy")
    if saved_numpy:
        import numpy

        keys = numpy.frombuffer(base64.b64decode(saved_numpy["keys"]), dtype=numpy.uint32)
        numpy.random.set_state(
            (saved_numpy["name"], keys, saved_numpy["pos"], saved_numpy["has_gauss"], saved_numpy["cached_gaussian"])
        )


_MT19937_STATE_BYTES = 624 * 4 + 4  # numpy's mt19937_state: uint32 key[624]; int pos


class _NumpyGeneratorBytes:
    """The raw bytes of numpy's global legacy generator (``np.random.seed`` / ``np.random.rand``).

    ``numpy.random.get_state()`` builds arrays and tuples (~35 µs, several times
    that in a busy kernel), twice per cell; reading the MT19937 state struct through
    its ctypes address is a 2.5 KB memory copy.
    """

    def __init__(self) -> None:
        self._generator: Any = None  # held, so its id cannot be reused
        self._address = 0

    def read(self) -> bytes | None:
        numpy = sys.modules.get("numpy")
        if numpy is None:
            return None
        try:
            generator = numpy.random.mtrand._rand._bit_generator
            if generator is not self._generator:
                self._address = generator.ctypes.state_address
                self._generator = generator
            return ctypes.string_at(self._address, _MT19937_STATE_BYTES)
        except (AttributeError, TypeError, ValueError):
            return None  # a numpy laid out differently: the full comparison decides


_RANDOM_STATE_BYTES = 4 + 624 * 4  # CPython's RandomObject after PyObject_HEAD: int index; uint32 state[624]


class _PythonGeneratorBytes:
    """The raw bytes of ``random``'s global generator, without ``getstate()``.

    ``random.getstate()`` builds a tuple of 625 ints on every call (~9 µs, several
    times that in a busy kernel), twice per cell. CPython keeps the state in the object's C struct right after the object
    header; the layout is checked against ``getstate()`` before it is trusted
    (and again for any new generator object), so another layout only loses the
    fast path.
    """

    def __init__(self) -> None:
        self._generator: Any = None
        self._trusted = False

    def read(self) -> bytes | None:
        generator = getattr(random, "_inst", None)
        if generator is None:
            return None
        if generator is not self._generator:
            self._generator, self._trusted = generator, self._layout_matches(generator)
        if not self._trusted:
            return None
        return ctypes.string_at(id(generator) + _HEADER_BYTES, _RANDOM_STATE_BYTES)

    @staticmethod
    def _layout_matches(generator: Any) -> bool:
        try:
            raw = ctypes.string_at(id(generator) + _HEADER_BYTES, _RANDOM_STATE_BYTES)
            _version, words, _gauss = generator.getstate()
        except (TypeError, ValueError, AttributeError):
            return False
        index = int.from_bytes(raw[:4], "little", signed=True)
        return len(words) == 625 and index == words[624] and array("I", raw[4:]).tolist() == list(words[:624])


_HEADER_BYTES = object.__basicsize__  # ob_refcnt + ob_type: 16 bytes on 64-bit builds


class RandomStateTracker:
    """Hands out the generators' state only when it changed since the last call.

    Most cells draw no random numbers; their records then carry nothing.
    """

    def __init__(self) -> None:
        self._last: tuple[tuple, tuple | None] | None = None
        self._numpy_bytes = _NumpyGeneratorBytes()
        self._python_bytes = _PythonGeneratorBytes()
        self._last_fast: tuple[Any, ...] | None = None

    def changed_state(self) -> dict[str, Any] | None:
        # Fast path: the same Python state and the same numpy MT19937 bytes, and no cached
        # Gaussian pending in numpy (drawing one can change only that flag): unchanged.
        python = self._python_bytes.read()
        python_state = (python, random._inst.gauss_next) if python is not None else random.getstate()
        numpy_bytes = self._numpy_bytes.read()
        fast = (python_state, numpy_bytes)
        numpy_readable = numpy_bytes is not None or "numpy" not in sys.modules
        if (
            self._last is not None
            and numpy_readable
            and fast == self._last_fast
            and not (self._last[1] is not None and self._last[1][3])
        ):
            return None
        raw = _raw_states()
        self._last_fast = fast if numpy_readable else None
        # Comparing the raw states is cheaper than hashing them (a few µs).
        if self._last is not None and _same_states(raw, self._last):
            return None
        self._last = raw
        return _encode(*raw)

    def reset(self) -> None:
        """Forget what was recorded (after a restore, the next cell records its state again)."""
        self._last = None
        self._last_fast = None


# -- process state: working directory, sys.path, environment, extensions, matplotlib ----------


def _matplotlib_backend() -> str | None:
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is None:
        return None
    try:
        return str(matplotlib.get_backend())
    except Exception:  # noqa: BLE001 - a half-imported matplotlib must not break a cell
        return None


class ProcessContextTracker:
    """Captures the process state cells change; hands it out only when it changed.

    Environment variables are kept as the changes cells made against the
    environment the kernel started with, so a restored kernel applies exactly
    those changes on top of its own environment. Process-wide settings (pandas
    options, warnings filters, ``%xmode`` … see settings.py) are the ``settings``
    entry: what the registry's providers find different from the defaults.
    """

    def __init__(self, shell: Any, settings: SettingsRegistry | None = None) -> None:
        self.shell = shell
        self.settings = settings or default_settings
        self.local_modules = LocalModuleTracker()
        self.rebase()
        self._last: dict[str, Any] | None = None

    def rebase(self) -> None:
        """Take the environment as it is now as the kernel's own (call once start-up is done)."""
        self.baseline_env = dict(os.environ)
        self._baseline_raw = dict(getattr(os.environ, "_data", {}))
        self.settings.rebase(self.shell)  # the start-up warnings filters, logger levels, aliases …

    def _env_changes(self) -> dict[str, str | None]:
        raw = getattr(os.environ, "_data", None)  # CPython's encoded dict: comparing it is cheap
        if raw is not None and raw == self._baseline_raw:
            return {}
        env = {k: v for k, v in os.environ.items() if self.baseline_env.get(k) != v}
        env.update({k: None for k in self.baseline_env if k not in os.environ})
        return env

    def capture(self) -> dict[str, Any]:
        env = self._env_changes()
        try:
            cwd = current_directory()
        except OSError:  # the directory was removed under us
            cwd = None
        return {
            "cwd": cwd,
            "sys_path": [str(entry) for entry in sys.path],
            "env": env,
            "extensions": sorted(self.shell.extension_manager.loaded),
            "matplotlib_backend": _matplotlib_backend(),
            "settings": self.settings.capture(self.shell),
            "local_modules": self.local_modules.capture(),
        }

    def changed(self) -> dict[str, Any] | None:
        context = self.capture()
        if context == self._last:
            return None
        self._last = context
        return context

    def reset(self, context: dict[str, Any] | None) -> None:
        self._last = context


def _libc_getcwd() -> Any:
    """libc's ``getcwd`` called with the interpreter lock held (a ``PyDLL`` function), or None."""
    try:
        function = ctypes.PyDLL(None).getcwd
    except (OSError, AttributeError):  # no libc symbols in this process (not a POSIX build)
        return None
    function.restype = ctypes.c_char_p
    function.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return function


_getcwd = _libc_getcwd() if os.name == "posix" else None
_CWD_BUFFER_BYTES = 4096  # PATH_MAX on Linux; a longer path falls back to os.getcwd


def current_directory() -> str:
    """``os.getcwd()``, without letting go of the interpreter lock.

    Every cell and event asks, right when ipykernel's IOPub thread is busy sending the cell's
    output: ``os.getcwd`` releases the lock around its system call, the IOPub thread takes it,
    and the shell thread waits for it back (measured: a third of a millisecond a cell under
    a profiler, the largest single cost of a trivial cell). libc's ``getcwd`` called through
    a ``PyDLL`` keeps the lock over a system call of a microsecond. Any failure (a removed
    directory, a path longer than the buffer) is left to ``os.getcwd``, which raises as usual.
    """
    if _getcwd is not None:
        buffer = ctypes.create_string_buffer(_CWD_BUFFER_BYTES)
        found = _getcwd(buffer, _CWD_BUFFER_BYTES)
        if found is not None:
            return os.fsdecode(found)
    return os.getcwd()


def apply_process_context(shell: Any, context: dict[str, Any], settings: SettingsRegistry | None = None) -> list[str]:
    """Put the process back as a cell left it; returns what could not be restored.

    The settings come last: the autoreload mode needs its extension loaded, rcParams the backend.
    """
    problems: list[str] = []
    cwd = context.get("cwd")
    if cwd:
        try:
            os.chdir(cwd)
        except OSError as exc:
            problems.append(f"working directory {cwd}: {exc.strerror}")
    if context.get("sys_path") is not None:
        sys.path[:] = context["sys_path"]
    for key, value in (context.get("env") or {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    loaded = shell.extension_manager.loaded
    for extension in context.get("extensions") or ():
        if extension not in loaded:
            try:
                shell.extension_manager.load_extension(extension)
            except Exception as exc:  # noqa: BLE001 - an uninstalled extension costs only itself
                problems.append(f"extension {extension}: {type(exc).__name__}: {exc}")
    backend = context.get("matplotlib_backend")
    if backend and backend != _matplotlib_backend():
        try:
            if "inline" in backend:
                shell.enable_matplotlib("inline")
            else:
                import matplotlib

                matplotlib.use(backend)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"matplotlib backend {backend}: {type(exc).__name__}: {exc}")
    problems += (settings or default_settings).apply(shell, context.get("settings"))
    return problems
