"""Process state beyond the namespace that a replay must reproduce.

At this stage: the global random number generators (``random`` and, once the
user imported it, numpy's legacy global ``RandomState``). Each cell's journal
record carries the generator state it started from whenever that state differs
from the last one recorded, and a replay sets it back before running the cell,
so ``random.shuffle(deck)`` deals the same deck again.

States are kept as JSON-safe dicts (base64 of the raw words): the journal never
holds pickles.
"""

from __future__ import annotations

import base64
import random
import sys
from array import array
from typing import Any

import xxhash


def _encode_words(words: Any, typecode: str) -> str:
    return base64.b64encode(array(typecode, words).tobytes()).decode("ascii")


def _decode_words(text: str, typecode: str) -> array:
    words = array(typecode)
    words.frombytes(base64.b64decode(text))
    return words


def capture_random_state() -> dict[str, Any]:
    """The global generators' states, JSON-safe."""
    version, words, gauss_next = random.getstate()
    state: dict[str, Any] = {"random": {"version": version, "words": _encode_words(words, "Q"), "gauss_next": gauss_next}}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        try:
            name, keys, pos, has_gauss, cached = numpy.random.get_state(legacy=True)
            state["numpy"] = {
                "name": name,
                "keys": _encode_words(keys.tolist(), "I"),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            }
        except (AttributeError, TypeError, ValueError):
            pass  # a numpy without the legacy global generator: nothing to keep
    return state


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


class RandomStateTracker:
    """Hands out the generators' state only when it changed since the last call.

    Most cells draw no random numbers; their records then carry nothing.
    """

    def __init__(self) -> None:
        self._last: str | None = None

    def changed_state(self) -> dict[str, Any] | None:
        state = capture_random_state()
        fingerprint = xxhash.xxh3_64_hexdigest(repr(sorted(state.items())).encode())
        if fingerprint == self._last:
            return None
        self._last = fingerprint
        return state

    def reset(self) -> None:
        """Forget what was recorded (after a restore, the next cell records its state again)."""
        self._last = None
