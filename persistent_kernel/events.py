"""User code that runs outside a cell: comm messages (widget callbacks) and what they ran.

A cell's reads are found in its source; a comm message has no source. Its
handler (an ipywidgets ``observe`` callback, an ``interact`` function, a
``comm.on_msg`` function) is notebook code reached through library code, so
the kernel watches which notebook code objects actually run while the handler
does (``NotebookCodeRecorder``) and widens their global names like a cell's.
Writes and deletes need no help: the identity scan after the event sees them.

Nothing here journals or stores: ``kernel`` decides when an event commits.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import Any

# The shell messages whose handlers run user code without an execute request.
COMM_MESSAGES = ("comm_open", "comm_msg", "comm_close")

_VALUE_CHARS = 40  # of a widget state value shown in the journal (a slider's value, a text box's text)
_TRIGGER_CHARS = 200


class NotebookCodeRecorder:
    """Records the code objects of notebook functions called in this thread while it is active.

    A trace function (``sys.settrace``, this thread only) is told of every Python
    call; a call whose globals are the notebook's namespace is notebook code. The
    trace function returns None, so no frame is traced line by line, and unlike a
    profile hook it is not called for returns nor for calls into C: a widget update
    runs a few hundred of those inside ipywidgets and traitlets (measured: a profile
    hook added ~380 µs to a slider drag's handler, this ~250 µs). When another tracer
    is already installed (a debugger, coverage), the recorder leaves it alone and
    reports ``complete = False``: the caller then looks at every name instead.
    """

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.codes: set[types.CodeType] = set()
        self.complete = True
        self._installed: Any = None  # our trace function while it is installed

    def __enter__(self) -> NotebookCodeRecorder:
        if sys.gettrace() is not None:
            self.complete = False
            return self
        namespace, record = self.namespace, self.codes.add

        def on_call(frame: types.FrameType, _event: str, _arg: Any) -> None:
            # Only "call" reaches a global trace function; None: the frame is not traced further.
            if frame.f_globals is namespace:
                record(frame.f_code)

        sys.settrace(on_call)
        self._installed = on_call
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed is None:
            return
        if sys.gettrace() is self._installed:  # a debugger that attached meanwhile keeps its tracer
            sys.settrace(None)
        else:
            self.complete = False  # another tracer replaced ours: what ran after that was not seen
        self._installed = None


def describe_comm_message(msg: Mapping[str, Any], comm_manager: Any) -> str:
    """What the user did, in a line for ``%persist history``: ``IntSlider update value=42``."""
    msg_type = str(msg.get("header", {}).get("msg_type", "comm"))
    content = msg.get("content") or {}
    if not isinstance(content, Mapping):
        return msg_type
    data = content.get("data") or {}
    if msg_type == "comm_open":
        return _shorten(f"comm_open {content.get('target_name', '?')}")
    what = _comm_owner(comm_manager, content.get("comm_id"))
    if msg_type == "comm_close":
        return _shorten(f"comm_close {what}")
    if not isinstance(data, Mapping):
        return _shorten(f"comm_msg {what}")
    method = data.get("method")
    if method == "update" and isinstance(data.get("state"), Mapping):
        changes = " ".join(f"{key}={_value(value)}" for key, value in data["state"].items())
        return _shorten(f"{what} update {changes}")
    if method == "custom" and isinstance(data.get("content"), Mapping):
        event = data["content"].get("event")
        return _shorten(f"{what} {event}" if event else f"{what} custom message")
    return _shorten(f"{what} {method}" if method else f"comm_msg {what}")


def _comm_owner(comm_manager: Any, comm_id: Any) -> str:
    """The widget class a comm belongs to (ipywidgets registers a bound method), else its target name."""
    try:
        comm = comm_manager.get_comm(comm_id)
    except Exception:  # noqa: BLE001 - naming the trigger must never fail the message
        comm = None
    if comm is None:
        return "comm"
    owner = getattr(getattr(comm, "_msg_callback", None), "__self__", None)
    if owner is not None:
        return type(owner).__name__
    return str(getattr(comm, "target_name", None) or "comm")


def _value(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else repr(value[:_VALUE_CHARS])
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _shorten(text: str) -> str:
    return text if len(text) <= _TRIGGER_CHARS else text[: _TRIGGER_CHARS - 1] + "…"
