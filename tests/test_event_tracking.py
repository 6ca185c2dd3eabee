"""What an event read and what set it off, without a kernel (#7)."""

from __future__ import annotations

import sys
import types
from typing import Any

from persistent_kernel.events import NotebookCodeRecorder, describe_comm_message
from persistent_kernel.tracking import ReadTracker


def notebook(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<cell>", "exec"), namespace)  # noqa: S102 - a notebook's cell, in a test
    return namespace


def test_the_recorder_sees_notebook_code_a_library_calls_and_nothing_else() -> None:
    ns = notebook(
        """
tuned = []
limits = {'max': 10}
unrelated = [1]
def clamp(v):
    return min(v, limits['max'])
def on_change(change):
    tuned.append(clamp(change['new']))
"""
    )
    library = types.SimpleNamespace(callbacks=[ns["on_change"]])

    def fire(value: int) -> None:  # a widget library's notifier: not notebook code
        for callback in library.callbacks:
            callback({"new": value})

    with NotebookCodeRecorder(ns) as recorder:
        fire(42)
    assert recorder.complete
    assert {code.co_name for code in recorder.codes} == {"on_change", "clamp"}
    reads = ReadTracker().code_reads(recorder.codes, ns)
    assert {"tuned", "clamp", "limits"} <= reads
    assert "unrelated" not in reads
    assert ns["tuned"] == [10]
    assert sys.gettrace() is None  # removed again


def test_with_another_tracer_installed_the_recorder_stands_aside_and_says_so() -> None:
    ns = notebook("def f():\n    return 1\n")
    calls: list[str] = []

    def other(frame: Any, event: str, arg: Any) -> None:
        calls.append(event)

    previous = sys.gettrace()  # a coverage run's own tracer, if any
    sys.settrace(other)
    try:
        with NotebookCodeRecorder(ns) as recorder:
            ns["f"]()
        assert sys.gettrace() is other
    finally:
        sys.settrace(previous)
    assert not recorder.complete and not recorder.codes
    assert calls  # the other tracer kept working


def test_a_tracer_installed_meanwhile_is_left_in_place_and_the_record_is_incomplete() -> None:
    ns = notebook("def f():\n    return 1\n")

    def debugger(frame: Any, event: str, arg: Any) -> None:
        return None

    previous = sys.gettrace()
    try:
        with NotebookCodeRecorder(ns) as recorder:
            ns["f"]()
            sys.settrace(debugger)  # a debugger attaching while the handler runs
        assert sys.gettrace() is debugger
    finally:
        sys.settrace(previous)
    assert not recorder.complete


def test_a_profiler_does_not_stop_the_recorder() -> None:
    ns = notebook("def f():\n    return 1\n")
    sys.setprofile(lambda frame, event, arg: None)
    try:
        with NotebookCodeRecorder(ns) as recorder:
            ns["f"]()
    finally:
        sys.setprofile(None)
    assert recorder.complete and {code.co_name for code in recorder.codes} == {"f"}


def test_generators_and_nested_notebook_calls_are_recorded() -> None:
    ns = notebook("def inner():\n    return 2\ndef gen():\n    yield inner()\n    yield inner()\n")
    made = ns["gen"]()  # made outside: only its resumption runs inside
    with NotebookCodeRecorder(ns) as recorder:
        assert list(made) == [2, 2]
    assert {code.co_name for code in recorder.codes} == {"gen", "inner"}


class _Widget:
    def _handle_msg(self, msg: Any) -> None:
        pass


class IntSlider(_Widget):
    pass


class _Comm:
    def __init__(self, owner: Any = None, target_name: str = "jupyter.widget") -> None:
        self._msg_callback = owner._handle_msg if owner is not None else None
        self.target_name = target_name


class _Manager:
    def __init__(self, comms: dict[str, _Comm]) -> None:
        self.comms = comms

    def get_comm(self, comm_id: str) -> _Comm | None:
        return self.comms.get(comm_id)


def message(msg_type: str, content: Any) -> dict[str, Any]:
    return {"header": {"msg_type": msg_type}, "content": content}


def test_comm_messages_are_named_as_the_user_knows_them() -> None:
    manager = _Manager({"s": _Comm(IntSlider()), "raw": _Comm(target_name="my.target")})
    update = {"comm_id": "s", "data": {"method": "update", "state": {"value": 42}, "buffer_paths": []}}
    assert describe_comm_message(message("comm_msg", update), manager) == "IntSlider update value=42"
    click = {"comm_id": "s", "data": {"method": "custom", "content": {"event": "click"}}}
    assert describe_comm_message(message("comm_msg", click), manager) == "IntSlider click"
    assert describe_comm_message(message("comm_msg", {"comm_id": "raw", "data": {"x": 1}}), manager) == "comm_msg my.target"
    assert describe_comm_message(message("comm_open", {"comm_id": "n", "target_name": "t"}), manager) == "comm_open t"
    assert describe_comm_message(message("comm_close", {"comm_id": "s"}), manager) == "comm_close IntSlider"
    long_text = {"comm_id": "s", "data": {"method": "update", "state": {"value": "x" * 500}}}
    assert len(describe_comm_message(message("comm_msg", long_text), manager)) < 100


def test_malformed_comm_messages_are_still_named() -> None:
    manager = _Manager({})
    assert describe_comm_message(message("comm_msg", "not a dict"), manager) == "comm_msg"
    assert describe_comm_message(message("comm_msg", {"comm_id": "gone", "data": [1]}), manager) == "comm_msg comm"
    assert describe_comm_message({}, None) == "comm_msg comm"
