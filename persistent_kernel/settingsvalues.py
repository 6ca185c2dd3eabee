"""A setting's value as JSON and back, and the helpers every settings provider shares.

A value with no JSON form raises ``Unstorable``: the provider keeps it another way
or names it in its state's ``unstored`` part (provider.py), and the restore names it.
"""

from __future__ import annotations

import numbers
from typing import Any


class Unstorable(Exception):
    """A value with no JSON form (a function, an object of a notebook class …)."""


def to_json(value: Any) -> Any:
    """A setting's value as JSON: scalars, lists (tuples too), str-keyed dicts; ``'{:.2f}'.format``; cyclers."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)  # numpy integers
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: to_json(item) for key, item in value.items()}
    owner = getattr(value, "__self__", None)
    if isinstance(owner, str) and getattr(value, "__name__", None) == "format":
        return {"$format": owner}  # pd.set_option("display.float_format", "{:.2f}".format)
    if type(value).__name__ == "Cycler" and type(value).__module__.startswith("cycler"):
        return {"$repr": repr(value)}  # matplotlib's validator reads cycler('color', [...]) back
    if callable(value):
        raise Unstorable("a function")
    raise Unstorable(f"a {type(value).__name__}")


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$format"}:
            return value["$format"].format
        if set(value) == {"$repr"}:
            return value["$repr"]
        return {key: from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json(item) for item in value]
    return value


def to_json_or_none(value: Any) -> Any:
    try:
        return to_json(value)
    except Unstorable:
        return None


def same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an array-like comparison: not the same
        return False


def state_of(**parts: Any) -> dict[str, Any] | None:
    """The non-empty parts, or None when everything is at its default."""
    state = {key: value for key, value in parts.items() if value not in (None, {}, [])}
    return state or None
